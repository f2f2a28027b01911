//! Faults between Janus and its upstream: stopped, absent, slow, a client that goes away, a full
//! query queue, and what crosses the hop (headers, credentials, compressed and large bodies).

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use support::{closed_port_url, raw_client, required_env, start_janus, temp_dir};
use tokio::net::TcpListener;

/// Serves `router` on a free loopback port; the server lives until the test's runtime ends.
async fn fake_upstream(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    url
}

async fn json_error(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let bytes = response.bytes().await.expect("body");
    let body: serde_json::Value = serde_json::from_slice(&bytes).expect("json error body");
    assert_eq!(body["status"], "error");
    (
        status,
        body["errorType"].as_str().unwrap_or_default().to_string(),
        body["error"].as_str().unwrap_or_default().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_prometheus_gives_unavailable_within_a_second() {
    let binary = required_env("JANUS_TEST_PROMETHEUS_BIN");
    let data = temp_dir("prom");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let config = data.join("prometheus.yml");
    std::fs::write(&config, "global: {}\n").expect("config");
    let mut prometheus = std::process::Command::new(binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            data.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prometheus starts");
    let upstream = format!("http://127.0.0.1:{port}");
    let client = raw_client();
    let mut ready = false;
    for _ in 0..300 {
        if let Ok(r) = client.get(format!("{upstream}/-/ready")).send().await {
            if r.status() == 200 {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "prometheus did not become ready");

    let janus = start_janus(&upstream, |_| {}).await;
    let query = format!("{}/api/v1/query?query=vector(1)&time=1", janus.url);
    let answer = client.get(&query).send().await.expect("answer");
    assert_eq!(answer.status(), 200);

    prometheus.kill().expect("kill prometheus");
    prometheus.wait().expect("reaped");
    // What the results cache holds is still answered (time=1 can no longer change).
    let answer = client.get(&query).send().await.expect("answer");
    assert_eq!(answer.status(), 200);
    let query = format!("{}/api/v1/query?query=vector(1)&time=2", janus.url);
    let started = Instant::now();
    let answer = client.get(&query).send().await.expect("answer");
    let elapsed = started.elapsed();
    let (status, kind, message) = json_error(answer).await;
    assert_eq!((status, kind.as_str()), (503, "unavailable"), "{message}");
    assert!(message.contains(&upstream), "{message}");
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");

    // Janus itself stays healthy and ready: logs must stay served while the upstream is down.
    for path in ["/-/healthy", "/-/ready", "/", "/metrics"] {
        let r = client
            .get(format!("{}{path}", janus.url))
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), 200, "{path}");
    }
    janus.stop().await;
    let _ = std::fs::remove_dir_all(data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_upstream_janus_answers_and_says_how_to_point_it() {
    let janus = start_janus(&closed_port_url().await, |_| {}).await;
    let client = raw_client();
    let answer = client
        .post(format!("{}/api/v1/query", janus.url))
        .form(&[("query", "up")])
        .send()
        .await
        .expect("answer");
    let (status, kind, message) = json_error(answer).await;
    assert_eq!((status, kind.as_str()), (503, "unavailable"));
    assert!(message.contains("--upstream.url"), "{message}");
    let page = client.get(&janus.url).send().await.expect("page");
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("text");
    assert!(
        page.contains("Janus") && page.contains("Upstream"),
        "{page}"
    );
    let metrics = janus.metrics().await;
    assert!(
        metrics.contains("janus_upstream_errors_total{reason=\"unreachable\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains(
        "janus_http_requests_total{handler=\"/api/v1/query\",code=\"503\",face=\"metric\"} 1"
    ));
    janus.stop().await;
}

/// An upstream that never answers; counts the requests whose connection Janus dropped.
fn hanging_upstream(dropped: Arc<Mutex<usize>>) -> Router {
    struct Guard(Arc<Mutex<usize>>);
    impl Drop for Guard {
        fn drop(&mut self) {
            if let Ok(mut n) = self.0.lock() {
                *n += 1;
            }
        }
    }
    Router::new().route(
        "/api/v1/query",
        get(move || {
            let guard = Guard(Arc::clone(&dropped));
            async move {
                let _guard = guard;
                tokio::time::sleep(Duration::from_secs(60)).await;
                "too late"
            }
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_upstream_times_out_at_the_deadline() {
    let dropped = Arc::new(Mutex::new(0));
    let upstream = fake_upstream(hanging_upstream(Arc::clone(&dropped))).await;
    let janus = start_janus(&upstream, |c| c.query_timeout = Duration::from_secs(1)).await;
    let client = raw_client();

    let started = Instant::now();
    let answer = client
        .get(format!("{}/api/v1/query?query=up", janus.url))
        .send()
        .await
        .expect("answer");
    let elapsed = started.elapsed();
    let (status, kind, message) = json_error(answer).await;
    assert_eq!((status, kind.as_str()), (503, "timeout"), "{message}");
    assert!(
        elapsed >= Duration::from_secs(1) && elapsed < Duration::from_millis(1800),
        "{elapsed:?}"
    );

    // A smaller `timeout` parameter wins over --query.timeout (plus the upstream's grace).
    let started = Instant::now();
    let answer = client
        .get(format!("{}/api/v1/query?query=up&timeout=200ms", janus.url))
        .send()
        .await
        .expect("answer");
    let elapsed = started.elapsed();
    assert_eq!(json_error(answer).await.1, "timeout");
    assert!(elapsed < Duration::from_secs(1), "{elapsed:?}");

    // Both abandoned upstream requests were cancelled, not left running.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(*dropped.lock().expect("lock"), 2);
    janus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_cancels_the_upstream_request() {
    use tokio::io::AsyncWriteExt;
    let dropped = Arc::new(Mutex::new(0));
    let upstream = fake_upstream(hanging_upstream(Arc::clone(&dropped))).await;
    let janus = start_janus(&upstream, |_| {}).await;
    let address = janus.url.trim_start_matches("http://").to_string();
    let mut stream = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    stream
        .write_all(b"GET /api/v1/query?query=up HTTP/1.1\r\nHost: janus\r\n\r\n")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        *dropped.lock().expect("lock"),
        0,
        "upstream request still running"
    );
    drop(stream);
    let started = Instant::now();
    while *dropped.lock().expect("lock") == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the upstream request outlived its client"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    janus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_beyond_max_concurrency_wait_in_the_queue() {
    let upstream = fake_upstream(Router::new().route(
        "/api/v1/query",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(600)).await;
            "{}"
        }),
    ))
    .await;
    let janus = start_janus(&upstream, |c| c.query_max_concurrency = 1).await;
    let client = raw_client();
    let url = format!("{}/api/v1/query?query=up", janus.url);
    let first = tokio::spawn(client.get(&url).send());
    let second = tokio::spawn(client.get(&url).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = janus.metrics().await;
    assert!(metrics.contains("janus_query_queue_length 1"), "{metrics}");
    assert!(
        metrics.contains("janus_http_requests_in_flight 3"),
        "{metrics}"
    );
    let started = Instant::now();
    for answer in [first, second] {
        assert_eq!(answer.await.expect("joined").expect("answer").status(), 200);
    }
    // The second waited for the first: serial, not parallel.
    assert!(started.elapsed() >= Duration::from_millis(800));
    janus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_credentials_and_gzip_cross_the_hop_as_they_should() {
    let seen: Arc<Mutex<Option<HeaderMap>>> = Arc::new(Mutex::new(None));
    let record = Arc::clone(&seen);
    let gzip_body: Vec<u8> = {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(br#"{"status":"success","data":[]}"#)
            .expect("gzip");
        e.finish().expect("gzip")
    };
    let body = gzip_body.clone();
    let upstream = fake_upstream(Router::new().route(
        "/prefix/api/v1/labels",
        get(move |headers: HeaderMap| {
            let body = body.clone();
            if let Ok(mut slot) = record.lock() {
                *slot = Some(headers);
            }
            async move {
                Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", "application/json")
                    .header("content-encoding", "gzip")
                    .header("vary", "Origin")
                    .header("warning", "299 - \"partial answer\"")
                    .header("connection", "x-internal")
                    .header("x-internal", "hop")
                    .body(Body::from(body))
                    .expect("response")
            }
        }),
    ))
    .await;
    let janus = start_janus(&format!("{upstream}/prefix/"), |c| {
        c.upstream_auth = janus::config::UpstreamAuth::Basic {
            username: "u".into(),
            password: "p".into(),
        };
    })
    .await;
    let answer = raw_client()
        .get(format!("{}/api/v1/labels", janus.url))
        .header("Accept-Encoding", "gzip")
        .header("X-Scope-OrgID", "tenant-a")
        .header("X-Not-Forwarded", "secret")
        .send()
        .await
        .expect("answer");
    assert_eq!(answer.status(), 200);
    let headers = answer.headers().clone();
    assert_eq!(headers["content-encoding"], "gzip");
    assert_eq!(headers["vary"], "Origin");
    assert_eq!(headers["warning"], "299 - \"partial answer\"");
    assert!(
        headers.get("x-internal").is_none(),
        "hop-by-hop header leaked"
    );
    assert_eq!(answer.bytes().await.expect("body").to_vec(), gzip_body);

    let upstream_saw = seen
        .lock()
        .expect("lock")
        .clone()
        .expect("upstream was called");
    assert_eq!(upstream_saw["x-scope-orgid"], "tenant-a");
    assert_eq!(upstream_saw["accept-encoding"], "gzip");
    assert_eq!(upstream_saw["authorization"], "Basic dTpw");
    assert!(upstream_saw.get("x-not-forwarded").is_none());
    janus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_answers_stream_through_intact() {
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 64;
    let upstream = fake_upstream(Router::new().route(
        "/api/v1/query_range",
        get(|| async {
            let chunks = (0..CHUNKS).map(|i| {
                Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b'a' + (i % 26) as u8; CHUNK]))
            });
            Response::builder()
                .header("content-type", "application/json")
                .body(Body::from_stream(futures_util::stream::iter(chunks)))
                .expect("response")
        }),
    ))
    .await;
    let janus = start_janus(&upstream, |_| {}).await;
    let mut answer = raw_client()
        .get(format!("{}/api/v1/query_range?query=x", janus.url))
        .send()
        .await
        .expect("answer");
    let mut total = 0usize;
    let mut checksum = 0u64;
    while let Some(chunk) = answer.chunk().await.expect("chunk") {
        for &b in chunk.iter() {
            checksum = checksum.wrapping_mul(31).wrapping_add(u64::from(b));
        }
        total += chunk.len();
    }
    let mut expected = 0u64;
    for i in 0..CHUNKS {
        for _ in 0..CHUNK {
            expected = expected
                .wrapping_mul(31)
                .wrapping_add(u64::from(b'a' + (i % 26) as u8));
        }
    }
    assert_eq!(total, CHUNK * CHUNKS);
    assert_eq!(checksum, expected);
    janus.stop().await;
}
