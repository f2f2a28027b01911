//! The second attack round (Unbreakable II): the surfaces added after the first one — the Loki
//! tail, detected fields, the parsers, the writer over many hour files — tried as an attacker
//! and a careless user would, on 127.0.0.1, against the real binary under a 2 GiB address-space
//! cap. Each request gets an answer or a clear refusal, the process lives, and its peak RSS stays
//! under the bound of `docs/operations.md`. Every server here is stopped by its PID.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde_json::{json, Value};
use support::guarded::Guarded;
use support::{raw_client, temp_dir};
use tokio_tungstenite::tungstenite::Message;

/// A store with one namespace `x` holding `n` short lines in 2024-01-01 00:00.
fn store_with_short_lines(n: usize) -> PathBuf {
    let root = temp_dir("attack2-store");
    std::fs::create_dir_all(root.join("pod/x")).expect("mkdir");
    let text: String = (0..n)
        .map(|i| {
            format!(
                "2024-01-01T00:{:02}:{:02}Z[x|p-{}|c] line {i}\n",
                (i / 60) % 60,
                i % 60,
                i % 7
            )
        })
        .collect();
    std::fs::write(root.join("pod/x/2024-01-01_00.log"), text).expect("write");
    root
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// Posts a Loki push (JSON) and returns the status and body.
async fn push(janus: &Guarded, body: &Value) -> (u16, String) {
    push_text(janus, body.to_string()).await
}

/// Posts a Loki push of JSON text as written (which a `Value` cannot hold: a key twice).
async fn push_text(janus: &Guarded, body: String) -> (u16, String) {
    let answer = raw_client()
        .post(format!("{}/loki/api/v1/push", janus.url))
        .header("content-type", "application/json")
        .body(body)
        .timeout(Duration::from_secs(120))
        .send()
        .await
        .expect("an answer to the push");
    let status = answer.status().as_u16();
    (status, answer.text().await.unwrap_or_default())
}

/// Hour files (`*.log`) under `dir`, empty ones counted apart.
fn hour_files(dir: &Path) -> (usize, usize) {
    let (mut all, mut empty) = (0, 0);
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.path().extension().is_some_and(|e| e == "log") {
            all += 1;
            if entry.metadata().map(|m| m.len() == 0).unwrap_or(false) {
                empty += 1;
            }
        }
    }
    (all, empty)
}

fn tail_url(janus: &Guarded, query: &str, limit: &str) -> String {
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", query)
        .append_pair("start", "2024-01-01T00:00:00Z")
        .append_pair("limit", limit)
        .finish();
    format!(
        "{}/loki/api/v1/tail?{q}",
        janus.url.replacen("http://", "ws://", 1)
    )
}

/// Finding 1: a tail over lines a template makes 64 KiB each, 5,000 to a batch, used to build
/// the whole batch (320 MB) in one buffer, parse it back and copy it: the allocation failed
/// under the cap and the process aborted. Now the batch goes out in messages of at most 1 MiB
/// (one line larger than that alone), every line still once; 31 more such tails whose clients
/// read nothing hold no more than their budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tail_of_huge_lines_is_sent_in_bounded_messages() {
    let root = store_with_short_lines(30_000);
    let mut janus = Guarded::start_2g(&root, "http://127.0.0.1:1", &[], None).await;
    let bomb = r#"{namespace="x"} | line_format "{{ repeat 65536 \"x\" }}""#;
    let url = tail_url(&janus, bomb, "5000");
    // Readers that never read: their messages wait on the socket, their batches in the budget.
    let mut idle = Vec::new();
    for _ in 0..31 {
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("a tail is accepted");
        idle.push(socket);
    }
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .expect("a tail is accepted");
    let (mut lines, mut messages, mut largest) = (0usize, 0usize, 0usize);
    let until = tokio::time::Instant::now() + Duration::from_secs(240);
    while lines < 5000 {
        let Ok(Some(Ok(message))) = tokio::time::timeout_at(until, socket.next()).await else {
            break;
        };
        let Message::Text(text) = message else {
            continue;
        };
        largest = largest.max(text.len());
        messages += 1;
        let v: Value = serde_json::from_str(&text).expect("a JSON message");
        for stream in v["streams"].as_array().expect("streams") {
            for value in stream["values"].as_array().expect("values") {
                assert_eq!(value[1].as_str().map(str::len), Some(65536));
                lines += 1;
            }
        }
    }
    assert_eq!(lines, 5000, "the first batch arrives whole");
    assert!(messages >= 300, "{messages} messages");
    assert!(
        largest <= (1 << 20) + 70_000,
        "largest message {largest} bytes"
    );
    drop(socket);
    drop(idle);
    janus.assert_alive_and_bounded("a tail of 64 KiB lines, 32 at once");
    let _ = std::fs::remove_dir_all(&root);
}

/// Finding 2: one push of 5,000 lines an hour apart opened 5,000 hour files and kept them open
/// for two minutes; with `ulimit -n 1024` the push itself failed with `Too many open files`, and
/// so did every other request, and the refused push left thousands of empty hour files. Now the
/// writer keeps at most a quarter of the limit open, the push is written whole, other pushes and
/// queries go on, and a refused push leaves no file behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_over_many_hour_files_keeps_descriptors_bounded() {
    let root = temp_dir("attack2-fds");
    let mut janus = Guarded::start_2g(&root, "http://127.0.0.1:1", &[], Some(1024)).await;
    let hour = 3_600_000_000_000i64;
    let first = 1_600_000_000_000_000_000i64;
    let values: Vec<Value> = (0..5000)
        .map(|i| json!([(first + i * hour).to_string(), format!("line {i}")]))
        .collect();
    let wide = json!({"streams": [{"stream": {"namespace": "wide", "pod": "p", "container": "c"}, "values": values}]});
    let (status, body) = push(&janus, &wide).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(hour_files(&root.join("pod/wide")), (5000, 0));
    let fds = janus.open_fds();
    assert!(fds < 400, "{fds} descriptors open after the push");
    // Other pushes and queries still work.
    let narrow = json!({"streams": [{"stream": {"namespace": "narrow", "pod": "p", "container": "c"}, "values": [[now_ns().to_string(), "still here"]]}]});
    assert_eq!(push(&janus, &narrow).await.0, 204);
    let (status, body) = janus
        .get(
            "/api/v1/query",
            &[
                ("query", r#"pod{namespace="wide"}"#),
                ("time", "1600100000"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // A push that fails on its last file (a planted link) leaves nothing of itself: no line,
    // no empty hour file.
    std::fs::create_dir_all(root.join("pod")).expect("mkdir");
    let elsewhere = temp_dir("attack2-elsewhere");
    std::os::unix::fs::symlink(&elsewhere, root.join("pod/zz-link")).expect("plant a link");
    let values: Vec<Value> = (0..2000)
        .map(|i| json!([(first + i * hour).to_string(), format!("refused {i}")]))
        .collect();
    let refused = json!({"streams": [
        {"stream": {"namespace": "refused", "pod": "p", "container": "c"}, "values": values},
        {"stream": {"namespace": "zz-link", "pod": "p", "container": "c"}, "values": [[first.to_string(), "x"]]},
    ]});
    let (status, body) = push(&janus, &refused).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(hour_files(&root.join("pod/refused")), (0, 0));
    assert_eq!(
        std::fs::read_dir(&elsewhere)
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
    assert!(janus.open_fds() < 400);
    janus.assert_alive_and_bounded("a push over 5,000 hour files");
    let _ = std::fs::remove_dir_all(&elsewhere);
}

/// Posts a form and returns the status and body (an answer is required, not a dropped
/// connection).
async fn post_form(janus: &Guarded, path: &str, params: &[(&str, &str)]) -> (u16, String) {
    let answer = raw_client()
        .post(format!("{}{path}", janus.url))
        .form(params)
        .timeout(Duration::from_secs(150))
        .send()
        .await
        .map_err(|e| e.without_url())
        .expect("an answer, not a dropped connection");
    let status = answer.status().as_u16();
    (status, answer.text().await.unwrap_or_default())
}

/// A store whose namespace `wide` holds `lines` JSON lines of `keys` keys each in
/// 2024-01-01 00:00.
fn store_with_wide_json(lines: usize, keys: usize) -> PathBuf {
    let root = temp_dir("attack2-wide");
    std::fs::create_dir_all(root.join("pod/wide")).expect("mkdir");
    let mut text = String::new();
    for i in 0..lines {
        text.push_str(&format!("2024-01-01T00:00:{:02}Z[wide|p|c] {{", i % 60));
        for k in 0..keys {
            if k > 0 {
                text.push(',');
            }
            text.push_str(&format!("\"k{k}\":\"v{i}-{k}\""));
        }
        text.push_str("}\n");
    }
    std::fs::write(root.join("pod/wide/2024-01-01_00.log"), text).expect("write");
    root
}

/// CPU seconds the process has used (user and system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

const FIELDS_WINDOW: [(&str, &str); 2] = [
    ("start", "2024-01-01T00:00:00Z"),
    ("end", "2024-01-01T01:00:00Z"),
];

/// Findings 3 and 5: `detected_fields` over lines of 100,000 JSON keys ran a minute per request
/// at full CPU after its client left, ignoring `timeout`, and `| json` was quadratic in a
/// line's keys. Now parsing is linear, fields and values kept are bounded, the deadline and the
/// client are checked per line, and the query slot is held until the work has stopped: after
/// the clients leave, the process is idle within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detected_fields_heed_the_deadline_and_the_client() {
    let root = store_with_wide_json(40, 100_000);
    let mut janus = Guarded::start_2g(&root, "http://127.0.0.1:1", &[], None).await;
    let mut params = vec![("query", r#"{namespace="wide"}"#)];
    params.extend(FIELDS_WINDOW);
    let started = Instant::now();
    let (status, body) = janus.get("/loki/api/v1/detected_fields", &params).await;
    eprintln!(
        "detected_fields over 40 lines of 100k keys: {:?}",
        started.elapsed()
    );
    assert_eq!(status, 200, "{}", &body[..body.len().min(300)]);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        v["fields"].as_array().map(Vec::len),
        Some(1000),
        "the default limit"
    );
    // Values of one field: only that field's are kept.
    let (status, body) = janus
        .get("/loki/api/v1/detected_field/k99999/values", &params)
        .await;
    assert_eq!(status, 200, "{}", &body[..body.len().min(300)]);
    // Clients that leave after 200 ms: the work stops with them.
    let url = format!("{}/loki/api/v1/detected_fields", janus.url);
    for _ in 0..4 {
        let _ = raw_client()
            .get(&url)
            .query(&params)
            .timeout(Duration::from_millis(200))
            .send()
            .await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let pid = janus.child.id();
    let before = cpu_seconds(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_seconds(pid) - before;
    assert!(
        used < 0.5,
        "{used} CPU seconds in 2 s after the clients left"
    );
    janus.assert_alive_and_bounded("detected fields over 100k-key lines");
}

/// Finding 4: SIGTERM while such work ran logged "stopped" and then the process stayed, at
/// full CPU. After the grace period the process exits, whatever still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_process_after_the_grace_period() {
    let root = store_with_wide_json(40, 100_000);
    let janus = Guarded::start_2g(
        &root,
        "http://127.0.0.1:1",
        &["--web.shutdown-timeout=1s"],
        None,
    )
    .await;
    let url = format!("{}/loki/api/v1/detected_fields", janus.url);
    let mut params = vec![("query", r#"{namespace="wide"}"#), ("timeout", "120s")];
    params.extend(FIELDS_WINDOW);
    let mut requests = Vec::new();
    for _ in 0..4 {
        let request = raw_client().get(&url).query(&params).send();
        requests.push(tokio::spawn(request));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = janus.child.id();
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(signalled.success());
    let started = Instant::now();
    let mut janus = janus;
    loop {
        if let Some(status) = janus.child.try_wait().expect("wait") {
            eprintln!("exited {status} {:?} after SIGTERM", started.elapsed());
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "still running 8 s after SIGTERM with a 1 s grace period"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for r in requests {
        r.abort();
    }
}

/// Finding 6: pushes Loki refuses — a label named twice, a timestamp of -2^63 (it was written to
/// `1677-09-21_00.log`), one a day ahead — are refused with 400 naming the entry, and nothing
/// of them is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_loki_refuses_are_refused() {
    let root = temp_dir("attack2-push");
    let mut janus = Guarded::start_2g(&root, "http://127.0.0.1:1", &[], None).await;
    let stream = r#"{"namespace":"v","pod":"p","container":"c"}"#;
    let now = now_ns();
    let cases = [
        (
            format!(r#"{{"streams":[{{"stream":{{"namespace":"v","pod":"p","container":"c","pod":"q"}},"values":[["{now}","x"]]}}]}}"#),
            "has duplicate label name: 'pod'",
        ),
        (
            format!(r#"{{"streams":[{{"stream":{stream},"values":[["{now}","ok"],["{}","x"]]}}]}}"#, i64::MIN),
            "has timestamp too old: 1677-09-21T00:12:43.145224192Z, oldest acceptable timestamp is: 1970-01-01T00:00:00Z",
        ),
        (
            format!(r#"{{"streams":[{{"stream":{stream},"values":[["{}","x"]]}}]}}"#, now + 86_400_000_000_000),
            "has timestamp too new",
        ),
    ];
    for (body, words) in &cases {
        let (status, text) = push_text(&janus, body.clone()).await;
        assert_eq!(status, 400, "{body}: {text}");
        assert!(text.contains(words), "{body}: {text}");
    }
    assert!(!root.join("pod/v").exists() || hour_files(&root.join("pod/v")) == (0, 0));
    // Within the grace period (10 min by default) is fine.
    let soon = json!({"streams": [{"stream": {"namespace": "v", "pod": "p", "container": "c"}, "values": [[(now + 60_000_000_000).to_string(), "soon"]]}]});
    assert_eq!(push(&janus, &soon).await.0, 204);
    janus.assert_alive_and_bounded("pushes Loki refuses");
}

/// Findings 7, 8 and 9: answers that differed from Loki's and Prometheus's.
/// - `| status >= 500` drops a line without `status` and keeps one whose `status` is no number,
///   marked (Loki's `pkg/logql/log/label_filter.go`);
/// - `label_replace`/`label_join` refuse an invalid destination name with 422, as Prometheus's
///   `promql/functions.go` does;
/// - a metric over lines a template marked fails with Loki's pipeline error (its range vector
///   evaluator, `pkg/logql/evaluator.go`) instead of counting them under `{}`;
/// - a push over `--ingest.max-body-size` is answered 413 that the client, still sending, reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_lokis_and_prometheuss() {
    let root = temp_dir("attack2-rules");
    std::fs::create_dir_all(root.join("pod/x")).expect("mkdir");
    std::fs::write(
        root.join("pod/x/2024-01-01_00.log"),
        "2024-01-01T00:00:01Z[x|p|c] status=503 msg=a\n\
         2024-01-01T00:00:02Z[x|p|c] msg=b\n\
         2024-01-01T00:00:03Z[x|p|c] status=abc msg=c\n",
    )
    .expect("write");
    let mut janus = Guarded::start_2g(
        &root,
        "http://127.0.0.1:1",
        &["--ingest.max-body-size=1MB"],
        None,
    )
    .await;
    let mut params = vec![
        ("query", r#"{namespace="x"} | logfmt | status >= 500"#),
        ("limit", "100"),
    ];
    params.extend(FIELDS_WINDOW);
    let (status, body) = janus.get("/loki/api/v1/query_range", &params).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    let mut lines: Vec<(String, String)> = v["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| {
            let error = s["stream"]["__error__"].as_str().unwrap_or("").to_string();
            s["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |v| (v[1].as_str().unwrap_or("").to_string(), error.clone()))
        })
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            ("status=503 msg=a".to_string(), String::new()),
            ("status=abc msg=c".to_string(), "LabelFilterErr".to_string())
        ]
    );
    for (query, words) in [
        (
            r#"label_replace(count_over_time(pod{namespace="x"}[1h]), "~invalid", "a", "", "")"#,
            "invalid destination label name in label_replace(): ~invalid",
        ),
        (
            r#"label_join(count_over_time(pod{namespace="x"}[1h]), "a-b", ",", "pod")"#,
            "invalid destination label name in label_join(): a-b",
        ),
    ] {
        let (status, body) = janus
            .get(
                "/api/v1/query",
                &[("query", query), ("time", "2024-01-01T00:30:00Z")],
            )
            .await;
        assert_eq!(status, 422, "{query}: {body}");
        assert!(
            body.contains(r#""errorType":"execution""#) && body.contains(words),
            "{body}"
        );
    }
    let mut params = vec![
        (
            "query",
            r#"sum by (a) (count_over_time({namespace="x"} | label_format a="{{ repeat 65535 __line__ }}" [1h]))"#,
        ),
        ("step", "3600"),
    ];
    params.extend(FIELDS_WINDOW);
    let (status, body) = janus.get("/loki/api/v1/query_range", &params).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("pipeline error: 'TemplateFormatErr'"),
        "{body}"
    );
    // Dropping the marked lines on purpose counts the rest.
    let mut params = vec![
        (
            "query",
            r#"sum(count_over_time({namespace="x"} | label_format a="{{ repeat 65535 __line__ }}" | __error__="" [1h]))"#,
        ),
        ("step", "3600"),
    ];
    params.extend(FIELDS_WINDOW);
    let (status, body) = janus.get("/loki/api/v1/query_range", &params).await;
    assert_eq!(status, 200, "{body}");
    // 8 MB to a 1 MB limit: the client reads the 413 rather than a broken pipe.
    let big = vec![b'x'; 8 << 20];
    let answer = raw_client()
        .post(format!("{}/loki/api/v1/push", janus.url))
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await
        .expect("the 413 is read, not a broken pipe");
    assert_eq!(answer.status().as_u16(), 413);
    janus.assert_alive_and_bounded("Loki's and Prometheus's rules");
}

/// Every Loki endpoint under the cap: the requests an attacker or a careless dashboard sends —
/// the widest windows, the finest steps, the largest limits, many and heavy matchers, deep and
/// long queries, template bombs — each answered (any status, never a dropped connection), the
/// process alive and under the RSS bound afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_loki_endpoint_holds_under_the_cap() {
    let root = temp_dir("attack2-every");
    std::fs::create_dir_all(root.join("pod/x")).expect("mkdir");
    let mut text = String::new();
    for i in 0..60_000 {
        text.push_str(&format!(
            "2024-01-01T00:{:02}:{:02}Z[x|p-{}|c-{}] {{\"level\":\"info\",\"id\":{i},\"took\":\"{}ms\",\"msg\":\"{}\"}}\n",
            (i / 60) % 60,
            i % 60,
            i % 2000,
            i % 3,
            i % 997,
            "y".repeat(i % 300)
        ));
    }
    std::fs::write(root.join("pod/x/2024-01-01_00.log"), text).expect("write");
    let mut janus = Guarded::start_2g(&root, "http://127.0.0.1:1", &[], None).await;
    let wide = [("start", "0"), ("end", "4102444800000000000")];
    let hour = FIELDS_WINDOW;
    let deep = format!(
        "{}{{namespace=\"x\"}}{}",
        "(".repeat(5000),
        ")".repeat(5000)
    );
    let long = format!(
        "{{namespace=\"x\"}} {}",
        (0..60_000)
            .map(|i| format!("!= \"w{i}\""))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let alternation = format!(
        "{{namespace=\"x\", pod=~\"{}\"}}",
        (0..2_000)
            .map(|i| format!("p-{i}"))
            .collect::<Vec<_>>()
            .join("|")
    );
    let bomb = r#"{namespace="x"} | json | line_format "{{ repeat 60000 .msg }}" | label_format big="{{ repeat 60000 .id }}""#;
    let by_all =
        r#"sum by (id, took, msg, pod, container) (count_over_time({namespace="x"} | json [1m]))"#;
    let queries: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "/loki/api/v1/query",
            vec![
                ("query", r#"{namespace=~".+"}"#.into()),
                ("limit", "100000".into()),
                ("time", "2024-01-01T01:00:00Z".into()),
            ],
        ),
        ("/loki/api/v1/query", vec![("query", deep.clone())]),
        ("/loki/api/v1/query", vec![("query", long.clone())]),
        (
            "/loki/api/v1/query_range",
            vec![("query", bomb.into()), ("limit", "100000".into())],
        ),
        (
            "/loki/api/v1/query_range",
            vec![("query", by_all.into()), ("step", "5".into())],
        ),
        (
            "/loki/api/v1/query_range",
            vec![
                ("query", r#"rate({namespace="x"}[1m])"#.into()),
                ("step", "0.001".into()),
            ],
        ),
        (
            "/loki/api/v1/query_range",
            vec![("query", alternation.clone()), ("limit", "100000".into())],
        ),
        (
            "/loki/api/v1/series",
            vec![("match[]", r#"{namespace=~".*", pod=~"(p-1.*)+"}"#.into())],
        ),
        ("/loki/api/v1/labels", vec![]),
        (
            "/loki/api/v1/label/pod/values",
            vec![("query", alternation.clone())],
        ),
        (
            "/loki/api/v1/index/stats",
            vec![("query", r#"{namespace=~".+"}"#.into())],
        ),
        (
            "/loki/api/v1/index/volume",
            vec![
                ("query", r#"{namespace=~".+"}"#.into()),
                ("limit", "100000".into()),
                ("targetLabels", "pod,container".into()),
            ],
        ),
        (
            "/loki/api/v1/index/volume_range",
            vec![
                ("query", r#"{namespace=~".+"}"#.into()),
                ("step", "0.001".into()),
            ],
        ),
        (
            "/loki/api/v1/detected_labels",
            vec![("query", r#"{namespace=~".+"}"#.into())],
        ),
        (
            "/loki/api/v1/detected_fields",
            vec![
                ("query", r#"{namespace="x"}"#.into()),
                ("line_limit", "100000".into()),
                ("limit", "100000".into()),
            ],
        ),
        (
            "/loki/api/v1/detected_field/msg/values",
            vec![
                ("query", r#"{namespace="x"}"#.into()),
                ("line_limit", "100000".into()),
                ("limit", "100000".into()),
            ],
        ),
        ("/loki/api/v1/format_query", vec![("query", long.clone())]),
        ("/loki/api/v1/format_query", vec![("query", deep.clone())]),
    ];
    for (path, params) in &queries {
        for window in [&wide[..], &hour[..]] {
            let mut all: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            if !params.iter().any(|(k, _)| *k == "time") {
                all.extend_from_slice(window);
            }
            all.push(("timeout", "20s"));
            let started = Instant::now();
            // Long texts go in a form body, as Grafana sends them; GET-only paths take a URL.
            let get_only = path.contains("detected") || path.contains("/label/");
            let (status, body) = if get_only {
                janus.get(path, &all).await
            } else {
                post_form(&janus, path, &all).await
            };
            eprintln!(
                "{path} {:?}: {status} in {:?} ({} bytes), peak RSS {} MiB",
                params.first().map(|(k, v)| (k, &v[..v.len().min(60)])),
                started.elapsed(),
                body.len(),
                janus.status_mb("VmHWM:")
            );
            assert!(
                status < 500 || status == 503,
                "{path}: {status} {}",
                &body[..body.len().min(300)]
            );
        }
    }
    let (status, _) = janus.get("/loki/api/v1/status/buildinfo", &[]).await;
    assert_eq!(status, 200);
    janus.assert_alive_and_bounded("every Loki endpoint's worst requests");
    janus
        .assert_memory_returns("every Loki endpoint's worst requests")
        .await;
}
