//! Attacks through the network rather than the query: an upstream that trickles its answers or
//! sends a huge one, and a flood of idle connections under a service's usual `ulimit -n 1024`.
//! The real binary under a memory cap; every server here runs on 127.0.0.1 and is stopped.

mod support;

use std::time::{Duration, Instant};

use support::guarded::Guarded;
use support::{raw_client, temp_dir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone, Copy)]
enum Upstream {
    /// Answers the head of every query, then one byte a second.
    Trickle,
    /// Answers every query with an endless vector of distinct series, as fast as it can.
    Huge,
}

/// A hand-made upstream on a free port; its `/-/ready` answers at once. Runs until the test's
/// runtime ends.
async fn fake_upstream(kind: Upstream) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                if head.starts_with(b"GET /-/ready") {
                    let _ = socket
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await;
                    return;
                }
                match kind {
                    Upstream::Trickle => {
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
                            .await;
                        for _ in 0..300 {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            if socket.write_all(b" ").await.is_err() {
                                return;
                            }
                        }
                    }
                    Upstream::Huge => {
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                            .await;
                        let chunk = |text: &str| format!("{:x}\r\n{text}\r\n", text.len());
                        let head =
                            r#"{"status":"success","data":{"resultType":"vector","result":["#;
                        if socket.write_all(chunk(head).as_bytes()).await.is_err() {
                            return;
                        }
                        // Up to 20 million series (over a gigabyte) unless the reader stops.
                        for batch in 0..20_000u64 {
                            let mut text = String::new();
                            for i in 0..1000 {
                                let comma = if batch == 0 && i == 0 { "" } else { "," };
                                text.push_str(&format!(
                                    r#"{comma}{{"metric":{{"__name__":"up","instance":"{batch}-{i}"}},"value":[1704069000,"1"]}}"#
                                ));
                            }
                            if socket.write_all(chunk(&text).as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        let _ = socket.write_all(chunk("]}}").as_bytes()).await;
                        let _ = socket.write_all(b"0\r\n\r\n").await;
                    }
                }
            });
        }
    });
    url
}

fn store_with_a_line() -> std::path::PathBuf {
    let root = temp_dir("upstream-attack");
    std::fs::create_dir_all(root.join("pod/x")).expect("mkdir");
    std::fs::write(
        root.join("pod/x/2024-01-01_00.log"),
        "2024-01-01T00:29:30Z[x|p|c] hello\n",
    )
    .expect("write");
    root
}

const MIXED: &str = r#"sum(count_over_time(pod{namespace="x"}[1m])) + sum(up)"#;
const LOGS_ONLY: &str = r#"sum(count_over_time(pod{namespace="x"}[1m]))"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_trickling_upstream_holds_nothing_past_the_deadline() {
    let upstream = fake_upstream(Upstream::Trickle).await;
    let store = store_with_a_line();
    let mut janus = Guarded::start(
        &store,
        &upstream,
        &["--query.timeout=3s", "--query.max-concurrency=2"],
    )
    .await;
    // Six requests that wait on the upstream: more than its two slots.
    let mut waiting = Vec::new();
    for i in 0..6 {
        let url = janus.url.clone();
        waiting.push(tokio::spawn(async move {
            let started = Instant::now();
            let request = if i % 2 == 0 {
                raw_client()
                    .get(format!("{url}/api/v1/query"))
                    .query(&[("query", MIXED), ("time", "2024-01-01T00:30:00Z")])
            } else {
                raw_client().get(format!("{url}/api/v1/labels"))
            };
            let answer = request.send().await.expect("answer");
            let status = answer.status().as_u16();
            let body = answer.text().await.unwrap_or_default();
            (i, status, body, started.elapsed())
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The log face is not starved meanwhile.
    let (status, body) = janus
        .get(
            "/api/v1/query",
            &[("query", LOGS_ONLY), ("time", "2024-01-01T00:30:00Z")],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""1"]"#), "{body}");
    for task in waiting {
        let (i, status, body, took) = task.await.expect("task");
        assert!(
            took < Duration::from_secs(20),
            "request {i} took {took:?}, past its 3s deadline"
        );
        if i % 2 == 0 {
            assert_eq!(status, 503, "{body}");
        } else {
            // Labels answer from the store, with a warning about the upstream.
            assert_eq!(status, 200, "{body}");
            assert!(
                body.contains("namespace") && body.contains("warnings"),
                "{body}"
            );
        }
    }
    janus.assert_alive_and_bounded("a trickling upstream");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_huge_pushed_down_answer_stops_at_the_sample_budget() {
    let upstream = fake_upstream(Upstream::Huge).await;
    let store = store_with_a_line();
    let mut janus = Guarded::start(&store, &upstream, &["--query.max-samples=1000000"]).await;
    let (status, body) = janus
        .get(
            "/api/v1/query",
            &[("query", MIXED), ("time", "2024-01-01T00:30:00Z")],
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("too many samples"), "{body}");
    janus.assert_alive_and_bounded("a huge pushed-down answer");
    janus
        .assert_memory_returns("a huge pushed-down answer")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_connections_cannot_stop_queries() {
    // This process opens over a thousand sockets too.
    janus::server::connections::raise_open_files_limit();
    let store = store_with_a_line();
    let mut janus = Guarded::start_with_open_files(
        &store,
        "http://127.0.0.1:1",
        &["--web.idle-timeout=2s", "--web.read-header-timeout=2s"],
        1024,
    )
    .await;
    let address = janus.url.trim_start_matches("http://").to_string();
    let mut idle = Vec::new();
    for _ in 0..1030 {
        match tokio::net::TcpStream::connect(&address).await {
            Ok(socket) => idle.push(socket),
            Err(e) => panic!("connecting: {e}"),
        }
    }
    // Slowloris: heads that never end.
    for socket in idle.iter_mut().take(100) {
        let _ = socket
            .write_all(b"GET /api/v1/query?query=up HTTP/1.1\r\nX: ")
            .await;
    }
    // Within a few idle timeouts the flood is gone and queries are answered again.
    let started = Instant::now();
    loop {
        let answered = raw_client()
            .get(format!("{}/api/v1/query", janus.url))
            .query(&[("query", LOGS_ONLY), ("time", "2024-01-01T00:30:00Z")])
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map(|a| a.status().as_u16());
        if matches!(answered, Ok(200)) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "queries still refused after {:?}: {answered:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let metrics = janus.get("/metrics", &[]).await.1;
    let refused = metrics
        .lines()
        .find_map(|l| l.strip_prefix("janus_http_connections_refused_total "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(
        refused > 0,
        "connections over --web.max-connections are counted"
    );
    drop(idle);
    janus.assert_alive_and_bounded("a flood of idle connections");
}

/// A Prometheus-shaped upstream answering every range query with 25 series on the asked grid,
/// labelled with the query (so distinct queries make distinct entries).
async fn matrix_upstream() -> String {
    use axum::routing::get;
    async fn answer(uri: axum::http::Uri, body: axum::body::Bytes) -> axum::response::Response {
        use axum::response::IntoResponse;
        let params: std::collections::HashMap<String, String> =
            form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
                .chain(form_urlencoded::parse(&body))
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        let seconds = |k: &str| -> i64 {
            params
                .get(k)
                .and_then(|v| v.parse::<f64>().ok())
                .map_or(0, |v| v as i64)
        };
        let (start, end, step) = (seconds("start"), seconds("end"), seconds("step").max(1));
        let query = params.get("query").cloned().unwrap_or_default();
        let mut out =
            String::from(r#"{"status":"success","data":{"resultType":"matrix","result":["#);
        for i in 0..25 {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&format!(
                r#"{{"metric":{{"i":"{i:02}","q":{}}},"values":["#,
                serde_json::Value::String(query.clone())
            ));
            let mut t = start;
            let mut first = true;
            while t <= end {
                if !first {
                    out.push(',');
                }
                first = false;
                out.push_str(&format!(r#"[{t},"{i}"]"#));
                t += step;
            }
            out.push_str("]}");
        }
        out.push_str("]}}");
        (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            out,
        )
            .into_response()
    }
    let app = axum::Router::new()
        .route("/api/v1/query_range", get(answer).post(answer))
        .route("/-/ready", get(|| async { "ok" }));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

/// Hundreds of distinct range queries whose answers would take hundreds of megabytes to keep:
/// the results cache holds at most `--query.cache-size` (evicting the rest), every answer is
/// still the upstream's, and memory stays bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_results_cache_stays_within_its_size() {
    let upstream = matrix_upstream().await;
    let mut janus = Guarded::start(
        &store_with_a_line(),
        &upstream,
        // 64 MB: an answer of 1.5 MB is within the 1/32 of the cache one request may assemble.
        &["--query.cache-size=64MB", "--query.split-interval=6h"],
    )
    .await;
    let client = raw_client();
    let ask = |base: String, query: String| {
        let client = client.clone();
        async move {
            let r = client
                .get(format!("{base}/api/v1/query_range"))
                .query(&[
                    ("query", query.as_str()),
                    ("start", "1704067200"),
                    ("end", "1704153600"),
                    ("step", "60"),
                ])
                .send()
                .await
                .expect("answer");
            (r.status().as_u16(), r.bytes().await.expect("body"))
        }
    };
    for batch in 0..25 {
        let asks = (0..8).map(|i| ask(janus.url.clone(), format!("load{{n=\"{batch}-{i}\"}}")));
        for (status, body) in futures_util::future::join_all(asks).await {
            assert_eq!(status, 200);
            assert!(body.len() > 500_000, "{}", body.len());
        }
    }
    // Asked again, cached or not, the answer is the upstream's for the whole query.
    let query = "load{n=\"24-7\"}".to_string();
    let (_, through) = ask(janus.url.clone(), query.clone()).await;
    let (_, direct) = ask(upstream.clone(), query).await;
    assert_eq!(through, direct);
    let (_, metrics) = janus.get("/metrics", &[]).await;
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1.0)
    };
    let held = value(r#"janus_cache_bytes{face="metric"}"#);
    assert!(
        held > 0.0 && held <= f64::from(64 << 20),
        "cache holds {held} bytes"
    );
    assert!(value(r#"janus_cache_evictions_total{face="metric"}"#) > 0.0);
    janus.assert_alive_and_bounded("200 distinct range queries of 1.5 MB through a 64 MB cache");
}

/// Finding 10 of the second round: with the cache on, a range answer was read whole, parsed,
/// joined and written again however large (594 MB RSS after a 64 MB answer twice). An answer
/// larger than 1/32 of the cache (half the largest entry) now streams through as it does
/// without the cache: the same bytes, nothing kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn answers_too_large_to_keep_stream_through() {
    let upstream = matrix_upstream().await;
    let mut janus = Guarded::start(
        &store_with_a_line(),
        &upstream,
        &["--query.cache-size=8MB", "--query.split-interval=6h"],
    )
    .await;
    let client = raw_client();
    let params = [
        ("query", "load{n=\"big\"}"),
        ("start", "1704067200"),
        ("end", "1704153600"),
        ("step", "60"),
    ];
    let ask = |base: &str| {
        client
            .get(format!("{base}/api/v1/query_range"))
            .query(&params)
            .send()
    };
    let direct = ask(&upstream)
        .await
        .expect("answer")
        .bytes()
        .await
        .expect("body");
    assert!(direct.len() > 8_000_000 / 32, "{}", direct.len());
    for _ in 0..2 {
        let through = ask(&janus.url).await.expect("answer");
        assert_eq!(through.status().as_u16(), 200);
        assert_eq!(through.bytes().await.expect("body"), direct);
    }
    let (_, metrics) = janus.get("/metrics", &[]).await;
    assert!(
        metrics
            .lines()
            .any(|l| l == r#"janus_cache_bytes{face="metric"} 0"#),
        "{}",
        metrics
            .lines()
            .filter(|l| l.starts_with("janus_cache_bytes"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    janus.assert_alive_and_bounded("an answer over 1/32 of the cache, twice");
}
