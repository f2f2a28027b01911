//! The Loki push API end to end: encodings, real clients, refusals that leave the store
//! untouched, concurrent pushers, and retention with queries running.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use janus::ingest::decode::{EntryAdapter, ProtoTimestamp, PushRequest, StreamAdapter};
use janus::logstore::LogStore;
use prost::Message;
use support::{closed_port_url, raw_client, required_env, start_janus, temp_dir, TestJanus};

const T0: i64 = 1_704_067_200_000_000_000; // 2024-01-01T00:00:00Z

/// The streams every encoding test sends: a pod stream, a node stream, a multi-line message and
/// lines in two hours.
/// A stream to push: labels and (unix ns, line) entries.
type Sample = (
    BTreeMap<&'static str, &'static str>,
    Vec<(i64, &'static str)>,
);

fn sample() -> Vec<Sample> {
    vec![
        (
            BTreeMap::from([
                ("namespace", "shop"),
                ("pod", "web-1"),
                ("container", "app"),
            ]),
            vec![
                (T0 + 1, "GET / 200"),
                (T0 + 2_000_000_000, "panic: boom\n  at main.rs:1\n"),
                (T0 + 3_600_000_000_000 + 5, "next hour"),
            ],
        ),
        (
            BTreeMap::from([("host", "node01"), ("unit", "kubelet.service")]),
            vec![(T0 + 7, "I0101 started")],
        ),
    ]
}

fn json_body() -> String {
    let streams: Vec<serde_json::Value> = sample()
        .into_iter()
        .map(|(labels, values)| {
            serde_json::json!({
                "stream": labels,
                "values": values.iter().map(|(t, l)| serde_json::json!([t.to_string(), l])).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({ "streams": streams }).to_string()
}

fn protobuf_body() -> Vec<u8> {
    let request = PushRequest {
        streams: sample()
            .into_iter()
            .map(|(labels, values)| StreamAdapter {
                labels: format!(
                    "{{{}}}",
                    labels
                        .iter()
                        .map(|(k, v)| format!("{k}=\"{v}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                entries: values
                    .iter()
                    .map(|(t, l)| EntryAdapter {
                        timestamp: Some(ProtoTimestamp {
                            seconds: t.div_euclid(1_000_000_000),
                            nanos: t.rem_euclid(1_000_000_000) as i32,
                        }),
                        line: l.as_bytes().to_vec().into(),
                        structured_metadata: vec![],
                    })
                    .collect(),
                hash: 0,
            })
            .collect(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("snappy")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

async fn push(
    janus: &TestJanus,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (u16, String) {
    let mut request = raw_client()
        .post(format!("{}/loki/api/v1/push", janus.url))
        .header("Content-Type", content_type)
        .body(body);
    if let Some(e) = encoding {
        request = request.header("Content-Encoding", e);
    }
    let answer = request.send().await.expect("answer");
    let status = answer.status().as_u16();
    (status, answer.text().await.unwrap_or_default())
}

/// Every file under the store's `pod/` and `node/` with its bytes (markers left out).
fn tree(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for kind in ["pod", "node"] {
        let mut stack = vec![root.join(kind)];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(e.path());
                } else {
                    let rel = e.path().strip_prefix(root).expect("inside").to_path_buf();
                    out.insert(rel, std::fs::read(e.path()).expect("read"));
                }
            }
        }
    }
    out
}

async fn janus() -> TestJanus {
    start_janus(&closed_port_url().await, |_| {}).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_gzip_json_and_protobuf_write_identical_files() {
    let mut trees = Vec::new();
    for (content_type, encoding, body) in [
        ("application/json", None, json_body().into_bytes()),
        (
            "application/json",
            Some("gzip"),
            gzip(json_body().as_bytes()),
        ),
        ("application/x-protobuf", None, protobuf_body()),
    ] {
        let j = janus().await;
        assert_eq!(
            push(&j, content_type, encoding, body).await,
            (204, String::new())
        );
        trees.push(tree(&j.storage));
        j.stop().await;
    }
    assert_eq!(trees[0], trees[1]);
    assert_eq!(trees[0], trees[2]);
    let files: Vec<String> = trees[0].keys().map(|p| p.display().to_string()).collect();
    assert_eq!(
        files,
        [
            "node/node01/2024-01-01_00.log",
            "pod/shop/2024-01-01_00.log",
            "pod/shop/2024-01-01_01.log"
        ]
    );
    assert_eq!(
        String::from_utf8_lossy(&trees[0][&PathBuf::from("pod/shop/2024-01-01_00.log")]),
        "2024-01-01T00:00:00.000000001Z[shop|web-1|app] GET / 200\n\
         2024-01-01T00:00:02.000000000Z[shop|web-1|app] panic: boom\n\
         2024-01-01T00:00:02.000000000Z[shop|web-1|app]   at main.rs:1\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_lines_come_back_through_the_query_api() {
    let j = janus().await;
    assert_eq!(
        push(&j, "application/json", None, json_body().into_bytes())
            .await
            .0,
        204
    );
    let answer = raw_client()
        .get(format!("{}/api/v1/query_range", j.url))
        .query(&[
            ("query", r#"pod{namespace="shop"} |= "boom""#),
            ("start", "2024-01-01T00:00:00Z"),
            ("end", "2024-01-01T02:00:00Z"),
        ])
        .send()
        .await
        .expect("answer")
        .text()
        .await
        .expect("text");
    assert_eq!(
        answer,
        r#"{"status":"success","data":{"resultType":"logs","result":[{"time":"2024-01-01T00:00:02.000000000Z","namespace":"shop","pod":"web-1","container":"app","log":"panic: boom"}]}}"#
    );
    j.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_refused_and_the_store_is_unchanged() {
    let j = janus().await;
    assert_eq!(
        push(&j, "application/json", None, json_body().into_bytes())
            .await
            .0,
        204
    );
    let before = tree(&j.storage);
    let stream = |labels: &str, values: &str| {
        format!(r#"{{"streams":[{{"stream":{labels},"values":{values}}},{{"stream":{{"namespace":"shop","pod":"ok","container":"c"}},"values":[["1704067200000000009","must not be written"]]}}]}}"#)
            .into_bytes()
    };
    let ok_labels = r#"{"namespace":"shop","pod":"p","container":"c"}"#;
    let ok_values = r#"[["1704067200000000001","x"]]"#;
    let mut bodies: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
        ("application/json", None, b"not json".to_vec()),
        ("application/json", None, b"{}".to_vec()),
        ("application/json", None, br#"{"streams":{}}"#.to_vec()),
        (
            "application/json",
            None,
            br#"{"streams":[{"stream":{"namespace":"shop"}}]}"#.to_vec(),
        ),
        (
            "application/json",
            None,
            br#"{"streams":[{"values":[]}]}"#.to_vec(),
        ),
        (
            "application/json",
            None,
            br#"{"streams":[],"extra":1}"#.to_vec(),
        ),
        (
            "application/json",
            None,
            json_body().as_bytes()[..40].to_vec(),
        ),
        (
            "application/json",
            None,
            stream(ok_labels, r#"[[1704067200000000001,"x"]]"#),
        ),
        (
            "application/json",
            None,
            stream(ok_labels, r#"[["soon","x"]]"#),
        ),
        (
            "application/json",
            None,
            stream(ok_labels, r#"[["1.5","x"]]"#),
        ),
        (
            "application/json",
            None,
            stream(ok_labels, r#"[["99999999999999999999999","x"]]"#),
        ),
        (
            "application/json",
            None,
            stream(ok_labels, r#"[["1704067200000000001"]]"#),
        ),
        (
            "application/json",
            None,
            stream(ok_labels, r#"[["1704067200000000001",5]]"#),
        ),
        (
            "application/json",
            None,
            stream(ok_labels, r#"[["1704067200000000001","x","meta"]]"#),
        ),
        (
            "application/json",
            None,
            stream(ok_labels, r#"[["1704067200000000001","x",{},4]]"#),
        ),
        (
            "application/json",
            None,
            stream(r#"{"app":"x"}"#, ok_values),
        ),
        (
            "application/json",
            None,
            stream(r#"{"namespace":"shop","pod":"p"}"#, ok_values),
        ),
        (
            "application/json",
            None,
            stream(r#"{"node":"n"}"#, ok_values),
        ),
        (
            "application/json",
            None,
            stream(r#"{"namespace":5,"pod":"p","container":"c"}"#, ok_values),
        ),
        (
            "application/json",
            Some("gzip"),
            b"definitely not gzip".to_vec(),
        ),
        ("application/json", Some("br"), json_body().into_bytes()),
        ("text/plain", None, json_body().into_bytes()),
        ("application/x-protobuf", None, b"garbage".to_vec()),
        ("application/x-protobuf", None, json_body().into_bytes()),
        (
            "application/x-protobuf",
            None,
            snap::raw::Encoder::new()
                .compress_vec(b"\xff\xff\xff\xff")
                .expect("snappy"),
        ),
        (
            "application/x-protobuf",
            None,
            protobuf_body()[..10].to_vec(),
        ),
        (
            "application/x-protobuf",
            None,
            b"\xff\xff\xff\xff\x0f".to_vec(),
        ),
        // A zip bomb: 100 MB of spaces in a small body, over the 64 MB limit once inflated.
        (
            "application/json",
            Some("gzip"),
            gzip(&vec![b' '; 100 << 20]),
        ),
    ];
    for bad in [
        "", ".", "..", "../etc", "/etc", "a/b", "a|b", "a]b", "a\nb", "a\u{0}b", ".hidden",
    ] {
        let escaped = serde_json::to_string(bad).expect("json");
        for labels in [
            format!(r#"{{"namespace":{escaped},"pod":"p","container":"c"}}"#),
            format!(r#"{{"namespace":"shop","pod":{escaped},"container":"c"}}"#),
            format!(r#"{{"namespace":"shop","pod":"p","container":{escaped}}}"#),
            format!(r#"{{"node":{escaped},"process":"kubelet"}}"#),
        ] {
            if bad.starts_with('.')
                && bad.len() > 2
                && !labels.starts_with(r#"{"namespace":"."#)
                && !labels.starts_with(r#"{"node":"."#)
            {
                continue; // a leading dot is only refused in directory names
            }
            bodies.push(("application/json", None, stream(&labels, ok_values)));
        }
    }
    bodies.push((
        "application/json",
        None,
        stream(
            &format!(
                r#"{{"namespace":"{}","pod":"p","container":"c"}}"#,
                "x".repeat(254)
            ),
            ok_values,
        ),
    ));
    assert!(bodies.len() >= 30, "{}", bodies.len());
    for (i, (content_type, encoding, body)) in bodies.into_iter().enumerate() {
        let (status, text) = push(&j, content_type, encoding, body).await;
        assert!((400..500).contains(&status), "case {i}: {status} {text}");
        assert_eq!(
            tree(&j.storage),
            before,
            "case {i} changed the store: {text}"
        );
    }
    j.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_pushers_never_interleave_lines() {
    let j = janus().await;
    let url = format!("{}/loki/api/v1/push", j.url);
    let mut tasks = Vec::new();
    for pusher in 0..8 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let client = raw_client();
            for request in 0..25 {
                let values: Vec<serde_json::Value> = (0..200)
                    .map(|i| {
                        serde_json::json!([
                            (T0 + (request * 200 + i) as i64).to_string(),
                            format!("pusher {pusher} request {request} line {i} {}", "x".repeat(150))
                        ])
                    })
                    .collect();
                let body = serde_json::json!({"streams":[{"stream":{"namespace":"busy","pod":format!("p{pusher}"),"container":"c"},"values":values}]});
                let r = client
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(body.to_string())
                    .send()
                    .await
                    .expect("push");
                assert_eq!(r.status(), 204);
            }
        }));
    }
    for t in tasks {
        t.await.expect("pusher");
    }
    let text = std::fs::read_to_string(j.storage.join("pod/busy/2024-01-01_00.log")).expect("file");
    let mut seen = HashSet::new();
    for line in text.lines() {
        let parsed = janus::logstore::line::parse(line.as_bytes()).expect("every line parses");
        let message = String::from_utf8_lossy(parsed.message).to_string();
        assert!(
            message.ends_with(&"x".repeat(150)),
            "torn or mixed line: {line}"
        );
        assert!(seen.insert(message), "duplicate line {line}");
    }
    assert_eq!(seen.len(), 8 * 25 * 200);
    j.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_clients_push_and_read_back() {
    let python = required_env("JANUS_TEST_PYTHON");
    let node_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("compat-tests/node");
    assert!(
        node_dir.join("node_modules/winston-loki").is_dir(),
        "run compat-tests/run (it runs npm ci in compat-tests/node)"
    );
    // Real clients stamp lines with the current time: keep retention at its default.
    let j = start_janus(&closed_port_url().await, |c| {
        c.retention_time = std::time::Duration::from_secs(86_400)
    })
    .await;
    let url = j.url.clone();
    let run = format!("run{}", std::process::id());
    let (py, node) = {
        let (url, run, dir) = (url.clone(), run.clone(), node_dir.clone());
        tokio::task::spawn_blocking(move || {
            let script = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/compat-tests/clients/python_logging_loki_push.py"
            );
            let py = Command::new(&python)
                .args([script, &url, &run, "20"])
                .output()
                .expect("python runs");
            let node = Command::new("node")
                .current_dir(&dir)
                .args(["winston_loki_push.js", &url, &run, "20"])
                .output()
                .expect("node runs");
            (py, node)
        })
        .await
        .expect("clients")
    };
    assert!(
        py.status.success(),
        "python-logging-loki: {}",
        String::from_utf8_lossy(&py.stderr)
    );
    assert!(
        node.status.success(),
        "winston-loki: {}",
        String::from_utf8_lossy(&node.stderr)
    );
    for (pod, word) in [("python-1", "python"), ("winston-1", "winston")] {
        let answer = raw_client()
            .get(format!("{}/api/v1/query", j.url))
            .query(&[
                (
                    "query",
                    format!(r#"pod{{namespace="clients", pod="{pod}"}} |= "{run}" [10m]"#).as_str(),
                ),
                ("limit", "100"),
            ])
            .send()
            .await
            .expect("answer")
            .text()
            .await
            .expect("text");
        let v: serde_json::Value = serde_json::from_str(&answer).expect("json");
        let lines: Vec<String> = v["data"]["result"]
            .as_array()
            .expect("result")
            .iter()
            .map(|l| l["log"].as_str().unwrap_or_default().to_string())
            .collect();
        let expected: HashSet<String> = (0..20).map(|i| format!("{word} {run} line {i}")).collect();
        assert_eq!(
            lines.iter().cloned().collect::<HashSet<_>>(),
            expected,
            "{answer}"
        );
    }
    let metrics = j.metrics().await;
    assert!(
        metrics.contains("janus_ingest_lines_total{stage=\"written\"} 40"),
        "{metrics}"
    );
    j.stop().await;
}

#[test]
fn retention_by_time_and_size_while_queries_run() {
    use janus::logstore::files::retention;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let root = temp_dir("retention");
    // 48 hours of one namespace, 10 KB each.
    for h in 0..48i64 {
        let dir = root.join("pod/keep");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let name = janus::logstore::files::layout::name_of_hour(T0 + h * 3_600_000_000_000);
        let line = |i: i64| {
            format!(
                "{}[keep|p|c] hour {h} line {i} {}\n",
                chrono::DateTime::<chrono::Utc>::from_timestamp(1_704_067_200 + h * 3600 + i, 0)
                    .expect("t")
                    .format("%Y-%m-%dT%H:%M:%SZ"),
                "y".repeat(60)
            )
        };
        let text: String = (0..100).map(line).collect();
        std::fs::write(dir.join(name), text).expect("write");
    }
    let store = Arc::new(janus::logstore::files::Store::new(
        root.clone(),
        Arc::new(janus::telemetry::Metrics::new()),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let reader = {
        let (store, stop, counter) = (Arc::clone(&store), Arc::clone(&stop), Arc::clone(&runs));
        std::thread::spawn(move || {
            let query = janus::logql::parse_log_query(r#"pod{namespace="keep"} |= "line""#)
                .expect("parses");
            let mut runs = 0;
            while !stop.load(Ordering::Relaxed) {
                let cancelled = AtomicBool::new(false);
                store
                    .search(&janus::logstore::Search {
                        query: &query,
                        lo: T0,
                        hi: T0 + 48 * 3_600_000_000_000,
                        limit: 1000,
                        keep: janus::logstore::Keep::Newest,
                        deadline: std::time::Instant::now() + std::time::Duration::from_secs(10),
                        cancelled: &cancelled,
                    })
                    .expect("a search racing with retention never fails");
                runs += 1;
                counter.fetch_add(1, Ordering::Relaxed);
            }
            runs
        })
    };
    let wait_for_runs = |n: usize| {
        let started = std::time::Instant::now();
        while runs.load(Ordering::Relaxed) < n
            && started.elapsed() < std::time::Duration::from_secs(20)
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    };
    wait_for_runs(3);
    let now = T0 + 48 * 3_600_000_000_000 + 1;
    let current_hour = root
        .join("pod/keep")
        .join(janus::logstore::files::layout::name_of_hour(now - 2));
    // By time: 24 hours kept (the file being written is never touched).
    let writing = root
        .join("pod/keep")
        .join(janus::logstore::files::layout::name_of_hour(
            T0 + 3_600_000_000_000,
        ));
    let outcome = retention::run(
        &root,
        now,
        std::time::Duration::from_secs(24 * 3600),
        0,
        &|p| p == writing,
    );
    assert_eq!(outcome.deleted_by_time, 23, "{outcome:?}");
    assert!(writing.exists());
    assert!(current_hour.exists());
    // By size: the oldest go until the rest fits.
    let mut sizes: Vec<(String, u64)> = std::fs::read_dir(root.join("pod/keep"))
        .expect("dir")
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().to_string(),
                e.metadata().expect("m").len(),
            )
        })
        .collect();
    sizes.sort();
    let total: u64 = sizes.iter().map(|s| s.1).sum();
    let limit = total * 10 / 25;
    // Expected: the oldest go, one by one, until the rest fits.
    let (mut expected_deleted, mut left) = (0, total);
    for (_, bytes) in &sizes {
        if left <= limit {
            break;
        }
        left -= bytes;
        expected_deleted += 1;
    }
    let outcome = retention::run(&root, now, std::time::Duration::ZERO, limit, &|_| false);
    assert_eq!(outcome.deleted_by_size, expected_deleted, "{outcome:?}");
    assert_eq!(outcome.store_bytes, left);
    assert!(outcome.store_bytes <= limit);
    assert!(current_hour.exists());
    let after = runs.load(Ordering::Relaxed);
    wait_for_runs(after + 3);
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().expect("reader") > 0);
    let _ = std::fs::remove_dir_all(root);
}
