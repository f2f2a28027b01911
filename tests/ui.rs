//! The query page in a real browser (Debian's Chromium, headless, over the DevTools protocol),
//! against Janus in front of the real Prometheus with pushed logs: what a person sees is what
//! the APIs answered.

mod support;

use serde_json::json;
use support::browser::Browser;
use support::{required_env, start_janus, TestJanus};

/// 2024-01-01T03:00:00Z: the compat data has `sum(up) == 3` there.
const MID: i64 = 1_704_078_000;
const MID_INPUT: &str = "2024-01-01 03:00:00";

fn ns(seconds: i64) -> String {
    (seconds * 1_000_000_000).to_string()
}

/// `count` lines of one pod, two seconds apart, ending two seconds before MID; every third
/// one says "timeout".
async fn push_lines(janus: &TestJanus, namespace: &str, count: i64) {
    let mut values = Vec::new();
    for i in 0..count {
        let word = if i % 3 == 0 { "timeout" } else { "ok" };
        values.push(json!([
            ns(MID - 2 * count + 2 * i),
            format!("req {i} {word} <b>")
        ]));
    }
    for chunk in values.chunks(5000) {
        support::push_json(
            janus,
            &json!({"streams": [{"stream": {"namespace": namespace, "pod": "web-a", "container": "app"}, "values": chunk}]}),
        )
        .await;
    }
}

fn page(janus: &TestJanus, params: &[(&str, &str)]) -> String {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!("{}/graph?{query}", janus.url)
}

/// Opens the page with these link parameters (light scheme, no credentials) and waits for its
/// query to end; says how it ended.
async fn show(browser: &mut Browser, janus: &TestJanus, params: &[(&str, &str)]) -> String {
    browser.open(&page(janus, params), &[], false).await;
    browser.settled().await
}

/// How many log lines the page holds.
const LINES_HELD: &str = "document.getElementById('log-list').dataset.lines";

/// Opens a table link, and the value in the table's first row once its query is done.
async fn table_at(browser: &mut Browser, janus: &TestJanus, params: &[(&str, &str)]) -> String {
    assert_eq!(show(browser, janus, params).await, "done");
    text_of(browser, "#table tbody tr td:last-child").await
}

async fn text_of(browser: &mut Browser, selector: &str) -> String {
    browser
        .eval(&format!(
            "document.querySelector({})?.textContent ?? ''",
            json!(selector)
        ))
        .await
        .as_str()
        .unwrap_or_default()
        .to_string()
}

async fn number(browser: &mut Browser, expression: &str) -> i64 {
    let v = browser.eval(expression).await;
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        .unwrap_or_else(|| panic!("{expression} = {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_lines_show_newest_first_with_their_terms_marked_and_page_back() {
    let janus = start_janus(&required_env("JANUS_TEST_PROMETHEUS"), |_| {}).await;
    push_lines(&janus, "page", 1500).await;
    let mut browser = Browser::launch().await;
    for expr in [
        r#"pod{namespace="page"} |= "timeout""#,
        r#"{namespace="page"} |= "timeout""#,
    ] {
        assert_eq!(
            show(
                &mut browser,
                &janus,
                &[
                    ("g0.expr", expr),
                    ("g0.range_input", "1h"),
                    ("g0.end_input", MID_INPUT),
                    ("g0.limit", "200"),
                ]
            )
            .await,
            "done",
            "{expr}"
        );
        assert_eq!(
            number(&mut browser, LINES_HELD).await,
            200,
            "{expr}: one page"
        );
        // Newest first: of 1,500 lines the newest "timeout" is req 1497; the markup in the
        // line is shown as text.
        let first = text_of(&mut browser, ".log-row").await;
        assert!(
            first.contains("page/web-a/app req 1497 timeout <b>"),
            "{expr}: {first}"
        );
        assert_eq!(text_of(&mut browser, ".log-row mark").await, "timeout");
        assert_eq!(
            number(
                &mut browser,
                "document.querySelectorAll('.log-row b').length"
            )
            .await,
            0
        );
        // The histogram counts every matching line of the window, not just the page.
        browser
            .wait_for("document.getElementById('volume').dataset.total")
            .await;
        assert_eq!(
            number(
                &mut browser,
                "document.getElementById('volume').dataset.total"
            )
            .await,
            500,
            "{expr}"
        );
        // "Older lines" pages back without repeating or skipping a line.
        for held in [400, 500] {
            browser
                .eval("document.getElementById('more').click()")
                .await;
            browser.wait_for(&format!("{LINES_HELD} == {held}")).await;
        }
        assert_eq!(
            browser.eval("document.getElementById('more').hidden").await,
            json!(true),
            "{expr}: all 500 held, nothing more before"
        );
        browser
            .eval("const l = document.getElementById('log-list'); l.scrollTop = l.scrollHeight; new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            .await;
        let rows = browser
            .eval("[...document.querySelectorAll('.log-row')].map(r => r.textContent)")
            .await;
        let last = rows
            .as_array()
            .and_then(|r| r.last())
            .and_then(|r| r.as_str())
            .unwrap_or_default()
            .to_string();
        assert!(
            last.contains("req 0 timeout"),
            "{expr}: oldest last: {last}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_lines_exist_only_where_they_are_seen() {
    let janus = start_janus(&required_env("JANUS_TEST_PROMETHEUS"), |_| {}).await;
    push_lines(&janus, "many", 10_000).await;
    let mut browser = Browser::launch().await;
    assert_eq!(
        show(
            &mut browser,
            &janus,
            &[
                ("g0.expr", r#"pod{namespace="many"}"#),
                ("g0.range_input", "6h"),
                ("g0.end_input", MID_INPUT),
                ("g0.limit", "10000"),
            ]
        )
        .await,
        "done"
    );
    assert_eq!(number(&mut browser, LINES_HELD).await, 10_000);
    let rows = number(&mut browser, "document.querySelectorAll('.log-row').length").await;
    assert!(rows > 10 && rows < 150, "{rows} rows in the document");
    // Halfway down, the rows there are drawn (line 5,000 from the newest is req 4999).
    browser
        .eval("const l = document.getElementById('log-list'); l.scrollTop = 5000 * 20; new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        .await;
    let shown = browser
        .eval("[...document.querySelectorAll('.log-row')].map(r => r.textContent).join('\\n')")
        .await;
    assert!(
        shown.as_str().unwrap_or_default().contains("req 4999 "),
        "{shown}"
    );
    // Arrow keys walk the lines; the detail shows the whole of the selected one.
    browser
        .eval("document.querySelector('.log-row').click(); document.getElementById('log-list').dispatchEvent(new KeyboardEvent('keydown', {key: 'ArrowDown', bubbles: true}))")
        .await;
    let detail = text_of(&mut browser, "#log-detail").await;
    assert!(detail.contains("\"namespace\":\"many\""), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mode_follows_new_lines() {
    let janus = start_janus(&required_env("JANUS_TEST_PROMETHEUS"), |_| {}).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let push = |line: &str, at: i64| json!({"streams": [{"stream": {"namespace": "live", "pod": "p", "container": "c"}, "values": [[ns(at), line]]}]});
    support::push_json(&janus, &push("before the page", now - 30)).await;
    let mut browser = Browser::launch().await;
    // Opened on a past window, which holds nothing...
    assert_eq!(
        show(
            &mut browser,
            &janus,
            &[
                ("g0.expr", r#"pod{namespace="live"}"#),
                ("g0.range_input", "5m"),
                ("g0.end_input", MID_INPUT),
            ]
        )
        .await,
        "done"
    );
    assert_eq!(number(&mut browser, LINES_HELD).await, 0);
    // ... then live: the window ends now, and follows.
    browser
        .eval("document.getElementById('live').click()")
        .await;
    browser.wait_for(&format!("{LINES_HELD} == 1")).await;
    assert_eq!(
        browser.eval("document.getElementById('end').value").await,
        json!("")
    );
    assert!(browser
        .eval("location.search")
        .await
        .as_str()
        .unwrap_or_default()
        .contains("g0.live=1"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    support::push_json(&janus, &push("after the page", now)).await;
    browser.wait_for(&format!("{LINES_HELD} == 2")).await;
    let first = text_of(&mut browser, ".log-row").await;
    assert!(first.contains("after the page"), "{first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_metric_query_draws_a_series_and_fills_the_table() {
    let janus = start_janus(&required_env("JANUS_TEST_PROMETHEUS"), |_| {}).await;
    let mut browser = Browser::launch().await;
    assert_eq!(
        show(
            &mut browser,
            &janus,
            &[
                ("g0.expr", "sum by (job) (up)"),
                ("g0.tab", "0"),
                ("g0.range_input", "1h"),
                ("g0.end_input", MID_INPUT),
            ]
        )
        .await,
        "done"
    );
    let series = number(
        &mut browser,
        "document.getElementById('chart').dataset.series",
    )
    .await;
    assert!(series >= 1, "{series} series");
    assert!(
        number(
            &mut browser,
            "document.getElementById('chart').dataset.points"
        )
        .await
            > 1
    );
    assert_eq!(
        number(
            &mut browser,
            "document.querySelectorAll('#chart canvas').length"
        )
        .await,
        1
    );
    let legend = text_of(&mut browser, "#chart .u-legend").await;
    assert!(legend.contains("job="), "{legend}");
    // The table tab asks for the instant at the end, and the link says so.
    browser
        .eval("document.getElementById('tab-table').click()")
        .await;
    browser
        .wait_for("document.getElementById('table').dataset.rows && document.body.dataset.state === 'done'")
        .await;
    assert!(browser
        .eval("location.search")
        .await
        .as_str()
        .unwrap_or_default()
        .contains("g0.tab=1"));
    // A link in Prometheus's format for the table (an alert's generatorURL).
    assert_eq!(
        table_at(
            &mut browser,
            &janus,
            &[
                ("g0.expr", "sum(up)"),
                ("g0.tab", "1"),
                ("g0.moment_input", MID_INPUT),
            ]
        )
        .await,
        "3"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_expression_graphs_and_tabulates() {
    let janus = start_janus(&required_env("JANUS_TEST_PROMETHEUS"), |_| {}).await;
    // 30 "timeout" lines in the five minutes before MID.
    let values: Vec<_> = (0..30)
        .map(|i| json!([ns(MID - 290 + i * 9), format!("upstream timeout {i}")]))
        .collect();
    support::push_json(
        &janus,
        &json!({"streams": [{"stream": {"namespace": "shop", "pod": "web", "container": "app"}, "values": values}]}),
    )
    .await;
    let expr = r#"sum(count_over_time(pod{namespace="shop"} |= "timeout" [5m])) + sum(up)"#;
    let mut browser = Browser::launch().await;
    assert_eq!(
        show(
            &mut browser,
            &janus,
            &[
                ("g0.expr", expr),
                ("g0.range_input", "30m"),
                ("g0.end_input", MID_INPUT),
            ]
        )
        .await,
        "done"
    );
    assert_eq!(
        number(
            &mut browser,
            "document.getElementById('chart').dataset.series"
        )
        .await,
        1
    );
    assert!(
        number(
            &mut browser,
            "document.getElementById('chart').dataset.points"
        )
        .await
            > 1
    );
    assert_eq!(
        table_at(
            &mut browser,
            &janus,
            &[
                ("g0.expr", expr),
                ("g0.tab", "1"),
                ("g0.end_input", MID_INPUT),
            ]
        )
        .await,
        "33"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_query_shows_the_apis_error_at_its_position() {
    let janus = start_janus(&required_env("JANUS_TEST_PROMETHEUS"), |_| {}).await;
    let mut browser = Browser::launch().await;
    // PromQL (the upstream's parser's words), LetheQL and LogQL (Janus's).
    for (expr, words, col) in [
        ("sum(rate(up[5m])", "unclosed left parenthesis", 17),
        // A mixed expression: Janus's parser, placed where Prometheus places it.
        (
            r#"sum(count_over_time(pod{namespace="x"}[5m])) + sum(up"#,
            "unclosed left parenthesis",
            54,
        ),
        (
            r#"pod{namespace="x"} |= "#,
            "line filter |= needs a string literal",
            22,
        ),
        (
            r#"{namespace="x"} |= "#,
            "line filter |= needs a string literal",
            19,
        ),
    ] {
        browser
            .open(&page(&janus, &[("g0.expr", expr)]), &[], false)
            .await;
        assert_eq!(browser.settled().await, "error", "{expr}");
        let message = text_of(&mut browser, "#error .message").await;
        assert!(message.contains(words), "{expr}: {message}");
        assert_eq!(
            number(
                &mut browser,
                "document.querySelector('#error .where').dataset.col"
            )
            .await,
            col,
            "{expr}"
        );
        let caret = browser
            .eval("document.querySelector('#error .where').textContent.split('\\n')[1]")
            .await;
        assert_eq!(caret, json!(format!("{}^", " ".repeat(col as usize - 1))));
        // The cursor is put where the error is.
        assert_eq!(
            number(
                &mut browser,
                "document.getElementById('expr').selectionStart"
            )
            .await,
            col - 1
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_tenant_sees_only_its_namespaces_in_the_label_browser() {
    let dir = support::temp_dir("ui-tenants");
    std::fs::write(
        dir.join("tenants.yml"),
        "tenants:\n  team-a:\n    users: [alice]\n    namespaces: [shop]\n  ops:\n    users: [root]\n    all: true\n",
    )
    .expect("tenants");
    let hash = bcrypt::hash("pw", 4).expect("bcrypt");
    std::fs::write(
        dir.join("web.yml"),
        format!("basic_auth_users:\n  alice: {hash}\n  root: {hash}\n"),
    )
    .expect("web");
    let tenants = janus::auth::tenants::Tenants::load(&dir.join("tenants.yml")).expect("tenants");
    let web = janus::auth::web_config::WebConfig::load(&dir.join("web.yml")).expect("web");
    let web_path = dir.join("web.yml");
    let janus = start_janus(&required_env("JANUS_TEST_PROMETHEUS"), move |c| {
        c.tenants = Some(std::sync::Arc::new(tenants));
        c.web = web;
        c.web_config_file = Some(web_path);
    })
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let body = json!({"streams": [
        {"stream": {"namespace": "shop", "pod": "a", "container": "c"}, "values": [[ns(now - 60), "mine"]]},
        {"stream": {"namespace": "secret", "pod": "b", "container": "c"}, "values": [[ns(now - 60), "not mine"]]},
    ]});
    let pushed = support::raw_client()
        .post(format!("{}/loki/api/v1/push", janus.url))
        .basic_auth("root", Some("pw"))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("push");
    assert_eq!(pushed.status(), 204);
    // The page itself is behind the same credentials.
    let refused = support::raw_client()
        .get(format!("{}/graph", janus.url))
        .send()
        .await
        .expect("answer");
    assert_eq!(refused.status(), 401);

    let mut browser = Browser::launch().await;
    for user in ["alice", "root"] {
        use base64::Engine as _;
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw"));
        browser
            .open(
                &page(&janus, &[("g0.range_input", "1h")]),
                &[("Authorization", &format!("Basic {credentials}"))],
                false,
            )
            .await;
        browser
            .eval("document.getElementById('labels-toggle').click()")
            .await;
        browser
            .wait_for("document.getElementById('label-browser').dataset.names")
            .await;
        browser
            .eval("[...document.querySelectorAll('#label-names button')].find(b => b.textContent === 'namespace').click()")
            .await;
        browser
            .wait_for("document.getElementById('label-browser').dataset.values !== undefined")
            .await;
        let values = browser
            .eval("document.getElementById('label-browser').dataset.values")
            .await;
        let values: Vec<&str> = values.as_str().unwrap_or_default().lines().collect();
        if user == "alice" {
            assert_eq!(values, ["shop"], "{user}");
        } else {
            // The unrestricted tenant sees every namespace (and metrics' own, if any).
            assert!(
                values.contains(&"shop") && values.contains(&"secret"),
                "{values:?}"
            );
        }
        // Clicking a value writes its matcher into the expression.
        browser
            .eval("[...document.querySelectorAll('#label-values button')].find(b => b.textContent === 'shop').click()")
            .await;
        assert_eq!(
            browser.eval("document.getElementById('expr').value").await,
            json!(r#"{namespace="shop"}"#)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_links_to_the_query_page_and_assets_are_embedded() {
    let janus = start_janus(&required_env("JANUS_TEST_PROMETHEUS"), |_| {}).await;
    let (status, _, body) = support::get(&janus, "/", &[]).await;
    assert_eq!(status, 200);
    assert!(body.contains("href=\"graph\""), "{body}");
    for (path, kind) in [
        ("/graph", "text/html"),
        ("/ui/graph.js", "text/javascript"),
        ("/ui/janus.css", "text/css"),
        ("/ui/uPlot.iife.min.js", "text/javascript"),
        ("/ui/LICENSE-uPlot.txt", "text/plain"),
    ] {
        let (status, content_type, _) = support::get(&janus, path, &[]).await;
        assert_eq!(status, 200, "{path}");
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
    }
    // The page may load and ask only Janus; a second load costs a 304.
    let first = support::raw_client()
        .get(format!("{}/graph", janus.url))
        .send()
        .await
        .expect("page");
    let csp = first.headers()["content-security-policy"]
        .to_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        csp.contains("default-src 'self'") && csp.contains("connect-src 'self'"),
        "{csp}"
    );
    let etag = first.headers()["etag"].clone();
    let again = support::raw_client()
        .get(format!("{}/graph", janus.url))
        .header("If-None-Match", etag)
        .send()
        .await
        .expect("page");
    assert_eq!(again.status(), 304);
    let (status, _, _) = support::get(&janus, "/ui/%2e%2e%2fCargo.toml", &[]).await;
    assert_eq!(status, 404);
    let (status, _, _) = support::get(&janus, "/ui/nothing.js", &[]).await;
    assert_eq!(status, 404);
}

/// `docs/benchmarks/query_page.sh`: what the page weighs on the wire, and how long a person
/// waits for a 1,000-line answer (navigation to lines painted, in a new tab each time) beside
/// the same query asked of the API alone. Printed, not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: docs/benchmarks/query_page.sh runs it"]
async fn measure_the_page() {
    let janus = start_janus(&support::closed_port_url().await, |_| {}).await;
    // 20,000 lines over the 11 hours before MID; the page asks for the newest 1,000 of the 6,667
    // that match.
    push_lines(&janus, "bench", 20_000).await;
    let client = support::raw_client();
    let mut wire = 0;
    let mut raw = 0;
    for path in [
        "/graph",
        "/ui/graph.js",
        "/ui/janus.css",
        "/ui/uPlot.iife.min.js",
        "/ui/uPlot.min.css",
    ] {
        let url = format!("{}{path}", janus.url);
        let packed = client
            .get(&url)
            .header("Accept-Encoding", "gzip")
            .send()
            .await
            .expect("asset");
        wire += packed.bytes().await.expect("bytes").len();
        raw += client
            .get(&url)
            .send()
            .await
            .expect("asset")
            .bytes()
            .await
            .expect("bytes")
            .len();
    }
    println!("page weight: {wire} bytes gzip on the wire, {raw} bytes as stored (HTML, script, styles, uPlot)");

    let expr = r#"pod{namespace="bench"} |= "timeout""#;
    let runs = 15;
    let mut api = Vec::new();
    for _ in 0..runs {
        let started = std::time::Instant::now();
        let r = client
            .post(format!("{}/api/v1/query_range", janus.url))
            .form(&[
                ("query", expr),
                ("start", "2023-12-31T15:00:00Z"),
                ("end", "2024-01-01T03:00:00Z"),
                ("limit", "1000"),
                ("direction", "backward"),
                ("format", "streams"),
            ])
            .send()
            .await
            .expect("api");
        let body = r.bytes().await.expect("body");
        api.push(started.elapsed().as_secs_f64() * 1000.0);
        assert!(body.len() > 10_000);
    }
    let mut browser = Browser::launch().await;
    let mut page_ms = Vec::new();
    let url = page(
        &janus,
        &[
            ("g0.expr", expr),
            ("g0.range_input", "12h"),
            ("g0.end_input", MID_INPUT),
        ],
    );
    for _ in 0..runs {
        browser.open(&url, &[], false).await;
        assert_eq!(browser.settled().await, "done");
        assert_eq!(number(&mut browser, LINES_HELD).await, 1000);
        page_ms.push(number(&mut browser, "document.body.dataset.firstResultMs").await as f64);
    }
    // Where the last run's time went: the document and scripts, then the two queries (lines,
    // and the volume histogram beside them).
    let parts = browser
        .eval("JSON.stringify({scripts_done: Math.round(performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd), fetches: performance.getEntriesByType('resource').filter(r => r.initiatorType === 'fetch').map(r => [Math.round(r.startTime), Math.round(r.responseEnd)])})")
        .await;
    println!(
        "last run, ms from navigation: {}",
        parts.as_str().unwrap_or_default()
    );
    // The floor: the same browser opening a page of plain text from Janus.
    let mut floor = Vec::new();
    for _ in 0..runs {
        browser
            .open(&format!("{}/-/healthy", janus.url), &[], false)
            .await;
        floor.push(
            browser
                .eval("performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd")
                .await
                .as_f64()
                .unwrap_or_default(),
        );
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "1,000-line answer, median of {runs}: API alone {:.1} ms; page, navigation to lines painted {:.1} ms; a plain-text page loaded in the same browser {:.1} ms",
        median(&mut api),
        median(&mut page_ms),
        median(&mut floor)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_works_over_tls_and_loads_nothing_from_elsewhere() {
    let dir = support::temp_dir("ui-tls");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .expect("params")
        .self_signed(&key)
        .expect("certificate");
    std::fs::write(dir.join("server.key"), key.serialize_pem()).expect("key");
    std::fs::write(dir.join("server.pem"), cert.pem()).expect("cert");
    let web_path = dir.join("web.yml");
    std::fs::write(
        &web_path,
        format!(
            "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
            dir.join("server.pem").display(),
            dir.join("server.key").display()
        ),
    )
    .expect("web.yml");
    let web = janus::auth::web_config::WebConfig::load(&web_path).expect("web config loads");
    let janus = start_janus(&required_env("JANUS_TEST_PROMETHEUS"), move |c| {
        c.web = web;
        c.web_config_file = Some(web_path);
    })
    .await;
    let https = janus.url.replace("http://", "https://");
    let pushed = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .expect("client")
        .post(format!("{https}/loki/api/v1/push"))
        .header("Content-Type", "application/json")
        .body(
            json!({"streams": [{"stream": {"namespace": "tls", "pod": "p", "container": "c"},
                "values": [[ns(MID - 10), "over tls"]]}]})
            .to_string(),
        )
        .send()
        .await
        .expect("push");
    assert_eq!(pushed.status(), 204);
    // A certificate no browser knows: this browser is told to accept it.
    let mut browser = Browser::launch_with(&["--ignore-certificate-errors"]).await;
    let url = page(
        &janus,
        &[
            ("g0.expr", r#"pod{namespace="tls"}"#),
            ("g0.range_input", "1h"),
            ("g0.end_input", MID_INPUT),
        ],
    )
    .replace("http://", "https://");
    browser.open(&url, &[], false).await;
    assert_eq!(browser.settled().await, "done");
    assert!(text_of(&mut browser, ".log-row").await.contains("over tls"));
    // Everything the page loaded came from Janus itself.
    let origins = browser
        .eval("[...new Set(performance.getEntriesByType('resource').map(r => new URL(r.name).origin))]")
        .await;
    assert_eq!(origins, json!([https]), "{origins}");
}
