//! The log face over Lethe's own sample tree (a copy, never in place), through HTTP, asserting
//! whole bodies: the examples and behaviours of `shared/spec/lethe.md`.

mod support;

use std::path::PathBuf;

use janus::logstore::LogStore;
use support::{closed_port_url, lethe_testdata, raw_client, start_janus, temp_dir, TestJanus};

const NGINX: &str = "nginx-deployment-75675f5897-7ci7o";
const APACHE: &str = "apache-75675f5897-7ci7o";

async fn janus_on_testdata() -> TestJanus {
    let data = lethe_testdata();
    start_janus(&closed_port_url().await, move |c| c.storage_path = data).await
}

async fn get(janus: &TestJanus, path: &str, params: &[(&str, &str)]) -> (u16, String) {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let r = raw_client()
        .get(format!("{}{path}?{query}", janus.url))
        .send()
        .await
        .expect("answer");
    let status = r.status().as_u16();
    (status, r.text().await.expect("text"))
}

fn pod(time: &str, ns: &str, pod: &str, container: &str, log: &str) -> String {
    format!(
        r#"{{"time":"{time}","namespace":"{ns}","pod":"{pod}","container":"{container}","log":"{log}"}}"#
    )
}

fn node(time: &str, node: &str, process: &str, log: &str) -> String {
    format!(r#"{{"time":"{time}","node":"{node}","process":"{process}","log":"{log}"}}"#)
}

fn logs(lines: &[String], warnings: &[&str]) -> String {
    let mut body = format!(
        r#"{{"status":"success","data":{{"resultType":"logs","result":[{}]}}"#,
        lines.join(",")
    );
    if !warnings.is_empty() {
        let w: Vec<String> = warnings.iter().map(|w| format!("\"{w}\"")).collect();
        body.push_str(&format!(r#","warnings":[{}]"#, w.join(",")));
    }
    body.push('}');
    body
}

fn t(hm: &str) -> String {
    format!("2009-11-10T{hm}:00.000000Z")
}

/// namespace01 from 21:00 to 23:59:59: the hour files 21 and 22 by name (not the 2000 or 2029
/// files), lines ordered by their own time. The 22 file ends without a newline; the file is at
/// rest, so its last line is a line (Lethe's own tests expect it in every answer).
fn namespace01_all() -> Vec<String> {
    let mut lines = Vec::new();
    for m in ["21:00", "21:01", "21:02"] {
        lines.push(pod(&t(m), "namespace01", NGINX, "nginx", "hello world"));
    }
    for m in ["22:56", "22:56", "22:56", "22:57", "22:57", "22:57"] {
        lines.push(pod(
            &t(m),
            "namespace01",
            APACHE,
            "httpd",
            "hello from sidecar",
        ));
    }
    for log in [
        "hello from sidecar",
        "lorem from sidecar",
        "hello from sidecar",
    ] {
        lines.push(pod(&t("22:58"), "namespace01", NGINX, "sidecar", log));
    }
    lines.push(pod(
        &t("22:59"),
        "namespace01",
        NGINX,
        "nginx",
        "lorem ipsum",
    ));
    lines.push(pod(
        &t("22:59"),
        "namespace01",
        NGINX,
        "nginx",
        "hello world",
    ));
    lines
}

/// Lethe's `handler/query_test.go` at its clock, 2009-11-10T23:00:00Z: the instant query of
/// namespace01 holds the two 22:59 lines, the last one without a trailing newline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lethes_own_expectations_include_a_last_line_without_newline() {
    let janus = janus_on_testdata().await;
    let at = ("time", "2009-11-10T23:00:00Z");
    let (status, body) = get(
        &janus,
        "/api/v1/query",
        &[("query", r#"pod{namespace="namespace01"}"#), at],
    )
    .await;
    assert_eq!(status, 200);
    let last_two = namespace01_all().split_off(12);
    assert_eq!(body, logs(&last_two, &[]));
    let (_, body) = get(
        &janus,
        "/api/v1/query",
        &[("query", r#"pod{namespace="namespace01"} |= "ipsum""#), at],
    )
    .await;
    assert_eq!(body, logs(&last_two[..1], &[]));
    janus.stop().await;
}

const DAY: [(&str, &str); 2] = [
    ("start", "2009-11-10T21:00:00Z"),
    ("end", "2009-11-10T23:59:59Z"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_over_a_range_in_time_order() {
    let janus = janus_on_testdata().await;
    let (status, body) = get(
        &janus,
        "/api/v1/query_range",
        &[("query", r#"pod{namespace="namespace01"}"#), DAY[0], DAY[1]],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body, logs(&namespace01_all(), &[]));
    janus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_chain_left_to_right_on_the_message() {
    let janus = janus_on_testdata().await;
    let (_, body) = get(
        &janus,
        "/api/v1/query_range",
        &[
            (
                "query",
                r#"pod{namespace="namespace01"} |= "hello" != "world""#,
            ),
            DAY[0],
            DAY[1],
        ],
    )
    .await;
    let expected: Vec<String> = namespace01_all()
        .into_iter()
        .filter(|l| l.contains("hello from sidecar"))
        .collect();
    assert_eq!(expected.len(), 8);
    assert_eq!(body, logs(&expected, &[]));

    // The pod name is in the line's brackets, not in its message: a filter does not see it.
    let (_, body) = get(
        &janus,
        "/api/v1/query_range",
        &[
            ("query", r#"pod{namespace="namespace01"} |= "apache""#),
            DAY[0],
            DAY[1],
        ],
    )
    .await;
    assert_eq!(body, logs(&[], &[]));
    janus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_targets_merge_by_time() {
    let janus = janus_on_testdata().await;
    let (_, body) = get(
        &janus,
        "/api/v1/query_range",
        &[
            (
                "query",
                r#"pod{namespace=~"namespace.*", pod=~"nginx-.*", container="nginx"}"#,
            ),
            ("start", "2009-11-10T22:00:00Z"),
            ("end", "2009-11-10T23:00:00Z"),
        ],
    )
    .await;
    let expected = vec![
        pod(&t("22:58"), "namespace02", NGINX, "nginx", "hello world"),
        pod(&t("22:58"), "namespace02", NGINX, "nginx", "lorem ipsum"),
        pod(&t("22:58"), "namespace02", NGINX, "nginx", "hello world"),
        pod(&t("22:59"), "namespace01", NGINX, "nginx", "lorem ipsum"),
        pod(&t("22:59"), "namespace01", NGINX, "nginx", "hello world"),
    ];
    assert_eq!(body, logs(&expected, &[]));
    janus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_logs_with_regex_filters_and_out_of_hour_lines() {
    let janus = janus_on_testdata().await;
    // kubelet lines all start with I0525: the negative regex leaves none.
    let (_, body) = get(
        &janus,
        "/api/v1/query_range",
        &[
            (
                "query",
                r#"node{node="node01", process="kubelet"} !~ "I[0-9]{4}""#,
            ),
            DAY[0],
            DAY[1],
        ],
    )
    .await;
    assert_eq!(body, logs(&[], &[]));
    // The 21 file holds lines from 22:56 to 22:59: each line is judged by its own time.
    let (_, body) = get(
        &janus,
        "/api/v1/query_range",
        &[
            (
                "query",
                r#"node{node="node01"} |~ "hello|lorem" != "sidecar""#,
            ),
            DAY[0],
            DAY[1],
        ],
    )
    .await;
    let expected = vec![
        node(&t("22:59"), "node01", "containerd", "lorem ipsum"),
        node(&t("22:59"), "node01", "containerd", "hello world"),
        node(&t("23:00"), "node01", "containerd", "hello world"),
        node(&t("23:01"), "node01", "containerd", "hello world"),
        node(&t("23:02"), "node01", "containerd", "hello world"),
    ];
    assert_eq!(body, logs(&expected, &[]));
    janus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instant_queries_look_back_a_minute_or_their_range() {
    let janus = janus_on_testdata().await;
    let at = ("time", "2009-11-10T23:00:00Z");
    let (_, body) = get(
        &janus,
        "/api/v1/query",
        &[("query", r#"pod{namespace="namespace02"}"#), at],
    )
    .await;
    assert_eq!(body, logs(&[], &[]), "22:58 is outside [22:59, 23:00]");
    let (_, body) = get(
        &janus,
        "/api/v1/query",
        &[("query", r#"pod{namespace="namespace02"}[5m]"#), at],
    )
    .await;
    let parsed: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(parsed["data"]["result"].as_array().map(Vec::len), Some(12));
    // Without a time: now, and Lethe's data is from 2009.
    let (status, body) = get(
        &janus,
        "/api/v1/query",
        &[("query", r#"pod{namespace="namespace02"}"#)],
    )
    .await;
    assert_eq!((status, body), (200, logs(&[], &[])));
    janus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_keeps_the_newest_by_default_and_warns() {
    let janus = janus_on_testdata().await;
    let q = ("query", r#"pod{namespace="namespace01"}"#);
    let all = namespace01_all();
    let (_, body) = get(
        &janus,
        "/api/v1/query_range",
        &[q, DAY[0], DAY[1], ("limit", "2")],
    )
    .await;
    assert_eq!(body, logs(&all[12..], &["results truncated due to limit"]));
    let (_, body) = get(
        &janus,
        "/api/v1/query_range",
        &[q, DAY[0], DAY[1], ("limit", "2"), ("direction", "forward")],
    )
    .await;
    assert_eq!(body, logs(&all[..2], &["results truncated due to limit"]));
    let (_, body) = get(
        &janus,
        "/api/v1/query_range",
        &[q, DAY[0], DAY[1], ("limit", "2"), ("direction", "backward")],
    )
    .await;
    let newest_first = vec![all[13].clone(), all[12].clone()];
    assert_eq!(
        body,
        logs(&newest_first, &["results truncated due to limit"])
    );
    // Exactly as many lines as the limit: nothing dropped, no warning.
    let (_, body) = get(
        &janus,
        "/api/v1/query_range",
        &[q, DAY[0], DAY[1], ("limit", "14")],
    )
    .await;
    assert_eq!(body, logs(&all, &[]));
    janus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_shape_for_loki_clients() {
    let janus = janus_on_testdata().await;
    let (_, body) = get(
        &janus,
        "/api/v1/query_range",
        &[
            ("query", r#"node{node="node01", process="containerd"}"#),
            // The 22 file holds the 23:00 lines; a window starting at 23:00 would not open it.
            ("start", "2009-11-10T22:59:30Z"),
            ("end", "2009-11-10T23:01:00Z"),
            ("format", "streams"),
        ],
    )
    .await;
    assert_eq!(
        body,
        r#"{"status":"success","data":{"resultType":"streams","result":[{"stream":{"node":"node01","process":"containerd"},"values":[["1257894000000000000","hello world"],["1257894060000000000","hello world"]]}]}}"#
    );
    janus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_and_empty_files_are_skipped_and_counted() {
    let janus = janus_on_testdata().await;
    // namespace02 holds 0000-00-00_00.log ("lorem", "ipsum"): never read, never an error.
    let (status, body) = get(
        &janus,
        "/api/v1/query_range",
        &[
            (
                "query",
                r#"pod{namespace="namespace02"} |~ "^(lorem|ipsum)$""#,
            ),
            ("start", "0"),
            ("end", "2000000000"),
        ],
    )
    .await;
    assert_eq!((status, body), (200, logs(&[], &[])));
    // node02's empty 2009-11-01_00.log.
    let (status, body) = get(
        &janus,
        "/api/v1/query_range",
        &[
            ("query", r#"node{node="node02"}"#),
            ("start", "2009-11-01T00:00:00Z"),
            ("end", "2009-11-01T00:59:59Z"),
        ],
    )
    .await;
    assert_eq!((status, body), (200, logs(&[], &[])));
    let (_, metrics) = get(&janus, "/metrics", &[]).await;
    let skipped = metrics
        .lines()
        .find(|l| l.starts_with("janus_store_skipped_entries_total "))
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(skipped >= 1.0, "{metrics}");
    assert!(metrics.contains("face=\"log\""), "{metrics}");
    janus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_one_per_directory_with_the_newest_line() {
    let janus = janus_on_testdata().await;
    let (status, body) = get(&janus, "/api/v1/targets", &[("state", "active")]).await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    let active = v["data"]["activeTargets"]
        .as_array()
        .expect("activeTargets");
    let summary: Vec<(String, String, String)> = active
        .iter()
        .map(|t| {
            let d = &t["discoveredLabels"];
            let name = d["__meta_kubernetes_namespace"]
                .as_str()
                .or(d["__meta_kubernetes_node_name"].as_str())
                .unwrap_or_default();
            (
                d["job"].as_str().unwrap_or_default().to_string(),
                name.to_string(),
                t["lastScrape"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expect = |j: &str, n: &str, s: &str| (j.to_string(), n.to_string(), s.to_string());
    assert_eq!(
        summary,
        vec![
            expect("pod", "namespace01", "2009-11-10T23:02:00Z"),
            expect("pod", "namespace02", "2009-11-10T22:58:00Z"),
            expect("node", "node01", "2009-11-10T23:02:00Z"),
            expect("node", "node02", "2009-11-10T21:58:00Z"),
        ]
    );
    assert!(active.iter().all(|t| t["health"] == "up"));
    // The upstream is down (closed port): the log part answers, with a warning.
    assert!(
        v["warnings"][0]
            .as_str()
            .unwrap_or_default()
            .contains("unreachable"),
        "{body}"
    );
    janus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_values_series_and_metadata_from_the_store() {
    let janus = janus_on_testdata().await;
    let (_, body) = get(&janus, "/api/v1/label/container/values", &[]).await;
    assert!(
        body.starts_with(r#"{"status":"success","data":["httpd","nginx","sidecar"]"#),
        "{body}"
    );
    let (_, body) = get(&janus, "/api/v1/label/__name__/values", &[]).await;
    assert!(
        body.starts_with(r#"{"status":"success","data":["node","pod"]"#),
        "{body}"
    );
    let (_, body) = get(&janus, "/api/v1/labels", &[]).await;
    assert!(
        body.starts_with(r#"{"status":"success","data":["__name__","container","namespace","node","pod","process"]"#),
        "{body}"
    );
    // A window with no log files adds nothing (here: the upstream is down, so an error).
    let (status, _) = get(
        &janus,
        "/api/v1/labels",
        &[("start", "1704067200"), ("end", "1704070800")],
    )
    .await;
    assert_eq!(status, 503);
    let (_, body) = get(
        &janus,
        "/api/v1/series",
        &[("match[]", r#"node{node="node02", process="dockerd"}"#)],
    )
    .await;
    assert_eq!(
        body,
        r#"{"status":"success","data":[{"__name__":"node","node":"node02","process":"dockerd"}]}"#
    );
    let (_, body) = get(&janus, "/api/v1/metadata", &[("metric", "pod")]).await;
    assert!(
        body.starts_with(r#"{"status":"success","data":{"pod":[{"type":"unknown","help":"#),
        "{body}"
    );
    janus.stop().await;
}

/// A store with one busy hour (about 30 MB) in namespace `busy`.
fn busy_store() -> PathBuf {
    use std::io::Write;
    let root = temp_dir("busy");
    let dir = root.join("pod/busy");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(dir.join("2024-01-01_00.log")).expect("create"),
    );
    for i in 0..300_000u32 {
        writeln!(
            out,
            "2024-01-01T00:{:02}:{:02}.{:06}Z[busy|web-{}|app] request {i} served in {}ms",
            (i / 5000) % 60,
            (i / 84) % 60,
            i % 1_000_000,
            i % 7,
            i % 113
        )
        .expect("write");
    }
    out.flush().expect("flush");
    root
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deadline_stops_a_scan_with_timeout() {
    let root = busy_store();
    let data = root.clone();
    let janus = start_janus(&closed_port_url().await, move |c| c.storage_path = data).await;
    let query = (
        "query",
        r#"pod{namespace="busy"} |~ "served in 1[0-9]{2}ms" != "web-9""#,
    );
    let window = [
        ("start", "2024-01-01T00:00:00Z"),
        ("end", "2024-01-01T01:00:00Z"),
    ];
    // Cold: the index is being built when the deadline passes.
    let (status, body) = get(
        &janus,
        "/api/v1/query_range",
        &[query, window[0], window[1], ("timeout", "1ms")],
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body,
        r#"{"status":"error","errorType":"timeout","error":"query timed out in query execution"}"#
    );
    // Warm: the same query without a deadline answers, then a tiny deadline stops the scan.
    let (status, _) = get(
        &janus,
        "/api/v1/query_range",
        &[query, window[0], window[1]],
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = get(
        &janus,
        "/api/v1/query_range",
        &[
            query,
            window[0],
            window[1],
            ("timeout", "1ms"),
            ("limit", "100000"),
        ],
    )
    .await;
    assert_eq!(
        (status, body.contains("\"errorType\":\"timeout\"")),
        (503, true),
        "{body}"
    );
    janus.stop().await;
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn a_cancelled_search_stops() {
    use std::sync::atomic::AtomicBool;
    use std::time::{Duration, Instant};
    let root = busy_store();
    let store = janus::logstore::files::Store::new(
        root.clone(),
        std::sync::Arc::new(janus::telemetry::Metrics::new()),
    );
    let query = janus::logql::parse_log_query(r#"pod{namespace="busy"}"#).expect("parses");
    let cancelled = AtomicBool::new(true);
    let outcome = store.search(&janus::logstore::Search {
        query: &query,
        lo: 1_704_067_200_000_000_000,
        hi: 1_704_070_800_000_000_000,
        limit: 10,
        keep: janus::logstore::Keep::Newest,
        deadline: Instant::now() + Duration::from_secs(60),
        cancelled: &cancelled,
    });
    assert!(matches!(outcome, Err(janus::logstore::ScanStop::Cancelled)));
    let _ = std::fs::remove_dir_all(root);
}
