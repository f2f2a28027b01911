//! A real Alertmanager of a test's own (Debian's `prometheus-alertmanager`,
//! `JANUS_TEST_ALERTMANAGER_BIN`), on 127.0.0.1 with clustering off and temporary storage,
//! stopped by its PID when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{raw_client, required_env};

pub struct Alertmanager {
    child: Child,
    pub url: String,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Alertmanager on `port` with a single receiver that sends nowhere.
pub async fn start(dir: &Path, port: u16) -> Alertmanager {
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: nowhere\n  group_wait: 0s\nreceivers:\n- name: nowhere\n",
    )
    .expect("alertmanager config");
    let child = Command::new(required_env("JANUS_TEST_ALERTMANAGER_BIN"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.path={}", dir.join("am-data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("alertmanager starts");
    let am = Alertmanager {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..300 {
        if let Ok(r) = raw_client().get(format!("{}/-/ready", am.url)).send().await {
            if r.status() == 200 {
                return am;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("alertmanager on port {port} did not become ready");
}

impl Alertmanager {
    /// The alerts it holds (`GET /api/v2/alerts`: active ones; resolved ones drop out).
    pub async fn alerts(&self) -> Vec<serde_json::Value> {
        let r = raw_client()
            .get(format!("{}/api/v2/alerts", self.url))
            .send()
            .await
            .expect("alertmanager answers");
        serde_json::from_str(&r.text().await.expect("alerts")).expect("alerts json")
    }
}
