//! Generated attacks against a running Janus under a memory cap: deep, wide and huge
//! expressions, odd parameters, and push bodies (valid, malformed, expanding). Every request
//! gets an answer or a 4xx/5xx within its deadline (never a 500, never a dropped connection),
//! a refused push leaves the store byte-identical, and after all of it the process lives with
//! its peak RSS under the documented bound.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use support::guarded::Guarded;
use support::raw_client;

fn log_selector() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["x", "y", "x.*", ""]),
        prop::collection::vec(
            (
                prop::sample::select(vec!["|=", "!=", "|~", "!~"]),
                prop::sample::select(vec!["a", "ERROR", "\\\\w{50}", "(", ".*", "[a-z]+"]),
            ),
            0..4,
        ),
    )
        .prop_map(|(ns, filters)| {
            let op = if ns.contains('*') { "=~" } else { "=" };
            let mut s = format!("pod{{namespace{op}\"{ns}\"}}");
            for (f, v) in filters {
                s.push_str(&format!(" {f} \"{v}\""));
            }
            s
        })
}

fn expression() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        4 => (log_selector(), prop::sample::select(vec!["1m", "5m", "1h", "100000000y", "0s"]))
            .prop_map(|(s, r)| format!("count_over_time({s}[{r}])")),
        2 => (log_selector(), prop::sample::select(vec!["rate", "bytes_rate", "absent_over_time"]))
            .prop_map(|(s, f)| format!("{f}({s}[5m])")),
        1 => Just("1".to_string()),
        1 => Just("NaN".to_string()),
    ];
    leaf.prop_recursive(6, 64, 4, |inner| {
        prop_oneof![
            (
                inner.clone(),
                prop::sample::select(vec![
                    "+", "-", "*", "/", "%", "^", "and", "or", "unless", "==", ">", "> bool"
                ]),
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("({a}) {op} ({b})")),
            (
                prop::sample::select(vec!["sum", "avg", "max", "count", "stddev", "group"]),
                inner.clone()
            )
                .prop_map(|(f, a)| format!("{f} by (namespace) ({a})")),
            (
                prop::sample::select(vec!["topk(3,", "quantile(0.5,", "count_values(\"v\","]),
                inner.clone()
            )
                .prop_map(|(f, a)| format!("{f} {a})")),
            (
                prop::sample::select(vec!["abs", "ceil", "sqrt", "exp", "sort", "-"]),
                inner.clone()
            )
                .prop_map(|(f, a)| format!("{f}({a})")),
            (
                inner.clone(),
                prop::sample::select(vec!["[5m:1m]", "[1h:]", "[1w:1ms]", "[1d:1s]"])
            )
                .prop_map(|(a, sq)| format!("max_over_time(({a}){sq})")),
            // Amplifiers: deep wrappers and long chains.
            (inner.clone(), 1usize..3000).prop_map(|(a, n)| format!(
                "{}{a}{}",
                "abs(".repeat(n),
                ")".repeat(n)
            )),
            (inner, 1usize..20_000).prop_map(|(a, n)| format!("{a}{}", " + 1".repeat(n))),
        ]
    })
}

fn time_value() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (0i64..7200).prop_map(|s| (1_704_067_200 + s).to_string()),
        1 => odd_time(),
    ]
}

fn odd_time() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "2024-01-01T00:30:00Z",
        "1704069000",
        "NaN",
        "Inf",
        "-Inf",
        "1e300",
        "-1e300",
        "",
        "abc",
        "0",
        "-292273086-05-16T16:47:06Z",
        "1704069000.123456",
    ])
    .prop_map(str::to_string)
}

fn parameters() -> impl Strategy<Value = Vec<(String, String)>> {
    (
        time_value(),
        time_value(),
        prop::sample::select(vec![
            "60", "60", "15", "1", "0", "-1", "1ms", "NaN", "1e-9", "1y",
        ]),
        prop::sample::select(vec!["", "100000", "0", "-5", "99999999999999999999", "x"]),
        prop::sample::select(vec!["", "1s", "0", "-1s", "100000000y", "1ms"]),
    )
        .prop_map(|(start, end, step, limit, timeout)| {
            let mut p = vec![
                ("start".to_string(), start),
                ("end".to_string(), end),
                ("step".to_string(), step.to_string()),
            ];
            if !limit.is_empty() {
                p.push(("limit".into(), limit.to_string()));
            }
            if !timeout.is_empty() {
                p.push(("timeout".into(), timeout.to_string()));
            }
            p
        })
}

/// Push bodies: JSON with odd values, invalid UTF-8, bombs, garbage; with odd headers.
fn push_request() -> impl Strategy<Value = (Option<&'static str>, Option<&'static str>, Vec<u8>)> {
    let json = (
        prop::collection::vec(any::<u8>(), 0..40),
        prop::sample::select(vec!["1704067200000000000", "1704067200000000000", "-1", "x", "99999999999999999999", ""]),
        prop::sample::select(vec!["x", "x", "ns", "", "../etc", "a/b", ".", "\u{0}"]),
        0usize..2000,
    )
        .prop_map(|(line, ts, ns, copies)| {
            let mut body = format!(r#"{{"streams":[{{"stream":{{"namespace":"{ns}","pod":"p","container":"c"}},"values":["#).into_bytes();
            for i in 0..copies.max(1) {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(format!(r#"["{ts}",""#).as_bytes());
                // Any byte but JSON's specials; invalid UTF-8 included.
                body.extend(line.iter().map(|&b| if b < 0x20 || b == b'"' || b == b'\\' { b'a' } else { b }));
                body.extend_from_slice(b"\"]");
            }
            body.extend_from_slice(b"]}]}");
            body
        });
    let odd = (
        prop::sample::select(vec![
            Some("application/json"),
            Some("application/x-protobuf"),
            Some("text/plain"),
            None,
        ]),
        prop::sample::select(vec![None, Some("gzip"), Some("snappy"), Some("br")]),
        prop_oneof![json.clone(), prop::collection::vec(any::<u8>(), 0..400)],
    );
    prop_oneof![
        2 => json.prop_map(|body| (Some("application/json"), None, body)),
        1 => odd,
    ]
}

/// Every file below `root` with its bytes.
fn snapshot(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if !path.to_string_lossy().contains("/.janus/") {
                out.insert(
                    path.display().to_string(),
                    std::fs::read(&path).unwrap_or_default(),
                );
            }
        }
    }
    out
}

fn acceptable(status: u16) -> bool {
    matches!(status, 200 | 204 | 400 | 413 | 415 | 422 | 499 | 503)
}

#[test]
fn generated_attacks_never_crash_or_grow_memory() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let store = support::temp_dir("fuzz-store");
    std::fs::create_dir_all(store.join("pod/x")).expect("mkdir");
    std::fs::write(
        store.join("pod/x/2024-01-01_00.log"),
        (0..2000)
            .map(|i| {
                format!(
                    "2024-01-01T00:{:02}:{:02}Z[x|p|c] line {i} ERROR\n",
                    (i / 60) % 60,
                    i % 60
                )
            })
            .collect::<String>(),
    )
    .expect("write");
    let mut janus = runtime.block_on(Guarded::start(
        &store,
        "http://127.0.0.1:1",
        &["--query.timeout=20s", "--ingest.max-body-size=4MB"],
    ));
    let url = janus.url.clone();
    let config = ProptestConfig {
        // More locally: JANUS_FUZZ_CASES=5000 cargo test --test attack_fuzz
        cases: std::env::var("JANUS_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let client = raw_client();
    let seen = std::sync::Mutex::new(BTreeMap::<(&str, u16), usize>::new());
    let note = |what: &'static str, status: &Result<u16, reqwest::Error>| {
        if let (Ok(s), Ok(mut seen)) = (status, seen.lock()) {
            *seen.entry((what, *s)).or_default() += 1;
        }
    };
    proptest!(config, |(query in expression(), params in parameters(), range in any::<bool>(), push in push_request())| {
        runtime.block_on(async {
            let path = if range { "query_range" } else { "query" };
            let mut form = params.clone();
            form.push(("query".into(), query.clone()));
            if !range {
                form.retain(|(k, _)| k != "start" && k != "end" && k != "step");
                form.push(("time".into(), "2024-01-01T00:30:00Z".into()));
            }
            let answer = client
                .post(format!("{url}/api/v1/{path}"))
                .form(&form)
                .timeout(Duration::from_secs(60))
                .send()
                .await;
            let status = answer.map(|a| a.status().as_u16());
            note("query", &status);
            prop_assert!(
                matches!(status, Ok(s) if acceptable(s)),
                "query {:.200} with {:?}: {:?}", query, params, status
            );

            let (content_type, encoding, body) = push;
            let before = snapshot(&store);
            let mut request = client.post(format!("{url}/loki/api/v1/push")).body(body);
            if let Some(t) = content_type {
                request = request.header("Content-Type", t);
            }
            if let Some(e) = encoding {
                request = request.header("Content-Encoding", e);
            }
            let status = request.timeout(Duration::from_secs(60)).send().await.map(|a| a.status().as_u16());
            note("push", &status);
            prop_assert!(matches!(status, Ok(s) if acceptable(s)), "push: {:?}", status);
            if matches!(status, Ok(s) if s >= 400) {
                prop_assert!(before == snapshot(&store), "a refused push changed the store");
            }
            Ok(())
        })?;
    });
    eprintln!(
        "answers by kind and status: {:?}",
        seen.lock().map(|s| s.clone())
    );
    janus.assert_alive_and_bounded("generated attacks");
}
