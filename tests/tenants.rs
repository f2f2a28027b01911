//! `--auth.tenants-file`: identification (a basic-auth user `--web.config.file` verified, a
//! bearer token, a proxy's header from its own address only), the fail-closed rule for
//! restricted tenants, pushes confined to the tenant's namespaces (a push mixing an allowed and
//! a forbidden stream writes nothing), one upstream identity per tenant, metrics by tenant.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use serde_json::json;
use support::raw_client;

const TENANTS: &str = r#"
tenants:
  team-a:
    users: [alice]
    bearer_token_files: [a.tokens]
    namespaces: [shop, "cart-.*"]
    push: true
    upstream_org_id: org-a
  team-b:
    users: [bob]
    namespaces: [b]
    push: true
    limits:
      push_bytes_per_second: 100
      push_burst_bytes: 300
      max_concurrent_queries: 2
  ops:
    users: [root]
    all: true
    upstream_org_id: org-ops
identity_header:
  name: X-Forwarded-User
  from: [127.0.0.1]
"#;

fn write_files(dir: &Path, with_users: bool) -> (std::path::PathBuf, Option<std::path::PathBuf>) {
    std::fs::write(dir.join("a.tokens"), "token-of-a\n").expect("tokens");
    let tenants = dir.join("tenants.yml");
    std::fs::write(&tenants, TENANTS).expect("tenants");
    let web = with_users.then(|| {
        let hash = bcrypt::hash("pw", 4).expect("bcrypt");
        let path = dir.join("web.yml");
        std::fs::write(
            &path,
            format!("basic_auth_users:\n  alice: {hash}\n  bob: {hash}\n  root: {hash}\n"),
        )
        .expect("web");
        path
    });
    (tenants, web)
}

async fn start(dir: &Path, upstream: &str, with_users: bool) -> support::TestJanus {
    let (tenants, web) = write_files(dir, with_users);
    let tenants = janus::auth::tenants::Tenants::load(&tenants).expect("tenants load");
    let web = web.map(|p| {
        (
            janus::auth::web_config::WebConfig::load(&p).expect("web loads"),
            p,
        )
    });
    support::start_janus(upstream, move |c| {
        c.tenants = Some(Arc::new(tenants));
        if let Some((web, path)) = web {
            c.web = web;
            c.web_config_file = Some(path);
        }
    })
    .await
}

fn push_body(namespaces: &[&str]) -> String {
    let streams: Vec<_> = namespaces
        .iter()
        .map(|ns| {
            json!({
                "stream": {"namespace": ns, "pod": "p", "container": "c"},
                "values": [["1700000000000000000", format!("hello from {ns}")]]
            })
        })
        .collect();
    json!({ "streams": streams }).to_string()
}

async fn push(
    janus: &support::TestJanus,
    auth: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    namespaces: &[&str],
) -> (u16, String) {
    let request = raw_client()
        .post(format!("{}/loki/api/v1/push", janus.url))
        .header("Content-Type", "application/json")
        .body(push_body(namespaces));
    let r = auth(request).send().await.expect("push answer");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

fn namespaces_written(storage: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(storage.join("pod"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A fake upstream that records the `X-Scope-OrgID` it was sent.
async fn recording_upstream() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let router = Router::new().route(
        "/api/v1/labels",
        get(move |headers: HeaderMap| {
            let org = headers
                .get("x-scope-orgid")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("(none)")
                .to_string();
            if let Ok(mut seen) = record.lock() {
                seen.push(org);
            }
            async { r#"{"status":"success","data":["__name__"]}"# }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_pushes_and_the_fail_closed_rule() {
    let dir = support::temp_dir("tenants");
    let (upstream, seen) = recording_upstream().await;
    let janus = start(&dir, &upstream, true).await;
    let alice = |r: reqwest::RequestBuilder| r.basic_auth("alice", Some("pw"));
    let bob = |r: reqwest::RequestBuilder| r.basic_auth("bob", Some("pw"));
    let root = |r: reqwest::RequestBuilder| r.basic_auth("root", Some("pw"));

    // No identity: 401, except the probes.
    let (status, _, _) = support::get(&janus, "/loki/api/v1/labels", &[]).await;
    assert_eq!(status, 401);
    let (status, _, _) = support::get(&janus, "/-/ready", &[]).await;
    assert_eq!(status, 200);

    // A push mixing an allowed and a forbidden stream: 403, nothing written.
    let (status, body) = push(&janus, alice, &["shop", "b"]).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains(r#""errorType":"forbidden""#) && body.contains(r#"namespace \"b\""#),
        "{body}"
    );
    let (status, body) = push(&janus, bob, &["b", "shop"]).await;
    assert_eq!(status, 403, "{body}");
    // Path-like and regex-like namespaces are not the tenant's either.
    for sneaky in ["shop/../b", "cart", "shop2", ".*"] {
        let (status, body) = push(&janus, alice, &[sneaky]).await;
        assert!(status == 403 || status == 400, "{sneaky}: {status} {body}");
    }
    assert!(namespaces_written(&janus.storage).is_empty());
    // Into its own namespaces: written.
    let (status, body) = push(&janus, alice, &["shop", "cart-1"]).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = push(&janus, bob, &["b"]).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(namespaces_written(&janus.storage), ["b", "cart-1", "shop"]);
    // An unrestricted tenant pushes anywhere.
    let (status, body) = push(&janus, root, &["elsewhere"]).await;
    assert_eq!(status, 204, "{body}");

    // Reads not yet filtered by namespace are refused to a restricted tenant, whatever it asks.
    for (path, query) in [
        ("/api/v1/targets/metadata", ""),
        ("/api/v1/query_exemplars", "up"),
        // (Rules and alerts are filtered now: `tests/rules.rs`.)
        ("/api/v1/alertmanagers", ""),
        ("/api/v1/status/config", ""),
        ("/federate", "up"),
    ] {
        let r = alice(raw_client().get(format!("{}{path}", janus.url)))
            .query(&[("query", query)])
            .send()
            .await
            .expect("answer");
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        assert_eq!(status, 403, "{path} {query}: {body}");
        assert!(body.contains("\"errorType\":\"forbidden\""), "{body}");
    }
    // The status page answers a restricted tenant (clients check the connection with it), but
    // names neither the upstream nor the store.
    let page = alice(raw_client().get(format!("{}/", janus.url)))
        .send()
        .await
        .expect("answer");
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("page");
    assert!(page.contains("team-a"), "{page}");
    assert!(
        !page.contains(&upstream) && !page.contains(&*janus.storage.to_string_lossy()),
        "{page}"
    );
    // The unrestricted tenant reads, and the upstream sees its organisation, never the one the
    // client sent.
    let r = root(raw_client().get(format!("{}/api/v1/labels", janus.url)))
        .header("X-Scope-OrgID", "org-a")
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    assert_eq!(
        seen.lock().expect("lock").as_slice(),
        ["org-ops".to_string()]
    );

    let metrics = root(raw_client().get(format!("{}/metrics", janus.url)))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for line in [
        r#"janus_tenant_requests_total{tenant="team-a",result="forbidden"} 5"#,
        r#"janus_tenant_pushed_bytes_total{tenant="team-b"}"#,
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    janus.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Without basic-auth users: a bearer token from a tenant's file, or a proxy's header believed
/// only from the proxy's address (here 127.0.0.1, where the test runs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_a_proxys_header() {
    let dir = support::temp_dir("tenants-token");
    let janus = start(&dir, &support::closed_port_url().await, false).await;
    let (status, body) = push(&janus, |r| r.bearer_auth("token-of-a"), &["shop"]).await;
    assert_eq!(status, 204, "{body}");
    let (status, body) = push(&janus, |r| r.bearer_auth("token-of-a"), &["b"]).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = push(&janus, |r| r.bearer_auth("not-a-token"), &["shop"]).await;
    assert_eq!(status, 401);
    let (status, body) = push(&janus, |r| r.header("X-Forwarded-User", "bob"), &["b"]).await;
    assert_eq!(status, 204, "{body}");
    let (status, _) = push(&janus, |r| r.header("X-Forwarded-User", "mallory"), &["b"]).await;
    assert_eq!(status, 401);
    // A basic-auth header is not believed when --web.config.file did not verify it.
    let (status, _) = push(&janus, |r| r.basic_auth("root", Some("anything")), &["x"]).await;
    assert_eq!(status, 401);
    assert_eq!(namespaces_written(&janus.storage), ["b", "shop"]);
    // /metrics: for an unrestricted tenant only (it counts every tenant's requests).
    let metrics = |who: &'static str| {
        raw_client()
            .get(format!("{}/metrics", janus.url))
            .header("X-Forwarded-User", who)
            .send()
    };
    let r = metrics("alice").await.expect("answer");
    assert_eq!(r.status(), 403);
    let text = metrics("root")
        .await
        .expect("answer")
        .text()
        .await
        .expect("text");
    for line in [
        r#"janus_tenant_requests_total{tenant="none",result="unidentified"} 3"#,
        r#"janus_tenant_requests_total{tenant="team-a",result="allowed"} 2"#,
        r#"janus_tenant_pushed_bytes_total{tenant="team-a"}"#,
    ] {
        assert!(text.contains(line), "{line} missing:\n{text}");
    }
    janus.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The header is believed only from the configured addresses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_from_elsewhere_is_not_believed() {
    let dir = support::temp_dir("tenants-header");
    std::fs::write(dir.join("a.tokens"), "t\n").expect("tokens");
    let path = dir.join("tenants.yml");
    std::fs::write(
        &path,
        TENANTS.replace("from: [127.0.0.1]", "from: [10.0.0.0/8]"),
    )
    .expect("tenants");
    let tenants = janus::auth::tenants::Tenants::load(&path).expect("loads");
    let janus = support::start_janus(&support::closed_port_url().await, move |c| {
        c.tenants = Some(Arc::new(tenants));
    })
    .await;
    let (status, _) = push(&janus, |r| r.header("X-Forwarded-User", "root"), &["x"]).await;
    assert_eq!(status, 401);
    assert!(namespaces_written(&janus.storage).is_empty());
    janus.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A bad tenants file stops Janus at start-up with one line naming the key.
#[test]
fn a_bad_tenants_file_stops_janus_naming_the_key() {
    let dir = support::temp_dir("tenants-bad");
    let path = dir.join("tenants.yml");
    std::fs::write(&path, "tenants:\n  a:\n    namespaces: ['(']\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_janus"))
        .arg(format!("--auth.tenants-file={}", path.display()))
        .arg("--web.listen-address=127.0.0.1:0")
        .arg(format!("--storage.path={}", dir.join("store").display()))
        .output()
        .expect("janus runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("tenants.a.namespaces"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Loki face for a restricted tenant: every selector narrowed to its namespaces, whatever
/// it names (another namespace, a regex over all, a negation, node logs), and "no selector"
/// meaning its own streams only; answers never show another tenant's namespace or lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loki_face_shows_a_tenant_only_its_namespaces() {
    let dir = support::temp_dir("tenants-loki");
    let janus = start(&dir, &support::closed_port_url().await, true).await;
    let alice = |r: reqwest::RequestBuilder| r.basic_auth("alice", Some("pw"));
    let bob = |r: reqwest::RequestBuilder| r.basic_auth("bob", Some("pw"));
    let root = |r: reqwest::RequestBuilder| r.basic_auth("root", Some("pw"));
    assert_eq!(push(&janus, alice, &["shop", "cart-1"]).await.0, 204);
    assert_eq!(push(&janus, bob, &["b"]).await.0, 204);
    assert_eq!(push(&janus, root, &["secret"]).await.0, 204);
    let window = [
        ("start", "1699999000000000000"),
        ("end", "1700001000000000000"),
    ];
    let ask = |who: fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
               path: &'static str,
               params: Vec<(&'static str, &'static str)>| {
        let url = format!("{}{path}", janus.url);
        async move {
            let r = who(raw_client().get(url))
                .query(&params)
                .query(&window)
                .send()
                .await
                .expect("answer");
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
    };
    let foreign = ["\"b\"", "secret", "from b"];
    let shows_only_own = |what: &str, body: &str| {
        for word in foreign {
            assert!(!body.contains(word), "{what} leaked {word}: {body}");
        }
    };
    // Lines and metrics: whatever the selector names, only the tenant's namespaces answer.
    for query in [
        r#"{namespace="b"}"#,
        r#"{namespace=~".+"}"#,
        r#"{namespace=~"shop|b"}"#,
        r#"{namespace!="shop", pod=~".+"}"#,
        r#"{namespace=~".*", pod=~".+"} |= "from""#,
        r#"{node=~".+"}"#,
        r#"sum by (namespace) (count_over_time({namespace=~".+"}[1h]))"#,
        r#"count_over_time({namespace="secret"}[1h]) or vector(0)"#,
    ] {
        let (status, body) = ask(alice, "/loki/api/v1/query_range", vec![("query", query)]).await;
        assert_eq!(status, 200, "{query}: {body}");
        shows_only_own(query, &body);
    }
    let (_, body) = ask(
        alice,
        "/loki/api/v1/query_range",
        vec![("query", r#"{namespace=~".+"}"#)],
    )
    .await;
    assert!(
        body.contains("hello from shop") && body.contains("hello from cart-1"),
        "{body}"
    );
    let (_, body) = ask(
        alice,
        "/loki/api/v1/query_range",
        vec![("query", r#"{namespace="b"}"#)],
    )
    .await;
    assert!(body.contains(r#""result":[]"#), "{body}");
    // Metadata: label values, series, volumes, stats, detected labels.
    for (path, params) in [
        ("/loki/api/v1/labels", vec![]),
        ("/loki/api/v1/label/namespace/values", vec![]),
        ("/loki/api/v1/series", vec![]),
        (
            "/loki/api/v1/series",
            vec![("match[]", r#"{namespace=~".+"}"#)],
        ),
        (
            "/loki/api/v1/index/volume",
            vec![("query", r#"{namespace=~".+"}"#)],
        ),
        (
            "/loki/api/v1/index/stats",
            vec![("query", r#"{namespace="b"}"#)],
        ),
        ("/loki/api/v1/detected_labels", vec![]),
        (
            "/loki/api/v1/detected_fields",
            vec![("query", r#"{namespace=~".+"}"#)],
        ),
    ] {
        let (status, body) = ask(alice, path, params.clone()).await;
        assert_eq!(status, 200, "{path} {params:?}: {body}");
        shows_only_own(path, &body);
    }
    let (_, body) = ask(alice, "/loki/api/v1/label/namespace/values", vec![]).await;
    assert!(body.contains("cart-1") && body.contains("shop"), "{body}");
    let (_, body) = ask(
        alice,
        "/loki/api/v1/index/stats",
        vec![("query", r#"{namespace="b"}"#)],
    )
    .await;
    assert!(body.contains(r#""entries":0"#), "{body}");
    // LetheQL on the Prometheus API is narrowed the same way.
    for query in [r#"pod{namespace=~".+"}"#, r#"pod{namespace="b"}"#] {
        let (status, body) = ask(alice, "/api/v1/query_range", prometheus_window(query)).await;
        assert_eq!(status, 200, "{query}: {body}");
        shows_only_own(query, &body);
    }
    let (_, body) = ask(
        alice,
        "/api/v1/query_range",
        prometheus_window(r#"pod{namespace=~".+"}"#),
    )
    .await;
    assert!(body.contains("hello from shop"), "{body}");
    // A metric selector on the Loki face reaches no upstream for anyone.
    let (status, body) = ask(alice, "/loki/api/v1/query", vec![("query", "up")]).await;
    assert_ne!(status, 200, "{body}");
    // The unrestricted tenant sees every namespace.
    let (_, body) = ask(root, "/loki/api/v1/label/namespace/values", vec![]).await;
    assert!(body.contains("secret") && body.contains("\"b\""), "{body}");
    janus.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Prometheus API's window (seconds; it comes before the Loki window the helper adds, and
/// the first value of a parameter is the one read).
fn prometheus_window(query: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("query", query),
        ("start", "1699999000"),
        ("end", "1700001000"),
        ("step", "60"),
    ]
}

/// A tail is narrowed as a query is: a restricted tenant tailing every namespace receives only
/// its own lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_shows_a_tenant_only_its_namespaces() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let dir = support::temp_dir("tenants-tail");
    let janus = start(&dir, &support::closed_port_url().await, true).await;
    let root = |r: reqwest::RequestBuilder| r.basic_auth("root", Some("pw"));
    assert_eq!(push(&janus, root, &["shop", "b"]).await.0, 204);
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", r#"{namespace=~".+"}"#)
        .append_pair("start", "1699999000000000000")
        .finish();
    let url = format!(
        "{}/loki/api/v1/tail?{query}",
        janus.url.replacen("http://", "ws://", 1)
    );
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        "Basic YWxpY2U6cHc=".parse().expect("header"), // alice:pw
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("tail opens");
    let message = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
        .await
        .expect("a message in time")
        .expect("a message")
        .expect("no error");
    let text = message.into_text().expect("text").to_string();
    assert!(text.contains("hello from shop"), "{text}");
    assert!(
        !text.contains("from b") && !text.contains(r#""b""#),
        "{text}"
    );
    drop(socket);
    janus.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The Prometheus API against the real Prometheus: a restricted tenant's metric queries are
/// confined to its namespaces (the same bytes as the confined query asked directly), crafted
/// queries show no other namespace, a query Janus cannot parse is refused for it with the
/// reason, and the unrestricted tenant's answers stay the upstream's bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metric_queries_are_confined_to_the_tenants_namespaces() {
    let prometheus = support::required_env("JANUS_TEST_PROMETHEUS");
    let dir = support::temp_dir("tenants-metrics");
    let janus = start(&dir, &prometheus, true).await;
    let at = "1704081600"; // 4 h into the compatibility data
    let ask = |base: String, user: Option<&'static str>, query: String| async move {
        let mut r = raw_client()
            .get(format!("{base}/api/v1/query"))
            .query(&[("query", query.as_str()), ("time", at)]);
        if let Some(user) = user {
            r = r.basic_auth(user, Some("pw"));
        }
        let r = r.send().await.expect("answer");
        (r.status().as_u16(), r.text().await.expect("body"))
    };
    let scope = r#"namespace=~"(?:shop)|(?:cart-.*)""#;
    // The same bytes as the confined query asked of Prometheus directly.
    for (query, confined) in [
        (
            "sum by (namespace) (rate(http_requests_total[5m]))".to_string(),
            format!("sum by (namespace) (rate(http_requests_total{{{scope}}}[5m]))"),
        ),
        (
            r#"count by (namespace) ({__name__=~".+"})"#.to_string(),
            format!(r#"count by (namespace) ({{__name__=~".+",{scope}}})"#),
        ),
    ] {
        let (status, through) = ask(janus.url.clone(), Some("alice"), query.clone()).await;
        let (_, direct) = ask(prometheus.clone(), None, confined).await;
        assert_eq!(status, 200, "{query}: {through}");
        assert_eq!(through, direct, "{query}");
        // Asked again, the confined text comes from the tenant's memory: the same bytes.
        let (_, again) = ask(janus.url.clone(), Some("alice"), query.clone()).await;
        assert_eq!(again, direct, "{query} (remembered)");
        assert!(through.contains(r#""namespace":"shop""#), "{through}");
    }
    // Crafted attempts: nothing of another namespace.
    for query in [
        r#"http_requests_total{namespace="auth"}"#,
        r#"http_requests_total{namespace!="shop"}"#,
        r#"http_requests_total{namespace=~"shop|auth"}"#,
        r#"http_requests_total{namespace=~".*"}"#,
        r#"{__name__=~".+", namespace=~"auth|billing"}"#,
        "up or on () vector(1)",
        "sum(rate(http_requests_total[5m])) by (namespace) unless on () cpu_usage_ratio{namespace=\"auth\"}",
        r#"label_replace(cpu_usage_ratio, "namespace", "shop", "namespace", ".*")"#,
        "max_over_time(sum by (namespace) (rate(http_requests_total[1m]))[1h:5m])",
        r#"http_requests_total{NAMESPACE="auth"}"#,
    ] {
        let (status, body) = ask(janus.url.clone(), Some("alice"), query.to_string()).await;
        assert_eq!(status, 200, "{query}: {body}");
        for other in ["auth-", "billing", r#""namespace":"auth""#] {
            assert!(!body.contains(other), "{query} leaked {other}: {body}");
        }
    }
    // `auth` has this metric, but not for the tenant: absent, labelled from its own matcher
    // as Prometheus labels it over the tenant's series alone.
    let (_, body) = ask(
        janus.url.clone(),
        Some("alice"),
        r#"absent(cpu_usage_ratio{namespace="auth"})"#.into(),
    )
    .await;
    assert!(
        body.contains(r#""result":[{"metric":{"namespace":"auth"},"value":[1704081600,"1"]}]"#),
        "{body}"
    );
    let (_, body) = ask(
        janus.url.clone(),
        Some("alice"),
        "up or on () vector(1)".into(),
    )
    .await;
    assert!(!body.contains("instance"), "up is no tenant's: {body}");
    // Label names, values and series: only the tenant's series (no `sensor`, whose series have
    // no namespace; no `env` job; no other namespace).
    let meta = |path: &'static str, params: Vec<(&'static str, &'static str)>, user| {
        let url = format!("{}{path}", janus.url);
        async move {
            let r = raw_client()
                .get(url)
                .query(&params)
                .basic_auth(user, Some("pw"))
                .send()
                .await
                .expect("answer");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };
    for (path, params) in [
        ("/api/v1/labels", vec![]),
        ("/api/v1/label/namespace/values", vec![]),
        ("/api/v1/label/job/values", vec![]),
        ("/api/v1/series", vec![("match[]", r#"{__name__=~".+"}"#)]),
        (
            "/api/v1/series",
            vec![("match[]", r#"http_requests_total{namespace="auth"}"#)],
        ),
        ("/api/v1/series", vec![]),
        ("/api/v1/labels", vec![("match[]", "up")]),
    ] {
        let (status, body) = meta(path, params.clone(), "alice").await;
        assert_eq!(status, 200, "{path} {params:?}: {body}");
        for other in ["auth", "billing", "sensor", "\"env\"", "instance"] {
            assert!(
                !body.contains(other),
                "{path} {params:?} leaked {other}: {body}"
            );
        }
    }
    let (_, body) = meta("/api/v1/label/namespace/values", vec![], "alice").await;
    assert!(body.contains("\"shop\""), "{body}");
    let (status, body) = meta("/api/v1/series", vec![("match[]", "sum(up)")], "alice").await;
    assert_eq!(status, 400, "{body}");
    // The unrestricted tenant: the upstream's bytes.
    let (_, through) = meta("/api/v1/label/namespace/values", vec![], "root").await;
    let direct = raw_client()
        .get(format!("{prometheus}/api/v1/label/namespace/values"))
        .send()
        .await
        .expect("direct")
        .text()
        .await
        .expect("body");
    assert_eq!(through, direct);
    // A query Janus cannot parse: refused for the tenant, saying why; passed through untouched
    // for the unrestricted one.
    let unparsable = "rate(http_requests_total)".to_string();
    let (status, body) = ask(janus.url.clone(), Some("alice"), unparsable.clone()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("cannot be confined"), "{body}");
    // The refusal is remembered as it was given.
    let again = ask(janus.url.clone(), Some("alice"), unparsable.clone()).await;
    assert_eq!(again, (status, body));
    let (status, through) = ask(janus.url.clone(), Some("root"), unparsable.clone()).await;
    let (direct_status, direct) = ask(prometheus.clone(), None, unparsable).await;
    assert_eq!((status, through), (direct_status, direct));
    let everything = "sum by (namespace) (rate(http_requests_total[5m]))".to_string();
    let (_, through) = ask(janus.url.clone(), Some("root"), everything.clone()).await;
    let (_, direct) = ask(prometheus.clone(), None, everything).await;
    assert_eq!(through, direct);
    assert!(through.contains(r#""namespace":"auth""#));
    janus.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A tenant over its push rate gets Loki's 429 with `Retry-After`, and nothing of the push is
/// written; other tenants push on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_push_rate_is_its_own() {
    let dir = support::temp_dir("tenants-rate");
    let janus = start(&dir, &support::closed_port_url().await, true).await;
    let bob = |r: reqwest::RequestBuilder| r.basic_auth("bob", Some("pw"));
    let alice = |r: reqwest::RequestBuilder| r.basic_auth("alice", Some("pw"));
    // 20 streams of "hello from b" (12 bytes): 240 bytes, within the 300-byte burst.
    let twenty = ["b"; 20];
    assert_eq!(push(&janus, bob, &twenty).await.0, 204);
    let file = std::fs::read_dir(janus.storage.join("pod/b"))
        .expect("dir")
        .flatten()
        .next()
        .expect("a file")
        .path();
    let size = std::fs::metadata(&file).expect("size").len();
    let r = bob(raw_client().post(format!("{}/loki/api/v1/push", janus.url)))
        .header("Content-Type", "application/json")
        .body(push_body(&twenty))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .expect("text")
        .parse()
        .expect("seconds");
    assert!((1..=3).contains(&retry), "{retry}");
    let body = r.text().await.expect("body");
    assert!(
        body.contains("Ingestion rate limit exceeded for user team-b"),
        "{body}"
    );
    assert_eq!(std::fs::metadata(&file).expect("size").len(), size);
    // Larger than the burst: refused with no time to retry at.
    let r = bob(raw_client().post(format!("{}/loki/api/v1/push", janus.url)))
        .header("Content-Type", "application/json")
        .body(push_body(&["b"; 40]))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 429);
    assert!(r.headers().get("retry-after").is_none());
    // Another tenant is not slowed.
    assert_eq!(push(&janus, alice, &["shop"; 40]).await.0, 204);
    janus.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Metadata and targets from a real Prometheus scraping two jobs: Janus's own `/metrics`
/// labelled `shop`, Prometheus's labelled `auth`, and two dropped targets discovered in each.
/// The tenant of `shop` sees its job's target and metric names and its log targets; nothing of
/// `auth` or of the namespaces of another tenant's logs, in either list or in the metadata.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_and_targets_show_a_tenant_only_its_own() {
    let dir = support::temp_dir("tenants-targets");
    let exporter = support::start_janus(&support::closed_port_url().await, |_| {}).await;
    let exporter_address = exporter.url.trim_start_matches("http://").to_string();
    let port = support::guarded::free_port();
    let config = format!(
        "global: {{scrape_interval: 1s}}
scrape_configs:
  - job_name: shop-app
    static_configs: [{{targets: ['{exporter_address}'], labels: {{namespace: shop}}}}]
  - job_name: auth-app
    static_configs: [{{targets: ['127.0.0.1:{port}'], labels: {{namespace: auth}}}}]
  - job_name: discovered
    static_configs:
      - {{targets: ['127.0.0.1:1'], labels: {{__meta_kubernetes_namespace: shop}}}}
      - {{targets: ['127.0.0.1:2'], labels: {{__meta_kubernetes_namespace: auth}}}}
    relabel_configs: [{{source_labels: [job], regex: '.*', action: drop}}]
"
    );
    let prometheus = support::prometheus::start(&dir, port, &config, &dir.join("tsdb")).await;
    let janus = start(&dir, &prometheus.url, true).await;
    assert_eq!(
        push(&janus, |r| r.basic_auth("alice", Some("pw")), &["shop"])
            .await
            .0,
        204
    );
    assert_eq!(
        push(&janus, |r| r.basic_auth("bob", Some("pw")), &["b"])
            .await
            .0,
        204
    );
    let ask = |user: &'static str, path: &'static str, query: Vec<(&'static str, String)>| {
        let url = format!("{}{path}", janus.url);
        async move {
            let r = raw_client()
                .get(url)
                .query(&query)
                .basic_auth(user, Some("pw"))
                .send()
                .await
                .expect("answer");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };
    // Until both jobs have been scraped and their metadata is known.
    let mut ready = false;
    let mut seen = String::new();
    for _ in 0..200 {
        let (_, targets) = ask("root", "/api/v1/targets", vec![]).await;
        let (_, metadata) = ask("root", "/api/v1/metadata", vec![]).await;
        seen = format!("{targets}\n{metadata}");
        if targets.matches(r#""health":"up""#).count() >= 4
            && metadata.contains("prometheus_http_requests_total")
            && metadata.contains("janus_build_info")
        {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "prometheus did not scrape both jobs: {seen}");

    let (status, targets) = ask("alice", "/api/v1/targets", vec![]).await;
    assert_eq!(status, 200, "{targets}");
    let v: serde_json::Value = serde_json::from_str(&targets).expect("json");
    let active = v["data"]["activeTargets"].as_array().expect("active");
    let jobs: Vec<&str> = active
        .iter()
        .map(|t| t["labels"]["job"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(jobs, ["shop-app", "pod"], "{targets}");
    assert_eq!(active[1]["labels"]["namespace"], "shop");
    let dropped = v["data"]["droppedTargets"].as_array().expect("dropped");
    assert_eq!(dropped.len(), 1, "{targets}");
    assert_eq!(dropped[0]["discoveredLabels"]["__address__"], "127.0.0.1:1");
    for other in ["auth", r#""b""#, "127.0.0.1:2"] {
        assert!(!targets.contains(other), "{other} leaked: {targets}");
    }
    let (_, only_dropped) = ask(
        "alice",
        "/api/v1/targets",
        vec![("state", "dropped".into())],
    )
    .await;
    assert!(only_dropped.contains("127.0.0.1:1") && !only_dropped.contains("127.0.0.1:2"));
    assert!(!only_dropped.contains("shop-app"), "{only_dropped}");
    // The unrestricted tenant sees everything.
    let (_, all) = ask("root", "/api/v1/targets", vec![]).await;
    for job in ["shop-app", "auth-app", "127.0.0.1:2", r#""namespace":"b""#] {
        assert!(all.contains(job), "{job} missing: {all}");
    }

    let (status, metadata) = ask("alice", "/api/v1/metadata", vec![]).await;
    assert_eq!(status, 200, "{metadata}");
    let v: serde_json::Value = serde_json::from_str(&metadata).expect("json");
    let names: Vec<&String> = v["data"].as_object().expect("object").keys().collect();
    assert!(names.iter().any(|n| n.starts_with("janus_")), "{metadata}");
    assert!(names.iter().any(|n| *n == "pod"), "{metadata}");
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("prometheus_") || *n == "node"),
        "{metadata}"
    );
    let (_, theirs) = ask(
        "alice",
        "/api/v1/metadata",
        vec![("metric", "prometheus_http_requests_total".into())],
    )
    .await;
    assert_eq!(theirs, r#"{"status":"success","data":{}}"#);
    // `limit` counts what the tenant may see, not what the upstream holds.
    let (_, one) = ask("alice", "/api/v1/metadata", vec![("limit", "1".into())]).await;
    let v: serde_json::Value = serde_json::from_str(&one).expect("json");
    assert_eq!(v["data"].as_object().map(|o| o.len()), Some(1), "{one}");
    let (_, all) = ask("root", "/api/v1/metadata", vec![]).await;
    assert!(all.contains("prometheus_http_requests_total"), "{all}");

    janus.stop().await;
    exporter.stop().await;
    drop(prometheus);
    let _ = std::fs::remove_dir_all(&dir);
}
