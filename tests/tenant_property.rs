//! Confinement against an independent reference: random PromQL expressions asked through Janus
//! by a tenant restricted to `shop`, of the Prometheus holding every namespace, must answer the
//! same bytes as the original expression asked of a second Prometheus that holds only `shop`'s
//! series (the compatibility data filtered to them). This is what "a tenant sees only its
//! namespaces" means for any expression, crafted or not.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use proptest::prelude::*;
use support::prometheus::Prometheus;
use support::{raw_client, required_env, temp_dir};

/// The compatibility data reduced to `shop`'s series, in a Prometheus of its own.
async fn shop_only_prometheus(dir: &Path) -> Prometheus {
    let om = dir.join("all.om");
    let prom = dir.join("all.prom");
    let status = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/compat-tests/gen_metrics.py"
        ))
        .args([&om, &prom])
        .status()
        .expect("python3 runs");
    assert!(status.success(), "gen_metrics.py failed");
    let all = std::fs::read_to_string(&om).expect("metrics");
    let shop: String = all
        .lines()
        .filter(|l| l.starts_with('#') || l.contains(r#"namespace="shop""#))
        .map(|l| format!("{l}\n"))
        .collect();
    let shop_om = dir.join("shop.om");
    std::fs::write(&shop_om, shop).expect("write");
    let tsdb = dir.join("tsdb");
    let status = Command::new("promtool")
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .args([&shop_om, &tsdb])
        .stdout(Stdio::null())
        .status()
        .expect("promtool runs");
    assert!(status.success(), "promtool failed");
    support::prometheus::start(dir, support::guarded::free_port(), "global: {}\n", &tsdb).await
}

fn selector() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec![
        "http_requests_total",
        "cpu_usage_ratio",
        "request_duration_seconds_bucket",
        "request_duration_seconds_count",
        "up",
        "temperature_celsius",
        "nonexistent_metric",
    ]);
    let matcher = prop::sample::select(vec![
        "",
        r#"namespace="auth""#,
        r#"namespace!="shop""#,
        r#"namespace=~"shop|auth""#,
        r#"namespace=~".*""#,
        r#"namespace="shop""#,
        r#"job="api""#,
        r#"code!="200""#,
    ]);
    (name, matcher).prop_map(|(n, m)| {
        if m.is_empty() {
            n.to_string()
        } else {
            format!("{n}{{{m}}}")
        }
    })
}

fn expression() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        selector(),
        selector().prop_map(|s| format!("rate({s}[5m])")),
        selector().prop_map(|s| format!("max_over_time({s}[10m] offset 5m)")),
        selector().prop_map(|s| format!("avg_over_time(sum by (namespace) ({s})[30m:5m])")),
        Just(r#"{__name__=~".+"}"#.to_string()),
        Just("vector(1)".to_string()),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            inner
                .clone()
                .prop_map(|e| format!("sum by (namespace) ({e})")),
            inner.clone().prop_map(|e| format!("count({e})")),
            inner.clone().prop_map(|e| format!("topk(2, {e})")),
            inner.clone().prop_map(|e| format!("absent({e})")),
            inner
                .clone()
                .prop_map(|e| format!(r#"label_replace({e}, "namespace", "auth", "", "")"#)),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) or ({b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) unless on () ({b})")),
            (inner.clone(), inner.clone())
                .prop_map(|(a, b)| format!("sum({a}) + on () group_left sum({b})")),
        ]
    })
}

const TENANTS: &str = "tenants:\n  shop:\n    users: [alice]\n    namespaces: [shop]\n";

#[test]
fn confined_answers_equal_a_prometheus_holding_only_the_tenants_series() {
    let full = required_env("JANUS_TEST_PROMETHEUS");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = temp_dir("tenant-property");
    let reference = runtime.block_on(shop_only_prometheus(&dir));
    let hash = bcrypt::hash("pw", 4).expect("bcrypt");
    let web = dir.join("web.yml");
    std::fs::write(&web, format!("basic_auth_users:\n  alice: {hash}\n")).expect("web");
    let tenants = dir.join("tenants.yml");
    std::fs::write(&tenants, TENANTS).expect("tenants");
    let janus = runtime.block_on(support::start_janus(&full, |c| {
        c.web = janus::auth::web_config::WebConfig::load(&web).expect("web loads");
        c.web_config_file = Some(web.clone());
        c.tenants = Some(Arc::new(
            janus::auth::tenants::Tenants::load(&tenants).expect("tenants load"),
        ));
    }));
    let config = ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let times = prop::sample::select(vec!["1704070800", "1704078000", "1704085000"]);
    proptest!(config, |(query in expression(), time in times)| {
        let (through, direct) = runtime.block_on(async {
            let through = raw_client()
                .get(format!("{}/api/v1/query", janus.url))
                .query(&[("query", query.as_str()), ("time", time)])
                .basic_auth("alice", Some("pw"))
                .send()
                .await
                .expect("through");
            let through = (through.status().as_u16(), through.text().await.expect("body"));
            let direct = raw_client()
                .get(format!("{}/api/v1/query", reference.url))
                .query(&[("query", query.as_str()), ("time", time)])
                .send()
                .await
                .expect("direct");
            let direct = (direct.status().as_u16(), direct.text().await.expect("body"));
            (through, direct)
        });
        prop_assert_eq!(&through, &direct, "{}", query);
    });
    runtime.block_on(janus.stop());
    drop(reference);
    let _ = std::fs::remove_dir_all(&dir);
}
