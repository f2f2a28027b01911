//! Shared by the integration tests: an in-process Janus on a free port, environment lookups, and
//! tiny hand-made upstreams for the fault tests.
#![allow(dead_code)]

pub mod alertmanager;
pub mod browser;
pub mod clickhouse;
pub mod guarded;
pub mod prometheus;

use std::path::PathBuf;
use std::time::Duration;

use janus::config::Config;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A Janus serving in this process; stopped (gracefully) on drop.
pub struct TestJanus {
    pub url: String,
    pub storage: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl TestJanus {
    /// Stops the server and waits until it has returned.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestJanus {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_dir_all(&self.storage);
    }
}

pub fn temp_dir(tag: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "janus-test-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Starts Janus in front of `upstream` with the defaults, adjusted by `adjust`.
pub async fn start_janus(upstream: &str, adjust: impl FnOnce(&mut Config)) -> TestJanus {
    let storage = temp_dir("store");
    let mut config = Config::defaults();
    config.upstream_url = upstream.parse().expect("upstream url");
    config.storage_path = storage.clone();
    config.listen_address = "127.0.0.1:0".parse().expect("addr");
    config.shutdown_timeout = Duration::from_secs(5);
    // Test trees hold old dates (Lethe's is from 2009): retention would delete them.
    config.retention_time = Duration::ZERO;
    // The second pass of the test command runs the suites again with logs in ClickHouse.
    if let Some(url) = clickhouse_log_store() {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        config.storage_clickhouse = Some(janus::logstore::clickhouse::Settings {
            connection: janus::logstore::clickhouse::client::Connection {
                url,
                ..Default::default()
            },
            database: format!(
                "suite_{}_{}",
                std::process::id(),
                N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
            cluster: None,
        });
    }
    adjust(&mut config);
    // With logs in ClickHouse, a tree the test put under the store's path is imported there.
    if let Some(settings) = config.storage_clickhouse.clone() {
        let tree = config.storage_path.clone();
        if tree.join("pod").is_dir() || tree.join("node").is_dir() {
            tokio::task::spawn_blocking(move || {
                let store = janus::logstore::clickhouse::ClickHouse::open(
                    &settings,
                    std::sync::Arc::new(janus::telemetry::Metrics::new()),
                )
                .expect("clickhouse opens");
                let progress = temp_dir("import").join("progress");
                janus::logstore::import::import(&tree, &store, &progress, &mut |_| {})
                    .expect("the test's tree imports");
            })
            .await
            .expect("import ran");
        }
    }
    let listener = TcpListener::bind(config.listen_address)
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        janus::server::serve(config, listener, async {
            let _ = stopped.await;
        })
        .await
        .expect("janus serves");
    });
    TestJanus {
        url,
        storage,
        stop: Some(stop),
        task: Some(task),
    }
}

/// The ClickHouse the suites keep their logs in, when the test command runs them a second time
/// with `JANUS_TEST_LOG_STORE=clickhouse` (its URL in `JANUS_TEST_CLICKHOUSE_URL`).
pub fn clickhouse_log_store() -> Option<String> {
    (std::env::var("JANUS_TEST_LOG_STORE").ok()? == "clickhouse")
        .then(|| required_env("JANUS_TEST_CLICKHOUSE_URL"))
}

/// A URL the compatibility run exports; a clear failure (not a skip) when it is missing, so a
/// run without the real upstreams can never pass silently.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the test command `compat-tests/run`, which starts the real upstreams")
    })
}

/// A client that never decompresses, so bodies compare byte for byte.
pub fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// Copies a directory tree (tests never touch `shared/` in place).
pub fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A fresh copy of Lethe's sample tree, `shared/lethe-testdata/log`, its files dated at
/// Lethe's test clock (2009-11-10T23:00:00Z) as files at rest are: nobody is writing them.
pub fn lethe_testdata() -> PathBuf {
    let source =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/lethe-testdata/log");
    assert!(
        source.is_dir(),
        "Lethe's sample tree is missing at {}",
        source.display()
    );
    let copy = temp_dir("lethe");
    copy_tree(&source, &copy);
    set_modified_tree(
        &copy,
        std::time::UNIX_EPOCH + Duration::from_secs(1_257_894_000),
    );
    copy
}

/// Sets the modification time of every file below `dir`.
pub fn set_modified_tree(dir: &std::path::Path, when: std::time::SystemTime) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_dir() {
            set_modified_tree(&entry.path(), when);
        } else {
            std::fs::File::options()
                .write(true)
                .open(entry.path())
                .and_then(|f| f.set_modified(when))
                .expect("set mtime");
        }
    }
}

impl TestJanus {
    /// The `/metrics` exposition, as text.
    pub async fn metrics(&self) -> String {
        raw_client()
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("metrics text")
    }
}

/// An address on which nothing listens.
pub async fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}

/// Pushes a Loki push API JSON body to Janus; every test that pushes expects 204.
pub async fn push_json(janus: &TestJanus, body: &serde_json::Value) {
    push_json_to(&janus.url, body).await
}

/// [`push_json`] to a Janus at `url` (one running as a child process, say).
pub async fn push_json_to(url: &str, body: &serde_json::Value) {
    let r = raw_client()
        .post(format!("{url}/loki/api/v1/push"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("push");
    assert_eq!(r.status(), 204, "{}", r.text().await.unwrap_or_default());
}

/// `GET path?params` on Janus: status, content type and body text.
pub async fn get(janus: &TestJanus, path: &str, params: &[(&str, &str)]) -> (u16, String, String) {
    let r = raw_client()
        .get(format!("{}{path}", janus.url))
        .query(params)
        .send()
        .await
        .expect("answer");
    answer_parts(r).await
}

/// A response's status, content type and body text.
pub async fn answer_parts(r: reqwest::Response) -> (u16, String, String) {
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, content_type, r.text().await.expect("body"))
}

/// JSON equal but for the last digits of numbers in strings (1e-9 relative): upstreams that
/// add floats in an order of their own (VictoriaMetrics in parallel, Prometheus after a map)
/// give such answers from one ask to the next.
pub fn close_json(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value::*;
    match (a, b) {
        (String(x), String(y)) => {
            let sorted = |s: &str| {
                let mut b = s.as_bytes().to_vec();
                b.sort_unstable();
                b
            };
            x == y
                || matches!((x.parse::<f64>(), y.parse::<f64>()), (Ok(p), Ok(q))
                    if (p - q).abs() <= 1e-9 * p.abs().max(q.abs()))
                // Error texts that list series in map order: same characters, other order.
                || (x.len() > 200 && sorted(x) == sorted(y))
        }
        (Array(x), Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| close_json(p, q))
        }
        (Object(x), Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| close_json(v, w)))
        }
        (x, y) => x == y,
    }
}
