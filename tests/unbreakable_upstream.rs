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
    janus::connections::raise_open_files_limit();
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
