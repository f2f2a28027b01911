//! The Loki read API, driven as Grafana's Loki datasource drives it (docs/loki-api.md lists the
//! calls): lines pushed through the Loki push API come back through `/loki/api/v1/…` with Loki's
//! shapes, and refusals are Loki's plain-text errors.

mod support;

use serde_json::{json, Value};
use support::{closed_port_url, push_json, raw_client, start_janus, TestJanus};

/// 2024-01-01T00:00:00Z in nanoseconds.
const T0: i64 = 1_704_067_200_000_000_000;
const SEC: i64 = 1_000_000_000;

/// Two pods of `shop` and one node's kubelet, a line every 10 s for 10 minutes; every third
/// line of web-1 is an error.
async fn janus_with_lines() -> TestJanus {
    let janus = start_janus(&closed_port_url().await, |_| {}).await;
    let mut streams = Vec::new();
    for pod in ["web-1", "web-2"] {
        let values: Vec<Value> = (0..60)
            .map(|i| {
                let level = if pod == "web-1" && i % 3 == 0 {
                    "error"
                } else {
                    "info"
                };
                json!([
                    (T0 + i * 10 * SEC).to_string(),
                    format!("level={level} request {i} from {pod}")
                ])
            })
            .collect();
        streams.push(json!({"stream": {"namespace": "shop", "pod": pod, "container": "app"}, "values": values}));
    }
    let kubelet: Vec<Value> = (0..60)
        .map(|i| {
            json!([
                (T0 + i * 10 * SEC + 5 * SEC).to_string(),
                format!("E1120 sync {i}")
            ])
        })
        .collect();
    streams.push(json!({"stream": {"node": "n1", "process": "kubelet"}, "values": kubelet}));
    push_json(&janus, &json!({ "streams": streams })).await;
    janus
}

use support::get;

/// Lines a log query answers over the test window (limit 1000), all streams together.
async fn lines_of(janus: &TestJanus, query: &str) -> usize {
    let (status, _, body) = get(
        janus,
        "/loki/api/v1/query_range",
        &[
            ("query", query),
            ("start", START),
            ("end", END),
            ("limit", "1000"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{query}: {body}");
    data(&body)["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["values"].as_array().unwrap().len())
        .sum()
}

fn data(body: &str) -> Value {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["status"], "success", "{body}");
    v["data"].clone()
}

const START: &str = "1704067200000000000";
const END: &str = "1704067800000000000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grafana_calls_answered_as_loki_answers_them() {
    let janus = janus_with_lines().await;

    // The datasource's health check: an instant `vector(1)+vector(1)`.
    let (status, _, body) = get(
        &janus,
        "/loki/api/v1/query",
        &[("query", "vector(1)+vector(1)"), ("time", END)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let d = data(&body);
    assert_eq!(d["resultType"], "vector");
    assert_eq!(d["result"][0]["value"][1], "2");

    // The label browser: names, then values, then series of a selection.
    let (_, _, body) = get(
        &janus,
        "/loki/api/v1/labels",
        &[("start", START), ("end", END)],
    )
    .await;
    assert_eq!(
        data(&body),
        json!(["container", "namespace", "node", "pod", "process"])
    );
    let (_, _, body) = get(
        &janus,
        "/loki/api/v1/label/pod/values",
        &[("start", START), ("end", END)],
    )
    .await;
    assert_eq!(data(&body), json!(["web-1", "web-2"]));
    let (_, _, body) = get(
        &janus,
        "/loki/api/v1/label/pod/values",
        &[
            ("start", START),
            ("end", END),
            ("query", r#"{namespace="shop", pod="web-2"}"#),
        ],
    )
    .await;
    assert_eq!(data(&body), json!(["web-2"]));
    let (_, _, body) = get(
        &janus,
        "/loki/api/v1/series",
        &[
            ("match[]", r#"{node="n1"}"#),
            ("start", START),
            ("end", END),
        ],
    )
    .await;
    assert_eq!(data(&body), json!([{"node": "n1", "process": "kubelet"}]));

    // Explore's logs: the newest lines first (direction=backward), limit, stats.
    let (status, _, body) = get(
        &janus,
        "/loki/api/v1/query_range",
        &[
            ("query", r#"{namespace="shop"} |= "level=error""#),
            ("start", START),
            ("end", END),
            ("limit", "5"),
            ("direction", "backward"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let d = data(&body);
    assert_eq!(d["resultType"], "streams");
    assert_eq!(
        d["result"][0]["stream"],
        json!({"namespace": "shop", "pod": "web-1", "container": "app"})
    );
    let values = d["result"][0]["values"].as_array().expect("values");
    let times: Vec<i64> = values
        .iter()
        .map(|v| v[0].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        times,
        [57, 54, 51, 48, 45].map(|i| T0 + i * 10 * SEC).to_vec(),
        "the newest five, newest first"
    );
    assert_eq!(values[0][1], "level=error request 57 from web-1");
    assert!(
        d["stats"]["summary"]["totalBytesProcessed"]
            .as_u64()
            .unwrap()
            > 0
    );

    // `or` between line filter literals: any of them for |=, none of them for !=.
    for (query, expected) in [
        (r#"{namespace="shop"} |= "request 57 " or "request 58 ""#, 4),
        (
            r#"{namespace="shop", pod="web-2"} != "request 1" or "request 2""#,
            60 - 11 - 11,
        ),
        (
            r#"{namespace="shop", pod="web-1"} |~ "request 5[0-9] " or "request 0 ""#,
            11,
        ),
    ] {
        assert_eq!(lines_of(&janus, query).await, expected, "{query}");
    }

    // Node logs by LogQL labels, and Lethe's job form.
    for query in [
        r#"{node="n1", process="kubelet"} |~ "sync [0-9]+$""#,
        r#"{job="node", node="n1"}"#,
    ] {
        assert_eq!(lines_of(&janus, query).await, 60, "{query}");
    }

    // A metric query: errors per pod per minute, and the log-volume query Grafana draws.
    let (status, _, body) = get(
        &janus,
        "/loki/api/v1/query_range",
        &[
            (
                "query",
                r#"sum by (pod) (count_over_time({namespace="shop"} |= "level=error" [1m]))"#,
            ),
            ("start", "1704067260"),
            ("end", "1704067500"),
            ("step", "60"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let d = data(&body);
    assert_eq!(d["resultType"], "matrix");
    assert_eq!(d["result"][0]["metric"], json!({"pod": "web-1"}));
    // Six lines a minute of web-1, every third an error: 2 per minute.
    assert!(
        d["result"][0]["values"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v[1] == "2"),
        "{body}"
    );
    let (status, _, body) = get(
        &janus,
        "/loki/api/v1/query_range",
        &[
            (
                "query",
                r#"sum by (level, detected_level) (count_over_time({namespace="shop"}[1m]))"#,
            ),
            ("start", "1704067260"),
            ("end", "1704067500"),
            ("step", "60"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(data(&body)["result"][0]["values"][0][1], "12");

    // Volumes: bytes per series of the selector's labels (or targetLabels), largest first.
    let bytes_of = |pod: &str| -> usize {
        (0..60)
            .map(|i| {
                let level = if pod == "web-1" && i % 3 == 0 {
                    "error"
                } else {
                    "info"
                };
                format!("level={level} request {i} from {pod}").len()
            })
            .sum()
    };
    let (status, _, body) = get(
        &janus,
        "/loki/api/v1/index/volume",
        &[
            ("query", r#"{namespace="shop"}"#),
            ("start", START),
            ("end", END),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let d = data(&body);
    assert_eq!(d["resultType"], "vector");
    assert_eq!(d["result"][0]["metric"], json!({"namespace": "shop"}));
    assert_eq!(d["result"][0]["value"][0], json!(1704067800));
    assert_eq!(
        d["result"][0]["value"][1],
        (bytes_of("web-1") + bytes_of("web-2")).to_string()
    );
    let (_, _, body) = get(
        &janus,
        "/loki/api/v1/index/volume",
        &[
            ("query", r#"{namespace="shop"}"#),
            ("start", START),
            ("end", END),
            ("targetLabels", "pod"),
            ("limit", "1"),
        ],
    )
    .await;
    let d = data(&body);
    assert_eq!(d["result"].as_array().unwrap().len(), 1);
    assert_eq!(
        d["result"][0]["metric"],
        json!({"pod": "web-1"}),
        "the larger first"
    );
    let (status, _, body) = get(
        &janus,
        "/loki/api/v1/index/volume_range",
        &[
            ("query", r#"{namespace="shop", pod="web-2"}"#),
            ("start", START),
            ("end", END),
            ("step", "300"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let d = data(&body);
    assert_eq!(d["resultType"], "matrix");
    assert_eq!(
        d["result"][0]["metric"],
        json!({"namespace": "shop", "pod": "web-2"})
    );

    // Refusals are Loki's: plain text, 400, with what is wrong.
    for (path, params, words) in [
        (
            "/loki/api/v1/query_range",
            vec![("query", r#"{namespace="shop"} |~ "(""#)],
            "invalid regex",
        ),
        (
            "/loki/api/v1/query_range",
            vec![("query", r#"{app="x"}"#)],
            "must name a target",
        ),
        (
            "/loki/api/v1/query_range",
            vec![("query", r#"{namespace="shop"}"#), ("limit", "0")],
            "limit must be a positive value",
        ),
        (
            "/loki/api/v1/query_range",
            vec![("query", r#"{namespace="shop"}"#), ("direction", "up")],
            "invalid direction",
        ),
        (
            "/loki/api/v1/query",
            vec![("query", r#"{namespace="shop"}"#)],
            "not supported as an instant query",
        ),
        (
            "/loki/api/v1/query_range",
            vec![("query", r#"rate(up[5m])"#)],
            "is not LogQL",
        ),
        (
            "/loki/api/v1/query_range",
            vec![("query", r#"{namespace="shop"} | pattern "<x><y>""#)],
            "found consecutive capture",
        ),
        (
            "/loki/api/v1/query_range",
            vec![("query", r#"{namespace="shop"} |> "<_><_>""#)],
            "invalid pattern",
        ),
    ] {
        let (status, content_type, body) = get(&janus, path, &params).await;
        assert_eq!(status, 400, "{params:?}: {body}");
        assert!(content_type.starts_with("text/plain"), "{content_type}");
        assert!(body.contains(words), "{params:?}: {body}");
    }

    // The same LogQL on the Prometheus API (Venti, PromQL users): a pipeline makes it a log query.
    let (status, _, body) = get(
        &janus,
        "/api/v1/query_range",
        &[
            (
                "query",
                r#"{namespace="shop", pod="web-1"} |= "request 59""#,
            ),
            ("start", "2024-01-01T00:00:00Z"),
            ("end", "2024-01-01T00:10:00Z"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        data(&body)["result"][0]["log"],
        "level=info request 59 from web-1"
    );
    janus.stop().await;
}

/// A real Loki read client (the Node SDK `@myunisoft/loki`, from `compat-tests/node`) reads lines,
/// a metric query, labels, label values and series through Janus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_loki_client_reads_through_janus() {
    let node_dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("compat-tests/node");
    assert!(
        node_dir.join("node_modules/@myunisoft/loki").is_dir(),
        "run compat-tests/run (it runs npm ci in compat-tests/node)"
    );
    // The client asks for "the last hour": lines stamped a few minutes ago.
    let janus = start_janus(&closed_port_url().await, |c| {
        c.retention_time = std::time::Duration::from_secs(86_400)
    })
    .await;
    let run = format!("read{}", std::process::id());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64;
    let values: Vec<Value> = (0..30)
        .map(|i| {
            let level = if i % 10 == 0 { "error" } else { "info" };
            json!([
                (now - (30 - i) * 10 * SEC).to_string(),
                format!("{level} line {i}")
            ])
        })
        .collect();
    push_json(&janus, &json!({"streams": [{"stream": {"namespace": run, "pod": "api-1", "container": "app"}, "values": values}]})).await;
    let (url, dir, id) = (janus.url.clone(), node_dir.clone(), run.clone());
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .current_dir(&dir)
            .args(["loki_read.mjs", &url, &id])
            .output()
            .expect("node runs")
    })
    .await
    .expect("client");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: Value = serde_json::from_slice(&output.stdout).expect("json");
    let stream = &out["streams"]["streams"][0];
    assert_eq!(
        stream["labels"],
        json!({"namespace": run, "pod": "api-1", "container": "app"})
    );
    let lines: Vec<&str> = stream["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[1].as_str().unwrap())
        .collect();
    assert_eq!(lines, ["error line 20", "error line 10", "error line 0"]);
    let total: f64 = out["matrix"]["metrics"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v[1].as_str().unwrap().parse::<f64>().unwrap())
        .fold(0.0, f64::max);
    assert!(total >= 1.0, "{}", out["matrix"]);
    assert_eq!(
        out["matrix"]["metrics"][0]["labels"],
        json!({"pod": "api-1"})
    );
    for name in ["namespace", "pod", "container"] {
        assert!(
            out["labels"].as_array().unwrap().iter().any(|l| l == name),
            "{}",
            out["labels"]
        );
    }
    assert_eq!(out["values"], json!(["api-1"]));
    assert_eq!(
        out["series"],
        json!([{"namespace": run, "pod": "api-1", "container": "app"}])
    );
    janus.stop().await;
}

/// `| json`, `| logfmt` and label filters: streams carry the extracted labels, label filters
/// keep or drop lines, metric queries group by extracted labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parsers_and_label_filters() {
    let janus = start_janus(&closed_port_url().await, |_| {}).await;
    let json_lines: Vec<Value> = (0..30)
        .map(|i| {
            let (level, status, took) = if i % 3 == 0 { ("error", 502, "1.5s") } else { ("info", 200, "20ms") };
            let line = json!({"level": level, "status": status, "took": took, "req": {"path": format!("/p{}", i % 2)}});
            json!([(T0 + i * 10 * SEC).to_string(), line.to_string()])
        })
        .collect();
    let kv_lines: Vec<Value> = (0..30)
        .map(|i| {
            let line = if i == 29 {
                "not logfmt at all = =".to_string()
            } else {
                format!(
                    "level={} status={} took={} msg=\"request {i}\"",
                    if i % 5 == 0 { "warn" } else { "info" },
                    200 + i * 10,
                    if i % 2 == 0 { "2s" } else { "300ms" }
                )
            };
            json!([(T0 + i * 10 * SEC).to_string(), line])
        })
        .collect();
    let body = json!({"streams": [
        {"stream": {"namespace": "json", "pod": "api-1", "container": "app"}, "values": json_lines},
        {"stream": {"namespace": "kv", "pod": "worker-1", "container": "app"}, "values": kv_lines},
    ]});
    push_json(&janus, &body).await;
    let range = |query: &str| {
        let query = query.to_string();
        let janus_url = janus.url.clone();
        async move {
            let r = raw_client()
                .get(format!("{janus_url}/loki/api/v1/query_range"))
                .query(&[
                    ("query", query.as_str()),
                    ("start", START),
                    ("end", END),
                    ("limit", "1000"),
                    ("step", "60"),
                ])
                .send()
                .await
                .expect("answer");
            let status = r.status().as_u16();
            let body = r.text().await.expect("body");
            assert_eq!(status, 200, "{query}: {body}");
            data(&body)
        }
    };

    // Streams carry the extracted labels (nested keys joined with `_`).
    let d = range(r#"{namespace="json"} | json | level="error""#).await;
    let streams = d["result"].as_array().unwrap();
    assert_eq!(streams.len(), 2, "{d}");
    assert_eq!(
        streams[0]["stream"],
        json!({"namespace": "json", "pod": "api-1", "container": "app", "level": "error", "status": "502", "took": "1.5s", "req_path": "/p0"})
    );
    let total: usize = streams
        .iter()
        .map(|s| s["values"].as_array().unwrap().len())
        .sum();
    assert_eq!(total, 10);

    // Numbers, durations, and/or.
    let count = |d: &Value| -> usize {
        d["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["values"].as_array().unwrap().len())
            .sum()
    };
    assert_eq!(
        count(&range(r#"{namespace="json"} | json | status >= 500 and took > 1s"#).await),
        10
    );
    // A predicate right after another is and too, as in Loki.
    assert_eq!(
        count(&range(r#"{namespace="json"} | json | status >= 500 took > 1s"#).await),
        10
    );
    assert_eq!(
        count(&range(r#"{namespace="json"} | json | status == 200 or req_path = "/p1""#).await),
        25
    );
    assert_eq!(
        count(&range(r#"{namespace="kv"} | logfmt | took > 1s, level != "warn""#).await),
        12,
        "the unparsable line has no `took`: a duration filter drops it (Loki's label_filter.go)"
    );
    assert_eq!(
        count(&range(r#"{namespace="kv"} | logfmt | status > 400"#).await),
        8,
        "410..480; the unparsable line has no `status`: a number filter drops a line without its label, as Loki's label_filter.go does"
    );
    // A stray `=` is skipped by default and stops a --strict parser, marking the line.
    assert_eq!(
        count(&range(r#"{namespace="kv"} | logfmt | __error__ != """#).await),
        0
    );
    assert_eq!(
        count(&range(r#"{namespace="kv"} | logfmt --strict | __error__ != """#).await),
        1
    );
    assert_eq!(
        count(&range(r#"{namespace="kv"} | logfmt | msg =~ "request 1[0-9]""#).await),
        10
    );

    // | regexp: named groups become labels.
    assert_eq!(
        count(
            &range(r#"{namespace="kv"} | regexp `status=(?P<code>\d+) took=(?P<took>\S+)` | code >= 400 | __error__="""#)
                .await
        ),
        9,
        "statuses 400..480; the line the regexp does not match has no code, marked and dropped"
    );
    let d = range(r#"{namespace="kv"} | regexp `level=(?P<level>\w+)` | level="warn""#).await;
    assert_eq!(d["result"][0]["stream"]["level"], "warn", "{d}");

    // drop and keep shape the streams' labels (stream labels too).
    let d =
        range(r#"{namespace="json"} | json | drop status, took | keep level, namespace, req_path"#)
            .await;
    let labels: Vec<&Value> = d["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| &s["stream"])
        .collect();
    assert!(
        labels.contains(&&json!({"namespace": "json", "level": "error", "req_path": "/p0"})),
        "{d}"
    );
    assert_eq!(labels.len(), 4, "{d}");
    assert_eq!(count(&d), 30);

    // Metric queries group by extracted labels.
    let d = range(r#"sum by (level) (count_over_time({namespace="json"} | json [10m]))"#).await;
    // The largest 10-minute count of each level: all 30 lines inside one window.
    let by_level: std::collections::BTreeMap<String, String> = d["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let most = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v[1].as_str().unwrap().parse::<u32>().unwrap())
                .max()
                .unwrap();
            (
                s["metric"]["level"].as_str().unwrap().to_string(),
                most.to_string(),
            )
        })
        .collect();
    assert_eq!(by_level.get("error").map(String::as_str), Some("10"), "{d}");
    assert_eq!(by_level.get("info").map(String::as_str), Some("20"), "{d}");

    // line_format rewrites the line (and what later line filters read), label_format renames
    // and templates labels, drop takes a label only when its value matches.
    let d = range(
        r#"{namespace="kv"} | logfmt | line_format "{{.level | upper}} {{.status}}" |= "WARN" | label_format lvl=level, where="{{.namespace}}/{{.pod}}" | drop msg, took=~"2s|3s""#,
    )
    .await;
    let streams = d["result"].as_array().unwrap();
    assert_eq!(count(&d), 6, "{d}");
    assert_eq!(
        streams[0]["stream"],
        json!({"namespace": "kv", "pod": "worker-1", "container": "app", "lvl": "warn", "status": "200", "where": "kv/worker-1"}),
        "{d}"
    );
    assert_eq!(streams[0]["values"][0][1], "WARN 200", "{d}");
    // | pattern, and the pattern filters |> / !>.
    let d =
        range(r#"{namespace="kv"} | pattern "level=<level> status=<status> <_>" | status >= 470"#)
            .await;
    // The line the pattern does not match gets no `status` (Loki's PatternParser sets only
    // what matched) and the number filter drops it (label_filter.go).
    assert_eq!(count(&d), 2, "470 and 480: {d}");
    assert_eq!(d["result"][0]["stream"]["level"], "info", "{d}");
    assert_eq!(d["result"][1]["stream"]["status"], "480", "{d}");
    assert_eq!(
        count(&range(r#"{namespace="kv"} |> "level=warn <_>""#).await),
        6
    );
    assert_eq!(
        count(&range(r#"{namespace="kv"} !> "level=warn <_>" or "<_> = =""#).await),
        23
    );
    // | json with paths; | logfmt with a field list and --strict.
    let d =
        range(r#"{namespace="json"} | json code="status", path="req.path" | code = "502""#).await;
    assert_eq!(count(&d), 10, "{d}");
    assert_eq!(
        d["result"][0]["stream"],
        json!({"namespace": "json", "pod": "api-1", "container": "app", "code": "502", "path": "/p0"})
    );
    let d = range(r#"{namespace="kv"} | logfmt --strict lvl="level" | lvl = "warn""#).await;
    assert_eq!(count(&d), 6, "{d}");
    // The same pipeline on the Prometheus API answers Lethe's shape with the rewritten lines.
    let r = raw_client()
        .get(format!("{}/api/v1/query_range", janus.url))
        .query(&[
            (
                "query",
                r#"{namespace="kv"} | logfmt | level="warn" | line_format "{{.msg}}""#,
            ),
            ("start", "2024-01-01T00:00:00Z"),
            ("end", "2024-01-01T01:00:00Z"),
            ("step", "60"),
        ])
        .send()
        .await
        .expect("answer");
    let body = r.text().await.unwrap();
    let logs = data(&body)["result"].clone();
    assert_eq!(logs.as_array().map(Vec::len), Some(6), "{body}");
    assert!(
        logs[0]["log"].as_str().unwrap().starts_with("request "),
        "{body}"
    );

    // Unknown stages and bad templates are refused by name, with a position.
    for (query, words) in [
        (
            r#"{namespace="json"} | nosuch"#,
            "unknown pipeline stage | nosuch",
        ),
        (
            r#"{namespace="json"} | line_format "{{.a""#,
            "invalid line_format template",
        ),
        (
            r#"{namespace="json"} | line_format "{{ printf .a }}""#,
            "not defined",
        ),
        (
            r#"{namespace="json"} | pattern "<_>""#,
            "at least one capture",
        ),
        (
            r#"{namespace="json"} | logfmt --loose"#,
            "unknown flag --loose",
        ),
        (
            r#"{namespace="json"} | label_format a=b, a=c"#,
            "multiple label name",
        ),
    ] {
        let r = raw_client()
            .get(format!("{}/loki/api/v1/query_range", janus.url))
            .query(&[("query", query), ("start", START), ("end", END)])
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), 400, "{query}");
        let text = r.text().await.unwrap();
        assert!(
            text.contains(words) && text.contains("parse error"),
            "{query}: {text}"
        );
    }
    janus.stop().await;
}

/// Grafana's metadata calls beside the queries: the query-size estimate (`index/stats`), label
/// and field suggestions (`detected_labels`, `detected_fields`, field values), `format_query`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_endpoints_answer_as_loki() {
    let janus = janus_with_lines().await;
    let (status, _, body) = get(
        &janus,
        "/loki/api/v1/index/stats",
        &[
            ("query", r#"{namespace="shop"}"#),
            ("start", START),
            ("end", END),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let bytes: usize = ["web-1", "web-2"]
        .iter()
        .flat_map(|pod| {
            (0..60).map(move |i| {
                let level = if *pod == "web-1" && i % 3 == 0 {
                    "error"
                } else {
                    "info"
                };
                format!("level={level} request {i} from {pod}").len()
            })
        })
        .sum();
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"streams": 2, "chunks": 1, "bytes": bytes, "entries": 120})
    );
    // Filters do not narrow the estimate (Loki's rule); half the window holds half the lines.
    let (_, _, body) = get(
        &janus,
        "/loki/api/v1/index/stats",
        &[
            ("query", r#"{namespace="shop", pod="web-1"} |= "error""#),
            ("start", START),
            ("end", "1704067500000000000"),
        ],
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["entries"],
        30,
        "{body}"
    );

    let (status, _, body) = get(
        &janus,
        "/loki/api/v1/detected_labels",
        &[("start", START), ("end", END)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"detectedLabels": [
            {"label": "container", "cardinality": 1},
            {"label": "namespace", "cardinality": 1},
            {"label": "node", "cardinality": 1},
            {"label": "pod", "cardinality": 2},
            {"label": "process", "cardinality": 1},
        ]})
    );
    let (_, _, body) = get(
        &janus,
        "/loki/api/v1/detected_labels",
        &[("query", r#"{node="n1"}"#), ("start", START), ("end", END)],
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["detectedLabels"],
        json!([{"label": "node", "cardinality": 1}, {"label": "process", "cardinality": 1}])
    );

    let (status, _, body) = get(
        &janus,
        "/loki/api/v1/detected_fields",
        &[
            ("query", r#"{namespace="shop"}"#),
            ("start", START),
            ("end", END),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"fields": [{"label": "level", "type": "string", "cardinality": 2, "parsers": ["logfmt"]}], "limit": 1000})
    );
    let (_, _, body) = get(
        &janus,
        "/loki/api/v1/detected_field/level/values",
        &[
            ("query", r#"{namespace="shop"}"#),
            ("start", START),
            ("end", END),
        ],
    )
    .await;
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"values": ["error", "info"], "limit": 1000})
    );

    let (status, _, body) = get(
        &janus,
        "/loki/api/v1/format_query",
        &[(
            "query",
            r#"sum  by(pod)(count_over_time( {namespace = "shop"}|= "x"|logfmt [5m] ))"#,
        )],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        data(&body),
        json!(r#"sum by (pod) (count_over_time({namespace="shop"} |= "x" | logfmt [5m]))"#)
    );
    for (path, params, words) in [
        (
            "/loki/api/v1/format_query",
            vec![("query", r#"{namespace="shop""#)],
            "parse error",
        ),
        (
            "/loki/api/v1/index/stats",
            vec![("query", r#"{app="x"}"#)],
            "must name a target",
        ),
        (
            "/loki/api/v1/detected_fields",
            vec![("query", r#"{namespace="shop"}"#), ("line_limit", "0")],
            "line_limit",
        ),
    ] {
        let (status, content_type, body) = get(&janus, path, &params).await;
        assert_eq!(status, 400, "{path} {params:?}: {body}");
        assert!(content_type.starts_with("text/plain"));
        assert!(body.contains(words), "{path}: {body}");
    }
    janus.stop().await;
}

/// Unwrapped range aggregations: values read from the lines by `| unwrap`, grouped by Loki's
/// `by (…)` after the call, a value that cannot be read failing the query as in Loki.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unwrapped_range_aggregations() {
    let janus = start_janus(&closed_port_url().await, |_| {}).await;
    let values: Vec<Value> = (0..30)
        .map(|i| {
            let line = if i == 29 {
                "no values here".to_string()
            } else {
                format!(
                    "level={} status={} took={} size={}KiB",
                    if i % 5 == 0 { "warn" } else { "info" },
                    200 + i * 10,
                    if i % 2 == 0 { "2s" } else { "300ms" },
                    i
                )
            };
            json!([(T0 + i * 10 * SEC).to_string(), line])
        })
        .collect();
    let body = json!({"streams": [{"stream": {"namespace": "kv", "pod": "w-1", "container": "app"}, "values": values}]});
    push_json(&janus, &body).await;
    let at = (T0 + 290 * SEC).to_string();
    let instant = |query: &str| {
        let (query, at, url) = (query.to_string(), at.clone(), janus.url.clone());
        async move {
            let r = raw_client()
                .get(format!("{url}/loki/api/v1/query"))
                .query(&[("query", query.as_str()), ("time", at.as_str())])
                .send()
                .await
                .expect("answer");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };
    let value_by = |body: &str, label: &str| -> std::collections::BTreeMap<String, f64> {
        data(body)["result"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|s| {
                (
                    s["metric"][label].as_str().unwrap_or("").to_string(),
                    s["value"][1].as_str().unwrap().parse::<f64>().unwrap(),
                )
            })
            .collect()
    };
    let ok = |(status, body): (u16, String)| {
        assert_eq!(status, 200, "{body}");
        body
    };
    let sum: f64 = (0..29).map(|i| 200.0 + 10.0 * i as f64).sum();
    let body = ok(instant(r#"sum_over_time({namespace="kv"} | logfmt | unwrap status | __error__="" [10m]) by (namespace)"#).await);
    assert_eq!(
        value_by(&body, "namespace"),
        [("kv".to_string(), sum)].into(),
        "{body}"
    );
    let body = ok(instant(
        r#"rate({namespace="kv"} | logfmt | unwrap status | __error__="" [10m]) by (namespace)"#,
    )
    .await);
    assert_eq!(value_by(&body, "namespace")["kv"], sum / 600.0, "{body}");
    let body = ok(instant(r#"max_over_time({namespace="kv"} | logfmt | unwrap duration(took) | __error__="" [10m]) by (level)"#).await);
    assert_eq!(
        value_by(&body, "level"),
        [("info".to_string(), 2.0), ("warn".to_string(), 2.0)].into()
    );
    let body = ok(instant(r#"avg_over_time({namespace="kv"} | logfmt | level="warn" | unwrap duration(took) [10m]) by (level)"#).await);
    assert!(
        (value_by(&body, "level")["warn"] - 1.15).abs() < 1e-9,
        "{body}"
    );
    let body = ok(instant(r#"quantile_over_time(0.5, {namespace="kv"} | logfmt | unwrap status | __error__="" [10m]) by (level)"#).await);
    assert_eq!(value_by(&body, "level")["warn"], 325.0, "{body}");
    let body = ok(instant(r#"first_over_time({namespace="kv"} | logfmt | unwrap bytes(size) | __error__="" [10m]) without (level, took, status)"#).await);
    assert_eq!(value_by(&body, "namespace")["kv"], 0.0, "{body}");
    let body = ok(instant(r#"last_over_time({namespace="kv"} | logfmt | unwrap bytes(size) | __error__="" [10m]) without (level, took, status)"#).await);
    assert_eq!(value_by(&body, "namespace")["kv"], 28.0 * 1024.0, "{body}");
    // Without a grouping, a series per label set; the unwrapped label is not one of them.
    let body = ok(instant(r#"sum by (level) (sum_over_time({namespace="kv"} | logfmt | unwrap status | __error__="" [10m]))"#).await);
    let by_level = value_by(&body, "level");
    assert_eq!(
        by_level["warn"],
        200.0 + 250.0 + 300.0 + 350.0 + 400.0 + 450.0,
        "{body}"
    );
    let body = ok(instant(r#"stddev_over_time({namespace="kv"} | logfmt | level="warn" | unwrap status [10m]) by (level)"#).await);
    let sd = value_by(&body, "level")["warn"];
    assert!(
        (sd - (43_750.0f64 / 6.0).sqrt()).abs() < 1e-9,
        "population stddev: {body}"
    );
    // rate_counter: Prometheus's rate over the unwrapped values.
    let (status, body) = instant(r#"rate_counter({namespace="kv"} | logfmt | unwrap status | __error__="" [10m]) by (namespace)"#).await;
    assert_eq!(status, 200, "{body}");

    // Refusals: a value that cannot be read, an aggregation that needs or refuses an unwrap.
    for (query, words) in [
        (
            r#"sum_over_time({namespace="kv"} | logfmt | unwrap status [10m]) by (namespace)"#,
            "pipeline error: 'SampleExtractionErr'",
        ),
        (
            r#"count_over_time({namespace="kv"} | logfmt | unwrap status [10m])"#,
            "invalid aggregation count_over_time with unwrap",
        ),
        (
            r#"sum_over_time({namespace="kv"} | logfmt [10m])"#,
            "invalid aggregation sum_over_time without unwrap",
        ),
        (
            r#"sum_over_time({namespace="kv"} | logfmt | unwrap status | json [10m])"#,
            "cannot follow | unwrap",
        ),
        (
            r#"sum_over_time({namespace="kv"} | unwrap duration(took [10m])"#,
            "| unwrap needs a label",
        ),
    ] {
        let (status, body) = instant(query).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(words), "{query}: {body}");
    }
    janus.stop().await;
}

/// Label filters nest as deep as any expression may (the rewriter's depth bound) without
/// exhausting a stack; deeper is refused with Loki's plain-text 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_label_filters_are_bounded() {
    let janus = janus_with_lines().await;
    for (depth, status) in [(900, 200), (5000, 400)] {
        let query = format!(
            r#"{{namespace="shop"}} | logfmt | {}level="error"{}"#,
            "(".repeat(depth),
            ")".repeat(depth)
        );
        let (got, _, body) = get(
            &janus,
            "/loki/api/v1/query_range",
            &[("query", query.as_str()), ("start", START), ("end", END)],
        )
        .await;
        assert_eq!(
            got,
            status,
            "depth {depth}: {}",
            &body[..body.len().min(200)]
        );
    }
    janus.stop().await;
}

/// Extreme times and steps are refused or answered, never a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_parameters_never_crash() {
    let janus = janus_with_lines().await;
    for params in [
        vec![
            ("query", r#"count_over_time({namespace="shop"}[1m])"#),
            ("start", "-9223372036854775808"),
            ("end", "9223372036854775807"),
            ("step", "9223372036"),
        ],
        vec![
            ("query", r#"{namespace="shop"}"#),
            ("start", "-9223372036854775808"),
            ("end", "9223372036854775807"),
        ],
        vec![
            ("query", r#"{namespace="shop"}"#),
            ("start", "1e300"),
            ("end", "NaN"),
        ],
        vec![
            ("query", r#"{namespace="shop"}"#),
            ("since", "99999999999999999999y"),
        ],
    ] {
        let (status, _, body) = get(&janus, "/loki/api/v1/query_range", &params).await;
        assert!(matches!(status, 200 | 400), "{params:?}: {status} {body}");
    }
    for params in [
        vec![
            ("query", r#"{namespace="shop"}"#),
            ("start", "-9223372036854775808"),
            ("end", "9223372036854775807"),
        ],
        vec![
            ("query", r#"{namespace="shop"}"#),
            ("start", "-9223372036854775808"),
            ("end", "9223372036854775807"),
            ("step", "1"),
        ],
    ] {
        for path in [
            "/loki/api/v1/index/volume",
            "/loki/api/v1/index/volume_range",
            "/loki/api/v1/labels",
            "/loki/api/v1/series",
        ] {
            let (status, _, body) = get(&janus, path, &params).await;
            assert!(
                matches!(status, 200 | 400),
                "{path} {params:?}: {status} {body}"
            );
        }
    }
    let (status, _, _) = get(&janus, "/-/healthy", &[]).await;
    assert_eq!(status, 200);
    janus.stop().await;
}
