//! Crash safety: push while the server is killed with SIGKILL at random moments and restarted.
//! Every line that got a 204 is found afterwards, and no torn line is ever returned.

mod support;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::{raw_client, temp_dir};

const JANUS: &str = env!("CARGO_BIN_EXE_janus");
const LINES_PER_REQUEST: usize = 2000;
const PAD: usize = 160;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

fn start(port: u16, storage: &std::path::Path) -> Child {
    Command::new(JANUS)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--upstream.url=http://127.0.0.1:1")
        .arg(format!("--storage.path={}", storage.display()))
        .arg("--storage.fsync=never")
        .arg("--retention.time=0")
        .arg("--log.level=error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("janus starts")
}

async fn wait_ready(url: &str) {
    let started = Instant::now();
    while raw_client()
        .get(format!("{url}/-/ready"))
        .send()
        .await
        .is_err()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "janus did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn body(id: &str) -> String {
    // One second per request id keeps lines in a few hour files of 2024-01-01.
    let values: Vec<serde_json::Value> = (0..LINES_PER_REQUEST)
        .map(|i| {
            serde_json::json!([
                (1_704_067_200_000_000_000i64 + i as i64).to_string(),
                format!("{id} line {i} {}", "z".repeat(PAD))
            ])
        })
        .collect();
    serde_json::json!({"streams":[{"stream":{"namespace":"crash","pod":"p","container":"c"},"values":values}]})
        .to_string()
}

/// Every line of the store's crash namespace must be whole.
fn check_lines(text: &str, whole: &mut HashSet<String>) {
    for line in text.lines() {
        let parsed = janus::logstore::line::parse(line.as_bytes())
            .unwrap_or_else(|| panic!("unparsable line in the store: {line:?}"));
        let message = String::from_utf8_lossy(parsed.message).to_string();
        assert!(message.ends_with(&"z".repeat(PAD)), "torn line: {line:?}");
        whole.insert(message);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_lines_survive_sigkill() {
    let storage = temp_dir("crash");
    let acked: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D ^ u64::from(std::process::id());
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for round in 0..6 {
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut child = start(port, &storage);
        wait_ready(&url).await;

        // Queries never return a torn line, whatever the last run left behind.
        let answer = raw_client()
            .get(format!("{url}/api/v1/query_range"))
            .query(&[
                ("query", r#"pod{namespace="crash"}"#),
                ("start", "2024-01-01T00:00:00Z"),
                ("end", "2024-01-01T01:00:00Z"),
                ("limit", "100000"),
            ])
            .send()
            .await
            .expect("query");
        let v: serde_json::Value =
            serde_json::from_str(&answer.text().await.expect("text")).expect("json");
        for line in v["data"]["result"].as_array().expect("result") {
            let log = line["log"].as_str().unwrap_or_default();
            assert!(
                log.ends_with(&"z".repeat(PAD)),
                "a torn line was returned: {log:?}"
            );
        }

        let mut pushers = Vec::new();
        for pusher in 0..3 {
            let (url, acked) = (url.clone(), Arc::clone(&acked));
            pushers.push(tokio::spawn(async move {
                let client = raw_client();
                for request in 0.. {
                    let id = format!("r{round}-p{pusher}-q{request}");
                    let sent = client
                        .post(format!("{url}/loki/api/v1/push"))
                        .header("Content-Type", "application/json")
                        .body(body(&id))
                        .send()
                        .await;
                    match sent {
                        Ok(r) if r.status() == 204 => acked.lock().expect("lock").push(id),
                        _ => return,
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(150 + next() % 500)).await;
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
        for p in pushers {
            let _ = p.await;
        }
    }

    // A last start repairs what the last kill left; then every acknowledged line is there.
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut child = start(port, &storage);
    wait_ready(&url).await;
    let mut whole = HashSet::new();
    for entry in std::fs::read_dir(storage.join("pod/crash"))
        .expect("dir")
        .flatten()
    {
        let text = std::fs::read_to_string(entry.path()).expect("read");
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{} keeps a torn tail",
            entry.path().display()
        );
        check_lines(&text, &mut whole);
    }
    let acked = acked.lock().expect("lock").clone();
    assert!(
        acked.len() >= 6,
        "too few acknowledged requests to mean anything: {}",
        acked.len()
    );
    for id in &acked {
        for i in [0, LINES_PER_REQUEST / 2, LINES_PER_REQUEST - 1] {
            let message = format!("{id} line {i} {}", "z".repeat(PAD));
            assert!(
                whole.contains(&message),
                "acknowledged line lost: {id} line {i}"
            );
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(storage);
}
