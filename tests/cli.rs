//! The `janus` binary as an operator meets it: refusals of bad settings, and a graceful stop.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::temp_dir;

const JANUS: &str = env!("CARGO_BIN_EXE_janus");

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(JANUS).args(args).output().expect("janus runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn bad_settings_exit_2_with_one_line_naming_the_setting() {
    let dir = temp_dir("cli");
    let unknown_key = dir.join("unknown.yaml");
    std::fs::write(&unknown_key, "query:\n  timout: 1m\n").expect("write");
    let bad_value = dir.join("bad.yaml");
    std::fs::write(&bad_value, "query:\n  max_concurrency: lots\n").expect("write");
    let unknown = unknown_key.display().to_string();
    let bad = bad_value.display().to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--query.timeout=soon"], "query.timeout"),
        (vec!["--query.max-concurrency=-1"], "query.max-concurrency"),
        (
            vec!["--query.max-concurrency=18446744073709551615"],
            "query.max-concurrency: must be at most",
        ),
        (
            vec!["--query.log-limit=0"],
            "query.log-limit: must be at least 1",
        ),
        (vec!["--upstream.url=localhost:9090"], "upstream.url"),
        (
            vec!["--web.listen-address=999.0.0.1:1"],
            "web.listen-address",
        ),
        (vec!["--log.level=loud"], "log.level"),
        (vec!["--no-such-flag"], "--no-such-flag"),
        (
            vec!["--config.file=/nonexistent/janus.yaml"],
            "/nonexistent/janus.yaml",
        ),
        (vec!["--config.file", &unknown], "timout"),
        (vec!["--config.file", &bad], "max_concurrency"),
    ];
    for (args, names) in cases {
        let (code, stderr) = run(&args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(names), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// `janus check config`: the flags and the file a deployment would start with, loaded as a start
/// loads them (rule files too) without serving; exit 0 and a summary, or 1 and the problem.
#[test]
fn check_config_loads_flags_and_file_as_a_start_would() {
    let dir = temp_dir("cli-check");
    let rules = dir.join("rules.yml");
    std::fs::write(
        &rules,
        "groups:\n- name: g\n  rules:\n  - alert: Errors\n    expr: rate(pod{namespace=\"x\"} |= \"ERROR\" [5m]) > 0\n",
    )
    .expect("write");
    let good = dir.join("janus.yml");
    std::fs::write(
        &good,
        format!(
            "upstream:\n  url: http://prometheus:9090\nstorage:\n  path: {}\nrules:\n  files: [{}]\n",
            dir.join("store").display(),
            rules.display()
        ),
    )
    .expect("write");
    let out = Command::new(JANUS)
        .args([
            "--config.file",
            &good.display().to_string(),
            "check",
            "config",
        ])
        .output()
        .expect("janus runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("SUCCESS") && stdout.contains("1 rule groups"),
        "{stdout}"
    );
    assert!(stdout.contains("http://prometheus:9090"), "{stdout}");
    assert!(
        !dir.join("store").exists(),
        "checking serves nothing and makes nothing"
    );

    // A flag overrides the file, and is checked like it.
    let check = |extra: &[&str]| {
        let file = good.display().to_string();
        let mut args = vec!["--config.file", file.as_str()];
        args.extend_from_slice(extra);
        args.extend(["check", "config"]);
        run(&args)
    };
    let (code, stderr) = check(&["--query.timeout=soon"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("FAILED") && stderr.contains("query.timeout"),
        "{stderr}"
    );

    // A rule file with a problem is named with its line.
    std::fs::write(
        &rules,
        "groups:\n- name: g\n  rules:\n  - alert: Errors\n    expr: rate(pod{namespace=\"x\"} |= [5m])\n",
    )
    .expect("write");
    let (code, stderr) = check(&[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("rules.yml") && stderr.contains("Errors"),
        "{stderr}"
    );

    // An unknown key in the file.
    std::fs::write(&good, "upstream:\n  url: http://p:9090\n  timout: 1m\n").expect("write");
    let (code, stderr) = check(&[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("timout"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn help_and_version_exit_0() {
    for flag in ["--help", "--version"] {
        let out = Command::new(JANUS).arg(flag).output().expect("janus runs");
        assert!(out.status.success(), "{flag}");
        assert!(!out.stdout.is_empty());
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: janus\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

/// A one-shot upstream that answers after a delay, so a request is in flight at SIGTERM.
fn slow_upstream(delay: Duration) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                std::thread::sleep(delay);
                let body =
                    r#"{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}"#;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

#[test]
fn sigterm_finishes_in_flight_requests_and_exits_0() {
    let upstream = slow_upstream(Duration::from_millis(1500));
    let port = free_port();
    let storage = temp_dir("cli-store");
    let mut child = Command::new(JANUS)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--upstream.url=http://127.0.0.1:{upstream}"))
        .arg(format!("--storage.path={}", storage.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("janus starts");
    let started = Instant::now();
    while http_get(port, "/-/ready").is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "janus did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let in_flight = std::thread::spawn(move || http_get(port, "/api/v1/query?query=1"));
    std::thread::sleep(Duration::from_millis(300));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());

    let answer = in_flight
        .join()
        .expect("joined")
        .expect("in-flight request answered");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with(r#""result":[1,"1"]}}"#), "{answer}");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "janus did not exit"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    let mut log = String::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_string(&mut log);
    }
    assert!(log.contains("shutting down"), "{log}");
    assert!(log.contains("level=info"), "logfmt by default: {log}");
    assert!(
        log.contains("face=metric"),
        "access log names the face: {log}"
    );
    let _ = std::fs::remove_dir_all(storage);
}
