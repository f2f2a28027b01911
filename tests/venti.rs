//! Venti's calls exactly as `lethe.md` lists them, with a metric-typed and a log-typed data
//! source on the same Janus URL, in front of the real Prometheus of the compatibility run.

mod support;

use support::{lethe_testdata, raw_client, required_env, start_janus};

async fn get(base: &str, path_and_query: &str) -> (u16, String, String) {
    let r = raw_client()
        .get(format!("{base}{path_and_query}"))
        // Venti may send basic auth; Janus serves with or without it.
        .basic_auth("venti", Some("secret"))
        .send()
        .await
        .expect("answer");
    support::answer_parts(r).await
}

fn encode(q: &str) -> String {
    form_urlencoded::byte_serialize(q.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn venti_calls_for_both_datasource_types_on_one_url() {
    let prometheus = required_env("JANUS_TEST_PROMETHEUS");
    let store = lethe_testdata();
    let data = store.clone();
    let janus = start_janus(&prometheus, move |c| c.storage_path = data).await;
    let j = janus.url.as_str();

    for path in ["/-/healthy", "/-/ready"] {
        assert_eq!(get(j, path).await.0, 200, "{path}");
    }

    // Metric data source: answers are Prometheus's own bytes.
    let metric_calls = [
        format!(
            "/api/v1/query?query={}&time=1704078000",
            encode("sum by (namespace) (rate(http_requests_total[5m]))")
        ),
        format!(
            "/api/v1/query_range?query={}&start=1704070800&end=1704074400&step=60",
            encode("avg by (namespace) (cpu_usage_ratio)")
        ),
    ];
    for call in &metric_calls {
        let through = get(j, call).await;
        let direct = get(&prometheus, call).await;
        assert_eq!(through, direct, "{call}");
        assert!(through.2.contains("\"resultType\":\""), "{}", through.2);
    }

    // Log data source: Lethe's shape, from the store; Venti sends no step.
    let (status, _, body) = get(
        j,
        &format!(
            "/api/v1/query?query={}&time=2009-11-10T23:00:00Z",
            encode(r#"pod{namespace="namespace02"}[5m]"#)
        ),
    )
    .await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["data"]["resultType"], "logs");
    assert_eq!(v["data"]["result"].as_array().map(Vec::len), Some(12));
    let first = &v["data"]["result"][0];
    let keys: Vec<&str> = first
        .as_object()
        .expect("line")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["container", "log", "namespace", "pod", "time"]); // serde_json sorts; order is checked in tests/logs.rs
    let (status, _, body) = get(
        j,
        &format!(
            "/api/v1/query_range?query={}&start=1257886800&end=1257897599",
            encode(r#"node{node="node01"} |= "hello""#)
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["data"]["resultType"], "logs");
    assert!(v["data"]["result"]
        .as_array()
        .expect("lines")
        .iter()
        .all(|l| l["node"] == "node01" && l["log"].as_str().unwrap_or_default().contains("hello")));

    // The workload tree: one active target per namespace and node, after Prometheus's own.
    let (status, _, body) = get(j, "/api/v1/targets?state=active").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let jobs: Vec<String> = v["data"]["activeTargets"]
        .as_array()
        .expect("activeTargets")
        .iter()
        .map(|t| {
            let d = &t["discoveredLabels"];
            format!(
                "{}/{}",
                d["job"].as_str().unwrap_or_default(),
                d["__meta_kubernetes_namespace"]
                    .as_str()
                    .or(d["__meta_kubernetes_node_name"].as_str())
                    .unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        jobs,
        [
            "pod/namespace01",
            "pod/namespace02",
            "node/node01",
            "node/node02"
        ]
    );
    assert!(
        v["data"]["droppedTargets"].is_array(),
        "Prometheus's other fields stay: {body}"
    );
    assert!(v.get("warnings").is_none(), "{body}");

    // Metadata: Prometheus's (empty for backfilled data) plus pod and node.
    let (status, _, body) = get(j, "/api/v1/metadata").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert!(
        v["data"]["pod"][0]["help"].is_string() && v["data"]["node"][0]["type"] == "unknown",
        "{body}"
    );

    // Labels merged with Prometheus's, sorted.
    let (_, _, body) = get(j, "/api/v1/labels").await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let labels: Vec<&str> = v["data"]
        .as_array()
        .expect("labels")
        .iter()
        .filter_map(|l| l.as_str())
        .collect();
    let mut sorted = labels.clone();
    sorted.sort();
    assert_eq!(labels, sorted);
    for name in [
        "container",
        "namespace",
        "node",
        "pod",
        "process",
        "le",
        "job",
    ] {
        assert!(labels.contains(&name), "{name} missing from {labels:?}");
    }
    janus.stop().await;
    let _ = std::fs::remove_dir_all(store);
}
