//! A real ClickHouse of a test's own (Debian's `clickhouse-server`, `JANUS_TEST_CLICKHOUSE_BIN`),
//! on 127.0.0.1 with free ports and a temporary config, never the system service; stopped by
//! its PID when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::required_env;

pub struct ClickHouseServer {
    child: Option<Child>,
    dir: PathBuf,
    pub http_port: u16,
    pub tcp_port: u16,
    /// `remote_servers` text this server was started with (a cluster), to start it again.
    remote_servers: String,
}

impl Drop for ClickHouseServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port free on 127.0.0.1 now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl ClickHouseServer {
    /// A server with its data under `dir`.
    pub fn start(dir: &Path) -> ClickHouseServer {
        Self::start_in_cluster(dir, free_port(), free_port(), "")
    }

    /// A server on the given ports whose config names a cluster (`remote_servers` XML).
    pub fn start_in_cluster(
        dir: &Path,
        http_port: u16,
        tcp_port: u16,
        remote_servers: &str,
    ) -> ClickHouseServer {
        let mut server = ClickHouseServer {
            child: None,
            dir: dir.to_path_buf(),
            http_port,
            tcp_port,
            remote_servers: remote_servers.to_string(),
        };
        server.run();
        server
    }

    /// The server one test binary shares between its tests: started once, stopped by its PID
    /// when the test process exits (a static is never dropped, so an exit handler does it).
    pub fn shared() -> &'static ClickHouseServer {
        static SERVER: std::sync::OnceLock<ClickHouseServer> = std::sync::OnceLock::new();
        static PID: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        extern "C" fn stop_shared() {
            let pid = PID.load(std::sync::atomic::Ordering::SeqCst);
            if pid != 0 {
                // SAFETY: a plain kill(2) of the child this process started.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
        }
        SERVER.get_or_init(|| {
            let server = ClickHouseServer::start(&super::temp_dir("clickhouse"));
            if let Some(child) = &server.child {
                PID.store(child.id(), std::sync::atomic::Ordering::SeqCst);
                // SAFETY: registers a function without arguments to run at exit.
                unsafe {
                    libc::atexit(stop_shared);
                }
            }
            server
        })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    fn run(&mut self) {
        let dir = &self.dir;
        std::fs::create_dir_all(dir).expect("clickhouse dir");
        let users = dir.join("users.xml");
        std::fs::write(
            &users,
            "<?xml version=\"1.0\"?><yandex>\
             <profiles><default><max_memory_usage>4000000000</max_memory_usage></default></profiles>\
             <users><default><password></password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks>\
             <profile>default</profile><quota>default</quota></default></users>\
             <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>\
             <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>\
             </interval></default></quotas></yandex>",
        )
        .expect("users.xml");
        let config = dir.join("config.xml");
        let d = dir.display();
        std::fs::write(
            &config,
            format!(
                "<?xml version=\"1.0\"?><yandex>\
                 <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/error.log</errorlog></logger>\
                 <listen_host>127.0.0.1</listen_host>\
                 <http_port>{}</http_port><tcp_port>{}</tcp_port>\
                 <path>{d}/data/</path><tmp_path>{d}/tmp/</tmp_path>\
                 <user_files_path>{d}/user_files/</user_files_path>\
                 <format_schema_path>{d}/format_schemas/</format_schema_path>\
                 <users_config>{}</users_config>\
                 <default_profile>default</default_profile><default_database>default</default_database>\
                 <mark_cache_size>53687091</mark_cache_size>\
                 <remote_servers>{}</remote_servers>\
                 </yandex>",
                self.http_port,
                self.tcp_port,
                users.display(),
                self.remote_servers
            ),
        )
        .expect("config.xml");
        let child = Command::new(required_env("JANUS_TEST_CLICKHOUSE_BIN"))
            .arg(format!("--config-file={}", config.display()))
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("clickhouse-server starts");
        self.child = Some(child);
        for _ in 0..300 {
            let ping =
                std::net::TcpStream::connect(("127.0.0.1", self.http_port)).and_then(|mut s| {
                    use std::io::{Read, Write};
                    s.set_read_timeout(Some(Duration::from_secs(1)))?;
                    s.write_all(b"GET /ping HTTP/1.0\r\n\r\n")?;
                    let mut answer = String::new();
                    s.read_to_string(&mut answer)?;
                    Ok(answer)
                });
            if ping.is_ok_and(|a| a.ends_with("Ok.\n")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "clickhouse-server on port {} did not answer /ping",
            self.http_port
        );
    }

    /// Stops the server (by PID); its data stays for [`ClickHouseServer::restart`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill();
        self.run();
    }

    /// Runs one statement, returns the answer's text (panics on an error answer).
    pub fn sql(&self, statement: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.http_port)).expect("connect");
        let request = format!(
            "POST / HTTP/1.0\r\nContent-Length: {}\r\n\r\n{statement}",
            statement.len()
        );
        s.write_all(request.as_bytes()).expect("write");
        let mut answer = String::new();
        s.read_to_string(&mut answer).expect("read");
        let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{statement}: {answer}"
        );
        body.to_string()
    }
}
