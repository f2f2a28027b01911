//! Janus tried as an attacker would try it, on 127.0.0.1: the real binary under a memory cap
//! (`prlimit --as`), hit with the requests that used to crash it or take gigabytes. Each must get
//! an answer or a clear 4xx/5xx, the process must live, and its peak RSS must stay under the
//! bound `docs/operations.md` states. Every server here is stopped by its PID.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use support::guarded::Guarded;
use support::{raw_client, temp_dir};

/// A store with one namespace `x` holding `n` lines of `pad` bytes in 2024-01-01 00:00.
fn store_with_lines(n: usize, pad: usize) -> PathBuf {
    let root = temp_dir("attack-store");
    std::fs::create_dir_all(root.join("pod/x")).expect("mkdir");
    let mut text = String::with_capacity(n * (pad + 60));
    for i in 0..n {
        text.push_str(&format!(
            "2024-01-01T00:{:02}:{:02}Z[x|p-{}|c] {i} {}\n",
            (i / 60) % 60,
            i % 60,
            i % 7,
            "y".repeat(pad)
        ));
    }
    std::fs::write(root.join("pod/x/2024-01-01_00.log"), text).expect("write");
    root
}

fn error_type(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["errorType"].as_str().map(str::to_string))
        .unwrap_or_default()
}

const LOG_METRIC: &str = r#"count_over_time(pod{namespace="x"}[1m])"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_and_long_expressions_are_refused_not_fatal() {
    let store = store_with_lines(100, 10);
    let mut janus = Guarded::start(&store, "http://127.0.0.1:1", &[]).await;
    let refused = [
        format!("{}{LOG_METRIC}{}", "abs(".repeat(3000), ")".repeat(3000)),
        format!("{}{LOG_METRIC}{}", "sum(".repeat(2000), ")".repeat(2000)),
        format!("{}{LOG_METRIC}", "1+".repeat(10_000)),
        format!("{LOG_METRIC}{}", "+1".repeat(40_000)),
        format!("{}{LOG_METRIC}", "-".repeat(5000)),
        format!("{}{LOG_METRIC}{}", "(".repeat(5000), ")".repeat(5000)),
    ];
    for query in &refused {
        let (status, body) = janus.post_query(query).await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("nested more than 1000 levels"), "{body}");
    }
    // Flat, and megabytes long: a parsed tree would take ~100 bytes a token, so a query of more
    // tokens than Janus parses is refused before it is parsed, log or metric, wherever the log
    // selector is.
    let matchers = vec![r#"a="x""#; 1 << 20].join(",");
    for query in [
        format!(r#"pod{{namespace="x",{matchers}}}"#),
        format!("up{{{matchers}}} + {LOG_METRIC}"),
    ] {
        let (status, body) = janus.post_query(&query).await;
        assert_eq!(status, 400, "{body}");
        assert!(body.contains("more than 100000 tokens"), "{body}");
    }
    // Just under the bound: answered, in a debug build too.
    let accepted = [
        format!("{}{LOG_METRIC}{}", "abs(".repeat(990), ")".repeat(990)),
        format!("{}{LOG_METRIC}{}", "sum(".repeat(990), ")".repeat(990)),
        format!("{LOG_METRIC}{}", "+1".repeat(990)),
        format!("{}{LOG_METRIC}", "-".repeat(990)),
    ];
    for query in &accepted {
        let (status, body) = janus.post_query(query).await;
        assert_eq!(status, 200, "{body}");
    }
    let nested = format!(
        "{}{LOG_METRIC}{}",
        "max_over_time(".repeat(40),
        "[5m:1m])".repeat(40)
    );
    let (status, body) = janus.post_query(&nested).await;
    assert_eq!(
        (status, error_type(&body)),
        (400, "bad_data".into()),
        "{body}"
    );
    janus.assert_alive_and_bounded("deep expressions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subquery_grids_and_durations_are_bounded() {
    let store = store_with_lines(100, 10);
    let mut janus = Guarded::start(&store, "http://127.0.0.1:1", &[]).await;
    for (query, status, kind) in [
        (
            format!("max_over_time({LOG_METRIC}[100000000y:1ms])"),
            400,
            "bad_data",
        ),
        (
            format!("max_over_time({LOG_METRIC}[1w:1ms])"),
            422,
            "execution",
        ),
        (
            format!("max_over_time({LOG_METRIC}[30d:1ms])"),
            422,
            "execution",
        ),
        (
            r#"pod{namespace="x"}[100000000y]"#.to_string(),
            400,
            "bad_data",
        ),
        (
            r#"count_over_time(pod{namespace="x"}[100000000y])"#.to_string(),
            400,
            "bad_data",
        ),
        (format!("{LOG_METRIC} offset 100000000y"), 400, "bad_data"),
    ] {
        let (got, body) = janus.post_query(&query).await;
        assert_eq!(
            (got, error_type(&body)),
            (status, kind.to_string()),
            "{query}: {body}"
        );
    }
    // NaN and infinite times are evaluated where Prometheus evaluates them.
    for time in ["NaN", "Inf", "-Inf"] {
        let scalar = r#"scalar(sum(count_over_time(pod{namespace="x"}[1m])))"#;
        let (status, body) = janus
            .get("/api/v1/query", &[("query", scalar), ("time", time)])
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("-9223372036.854"), "{body}");
    }
    let (status, body) = janus
        .get(
            "/api/v1/query_range",
            &[
                ("query", LOG_METRIC),
                ("start", "-Inf"),
                ("end", "0"),
                ("step", "1"),
            ],
        )
        .await;
    assert_eq!(status, 400, "{body}");
    janus.assert_alive_and_bounded("subqueries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_large_regexes_cost_a_bounded_budget() {
    let store = store_with_lines(100, 10);
    let mut janus = Guarded::start(&store, "http://127.0.0.1:1", &[]).await;
    let query = format!(
        r#"pod{{namespace="x"}}{}"#,
        r#" |~ "\\w{100}""#.repeat(1000)
    );
    let asks: Vec<_> = (0..4)
        .map(|_| {
            let (url, query) = (janus.url.clone(), query.clone());
            tokio::spawn(async move {
                raw_client()
                    .post(format!("{url}/api/v1/query"))
                    .form(&[("query", query.as_str())])
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    // The async threads stay free while regexes compile.
    let (status, _) = janus.get("/-/healthy", &[]).await;
    assert_eq!(status, 200);
    for ask in asks {
        assert_eq!(ask.await.expect("task").expect("answer"), 400);
    }
    // So do label_replace regexes, nested 300 deep.
    let nested = format!(
        "{}{LOG_METRIC}{}",
        "label_replace(".repeat(300),
        r#", "d", "$1", "pod", "(\\w{100})")"#.repeat(300)
    );
    let (status, body) = janus.post_query(&nested).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("label_replace"), "{body}");
    // Two hundred match[] values share one budget too.
    let matcher = r#"pod{namespace="x", pod=~"\\w{100}"}"#;
    let many: Vec<(&str, &str)> = (0..200).map(|_| ("match[]", matcher)).collect();
    let (status, body) = janus.get("/api/v1/series", &many).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("too large"), "{body}");
    let (status, body) = janus.get("/api/v1/series", &many[..1]).await;
    assert_eq!(status, 200, "{body}");
    let one = r#"pod{namespace="x"} |~ "\\w{100}""#;
    let (status, body) = janus.get("/api/v1/query", &[("query", one)]).await;
    assert_eq!(status, 200, "{body}");
    janus.assert_alive_and_bounded("regexes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_bodies_that_expand_are_bounded() {
    use std::io::Write;
    let store = temp_dir("attack-push");
    let mut janus = Guarded::start(&store, "http://127.0.0.1:1", &[]).await;
    // 63 MB of tiny entries, gzipped to about a hundred kilobytes.
    let mut body =
        br#"{"streams":[{"stream":{"namespace":"x","pod":"p","container":"c"},"values":["#.to_vec();
    let entry = br#"["1704067200000000000",""],"#;
    while body.len() < 63 << 20 {
        body.extend_from_slice(entry);
    }
    body.extend_from_slice(br#"["1704067200000000000",""]]}]}"#);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&body).expect("gzip");
    let gz = gz.finish().expect("gzip");
    let sends: Vec<_> = (0..4)
        .map(|_| {
            let (url, gz) = (janus.url.clone(), gz.clone());
            tokio::spawn(async move {
                raw_client()
                    .post(format!("{url}/loki/api/v1/push"))
                    .header("Content-Type", "application/json")
                    .header("Content-Encoding", "gzip")
                    .body(gz)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            })
        })
        .collect();
    // Each is refused: too many entries (413) or, while another holds the budget it would
    // need to grow into, busy (503, which shippers retry).
    let mut statuses = Vec::new();
    for send in sends {
        statuses.push(send.await.expect("task").expect("answer"));
    }
    assert!(statuses.contains(&413), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 413 || *s == 503),
        "{statuses:?}"
    );
    assert!(
        !store.join("pod").exists(),
        "a refused push wrote to the store"
    );
    // No Content-Type: refused, as a web page's no-preflight fetch would send it.
    let answer = raw_client()
        .post(format!("{}/loki/api/v1/push", janus.url))
        .body(r#"{"streams":[{"stream":{"namespace":"x"},"values":[["1","a"]]}]}"#)
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), 415);
    // Invalid UTF-8 is kept as U+FFFD, and the rest of the batch with it.
    let answer = raw_client()
        .post(format!("{}/loki/api/v1/push", janus.url))
        .header("Content-Type", "application/json")
        .body(&b"{\"streams\":[{\"stream\":{\"namespace\":\"x\",\"pod\":\"p\",\"container\":\"c\"},\"values\":[[\"1704067200000000000\",\"bad \xff byte\"],[\"1704067201000000000\",\"fine\"]]}]}"[..])
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), 204);
    let stored = std::fs::read_to_string(store.join("pod/x/2024-01-01_00.log")).expect("stored");
    assert!(
        stored.contains("bad \u{fffd} byte") && stored.contains("fine"),
        "{stored}"
    );
    janus.assert_alive_and_bounded("push bodies");
    janus.assert_memory_returns("push bodies").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn large_log_answers_stream_to_slow_readers() {
    // 100,000 lines of 4 KB: a 400 MB answer.
    let store = store_with_lines(100_000, 4000);
    let mut janus = Guarded::start(&store, "http://127.0.0.1:1", &[]).await;
    let params = [
        ("query", r#"pod{namespace="x"}"#),
        ("start", "2024-01-01T00:00:00Z"),
        ("end", "2024-01-01T01:00:00Z"),
        ("limit", "100000"),
    ];
    // Four slow readers at once: each reads a little and waits.
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let url = janus.url.clone();
            let params = params.map(|(k, v)| (k.to_string(), v.to_string()));
            tokio::spawn(async move {
                let mut answer = raw_client()
                    .get(format!("{url}/api/v1/query_range"))
                    .query(&params)
                    .send()
                    .await
                    .expect("answer");
                assert_eq!(answer.status(), 200);
                let mut total = 0usize;
                let mut tail = Vec::new();
                while let Some(chunk) = answer.chunk().await.expect("chunk") {
                    total += chunk.len();
                    tail = chunk.to_vec();
                    if total < 64 << 20 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                }
                (total, tail)
            })
        })
        .collect();
    for reader in readers {
        let (total, tail) = reader.await.expect("reader");
        assert!(total > 400_000_000, "answer of {total} bytes");
        assert!(tail.ends_with(b"]}}"), "the answer ends whole");
    }
    janus.assert_alive_and_bounded("four slow readers of 400 MB answers");
    janus.assert_memory_returns("four slow readers").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_metric_over_too_many_streams_stops_early() {
    let root = temp_dir("attack-streams");
    std::fs::create_dir_all(root.join("pod/x")).expect("mkdir");
    let text: String = (0..200_000)
        .map(|i| {
            format!(
                "2024-01-01T00:{:02}:{:02}Z[x|pod-{i}|c] line\n",
                (i / 60) % 60,
                i % 60
            )
        })
        .collect();
    std::fs::write(root.join("pod/x/2024-01-01_00.log"), text).expect("write");
    let mut janus = Guarded::start(&root, "http://127.0.0.1:1", &["--query.max-series=1000"]).await;
    let (status, body) = janus
        .get(
            "/api/v1/query_range",
            &[
                ("query", r#"count_over_time(pod{namespace="x"}[1m])"#),
                ("start", "2024-01-01T00:00:00Z"),
                ("end", "2024-01-01T01:00:00Z"),
                ("step", "1"),
            ],
        )
        .await;
    assert_eq!(
        (status, error_type(&body)),
        (422, "execution".to_string()),
        "{body}"
    );
    assert!(body.contains("more than 1000 streams"), "{body}");
    janus.assert_alive_and_bounded("a log metric over 200,000 streams");
}

/// LogQL pipelines on the Loki API under the memory cap: labels a template makes per line,
/// unwrapped values per line, template bombs, field sampling and a flood of tails all stay
/// within their bounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loki_pipelines_and_tails_are_bounded() {
    let root = temp_dir("attack-loki");
    std::fs::create_dir_all(root.join("pod/x")).expect("mkdir");
    let text: String = (0..100_000)
        .map(|i| {
            format!(
                "2024-01-01T00:{:02}:{:02}Z[x|p-{}|c] id={i} took=5ms level=info\n",
                (i / 60) % 60,
                i % 60,
                i % 7
            )
        })
        .collect();
    std::fs::write(root.join("pod/x/2024-01-01_00.log"), text).expect("write");
    let mut janus = Guarded::start(&root, "http://127.0.0.1:1", &[]).await;
    let window = [
        ("start", "2024-01-01T00:00:00Z"),
        ("end", "2024-01-01T01:00:00Z"),
    ];
    let big = r#"label_format big="{{ repeat 60000 \"x\" }}{{ .id }}""#;
    let refused = [
        (format!(r#"{{namespace="x"}} | logfmt | {big}"#), "100000", "labels of the answer's series exceed 64 MiB"),
        (format!(r#"sum by (big) (count_over_time({{namespace="x"}} | logfmt | {big} [1h]))"#), "100", "exceed 64 MiB"),
        (r#"sum_over_time({namespace="x"} | logfmt | label_format u="{{.id}}" | unwrap id [1h])"#.to_string(), "100", "more than 10000 streams"),
    ];
    for (query, limit, words) in &refused {
        let mut params = vec![("query", query.as_str()), ("limit", limit), ("step", "60")];
        params.extend(window);
        let (status, body) = janus.get("/loki/api/v1/query_range", &params).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body.contains(words), "{query}: {body}");
    }
    // A template that would grow past 64 KiB marks each line and keeps its text.
    let bomb =
        r#"{namespace="x"} | line_format "{{ repeat 60000 \"x\" | repeat 60000 | repeat 60000 }}""#;
    let mut params = vec![("query", bomb), ("limit", "100000")];
    params.extend(window);
    let (status, body) = janus.get("/loki/api/v1/query_range", &params).await;
    assert_eq!(status, 200, "{}", &body[..body.len().min(300)]);
    assert!(body.contains("TemplateFormatErr"));
    let mut params = vec![("query", r#"{namespace="x"}"#), ("line_limit", "100000")];
    params.extend(window);
    let (status, body) = janus.get("/loki/api/v1/detected_fields", &params).await;
    assert_eq!(status, 200, "{body}");
    // A flood of tails: 32 open, the rest refused before the upgrade.
    let url = format!(
        "{}/loki/api/v1/tail?query=%7Bnamespace%3D%22x%22%7D",
        janus.url.replacen("http://", "ws://", 1)
    );
    let mut open = Vec::new();
    let mut refused_tails = 0;
    for _ in 0..40 {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((socket, _)) => open.push(socket),
            Err(_) => refused_tails += 1,
        }
    }
    assert_eq!((open.len(), refused_tails), (32, 8));
    drop(open);
    janus.assert_alive_and_bounded("Loki pipelines and tails");
}

/// TLS and basic auth tried as an attacker would: hundreds of connections that never finish
/// their handshake, garbage instead of a ClientHello, and a flood of wrong passwords (each one
/// a bcrypt check). Stalled handshakes are dropped after the head timeout, bcrypt checks wait
/// their turn, a real client still gets in, and memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshakes_and_password_guessing_are_bounded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let root = temp_dir("attack-tls");
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("certificate");
    std::fs::write(root.join("server.pem"), certified.cert.pem()).expect("cert");
    std::fs::write(root.join("server.key"), certified.key_pair.serialize_pem()).expect("key");
    let hash = bcrypt::hash("right", 10).expect("bcrypt");
    let config = root.join("web.yml");
    std::fs::write(
        &config,
        format!("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\nbasic_auth_users:\n  alice: {hash}\n"),
    )
    .expect("web.yml");
    let store = root.join("store");
    let web = format!("--web.config.file={}", config.display());
    let mut janus = Guarded::start_tls(
        &store,
        "http://127.0.0.1:1",
        &[
            &web,
            "--web.read-header-timeout=1s",
            "--web.max-connections=256",
        ],
    )
    .await;
    let address = janus.url.trim_start_matches("https://").to_string();

    // Connections that open and say nothing, or say garbage.
    let mut stalled = Vec::new();
    for _ in 0..200 {
        if let Ok(socket) = tokio::net::TcpStream::connect(&address).await {
            stalled.push(socket);
        }
    }
    let mut garbage = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let _ = garbage.write_all(&vec![0x16; 64 << 10]).await;
    // After the head timeout every one of them is closed by the server.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for socket in stalled.iter_mut().chain(std::iter::once(&mut garbage)) {
        // The server may send an alert first; then it closes.
        let closed = async {
            let mut buf = [0u8; 512];
            while let Ok(n) = socket.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        };
        assert!(
            tokio::time::timeout(Duration::from_secs(5), closed)
                .await
                .is_ok(),
            "a stalled handshake was kept open"
        );
    }
    drop(stalled);

    // Wrong passwords, forty at once: every one refused, none taking the server down.
    let client = support::guarded::unverified_tls_client();
    let labels = format!("{}/loki/api/v1/labels", janus.url);
    let guesses = (0..40).map(|i| {
        let request = client
            .get(&labels)
            .basic_auth(
                if i % 2 == 0 { "alice" } else { "mallory" },
                Some(format!("guess-{i}")),
            )
            .send();
        async move { request.await.map(|r| r.status().as_u16()).unwrap_or(0) }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    assert!(statuses.iter().all(|&s| s == 401), "{statuses:?}");
    // The right password still gets in.
    let status = client
        .get(&labels)
        .basic_auth("alice", Some("right"))
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0);
    assert_eq!(status, 200);
    janus.assert_alive_and_bounded("TLS handshakes and password guessing");
    let _ = std::fs::remove_dir_all(&root);
}

/// A restricted tenant's queries are parsed, confined and printed by Janus before they are
/// forwarded, so a tenant (or a stolen token) can drive that work: nesting far past the depth
/// bound, regexes past the budget (in one query, and shared by many `match[]`), a wide flat
/// selector of megabytes, and thousands of distinct queries to fill the remembered confined
/// texts. Each is answered (refused with 400, or confined and forwarded to an upstream that is
/// down: 503), and memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_crafted_queries_are_bounded() {
    let root = temp_dir("attack-tenant");
    std::fs::write(root.join("t.tokens"), "token-of-t\n").expect("tokens");
    let tenants = root.join("tenants.yml");
    std::fs::write(
        &tenants,
        "tenants:\n  t:\n    bearer_token_files: [t.tokens]\n    namespaces: [shop]\n",
    )
    .expect("tenants.yml");
    let flag = format!("--auth.tenants-file={}", tenants.display());
    let mut janus = Guarded::start(&root.join("store"), "http://127.0.0.1:1", &[&flag]).await;
    let base = janus.url.clone();
    let ask = |path: &'static str, form: Vec<(&'static str, String)>| {
        let url = format!("{base}{path}");
        async move {
            let answer = raw_client()
                .post(url)
                .bearer_auth("token-of-t")
                .form(&form)
                .timeout(Duration::from_secs(120))
                .send()
                .await
                .expect("an answer, not a dropped connection");
            let status = answer.status().as_u16();
            (status, answer.text().await.unwrap_or_default())
        }
    };

    let deep = format!("{}up{}", "(".repeat(200_000), ")".repeat(200_000));
    let negated = format!("{}up", "-".repeat(200_000));
    let regexes = (0..8)
        .map(|i| format!(r#"l{i}=~"(?:\\w{{400}}){{40}}""#))
        .collect::<Vec<_>>()
        .join(",");
    let regex_bomb = format!("up{{{regexes}}}");
    for (what, query) in [
        ("deep brackets", deep),
        ("deep negation", negated),
        ("regex bomb", regex_bomb),
    ] {
        let (status, body) = ask("/api/v1/query", vec![("query", query)]).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert_eq!(error_type(&body), "bad_data", "{what}: {body}");
    }
    // Many `match[]` share one regex budget: each alone would fit, together they do not.
    let matches: Vec<(&str, String)> = (0..64)
        .map(|i| ("match[]", format!(r#"up{{l{i}=~"(?:\\w{{100}}){{30}}"}}"#)))
        .collect();
    let (status, body) = ask("/api/v1/series", matches).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("too large"), "{body}");
    // A flat selector of 8 MiB: past the tokens Janus parses (it would take ~400 MB), refused;
    // one just within them is confined and forwarded (the upstream is down: 503).
    let wide = format!("up{{{}}}", vec![r#"a="x""#; 1 << 20].join(","));
    let (status, body) = ask("/api/v1/query", vec![("query", wide)]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("tokens"), "{body}");
    let within = format!("up{{{}}}", vec![r#"a="x""#; 24_000].join(","));
    let (status, body) = ask("/api/v1/query", vec![("query", within)]).await;
    assert_eq!(status, 503, "{body}");
    janus.assert_alive_and_bounded("a tenant's deep, regex-heavy and wide queries");
    // Thousands of distinct queries of 4 KiB: remembered within their bytes.
    let padding = "p".repeat(4 << 10);
    for batch in 0..60 {
        let asks = (0..25).map(|i| {
            let query = format!(r#"sum(up{{job="{batch}-{i}-{padding}"}})"#);
            ask("/api/v1/query", vec![("query", query)])
        });
        for (status, body) in futures_util::future::join_all(asks).await {
            assert_eq!(status, 503, "{body}");
        }
    }
    janus.assert_alive_and_bounded("1,500 distinct confined queries");
    let _ = std::fs::remove_dir_all(&root);
}

/// Form bodies of the largest size Janus reads (16 MiB), forty at once: each is read whole and
/// decoded into parameters, so together they would take well over a gigabyte. Their room is
/// taken from one budget first; every request is answered (here the upstream is down: 503) and
/// memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_size_form_bodies_at_once_are_bounded() {
    let store = store_with_lines(10, 10);
    let mut janus = Guarded::start(&store, "http://127.0.0.1:1", &[]).await;
    let pad = "p".repeat((16 << 20) - 64);
    let body = bytes::Bytes::from(format!("query=vector(1)&time=1&pad={pad}"));
    let asks = (0..40).map(|_| {
        let request = raw_client()
            .post(format!("{}/api/v1/query", janus.url))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .timeout(Duration::from_secs(120))
            .send();
        async move {
            match request.await {
                Ok(r) => r.status().as_u16(),
                Err(e) => panic!("a request was not answered: {e}"),
            }
        }
    });
    let statuses = futures_util::future::join_all(asks).await;
    assert!(statuses.iter().all(|&s| s == 503), "{statuses:?}");
    janus.assert_alive_and_bounded("forty 16 MiB form bodies at once");
}

/// Rule templates whose values grow — doubled, padded, escaped, expanded, nested wide or deep
/// — at load (a reload renders each template once) and when the alert fires. A 2 KB rule file
/// doubling one value forty times used to abort the process as it loaded; now each such
/// template renders Prometheus's `<error expanding template: …>` and Janus goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_templates_that_grow_are_bounded() {
    let store = temp_dir("attack-rules-store");
    let dir = temp_dir("attack-rules");
    let rules = dir.join("rules.yml");
    let rule = |annotations: &str| {
        format!(
            "groups:\n  - name: g\n    interval: 1s\n    rules:\n      - alert: Grows\n        expr: count_over_time(pod{{namespace=\"x\"}}[1h]) > 0\n        annotations:\n{annotations}"
        )
    };
    std::fs::write(&rules, rule("          summary: fine\n")).expect("rules");
    let rules_flag = format!("--rules.file={}", rules.display());
    let mut janus = Guarded::start(
        &store,
        "http://127.0.0.1:1",
        &[&rules_flag, "--rules.evaluation-interval=1s"],
    )
    .await;
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos()
        .to_string();
    let pushed = raw_client()
        .post(format!("{}/loki/api/v1/push", janus.url))
        .header("Content-Type", "application/json")
        .body(
            serde_json::json!({"streams": [{"stream": {"namespace": "x", "pod": "p", "container": "c"}, "values": [[now_ns, "a line"]]}]})
                .to_string(),
        )
        .send()
        .await
        .expect("push");
    assert_eq!(pushed.status(), 204);

    let doubling: String = (0..40)
        .map(|i| format!("{{{{ $v{} := print $v{i} $v{i} }}}}", i + 1))
        .collect();
    let nesting: String = (0..40)
        .map(|i| format!("{{{{ $m{} := args $m{i} $m{i} }}}}", i + 1))
        .collect();
    let hostile = [
        ("doubled", format!("{{{{ $v0 := \"xxxxxxxxxxxxxxxx\" }}}}{doubling}{{{{ len $v40 }}}}")),
        ("padded", "{{ printf \"%65535d%65535d%65535d%65535d%65535d%65535d%65535d%65535d\" 1 2 3 4 5 6 7 8 | len }}".to_string()),
        ("escaped", "{{ $a := printf \"%60000s\" \"<\" }}{{ $b := html $a }}{{ $c := html $b }}{{ len $c }}".to_string()),
        ("expanded", "{{ $a := printf \"%60000s\" \"x\" }}{{ reReplaceAll \".\" \"$0$0$0$0$0$0$0$0$0$0$0$0\" $a | len }}".to_string()),
        ("nested", format!("{{{{ $m0 := args 1 2 }}}}{nesting}{{{{ $m40 }}}}")),
        ("deep", "{{ $m := args 1 }}{{ range $i := 100000 }}{{ $m = args $m }}{{ end }}{{ len $m }}".to_string()),
    ];
    let annotations: String = hostile
        .iter()
        .map(|(name, t)| format!("          {name}: '{t}'\n"))
        .collect();
    std::fs::write(&rules, rule(&annotations)).expect("rules");
    let reloaded = raw_client()
        .post(format!("{}/-/reload", janus.url))
        .send()
        .await
        .expect("reload");
    assert_eq!(reloaded.status(), 200, "{:?}", reloaded.text().await);
    janus.assert_alive_and_bounded("reloading rule templates that grow");

    // The alert fires (a line in the last hour) and its annotations render, each to its error.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let annotations = loop {
        let (status, body) = janus.get("/api/v1/alerts", &[]).await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let found = v["data"]["alerts"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["labels"]["alertname"] == "Grows"))
            .map(|a| a["annotations"].clone());
        if let Some(found) = found.filter(|a| a.get("doubled").is_some()) {
            break found;
        }
        assert!(std::time::Instant::now() < deadline, "no alert: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for (name, _) in &hostile {
        let text = annotations[*name].as_str().unwrap_or_default();
        let refusal = if *name == "deep" {
            "nest maps more than 32 deep"
        } else {
            "larger than"
        };
        assert!(
            text.starts_with("<error expanding template: ") && text.contains(refusal),
            "{name}: {text}"
        );
    }
    janus.assert_alive_and_bounded("rendering rule templates that grow");
}
