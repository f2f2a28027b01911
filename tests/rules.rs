//! The ruler end to end, with real parts: Debian's Alertmanager receives the alerts, a real
//! Prometheus (remote-write receiver on) receives the recorded series and `ALERTS`, and its own
//! rules are merged into `/api/v1/rules`. Log lines pushed make a LetheQL alert, a LogQL alert
//! and an alert mixing logs with Prometheus's `up` fire with their labels and rendered
//! annotations; they resolve when the lines stop; a restart keeps `for` progress; `promtool
//! check rules` agrees with `janus check rules` on metric-only files; `janus test rules` runs
//! the documented examples offline.

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::raw_client;

const RULES: &str = r#"
groups:
- name: shop
  interval: 1s
  rules:
  - alert: ShopErrorsLetheQL
    expr: sum by (namespace) (count_over_time(pod{namespace="shop"} |= "ERROR" [3s])) > 2
    for: 2s
    labels: {severity: page}
    annotations:
      summary: '{{ $labels.namespace }} logs {{ $value }} errors in 3s'
  - alert: ShopErrorsLogQL
    expr: sum by (namespace) (count_over_time({namespace="shop"} |= "ERROR" [3s])) > 2
  - alert: ShopErrorsWhileUp
    expr: (sum by (namespace) (count_over_time(pod{namespace="shop"} |= "ERROR" [3s])) > 2) and on() (sum(up{job="prometheus"}) > 0)
    annotations:
      summary: 'upstream up: {{ with query "sum(up)" }}{{ . | first | value }}{{ end }}'
  - record: shop:errors:count3s
    expr: sum by (namespace) (count_over_time(pod{namespace="shop"} |= "ERROR" [3s]))
"#;

const ALERT_NAMES: [&str; 3] = ["ShopErrorsLetheQL", "ShopErrorsLogQL", "ShopErrorsWhileUp"];

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64
}

/// Pushes three ERROR lines into `shop` every 300 ms until `stop` is set.
fn keep_pushing(url: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut k = 0;
        while !stop.load(Ordering::Relaxed) {
            let t = now_ns();
            let values: Vec<Value> = (0..3)
                .map(|i| json!([(t + i).to_string(), format!("ERROR payment {k}-{i} failed")]))
                .collect();
            support::push_json_to(
                &url,
                &json!({"streams": [{"stream": {"namespace": "shop", "pod": "web-1", "container": "app"}, "values": values}]}),
            )
            .await;
            k += 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    })
}

async fn wait_for<T>(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            started.elapsed() < limit,
            "{what}: not seen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Janus loads its rules just after it starts listening: wait for them.
async fn rules_loaded(janus: &support::TestJanus) {
    wait_for("the rules loaded", Duration::from_secs(20), async || {
        // (As an unrestricted tenant where there are tenants; the header is ignored otherwise.)
        let r = raw_client()
            .get(format!("{}/prometheus/api/v1/rules", janus.url))
            .header("X-Forwarded-User", "root")
            .send()
            .await
            .expect("rules");
        let v: Value = serde_json::from_str(&r.text().await.expect("body")).unwrap_or(Value::Null);
        v["data"]["groups"]
            .as_array()
            .filter(|g| !g.is_empty())
            .map(|_| ())
    })
    .await;
}

fn names(alerts: &[Value]) -> Vec<String> {
    let mut n: Vec<String> = alerts
        .iter()
        .filter_map(|a| a["labels"]["alertname"].as_str().map(str::to_string))
        .collect();
    n.sort();
    n.dedup();
    n
}

async fn json_get(url: &str, params: &[(&str, &str)]) -> (u16, Value) {
    let r = raw_client()
        .get(url)
        .query(params)
        .send()
        .await
        .expect("answer");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn rules_settings(
    dir: &std::path::Path,
    rules: &str,
    am: Option<&str>,
    remote: Option<String>,
) -> janus::rules::Settings {
    let path = dir.join("janus-rules.yml");
    std::fs::write(&path, rules).expect("rules");
    janus::rules::Settings {
        files: vec![path.display().to_string()],
        evaluation_interval: Duration::from_secs(1),
        external_labels: [("cluster".to_string(), "test".to_string())].into(),
        external_url: "http://janus.example:9099".into(),
        alertmanagers: am
            .map(|u| vec![u.parse().expect("url")])
            .unwrap_or_default(),
        remote_write: remote.map(|u| u.parse().expect("url")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn log_logql_and_mixed_alerts_fire_in_alertmanager_record_into_prometheus_and_resolve() {
    let dir = support::temp_dir("rules-e2e");
    let am = support::alertmanager::start(&dir, support::guarded::free_port()).await;
    let prom_port = support::guarded::free_port();
    std::fs::write(
        dir.join("prom_rules.yml"),
        "groups:\n- name: upstream-own\n  rules:\n  - record: prom:up:sum\n    expr: sum(up)\n",
    )
    .expect("prometheus rules");
    let prom_config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [{}]\nscrape_configs:\n- job_name: prometheus\n  static_configs: [{{targets: ['127.0.0.1:{prom_port}']}}]\n",
        dir.join("prom_rules.yml").display()
    );
    let prometheus = support::prometheus::start_with(
        &dir,
        prom_port,
        &prom_config,
        &dir.join("tsdb"),
        &["--web.enable-remote-write-receiver"],
    )
    .await;
    let settings = rules_settings(
        &dir,
        RULES,
        Some(&am.url),
        Some(format!("{}/api/v1/write", prometheus.url)),
    );
    let janus = support::start_janus(&prometheus.url, move |c| c.rules = settings).await;
    // Janus lists the Alertmanager it sends to, then the upstream's (none here), in
    // Prometheus's shape.
    let (status, listed) = json_get(&format!("{}/api/v1/alertmanagers", janus.url), &[]).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(
        listed["data"],
        serde_json::json!({
            "activeAlertmanagers": [{"url": format!("{}/api/v2/alerts", am.url.trim_end_matches('/'))}],
            "droppedAlertmanagers": []
        }),
        "{listed}"
    );
    // Prometheus's `up` must exist before the mixed alert can hold.
    wait_for("up in Prometheus", Duration::from_secs(30), async || {
        let (_, v) = json_get(
            &format!("{}/api/v1/query", prometheus.url),
            &[("query", "up")],
        )
        .await;
        v["data"]["result"]
            .as_array()
            .filter(|r| !r.is_empty())
            .map(|_| ())
    })
    .await;

    let stop = Arc::new(AtomicBool::new(false));
    let pusher = keep_pushing(janus.url.clone(), Arc::clone(&stop));

    let alerts = wait_for(
        "the three alerts in Alertmanager",
        Duration::from_secs(40),
        async || {
            let alerts = am.alerts().await;
            (names(&alerts) == ALERT_NAMES).then_some(alerts)
        },
    )
    .await;
    let by_name = |n: &str| {
        alerts
            .iter()
            .find(|a| a["labels"]["alertname"] == n)
            .expect("alert")
            .clone()
    };
    let lethe = by_name("ShopErrorsLetheQL");
    assert_eq!(lethe["labels"]["namespace"], "shop", "{lethe}");
    assert_eq!(lethe["labels"]["severity"], "page", "{lethe}");
    assert_eq!(
        lethe["labels"]["cluster"], "test",
        "external labels are added: {lethe}"
    );
    let summary = lethe["annotations"]["summary"].as_str().expect("summary");
    let re = regex::Regex::new(r"^shop logs \d+ errors in 3s$").expect("regex");
    assert!(re.is_match(summary), "{summary}");
    assert!(
        lethe["generatorURL"]
            .as_str()
            .is_some_and(|u| u.starts_with("http://janus.example:9099/graph?g0.expr=sum+by")),
        "{lethe}"
    );
    assert_eq!(by_name("ShopErrorsLogQL")["labels"]["namespace"], "shop");
    assert_eq!(
        by_name("ShopErrorsWhileUp")["annotations"]["summary"],
        "upstream up: 1",
        "the template's query asked the upstream"
    );

    // Recorded series and ALERTS reach Prometheus by remote write.
    for query in [
        "shop:errors:count3s",
        "ALERTS{alertname=\"ShopErrorsLetheQL\",alertstate=\"firing\"}",
    ] {
        let result = wait_for(query, Duration::from_secs(30), async || {
            let (_, v) = json_get(
                &format!("{}/api/v1/query", prometheus.url),
                &[("query", query)],
            )
            .await;
            v["data"]["result"]
                .as_array()
                .filter(|r| !r.is_empty())
                .cloned()
        })
        .await;
        assert_eq!(
            result[0]["metric"]["namespace"], "shop",
            "{query}: {result:?}"
        );
        assert_eq!(
            result[0]["metric"]["cluster"], "test",
            "{query}: {result:?}"
        );
    }

    // Janus's rules and Prometheus's own, in one list.
    let (status, rules) = json_get(&format!("{}/api/v1/rules", janus.url), &[]).await;
    assert_eq!(status, 200, "{rules}");
    let groups: Vec<&str> = rules["data"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(groups, ["shop", "upstream-own"], "{rules}");
    let shop = &rules["data"]["groups"][0];
    assert_eq!(shop["rules"][0]["state"], "firing", "{shop}");
    assert_eq!(shop["rules"][0]["health"], "ok", "{shop}");
    assert_eq!(shop["rules"][3]["type"], "recording", "{shop}");
    let (_, only_alerts) = json_get(
        &format!("{}/api/v1/rules", janus.url),
        &[("type", "alert"), ("rule_group[]", "shop")],
    )
    .await;
    assert_eq!(
        only_alerts["data"]["groups"][0]["rules"]
            .as_array()
            .map(Vec::len),
        Some(3),
        "{only_alerts}"
    );
    let (status, bad) =
        json_get(&format!("{}/api/v1/rules", janus.url), &[("type", "bogus")]).await;
    assert_eq!(
        (status, bad["errorType"].as_str()),
        (400, Some("bad_data")),
        "{bad}"
    );
    let (_, alerts_api) = json_get(&format!("{}/api/v1/alerts", janus.url), &[]).await;
    assert!(
        alerts_api["data"]["alerts"]
            .as_array()
            .is_some_and(|a| a.len() >= 3),
        "{alerts_api}"
    );
    // The Loki face: Janus's rules only, and Loki's YAML listing.
    let (_, loki_face) = json_get(
        &format!("{}/prometheus/api/v1/rules", janus.url),
        &[("rule_name", "ShopErrorsLogQL")],
    )
    .await;
    assert_eq!(
        loki_face["data"]["groups"].as_array().map(Vec::len),
        Some(1),
        "{loki_face}"
    );
    assert_eq!(
        loki_face["data"]["groups"][0]["rules"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{loki_face}"
    );
    let (status, _, yaml) = support::get(&janus, "/loki/api/v1/rules", &[]).await;
    assert_eq!(status, 200);
    assert!(
        yaml.contains("alert: ShopErrorsLogQL") && yaml.contains("janus-rules.yml:"),
        "{yaml}"
    );
    let (status, _, _) = support::get(&janus, "/loki/api/v1/rules/nosuch", &[]).await;
    assert_eq!(status, 404);

    // The lines stop: the alerts resolve and Alertmanager drops them.
    stop.store(true, Ordering::Relaxed);
    pusher.await.expect("pusher");
    wait_for("the alerts resolved", Duration::from_secs(40), async || {
        let alerts = am.alerts().await;
        names(&alerts)
            .iter()
            .all(|n| !ALERT_NAMES.contains(&n.as_str()))
            .then_some(())
    })
    .await;
    let metrics = janus.metrics().await;
    for name in [
        "janus_rule_evaluations_total{rule_group=",
        "janus_notifications_sent_total{alertmanager=",
        "janus_remote_write_samples_total ",
    ] {
        assert!(metrics.contains(name), "{name} missing");
    }
    janus.stop().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_keeps_for_progress() {
    let dir = support::temp_dir("rules-restart");
    let store = dir.join("store");
    std::fs::create_dir_all(&store).expect("store");
    let rules = r#"
groups:
- name: slow
  interval: 1s
  rules:
  - alert: SteadyErrors
    expr: sum by (namespace) (count_over_time(pod{namespace="shop"} |= "ERROR" [3s])) > 2
    for: 8s
"#;
    let upstream = support::closed_port_url().await;
    let (settings, path) = (rules_settings(&dir, rules, None, None), store.clone());
    let first = support::start_janus(&upstream, move |c| {
        c.rules = settings;
        c.storage_path = path;
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let pusher = keep_pushing(first.url.clone(), Arc::clone(&stop));
    tokio::time::sleep(Duration::from_secs(4)).await;
    let (_, alerts) = json_get(&format!("{}/api/v1/alerts", first.url), &[]).await;
    assert_eq!(alerts["data"]["alerts"][0]["state"], "pending", "{alerts}");
    stop.store(true, Ordering::Relaxed);
    pusher.await.expect("pusher");
    first.stop().await;

    let (settings, path) = (rules_settings(&dir, rules, None, None), store.clone());
    let restarted_at = Instant::now();
    let restart_time = now_ns();
    let second = support::start_janus(&upstream, move |c| {
        c.rules = settings;
        c.storage_path = path;
    })
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let pusher = keep_pushing(second.url.clone(), Arc::clone(&stop));
    // Without the restore it would take the whole 8 s again.
    let firing = wait_for(
        "the alert firing after the restart",
        Duration::from_secs(20),
        async || {
            let (_, alerts) = json_get(&format!("{}/api/v1/alerts", second.url), &[]).await;
            alerts["data"]["alerts"]
                .as_array()
                .and_then(|a| a.first().cloned())
                .filter(|a| a["state"] == "firing")
        },
    )
    .await;
    let took = restarted_at.elapsed();
    assert!(
        took < Duration::from_secs(7),
        "firing {took:?} after the restart: {firing}"
    );
    let active_at =
        chrono::DateTime::parse_from_rfc3339(firing["activeAt"].as_str().expect("activeAt"))
            .expect("time");
    assert!(
        active_at.timestamp_nanos_opt().unwrap_or(i64::MAX) < restart_time - 2_000_000_000,
        "activeAt {active_at} is from before the restart"
    );
    stop.store(true, Ordering::Relaxed);
    pusher.await.expect("pusher");
    second.stop().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_reload_keeps_the_rules_that_run_and_says_so() {
    let dir = support::temp_dir("rules-reload");
    let settings = rules_settings(
        &dir,
        "groups:\n- name: a\n  rules:\n  - record: a:one\n    expr: vector(1)\n",
        None,
        None,
    );
    let path = dir.join("janus-rules.yml");
    let janus = support::start_janus(&support::closed_port_url().await, move |c| {
        c.rules = settings
    })
    .await;
    rules_loaded(&janus).await;
    std::fs::write(
        &path,
        "groups:\n- name: a\n  rules:\n  - record: a:one\n    expr: vector(1\n",
    )
    .expect("bad rules");
    let r = raw_client()
        .post(format!("{}/-/reload", janus.url))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 400);
    let text = r.text().await.expect("body");
    assert!(
        text.contains("janus-rules.yml:4: group \\\"a\\\", rule 1, \\\"a:one\\\""),
        "{text}"
    );
    assert!(janus
        .metrics()
        .await
        .contains("janus_rules_last_reload_successful 0"));
    let (_, rules) = json_get(&format!("{}/prometheus/api/v1/rules", janus.url), &[]).await;
    assert_eq!(
        rules["data"]["groups"][0]["name"], "a",
        "the old rules run on: {rules}"
    );
    std::fs::write(
        &path,
        "groups:\n- name: b\n  rules:\n  - record: b:two\n    expr: vector(2)\n",
    )
    .expect("good rules");
    let r = raw_client()
        .post(format!("{}/-/reload", janus.url))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 200);
    assert!(janus
        .metrics()
        .await
        .contains("janus_rules_last_reload_successful 1"));
    let (_, rules) = json_get(&format!("{}/prometheus/api/v1/rules", janus.url), &[]).await;
    assert_eq!(rules["data"]["groups"][0]["name"], "b", "{rules}");
    janus.stop().await;
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restricted_tenant_sees_only_rules_confined_to_its_namespaces() {
    let dir = support::temp_dir("rules-tenants");
    let tenants = dir.join("tenants.yml");
    std::fs::write(
        &tenants,
        "tenants:\n  team-a:\n    users: [alice]\n    namespaces: [shop]\n  ops:\n    users: [root]\n    all: true\nidentity_header:\n  name: X-Forwarded-User\n  from: [127.0.0.1]\n",
    )
    .expect("tenants");
    let tenants = janus::auth::tenants::Tenants::load(&tenants).expect("tenants load");
    let rules = r#"
groups:
- name: g
  rules:
  - alert: ShopOnly
    expr: sum(count_over_time(pod{namespace="shop"} |= "x" [1m])) > 0
  - alert: AnyNamespace
    expr: sum(count_over_time(pod{namespace=~".+"} |= "x" [1m])) > 0
  - alert: ShopMetricAndOther
    expr: up{namespace="shop"} and on() up{namespace="bank"}
  - record: shop:up
    expr: up{namespace="shop"}
"#;
    let settings = rules_settings(&dir, rules, None, None);
    let janus = support::start_janus(&support::closed_port_url().await, move |c| {
        c.rules = settings;
        c.tenants = Some(Arc::new(tenants));
    })
    .await;
    rules_loaded(&janus).await;
    let names_for = async |user: &str| {
        let r = raw_client()
            .get(format!("{}/prometheus/api/v1/rules", janus.url))
            .header("X-Forwarded-User", user)
            .send()
            .await
            .expect("rules");
        let v: Value = serde_json::from_str(&r.text().await.expect("body")).expect("json");
        v["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .filter_map(|r| r["name"].as_str().map(str::to_string))
            .collect::<Vec<_>>()
    };
    assert_eq!(names_for("alice").await, ["ShopOnly", "shop:up"]);
    assert_eq!(names_for("root").await.len(), 4);
    let (status, _, yaml) = {
        let r = raw_client()
            .get(format!("{}/loki/api/v1/rules", janus.url))
            .header("X-Forwarded-User", "alice")
            .send()
            .await
            .expect("rules");
        support::answer_parts(r).await
    };
    assert_eq!(status, 200);
    assert!(
        yaml.contains("ShopOnly") && !yaml.contains("AnyNamespace"),
        "{yaml}"
    );
    janus.stop().await;
    std::fs::remove_dir_all(dir).ok();
}

fn janus_cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_janus"))
        .args(args)
        .output()
        .expect("janus runs");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn docs_rules(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/rules")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn promtool_and_janus_agree_on_metric_only_rule_files() {
    let dir = support::temp_dir("rules-check");
    let good = dir.join("good.yml");
    std::fs::write(&good, "groups:\n- name: g\n  interval: 30s\n  rules:\n  - alert: Down\n    expr: up == 0\n    for: 5m\n    keep_firing_for: 1m\n    labels: {severity: page}\n    annotations: {summary: '{{ $labels.instance }} down for {{ humanizeDuration 300 }}'}\n  - record: job:up:sum\n    expr: sum by (job) (up)\n").expect("good");
    let bad = dir.join("bad.yml");
    std::fs::write(&bad, "groups:\n- name: g\n  rules:\n  - alert: Broken\n    expr: sum(rate(up[5m])\n  - record: 'not a name'\n    expr: up\n").expect("bad");
    let metric_only = docs_rules("metrics.yml");
    for (file, accepted) in [
        (good.display().to_string(), true),
        (bad.display().to_string(), false),
        (metric_only, true),
    ] {
        let promtool = Command::new("promtool")
            .args(["check", "rules", &file])
            .output()
            .expect("promtool runs");
        let (code, text) = janus_cli(&["check", "rules", &file]);
        assert_eq!(
            promtool.status.success(),
            accepted,
            "promtool on {file}: {}",
            String::from_utf8_lossy(&promtool.stderr)
        );
        assert_eq!(code == 0, accepted, "janus on {file}: {text}");
    }
    let (code, text) = janus_cli(&["check", "rules", &bad.display().to_string()]);
    assert_eq!(code, 1);
    assert!(
        text.contains("bad.yml:4: group \"g\", rule 1, \"Broken\": could not parse expression"),
        "{text}"
    );
    assert!(
        text.contains(
            "bad.yml:6: group \"g\", rule 2, \"not a name\": invalid recording rule name"
        ),
        "{text}"
    );
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn the_documented_examples_check_and_their_unit_tests_pass() {
    for file in ["logs.yml", "metrics.yml", "venti.yml"] {
        let (code, text) = janus_cli(&["check", "rules", &docs_rules(file)]);
        assert_eq!(code, 0, "{file}: {text}");
    }
    let (code, text) = janus_cli(&["test", "rules", &docs_rules("logs.test.yml")]);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("SUCCESS"), "{text}");
    // A test that expects what does not happen fails, naming the alert and its time.
    let dir = support::temp_dir("rules-unit");
    std::fs::copy(docs_rules("logs.yml"), dir.join("logs.yml")).expect("copy");
    let wrong = std::fs::read_to_string(docs_rules("logs.test.yml"))
        .expect("tests")
        .replace("errors a minute", "errors an hour");
    std::fs::write(dir.join("wrong.test.yml"), wrong).expect("wrong tests");
    let (code, text) = janus_cli(&[
        "test",
        "rules",
        &dir.join("wrong.test.yml").display().to_string(),
    ]);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("FAILED") && text.contains("alertname: NamespaceErrorRate"),
        "{text}"
    );
    std::fs::remove_dir_all(dir).ok();
}
