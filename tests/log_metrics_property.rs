//! Log metrics against an independent reference: random trees and random windows, steps, ranges
//! and offsets; `count_over_time`, `rate`, `bytes_over_time` and `bytes_rate` from the store's
//! one-pass buckets must equal counting the lines of every window straight from the files.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use janus::engine::log_metrics::{log_call, Bounds};
use janus::logql::parse_log_query;
use janus::logstore::files::Store;
use janus::promql::plan::LogCall;
use janus::promql::value::{Steps, Value};
use janus::promql::Function;
use janus::telemetry::Metrics;
use proptest::prelude::*;

const BASE: i64 = 1_704_067_200; // 2024-01-01T00:00:00Z
const NS: i64 = 1_000_000_000;

#[derive(Debug, Clone)]
struct GenFile {
    ns: usize,
    hour: i64,
    lines: Vec<(i64, usize, usize)>, // (seconds into the hour, may be outside), pod, message length
}

fn file_strategy() -> impl Strategy<Value = GenFile> {
    (
        0..2usize,
        0..3i64,
        prop::collection::vec(
            (
                prop_oneof![8 => 0..3600i64, 1 => -600..0i64, 1 => 3600..4200i64],
                0..3usize,
                0..40usize,
            ),
            0..120,
        ),
    )
        .prop_map(|(ns, hour, lines)| GenFile { ns, hour, lines })
}

fn write_tree(root: &Path, files: &[GenFile]) {
    use std::io::Write;
    for f in files {
        let dir = root.join("pod").join(["a", "b"][f.ns]);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let name = janus::logstore::files::layout::name_of_hour((BASE + f.hour * 3600) * NS);
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))
            .expect("open");
        for (second, pod, len) in &f.lines {
            let t =
                chrono::DateTime::<chrono::Utc>::from_timestamp(BASE + f.hour * 3600 + second, 0)
                    .expect("t");
            writeln!(
                out,
                "{}[{}|p{pod}|c] {}",
                t.format("%Y-%m-%dT%H:%M:%SZ"),
                ["a", "b"][f.ns],
                "m".repeat(*len)
            )
            .expect("write");
        }
    }
}

/// Every line of namespace `a` with its stream, read plainly, from files chosen by name as the
/// store chooses them for `[lo, hi]`.
fn reference_lines(root: &Path, lo: i64, hi: i64) -> Vec<(String, i64, usize)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(root.join("pod/a")) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(hour) = janus::logstore::files::layout::hour_of_name(&name) else {
            continue;
        };
        if !(hour <= hi && hour + 3600 * NS > lo) {
            continue;
        }
        for line in std::fs::read_to_string(e.path()).expect("read").lines() {
            let (time, rest) = line.split_once('[').expect("line");
            let ts = chrono::DateTime::parse_from_rfc3339(time)
                .expect("time")
                .timestamp_nanos_opt()
                .expect("ns");
            let (fields, message) = rest.split_once("] ").expect("fields");
            out.push((fields.to_string(), ts, message.len()));
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 120, .. ProptestConfig::default() })]

    #[test]
    fn log_metrics_match_counting_each_window(
        files in prop::collection::vec(file_strategy(), 1..6),
        function in prop::sample::select(vec!["count_over_time", "rate", "bytes_over_time", "bytes_rate"]),
        range_s in prop::sample::select(vec![30i64, 60, 300, 1020, 3600]),
        step_s in prop::sample::select(vec![15i64, 60, 420]),
        count in 1..40usize,
        start_s in -600..3 * 3600i64,
        offset_s in prop::sample::select(vec![0i64, 300, -120]),
    ) {
        let root = support::temp_dir("logmetrics");
        write_tree(&root, &files);
        let store = Store::new(root.clone(), Arc::new(Metrics::new()));
        let query = parse_log_query(r#"pod{namespace="a"}"#).expect("parses");
        let steps = Steps { start: (BASE + start_s) * NS, step: step_s * NS, count };
        let call = LogCall {
            function: Function::from_name(function).expect("a log function"),
            log: 0,
            range: Duration::from_secs(range_s as u64),
            offset_ns: offset_s * NS,
            at: None,
            grouping: None,
            params: Vec::new(),
        };
        let cancelled = AtomicBool::new(false);
        let Value::Vector(series) = log_call(&store, &query, &call, &steps, Instant::now() + Duration::from_secs(30), &cancelled, Bounds { max_series: 1_000_000, max_samples: 50_000_000 }).expect("answers") else {
            panic!("a vector");
        };
        let ours: BTreeMap<String, Vec<Option<f64>>> = series
            .into_iter()
            .map(|s| (format!("{}|{}|{}", s.labels["namespace"], s.labels["pod"], s.labels["container"]), s.points))
            .collect();

        let ends: Vec<i64> = (0..count).map(|k| steps.time(k) - offset_s * NS).collect();
        let lo = ends[0] - range_s * NS;
        let hi = ends[count - 1];
        let lines = reference_lines(&root, lo + 1, hi);
        let mut expected: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
        for (stream, _, _) in &lines {
            expected.entry(stream.clone()).or_insert_with(|| vec![None; count]);
        }
        for (stream, points) in expected.iter_mut() {
            for (k, end) in ends.iter().enumerate() {
                let in_window: Vec<&(String, i64, usize)> = lines
                    .iter()
                    .filter(|(s, ts, _)| s == stream && *ts > end - range_s * NS && *ts <= *end)
                    .collect();
                if in_window.is_empty() {
                    continue;
                }
                let n = in_window.len() as f64;
                let bytes: f64 = in_window.iter().map(|l| l.2 as f64).sum();
                points[k] = Some(match function {
                    "count_over_time" => n,
                    "rate" => n / range_s as f64,
                    "bytes_over_time" => bytes,
                    _ => bytes / range_s as f64,
                });
            }
        }
        expected.retain(|_, points| points.iter().any(Option::is_some));
        let ours: BTreeMap<String, Vec<Option<f64>>> = ours.into_iter().filter(|(_, p)| p.iter().any(Option::is_some)).collect();
        prop_assert_eq!(ours, expected);
        let _ = std::fs::remove_dir_all(&root);
    }
}
