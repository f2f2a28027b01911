//! The results cache against the real Prometheus: random range queries (random start, length,
//! step and phase, offsets, subqueries, functions with lookbacks, `@`), asked through Janus with
//! the cache cold and warm, with split intervals that put piece boundaries anywhere, and over a
//! shifted window that reuses part of what is held, must answer the same bytes as Prometheus
//! asked for the whole query directly. Then: what is not cached (fresh points, `nocache`,
//! `Cache-Control`), the admin endpoint that empties the cache, and the metrics.

mod support;

use std::time::Duration;

use proptest::prelude::*;
use support::{raw_client, required_env};

/// 2024-01-01T00:00:00Z, where the compatibility data start (6 hours of it, every 15 s).
const T0: i64 = 1_704_067_200;

fn selector() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "http_requests_total",
        r#"http_requests_total{namespace="shop"}"#,
        "cpu_usage_ratio",
        "up",
        "temperature_celsius",
        "request_duration_seconds_bucket",
        "nonexistent_metric",
    ])
    .prop_map(str::to_string)
}

fn expression() -> impl Strategy<Value = String> {
    let range = prop::sample::select(vec!["1m", "5m", "7m", "1h"]);
    let offset = prop::sample::select(vec!["", " offset 10m", " offset 1h"]);
    let leaf = prop_oneof![
        (selector(), offset.clone()).prop_map(|(s, o)| format!("{s}{o}")),
        (selector(), range.clone(), offset.clone())
            .prop_map(|(s, r, o)| format!("rate({s}[{r}]{o})")),
        (selector(), range.clone()).prop_map(|(s, r)| format!("avg_over_time({s}[{r}])")),
        (selector(), range.clone()).prop_map(|(s, r)| format!("max_over_time({s}[{r}:1m])")),
        (selector(), range).prop_map(|(s, r)| format!("deriv({s}[{r}])")),
        selector().prop_map(|s| format!("timestamp({s})")),
        selector().prop_map(|s| format!("{s} @ 1704070000")),
        Just("time()".to_string()),
        Just("vector(1)".to_string()),
        Just("absent(nonexistent_metric)".to_string()),
        Just(
            "histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[5m])))"
                .to_string()
        ),
    ];
    leaf.prop_recursive(2, 6, 2, |inner| {
        prop_oneof![
            inner
                .clone()
                .prop_map(|e| format!("sum by (namespace) ({e})")),
            // (Not topk: over ties, Prometheus picks differently from one ask to the next.)
            inner.clone().prop_map(|e| format!("max by (job) ({e})")),
            inner.clone().prop_map(|e| format!("count({e})")),
            (inner.clone(), inner).prop_map(|(a, b)| format!("({a}) or ({b})")),
        ]
    })
}

async fn ask(base: &str, query: &str, start: &str, end: &str, step: &str) -> (u16, String) {
    let r = raw_client()
        .get(format!("{base}/api/v1/query_range"))
        .query(&[
            ("query", query),
            ("start", start),
            ("end", end),
            ("step", step),
        ])
        .send()
        .await
        .expect("answer");
    (r.status().as_u16(), r.text().await.expect("body"))
}

fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

async fn metric_value(base: &str, line_start: &str) -> f64 {
    let text = raw_client()
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn cached_answers_are_the_upstreams_bytes() {
    let prometheus = required_env("JANUS_TEST_PROMETHEUS");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // Two splits: an hour, and 17 minutes (boundaries off every step).
    let hourly = runtime.block_on(support::start_janus(&prometheus, |c| {
        c.results_cache.split_interval_ms = 3_600_000;
    }));
    let odd = runtime.block_on(support::start_janus(&prometheus, |c| {
        c.results_cache.split_interval_ms = 17 * 60_000;
    }));
    let config = ProptestConfig {
        cases: 48,
        max_global_rejects: 4096,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let steps = prop::sample::select(vec![15_000i64, 30_000, 60_000, 7_000, 300_000, 2_500]);
    proptest!(config, |(
        query in expression(),
        start_s in 0i64..(6 * 3600),
        phase_ms in prop::sample::select(vec![0i64, 0, 500, 13_000]),
        length_s in 0i64..(4 * 3600),
        step in steps,
        shift in 1i64..40,
    )| {
        let start = (T0 + start_s) * 1000 + phase_ms;
        let end = start + length_s * 1000;
        let step_text = seconds(step);
        for (from, to) in [(start, end), (start + shift * step, end + shift * step)] {
            let (from, to) = (seconds(from), seconds(to));
            let answers = runtime.block_on(async {
                let direct = ask(&prometheus, &query, &from, &to, &step_text).await;
                let again = ask(&prometheus, &query, &from, &to, &step_text).await;
                let mut through = Vec::new();
                for janus in [&hourly, &odd, &hourly, &odd] {
                    through.push(ask(&janus.url, &query, &from, &to, &step_text).await);
                }
                (direct, again, through)
            });
            let (direct, again, through) = answers;
            // Some expressions Prometheus itself answers differently from one ask to the next
            // (`or` goes through a Go map; the sums after it add in that order): nothing to
            // compare with. Janus never cuts those (`results_cache::plan`).
            prop_assume!(direct == again, "Prometheus is not deterministic for {}", query);
            for (i, answer) in through.iter().enumerate() {
                prop_assert_eq!(answer, &direct, "{} [{}, {}] step {} (ask {})", query, from, to, step_text, i);
            }
        }
    });
    let hits = runtime.block_on(metric_value(
        &hourly.url,
        r#"janus_cache_requests_total{face="metric",result="hit"}"#,
    ));
    assert!(hits > 0.0, "the cache was never used");
    runtime.block_on(hourly.stop());
    runtime.block_on(odd.stop());
}

/// Fresh points are never cached: with a Prometheus scraping every second and a freshness
/// bound of 3 s, each answer over the last minutes equals Prometheus's own, new points
/// included, while the older part is served from the cache. Requests that ask for no cache
/// are not counted as hits or misses; the admin endpoint empties the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_points_are_asked_again_and_the_cache_can_be_emptied() {
    let dir = support::temp_dir("cache-fresh");
    let port = support::guarded::free_port();
    let config = format!(
        "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: self\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    );
    let prometheus = support::prometheus::start(&dir, port, &config, &dir.join("tsdb")).await;
    let janus = support::start_janus(&prometheus.url, |c| {
        c.results_cache.max_freshness = Duration::from_secs(3);
        c.results_cache.split_interval_ms = 20_000;
    })
    .await;
    let query = "prometheus_tsdb_head_samples_appended_total";
    let mut seen_points = 0;
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // A window ending a little before now, so no scrape lands between the two asks.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        let (from, to) = ((now - 60).to_string(), (now - 2).to_string());
        let through = ask(&janus.url, query, &from, &to, "1").await;
        let direct = ask(&prometheus.url, query, &from, &to, "1").await;
        assert_eq!(through, direct, "round {round}");
        let points = through.1.matches("],[").count();
        assert!(
            points >= seen_points,
            "round {round}: points went from {seen_points} to {points}"
        );
        seen_points = points;
    }
    let hits = r#"janus_cache_requests_total{face="metric",result="hit"}"#;
    let misses = r#"janus_cache_requests_total{face="metric",result="miss"}"#;
    assert!(metric_value(&janus.url, hits).await > 0.0);

    // Not cached on request: neither a hit nor a miss.
    let before = (
        metric_value(&janus.url, hits).await,
        metric_value(&janus.url, misses).await,
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let (from, to) = ((now - 60).to_string(), (now - 2).to_string());
    let params = [
        ("query", query),
        ("start", from.as_str()),
        ("end", to.as_str()),
        ("step", "1"),
    ];
    let r = raw_client()
        .get(format!("{}/api/v1/query_range", janus.url))
        .query(&params)
        .query(&[("nocache", "1")])
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    let r = raw_client()
        .get(format!("{}/api/v1/query_range", janus.url))
        .query(&params)
        .header("Cache-Control", "no-cache")
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    let after = (
        metric_value(&janus.url, hits).await,
        metric_value(&janus.url, misses).await,
    );
    assert_eq!(before, after);

    // Emptied: the next ask is all misses, and still the upstream's bytes.
    let entries = r#"janus_cache_entries{face="metric"}"#;
    assert!(metric_value(&janus.url, entries).await > 0.0);
    let r = raw_client()
        .post(format!("{}/api/v1/admin/cache/clear", janus.url))
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 204);
    assert_eq!(metric_value(&janus.url, entries).await, 0.0);
    let hits_before = metric_value(&janus.url, hits).await;
    let through = ask(&janus.url, query, &from, &to, "1").await;
    let direct = ask(&prometheus.url, query, &from, &to, "1").await;
    assert_eq!(through, direct);
    assert_eq!(metric_value(&janus.url, hits).await, hits_before);
    janus.stop().await;
    drop(prometheus);
    let _ = std::fs::remove_dir_all(&dir);
}
