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
            if !janus::results_cache::plan::cacheable_expression(&query) {
                // Passed through whole. Some of these Prometheus itself answers differently
                // from one ask to the next (a sum after `or` adds in a Go map's order): equal
                // but for the last digits.
                for answer in &through {
                    let same = answer.0 == direct.0
                        && match (
                            serde_json::from_str::<serde_json::Value>(&answer.1),
                            serde_json::from_str::<serde_json::Value>(&direct.1),
                        ) {
                            (Ok(a), Ok(b)) => support::close_json(&a, &b),
                            _ => answer.1 == direct.1,
                        };
                    prop_assert!(same, "{} [{}, {}] step {}", query, from, to, step_text);
                }
                continue;
            }
            prop_assert_eq!(&direct, &again, "Prometheus answered {} differently", query);
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

/// Four hours of a namespace's logs, a few lines every few seconds, two pods, three levels.
fn write_log_tree(root: &std::path::Path) {
    let dir = root.join("pod/x");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for hour in 0..4 {
        let mut text = String::new();
        let mut s = 0;
        let mut i = 0u64;
        while s < 3600 {
            let level = ["info", "warn", "ERROR"][(i % 7 % 3) as usize];
            text.push_str(&format!(
                "2024-01-01T{hour:02}:{:02}:{:02}Z[x|p-{}|c] level={level} request {i} {}\n",
                s / 60,
                s % 60,
                i % 2,
                "y".repeat((i % 40) as usize)
            ));
            s += 1 + (i * 7 % 11) as i64;
            i += 1;
        }
        std::fs::write(dir.join(format!("2024-01-01_{hour:02}.log")), text).expect("write");
    }
}

/// Two copies of the log tree, each under a Janus in front of `upstream`: one with the results
/// cache (split every hour), one without it.
async fn cached_and_plain(
    upstream: &str,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    support::TestJanus,
    support::TestJanus,
) {
    let (a, b) = (support::temp_dir("cache-a"), support::temp_dir("cache-b"));
    write_log_tree(&a);
    write_log_tree(&b);
    let (sa, sb) = (a.clone(), b.clone());
    let cached = support::start_janus(upstream, move |c| {
        c.storage_path = sa;
        c.results_cache.split_interval_ms = 3_600_000;
    })
    .await;
    let plain = support::start_janus(upstream, move |c| {
        c.storage_path = sb;
        c.results_cache.max_bytes = 0;
    })
    .await;
    (a, b, cached, plain)
}

async fn ask_log(base: &str, query: &str, start: i64, end: i64, step: i64) -> (u16, String) {
    ask(
        base,
        query,
        &start.to_string(),
        &end.to_string(),
        &step.to_string(),
    )
    .await
}

/// Log metrics over hour files that no longer change are counted once per pipeline and grid,
/// then read from what was remembered: every answer equals a Janus without the cache over a copy
/// of the same tree, cold and warm, across steps, ranges, offsets and phases; a warm refresh
/// reads no file; and a late line, a rewrite or a deleted file is seen at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_metrics_over_sealed_files_equal_an_uncached_scan() {
    let (a, b, cached, plain) = cached_and_plain(&support::closed_port_url().await).await;
    let queries = [
        r#"count_over_time(pod{namespace="x"}[5m])"#,
        r#"sum by (pod) (rate(pod{namespace="x"} |= "ERROR" [1m]))"#,
        r#"bytes_over_time(pod{namespace="x"}[10m] offset 7m)"#,
        r#"sum(count_over_time(pod{namespace="x"} |~ "level=(warn|ERROR)" [2m]))"#,
        r#"sum by (level) (count_over_time(pod{namespace="x"} | logfmt [5m]))"#,
    ];
    let windows = [
        (T0, T0 + 4 * 3600, 60),
        (T0 + 1800, T0 + 3 * 3600 + 17, 30),
        (T0 + 7, T0 + 4 * 3600, 300),
        (T0 + 600, T0 + 2 * 3600, 15),
    ];
    let check = |round: &'static str| {
        let (cached, plain) = (cached.url.clone(), plain.url.clone());
        async move {
            for query in queries {
                for (start, end, step) in windows {
                    let through = ask_log(&cached, query, start, end, step).await;
                    let reference = ask_log(&plain, query, start, end, step).await;
                    assert_eq!(through.0, 200, "{round}: {query}: {}", through.1);
                    assert_eq!(
                        through, reference,
                        "{round}: {query} [{start}, {end}] step {step}"
                    );
                }
            }
        }
    };
    check("cold").await;
    let scanned = r#"janus_store_scanned_bytes_total"#;
    let before = metric_value(&cached.url, scanned).await;
    check("warm").await;
    let after = metric_value(&cached.url, scanned).await;
    assert!(before > 0.0, "the cold pass read nothing?");
    assert_eq!(before, after, "a warm refresh read files");
    assert!(
        metric_value(
            &cached.url,
            r#"janus_cache_requests_total{face="log",result="hit"}"#
        )
        .await
            > 0.0
    );

    // A late line in an old hour, in both trees.
    for root in [&a, &b] {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(root.join("pod/x/2024-01-01_01.log"))
            .expect("open");
        f.write_all(b"2024-01-01T01:30:00Z[x|p-9|c] level=ERROR late\n")
            .expect("append");
    }
    check("after a late line").await;
    // A file rewritten in place to the same length, and a file deleted.
    for root in [&a, &b] {
        let path = root.join("pod/x/2024-01-01_02.log");
        let text = std::fs::read_to_string(&path).expect("read");
        std::fs::write(&path, text.replace("level=info", "level=ERRx")).expect("rewrite");
        std::fs::remove_file(root.join("pod/x/2024-01-01_03.log")).expect("delete");
    }
    check("after a rewrite and a deletion").await;
    cached.stop().await;
    plain.stop().await;
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

/// An expression Janus evaluates itself (log metrics over real metrics): its metric parts are
/// asked through the same cache as a client's query, its log parts from remembered bins; cold
/// and warm, the answer equals a Janus without the cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_expressions_through_the_cache_equal_an_uncached_janus() {
    let prometheus = required_env("JANUS_TEST_PROMETHEUS");
    let (a, b, cached, plain) = cached_and_plain(&prometheus).await;
    let queries = [
        r#"sum(count_over_time(pod{namespace="x"}[5m])) / sum(rate(http_requests_total[5m]))"#,
        r#"sum by (pod) (rate(pod{namespace="x"} |= "ERROR" [1m])) * on () group_left max(cpu_usage_ratio)"#,
        r#"count_over_time(pod{namespace="x"}[10m]) > bool on () group_left sum(rate(http_requests_total{namespace="shop"}[5m]))"#,
    ];
    let hits = r#"janus_cache_requests_total{face="metric",result="hit"}"#;
    for round in ["cold", "warm"] {
        for query in queries {
            for (start, end, step) in [(T0, T0 + 4 * 3600, 60), (T0 + 910, T0 + 3 * 3600, 30)] {
                let through = ask_log(&cached.url, query, start, end, step).await;
                let reference = ask_log(&plain.url, query, start, end, step).await;
                assert_eq!(through.0, 200, "{round}: {query}: {}", through.1);
                assert_eq!(
                    through, reference,
                    "{round}: {query} [{start}, {end}] step {step}"
                );
            }
        }
    }
    assert!(metric_value(&cached.url, hits).await > 0.0);
    cached.stop().await;
    plain.stop().await;
    let _ = std::fs::remove_dir_all(&a);
    let _ = std::fs::remove_dir_all(&b);
}

/// Prometheus's remote-write messages, for writing samples at chosen times.
mod remote_write {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }
}

/// Writes `late_metric{job="w"}` samples (value = its time) at `times` (unix seconds).
async fn remote_write(prometheus: &str, times: impl Iterator<Item = i64>) {
    use prost::Message;
    let samples = times
        .map(|t| remote_write::Sample {
            value: t as f64,
            timestamp: t * 1000,
        })
        .collect();
    let request = remote_write::WriteRequest {
        timeseries: vec![remote_write::TimeSeries {
            labels: vec![
                remote_write::Label {
                    name: "__name__".into(),
                    value: "late_metric".into(),
                },
                remote_write::Label {
                    name: "job".into(),
                    value: "w".into(),
                },
            ],
            samples,
        }],
    };
    let body = snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("snappy");
    let r = raw_client()
        .post(format!("{prometheus}/api/v1/write"))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .expect("remote write");
    assert!(r.status().is_success(), "{:?}", r.text().await);
}

/// Late samples: written into Prometheus inside the freshness window they are in the next
/// answer; written older than it (out of order) they are not, as documented, until the cache
/// is emptied with the admin endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_samples_inside_the_freshness_window_are_seen() {
    let dir = support::temp_dir("cache-late");
    let port = support::guarded::free_port();
    let config = "global: {}\nstorage:\n  tsdb:\n    out_of_order_time_window: 2h\n";
    let prometheus = support::prometheus::start_with(
        &dir,
        port,
        config,
        &dir.join("tsdb"),
        &["--web.enable-remote-write-receiver"],
    )
    .await;
    let janus = support::start_janus(&prometheus.url, |c| {
        c.results_cache.max_freshness = Duration::from_secs(300);
        c.results_cache.split_interval_ms = 600_000;
    })
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let aligned = now / 30 * 30;
    remote_write(
        &prometheus.url,
        (aligned - 1800..=aligned - 600).step_by(30),
    )
    .await;
    let (from, to) = (aligned - 1800, aligned);
    let both = || async {
        (
            ask_log(&janus.url, "late_metric", from, to, 30).await,
            ask_log(&prometheus.url, "late_metric", from, to, 30).await,
        )
    };
    let (through, direct) = both().await;
    assert_eq!(through, direct);
    // Inside the freshness window: asked again, so seen at once.
    remote_write(&prometheus.url, (aligned - 240..=aligned - 60).step_by(30)).await;
    let (through, direct) = both().await;
    assert_eq!(through, direct);
    assert!(
        through.1.contains(&format!("\"{}\"", aligned - 60)),
        "{}",
        through.1
    );
    // Older than the bound, out of order: the cached stretch does not see it...
    remote_write(&prometheus.url, std::iter::once(aligned - 450)).await;
    let (through, direct) = both().await;
    // At the step of the late sample: Prometheus now gives it; the cached stretch still gives
    // the sample before it (within the lookback).
    let point = |t: i64, v: i64| format!("[{t},\"{v}\"]");
    assert!(
        direct.1.contains(&point(aligned - 450, aligned - 450)),
        "{}",
        direct.1
    );
    assert!(
        through.1.contains(&point(aligned - 450, aligned - 600)),
        "{}",
        through.1
    );
    // ...until the cache is emptied.
    let r = raw_client()
        .post(format!("{}/api/v1/admin/cache/clear", janus.url))
        .send()
        .await
        .expect("clear");
    assert_eq!(r.status(), 204);
    let (through, direct) = both().await;
    assert_eq!(through, direct);
    janus.stop().await;
    drop(prometheus);
    let _ = std::fs::remove_dir_all(&dir);
}
