//! A real Prometheus of a test's own (the Debian package's binary, `JANUS_TEST_PROMETHEUS_BIN`),
//! on 127.0.0.1, stopped by its PID when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{raw_client, required_env};

pub struct Prometheus {
    child: Child,
    pub url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Prometheus on `port` with `config` (YAML text, written into `dir`) over the TSDB at
/// `tsdb`, and waits until it is ready.
pub async fn start(dir: &Path, port: u16, config: &str, tsdb: &Path) -> Prometheus {
    start_with(dir, port, config, tsdb, &[]).await
}

/// [`start`] with more flags.
pub async fn start_with(
    dir: &Path,
    port: u16,
    config: &str,
    tsdb: &Path,
    flags: &[&str],
) -> Prometheus {
    let config_file = dir.join("prometheus.yml");
    std::fs::write(&config_file, config).expect("config");
    let child = Command::new(required_env("JANUS_TEST_PROMETHEUS_BIN"))
        .arg(format!("--config.file={}", config_file.display()))
        .arg(format!("--storage.tsdb.path={}", tsdb.display()))
        .arg("--storage.tsdb.retention.time=100y")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(flags)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus starts");
    let p = Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..300 {
        if let Ok(r) = raw_client().get(format!("{}/-/ready", p.url)).send().await {
            if r.status() == 200 {
                return p;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("prometheus on port {port} did not become ready");
}
