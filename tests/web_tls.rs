//! `--web.config.file` with real TLS: a CA, server and client certificates made at test time,
//! driven with curl against Janus and the real Prometheus behind it, the file checked by
//! promtool: client
//! certificates, basic auth, response headers, HTTP/2 by ALPN, certificate rotation without a
//! restart, a bad reload that keeps the previous configuration, and start-up refusals that
//! name the key.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// A CA and what it signed, written as PEM files under `dir` with `prefix`.
struct Pki {
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    fn new(dir: &Path, name: &str) -> Pki {
        let ca_key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("janus test CA {name}"));
        let ca = params.self_signed(&ca_key).expect("CA");
        std::fs::write(dir.join(format!("{name}.pem")), ca.pem()).expect("write CA");
        Pki { ca, ca_key }
    }

    /// Signs a certificate for `names` and writes `<file>.pem` and `<file>.key`.
    fn issue(&self, dir: &Path, file: &str, names: &[&str]) {
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("params");
        params.distinguished_name.push(DnType::CommonName, file);
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .expect("signed");
        // Key first, certificate last: a reader that sees the new certificate sees its key.
        std::fs::write(dir.join(format!("{file}.key")), key.serialize_pem()).expect("key");
        std::fs::write(dir.join(format!("{file}.pem")), cert.pem()).expect("cert");
    }
}

/// curl against `url`: (exit success, HTTP status, response headers and body).
fn curl(dir: &Path, url: &str, extra: &[&str]) -> (bool, String, String) {
    let out = Command::new("curl")
        .current_dir(dir)
        .args([
            "-sS",
            "--max-time",
            "10",
            "-D",
            "-",
            "-w",
            "\n%{http_code} %{http_version}",
        ])
        .args(extra)
        .arg(url)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let status = text.lines().last().unwrap_or_default().to_string();
    (
        out.status.success(),
        status,
        text + &String::from_utf8_lossy(&out.stderr),
    )
}

const PASSWORD: &str = "correct horse";

fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let hash = bcrypt::hash(PASSWORD, 4).expect("bcrypt");
    let path = dir.join("web.yml");
    std::fs::write(
        &path,
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients.pem\n  min_version: TLS12\nhttp_server_config:\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\nbasic_auth_users:\n  alice: {hash}\n{extra}"
        ),
    )
    .expect("web.yml");
    path
}

async fn start(dir: &Path, upstream: &str) -> support::TestJanus {
    let path = dir.join("web.yml");
    let web = janus::auth::web_config::WebConfig::load(&path).expect("web config loads");
    support::start_janus(upstream, move |c| {
        c.web_config_file = Some(path);
        c.web = web;
    })
    .await
}

fn https(janus: &support::TestJanus, path: &str) -> String {
    janus.url.replace("http://", "https://") + path
}

/// Polls `probe` every 200 ms until it gives a value, for up to 15 s (the reloader looks at
/// the files once a second); the last failure's text goes into the assertion.
async fn until<T, F>(what: &str, mut probe: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) => assert!(Instant::now() < deadline, "{what}: {last}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const CLIENT: [&str; 4] = ["--cert", "client.pem", "--key", "client.key"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_certificates_basic_auth_headers_and_rotation() {
    let dir = support::temp_dir("tls");
    let servers = Pki::new(&dir, "servers");
    let clients = Pki::new(&dir, "clients");
    servers.issue(&dir, "server", &["localhost", "127.0.0.1"]);
    clients.issue(&dir, "client", &["client.example"]);
    let stranger = Pki::new(&dir, "strangers");
    stranger.issue(&dir, "stranger", &["stranger.example"]);
    write_config(&dir, "");
    let janus = start(&dir, &support::closed_port_url().await).await;
    let labels = https(&janus, "/loki/api/v1/labels");
    let user = format!("alice:{PASSWORD}");
    let dir2 = dir.clone();
    let run = move |url: String, extra: Vec<String>| {
        let dir = dir2.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
                curl(&dir, &url, &extra)
            })
            .await
            .expect("curl task")
        }
    };
    let args = |parts: &[&str]| parts.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // Certificate, password: answered, over HTTP/2 (ALPN), with the configured headers.
    let mut ok = args(&["--cacert", "servers.pem", "-u", &user, "--http2"]);
    ok.extend(args(&CLIENT));
    let (success, status, text) = run(labels.clone(), ok.clone()).await;
    assert!(success, "{text}");
    assert_eq!(status, "200 2", "{text}");
    assert!(text.contains("x-frame-options: deny"), "{text}");
    assert!(
        text.contains("strict-transport-security: max-age=31536000"),
        "{text}"
    );

    // No password: 401 with a challenge (and the headers).
    let mut no_password = args(&["--cacert", "servers.pem"]);
    no_password.extend(args(&CLIENT));
    let (_, status, text) = run(labels.clone(), no_password.clone()).await;
    assert!(status.starts_with("401"), "{text}");
    assert!(
        text.to_lowercase().contains("www-authenticate: basic"),
        "{text}"
    );
    // A wrong password and an unknown user: the same refusal.
    for wrong in ["alice:wrong", "mallory:correct horse", "alice"] {
        let mut args = no_password.clone();
        args.extend(["-u".to_string(), wrong.to_string()]);
        let (_, status, text) = run(labels.clone(), args).await;
        assert!(status.starts_with("401"), "{wrong}: {text}");
    }
    // Probes need no password.
    let (_, status, text) = run(https(&janus, "/-/healthy"), no_password.clone()).await;
    assert!(status.starts_with("200"), "{text}");

    // No client certificate, or one from another CA: no connection at all.
    let (success, status, text) = run(
        labels.clone(),
        args(&["--cacert", "servers.pem", "-u", &user]),
    )
    .await;
    assert!(!success && status.starts_with("000"), "{text}");
    let (success, _, text) = run(
        labels.clone(),
        args(&[
            "--cacert",
            "servers.pem",
            "-u",
            &user,
            "--cert",
            "stranger.pem",
            "--key",
            "stranger.key",
        ]),
    )
    .await;
    assert!(!success, "{text}");
    // Plain HTTP to the TLS port: no answer.
    let (success, _, text) = run(janus.url.clone() + "/-/healthy", vec![]).await;
    assert!(!success, "{text}");

    // Rotation: a certificate from a new CA in place of the old one is served from the next
    // connection, without a restart.
    let rotated = Pki::new(&dir, "rotated");
    rotated.issue(&dir, "server", &["localhost", "127.0.0.1"]);
    let mut new_ca = args(&["--cacert", "rotated.pem", "-u", &user]);
    new_ca.extend(args(&CLIENT));
    until("the rotated certificate was never served", || {
        let served = run(labels.clone(), new_ca.clone());
        async move {
            let (success, status, text) = served.await;
            (success && status.starts_with("200"))
                .then_some(())
                .ok_or(text)
        }
    })
    .await;
    let (success, _, _) = run(labels.clone(), ok.clone()).await;
    assert!(!success, "the old certificate is still served");

    // A bad change keeps the previous configuration, and says so in a metric.
    std::fs::write(dir.join("web.yml"), "tls_server_config:\n  cert_fil: x\n").expect("write");
    let metrics = https(&janus, "/metrics");
    let reported = |value: &'static str| {
        let scraped = run(metrics.clone(), new_ca.clone());
        async move {
            let (_, _, text) = scraped.await;
            let line = format!("janus_web_config_last_reload_successful {value}");
            if text.contains(&line) {
                Ok(text)
            } else {
                Err(text)
            }
        }
    };
    let text = until("the bad reload was not reported", || reported("0")).await;
    assert!(
        text.contains("janus_web_config_reload_failures_total 1"),
        "{text}"
    );
    let (success, status, text) = run(labels.clone(), new_ca.clone()).await;
    assert!(success && status.starts_with("200"), "{text}");
    // Fixed again: reloaded, reported.
    write_config(&dir, "");
    until("the good reload was not reported", || reported("1")).await;
    janus.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Through mutual TLS and basic auth, the real Prometheus's answers stay byte for byte; and
/// promtool (the Debian package's 2.42, whose `query` has no `--http.config.file` yet) checks
/// the same web configuration file as valid for Prometheus itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_answers_through_tls_are_unchanged_and_promtool_accepts_the_file() {
    let prometheus = support::required_env("JANUS_TEST_PROMETHEUS");
    let dir = support::temp_dir("tls-prometheus");
    let servers = Pki::new(&dir, "servers");
    let clients = Pki::new(&dir, "clients");
    servers.issue(&dir, "server", &["localhost", "127.0.0.1"]);
    clients.issue(&dir, "client", &["client.example"]);
    let config = write_config(&dir, "");
    let janus = start(&dir, &prometheus).await;
    let query = "/api/v1/query?query=vector(1)%2Bvector(1)&time=1700000000";
    let through = https(&janus, query);
    let direct = format!("{prometheus}{query}");
    let user = format!("alice:{PASSWORD}");
    let dir2 = dir.clone();
    let (via_janus, straight, check) = tokio::task::spawn_blocking(move || {
        let mut args = vec!["--cacert", "servers.pem", "-u", user.as_str()];
        args.extend(CLIENT);
        let via_janus = curl(&dir2, &through, &args);
        let straight = curl(&dir2, &direct, &[]);
        let check = Command::new("promtool")
            .args(["check", "web-config"])
            .arg(&config)
            .current_dir(&dir2)
            .output()
            .expect("promtool runs (compat-tests/run installs it)");
        (via_janus, straight, check)
    })
    .await
    .expect("task");
    let body = |text: &str| {
        // The body follows the blank line after the head; the status line is last.
        let after_head = text
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_string();
        after_head
            .rsplit_once('\n')
            .map(|(b, _)| b.to_string())
            .unwrap_or_default()
    };
    assert!(
        via_janus.0 && via_janus.1.starts_with("200"),
        "{}",
        via_janus.2
    );
    assert!(straight.0, "{}", straight.2);
    assert!(
        body(&straight.2).contains("\"value\":[1700000000,\"2\"]"),
        "{}",
        straight.2
    );
    assert_eq!(body(&via_janus.2), body(&straight.2));
    let checked = String::from_utf8_lossy(&check.stdout).to_string()
        + &String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{checked}");
    assert!(checked.contains("SUCCESS"), "{checked}");
    janus.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The real clients of the suite, over TLS verified against the test's CA, signed in as a tenant
/// restricted to `shop`: the Python `prometheus-api-client` (connection check, queries, label
/// values against the real Prometheus) and the Node Loki SDK `@myunisoft/loki` (lines, a metric
/// query, labels, values, series) see `shop` and nothing of `auth`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_and_node_clients_over_tls_as_a_tenant() {
    let prometheus = support::required_env("JANUS_TEST_PROMETHEUS");
    let python = support::required_env("JANUS_TEST_PYTHON");
    let node_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("compat-tests/node");
    assert!(
        node_dir.join("node_modules/@myunisoft/loki").is_dir(),
        "run compat-tests/run (it runs npm ci in compat-tests/node)"
    );
    let dir = support::temp_dir("tls-clients");
    let servers = Pki::new(&dir, "servers");
    servers.issue(&dir, "server", &["localhost", "127.0.0.1"]);
    let hash = bcrypt::hash(PASSWORD, 4).expect("bcrypt");
    let web = dir.join("web.yml");
    std::fs::write(
        &web,
        format!("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\nbasic_auth_users:\n  alice: {hash}\n  root: {hash}\n"),
    )
    .expect("web.yml");
    let tenants = dir.join("tenants.yml");
    std::fs::write(
        &tenants,
        "tenants:\n  shop:\n    users: [alice]\n    namespaces: [shop]\n  ops:\n    users: [root]\n    all: true\n",
    )
    .expect("tenants.yml");
    let janus = support::start_janus(&prometheus, |c| {
        c.web = janus::auth::web_config::WebConfig::load(&web).expect("web loads");
        c.web_config_file = Some(web.clone());
        c.tenants = Some(std::sync::Arc::new(
            janus::auth::tenants::Tenants::load(&tenants).expect("tenants load"),
        ));
        c.retention_time = Duration::from_secs(86_400);
    })
    .await;
    let url = https(&janus, "");
    // Lines of the last minutes in `shop` and `auth`, pushed by the unrestricted tenant.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let streams: Vec<serde_json::Value> = [("shop", "api-1"), ("auth", "secret-1")]
        .iter()
        .map(|(namespace, pod)| {
            let values: Vec<serde_json::Value> = (0..10u128)
                .map(|i| serde_json::json!([(now - (10 - i) * 30_000_000_000).to_string(), format!("error {i} in {pod}")]))
                .collect();
            serde_json::json!({"stream": {"namespace": namespace, "pod": pod, "container": "app"}, "values": values})
        })
        .collect();
    let pushed = support::guarded::unverified_tls_client()
        .post(format!("{url}/loki/api/v1/push"))
        .basic_auth("root", Some(PASSWORD))
        .header("Content-Type", "application/json")
        .body(serde_json::json!({ "streams": streams }).to_string())
        .send()
        .await
        .expect("push");
    assert_eq!(pushed.status(), 204);

    let (script, ca) = (
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/compat-tests/clients/prometheus_api_client_check.py"
        ),
        dir.join("servers.pem"),
    );
    let (py_url, node_url, py_ca, node_ca) = (url.clone(), url.clone(), ca.clone(), ca);
    let python = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .env("REQUESTS_CA_BUNDLE", py_ca)
            .args([script, &py_url, "alice", PASSWORD, "shop"])
            .output()
            .expect("python runs")
    });
    let node = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .current_dir(&node_dir)
            .env("NODE_EXTRA_CA_CERTS", node_ca)
            .args(["loki_read.mjs", &node_url, "shop", "alice", PASSWORD])
            .output()
            .expect("node runs")
    });
    let python = python.await.expect("python task");
    let text = String::from_utf8_lossy(&python.stdout).to_string()
        + &String::from_utf8_lossy(&python.stderr);
    assert!(
        python.status.success(),
        "prometheus-api-client over TLS:\n{text}"
    );
    assert!(text.contains("all checks passed"), "{text}");
    let node = node.await.expect("node task");
    assert!(
        node.status.success(),
        "{}",
        String::from_utf8_lossy(&node.stderr)
    );
    let out: serde_json::Value = serde_json::from_slice(&node.stdout).expect("json");
    assert_eq!(
        out["streams"]["streams"][0]["labels"]["namespace"], "shop",
        "{out}"
    );
    assert_eq!(out["values"], serde_json::json!(["api-1"]), "{out}");
    let shown = out.to_string();
    assert!(
        !shown.contains("secret-1") && !shown.contains("auth"),
        "{shown}"
    );
    janus.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A bad file stops Janus at start-up with one line naming the key.
#[test]
fn bad_files_are_refused_naming_the_key() {
    let dir = support::temp_dir("tls-bad");
    let cases: &[(&str, &str)] = &[
        ("tls_server_config:\n  cert_fil: x\n", "cert_fil"),
        (
            "tls_server_config:\n  key_file: k\n",
            "tls_server_config.cert_file",
        ),
        (
            "tls_server_config:\n  cert_file: missing.pem\n  key_file: missing.key\n",
            "tls_server_config.cert_file",
        ),
        (
            "basic_auth_users:\n  bob: not-a-hash\n",
            "basic_auth_users.bob",
        ),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
            "http_server_config.headers.X-Frame-Options",
        ),
        (
            "http_server_config:\n  headers:\n    Server: janus\n",
            "http_server_config.headers.Server",
        ),
        ("rate_limit:\n  interval: soon\n", "rate_limit.interval"),
    ];
    for (text, key) in cases {
        let path = dir.join("web.yml");
        std::fs::write(&path, text).expect("write");
        let out = Command::new(env!("CARGO_BIN_EXE_janus"))
            .arg(format!("--web.config.file={}", path.display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .arg(format!("--storage.path={}", dir.join("store").display()))
            .output()
            .expect("janus runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{text}: {stderr}");
        assert!(stderr.contains(key), "{text}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// An HTTPS upstream made of a certificate and one fixed answer: every request on every
/// connection gets `body` as `application/json`. Returns its port.
async fn tls_upstream(dir: &Path, body: &'static str) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(dir.join("upstream.pem"))
            .expect("upstream cert")
            .collect::<Result<_, _>>()
            .expect("upstream cert");
    let key = PrivateKeyDer::from_pem_file(dir.join("upstream.key")).expect("upstream key");
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = tls.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        seen.drain(..end + 4);
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if tls.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    port
}

/// `upstream.tls_config`: an HTTPS upstream signed by a private CA is reached when `ca_file`
/// names the CA or `insecure_skip_verify` is set, and refused (503, the reason named) otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_upstream_is_trusted_through_its_ca_file_or_not_at_all() {
    let dir = support::temp_dir("upstream-tls");
    let pki = Pki::new(&dir, "upstream-ca");
    pki.issue(&dir, "upstream", &["localhost"]);
    let body = r#"{"status":"success","data":{"resultType":"scalar","result":[1,"7"]}}"#;
    let port = tls_upstream(&dir, body).await;
    let upstream = format!("https://localhost:{port}");
    let ca = std::fs::read(dir.join("upstream-ca.pem")).expect("CA");
    let query = "/api/v1/query?query=scalar(vector(7))&time=1";

    let trusted = support::start_janus(&upstream, |c| c.upstream_ca_pem = Some(ca)).await;
    let answer = reqwest::get(format!("{}{query}", trusted.url))
        .await
        .expect("query");
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.expect("body"), body);

    let skipping =
        support::start_janus(&upstream, |c| c.upstream_insecure_skip_verify = true).await;
    let answer = reqwest::get(format!("{}{query}", skipping.url))
        .await
        .expect("query");
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.text().await.expect("body"), body);

    let untrusting = support::start_janus(&upstream, |_| {}).await;
    let answer = reqwest::get(format!("{}{query}", untrusting.url))
        .await
        .expect("query");
    assert_eq!(answer.status(), 503);
    let text = answer.text().await.expect("body");
    assert!(
        text.contains("unreachable") && text.contains("certificate"),
        "{text}"
    );
}
