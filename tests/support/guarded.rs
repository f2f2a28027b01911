//! The real binary as a child process under a memory cap (`prlimit --as`), for the attack
//! suites: its peak RSS is read from /proc, and it is stopped by its PID.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::raw_client;

pub const JANUS: &str = env!("CARGO_BIN_EXE_janus");
/// Address space the server may map: far below what the attacks used to take.
pub const ADDRESS_SPACE_CAP: u64 = 4 << 30;
/// The peak resident memory documented in docs/operations.md for these attacks.
pub const RSS_BOUND_MB: u64 = 512;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// A client that takes any server certificate (the attack tests' self-signed one).
pub fn unverified_tls_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client")
}

/// A Janus child process under a memory cap; killed by its PID when dropped.
pub struct Guarded {
    pub child: Child,
    pub url: String,
    pub storage: PathBuf,
}

impl Guarded {
    pub async fn start(storage: &Path, upstream: &str, extra: &[&str]) -> Guarded {
        Guarded::launch(storage, upstream, extra, None, false).await
    }

    /// As `start`, under the 2 GiB address-space cap the second attack round used (Unbreakable
    /// II), and with `ulimit -n` set to `open_files` when given.
    pub async fn start_2g(
        storage: &Path,
        upstream: &str,
        extra: &[&str],
        open_files: Option<u64>,
    ) -> Guarded {
        Guarded::launch_capped(storage, upstream, extra, open_files, false, 2 << 30).await
    }

    /// As `start`, for a server whose `--web.config.file` (in `extra`) turns TLS on: `url` is
    /// `https://…` and readiness is probed without checking the certificate.
    pub async fn start_tls(storage: &Path, upstream: &str, extra: &[&str]) -> Guarded {
        Guarded::launch(storage, upstream, extra, None, true).await
    }

    /// As `start`, with `ulimit -n` (soft and hard) set to `open_files`.
    pub async fn start_with_open_files(
        storage: &Path,
        upstream: &str,
        extra: &[&str],
        open_files: u64,
    ) -> Guarded {
        Guarded::launch(storage, upstream, extra, Some(open_files), false).await
    }

    async fn launch(
        storage: &Path,
        upstream: &str,
        extra: &[&str],
        open_files: Option<u64>,
        tls: bool,
    ) -> Guarded {
        Guarded::launch_capped(storage, upstream, extra, open_files, tls, ADDRESS_SPACE_CAP).await
    }

    async fn launch_capped(
        storage: &Path,
        upstream: &str,
        extra: &[&str],
        open_files: Option<u64>,
        tls: bool,
        address_space: u64,
    ) -> Guarded {
        let port = free_port();
        let mut command = Command::new("prlimit");
        command.arg(format!("--as={address_space}"));
        if let Some(n) = open_files {
            command.arg(format!("--nofile={n}"));
        }
        let child = command
            .arg("--")
            .arg(JANUS)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--upstream.url={upstream}"))
            .arg(format!("--storage.path={}", storage.display()))
            .arg("--log.level=error")
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("prlimit runs janus");
        let scheme = if tls { "https" } else { "http" };
        let guarded = Guarded {
            child,
            url: format!("{scheme}://127.0.0.1:{port}"),
            storage: storage.to_path_buf(),
        };
        let probe = if tls {
            unverified_tls_client()
        } else {
            raw_client()
        };
        let started = Instant::now();
        while probe
            .get(format!("{}/-/healthy", guarded.url))
            .send()
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "janus did not start"
            );
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        guarded
    }

    /// Descriptors the server has open now.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// A field of /proc/<pid>/status in MiB (VmHWM: peak resident, VmRSS: now).
    pub fn status_mb(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server is alive");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb / 1024)
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    /// Asserts the server still runs and its peak memory stayed under the bound.
    pub fn assert_alive_and_bounded(&mut self, what: &str) {
        assert!(
            self.child.try_wait().expect("wait").is_none(),
            "janus died during: {what}"
        );
        let peak = self.status_mb("VmHWM:");
        eprintln!("{what}: peak RSS {peak} MiB");
        assert!(
            peak < RSS_BOUND_MB,
            "{what}: peak RSS {peak} MiB over the {RSS_BOUND_MB} MiB bound"
        );
    }

    /// Asserts that resident memory falls back near idle once the heavy work is over (Janus
    /// hands free heap back every `memory::TRIM_INTERVAL`).
    pub async fn assert_memory_returns(&self, what: &str) {
        const IDLE_BOUND_MB: u64 = 100;
        let started = Instant::now();
        loop {
            let now = self.status_mb("VmRSS:");
            if now < IDLE_BOUND_MB {
                eprintln!("{what}: RSS back to {now} MiB");
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{what}: RSS still {now} MiB after 30 s (bound {IDLE_BOUND_MB} MiB)"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub async fn get(&self, path: &str, params: &[(&str, &str)]) -> (u16, String) {
        answered(
            raw_client()
                .get(format!("{}{path}", self.url))
                .query(params),
        )
        .await
    }

    pub async fn post_query(&self, query: &str) -> (u16, String) {
        let form = [("query", query), ("time", "2024-01-01T00:30:00Z")];
        answered(
            raw_client()
                .post(format!("{}/api/v1/query", self.url))
                .form(&form),
        )
        .await
    }
}

/// Sends a request that must be answered (an error status is an answer; a dropped connection
/// is not) and returns the status and body.
async fn answered(request: reqwest::RequestBuilder) -> (u16, String) {
    let answer = request
        .timeout(Duration::from_secs(150))
        .send()
        .await
        .expect("an answer, not a dropped connection");
    let status = answer.status().as_u16();
    (status, answer.text().await.unwrap_or_default())
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.storage);
    }
}
