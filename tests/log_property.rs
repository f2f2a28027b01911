//! Property test: random trees (targets, hours, out-of-order and out-of-hour lines, torn tails,
//! odd names, garbage lines) and random queries (matchers, filter chains, windows, limits, ends)
//! answered by the store and by a tiny obviously-correct reference (read all, filter, sort).

mod support;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use janus::logql::parse_log_query;
use janus::logstore::files::{Search, Store};
use janus::logstore::Keep;
use janus::logstore::LogStore;
use janus::telemetry::Metrics;
use proptest::prelude::*;

const BASE: i64 = 1_704_067_200; // 2024-01-01T00:00:00Z
const NAMESPACES: [&str; 3] = ["alpha", "beta", "gamma"];
const PODS: [&str; 2] = ["web-1", "db-2"];
const CONTAINERS: [&str; 2] = ["app", "proxy"];
const WORDS: [&str; 6] = ["error", "warn", "info", "timeout", "GET /", "db"];

#[derive(Debug, Clone)]
struct GenLine {
    pod: usize,
    container: usize,
    second: i64,
    nanos: u32,
    words: Vec<usize>,
}

#[derive(Debug, Clone)]
struct GenFile {
    ns: usize,
    hour: i64,
    lines: Vec<GenLine>,
    torn_tail: bool,
    garbage: bool,
}

fn line_strategy() -> impl Strategy<Value = GenLine> {
    (
        0..2usize,
        0..2usize,
        // Mostly inside the file's hour (often in its first minutes, so times tie); the rest up
        // to an hour either side.
        prop_oneof![2 => 0..4i64, 3 => 0..300i64, 3 => 0..3600i64, 1 => -3600..0i64, 1 => 3600..7200i64],
        prop_oneof![3 => Just(0u32), 1 => 0..1_000_000_000u32],
        prop::collection::vec(0..WORDS.len(), 1..4),
    )
        .prop_map(|(pod, container, second, nanos, words)| GenLine {
            pod,
            container,
            second,
            nanos,
            words,
        })
}

fn file_strategy() -> impl Strategy<Value = GenFile> {
    (
        0..3usize,
        0..4i64,
        prop::collection::vec(line_strategy(), 0..200),
        any::<bool>(),
        prop::bool::weighted(0.2),
        // Mostly ordered: sort some files by time.
        prop::bool::weighted(0.7),
    )
        .prop_map(|(ns, hour, mut lines, torn_tail, garbage, sorted)| {
            if sorted {
                lines.sort_by_key(|l| (l.second, l.nanos));
            }
            GenFile {
                ns,
                hour,
                lines,
                torn_tail,
                garbage,
            }
        })
}

fn time_text(l: &GenLine, hour: i64) -> String {
    let secs = BASE + hour * 3600 + l.second;
    let t = chrono::DateTime::<chrono::Utc>::from_timestamp(secs, l.nanos).expect("time");
    if l.nanos == 0 {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
    }
}

fn write_tree(root: &Path, files: &[GenFile]) {
    for f in files {
        let dir = root.join("pod").join(NAMESPACES[f.ns]);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let name = chrono::DateTime::<chrono::Utc>::from_timestamp(BASE + f.hour * 3600, 0)
            .expect("time")
            .format("%Y-%m-%d_%H.log")
            .to_string();
        let mut text = String::new();
        for (i, l) in f.lines.iter().enumerate() {
            if f.garbage && i == 1 {
                text.push_str("garbage without a timestamp\n");
            }
            let message: Vec<&str> = l.words.iter().map(|&w| WORDS[w]).collect();
            text.push_str(&format!(
                "{}[{}|{}|{}] {}\n",
                time_text(l, f.hour),
                NAMESPACES[f.ns],
                PODS[l.pod],
                CONTAINERS[l.container],
                message.join(" ")
            ));
        }
        if f.torn_tail {
            // A line being appended: valid so far, but no newline yet.
            let torn = GenLine {
                pod: 0,
                container: 0,
                second: 5,
                nanos: 0,
                words: vec![0],
            };
            text.push_str(&format!(
                "{}[{}|web-1|app] torn error",
                time_text(&torn, f.hour),
                NAMESPACES[f.ns]
            ));
        }
        // Appending keeps duplicates of a (namespace, hour) file, like a file written twice.
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(name))
            .expect("open");
        file.write_all(text.as_bytes()).expect("write");
    }
    // An odd name whose lines must never appear.
    let odd = root.join("pod/alpha");
    std::fs::create_dir_all(&odd).expect("mkdir");
    std::fs::write(
        odd.join("0000-00-00_00.log"),
        "2024-01-01T00:30:00Z[alpha|web-1|app] error from an odd file\n",
    )
    .expect("write");
}

#[derive(Debug, Clone)]
struct GenQuery {
    target: usize,
    pod: Option<(bool, usize)>,
    container: Option<usize>,
    filters: Vec<(usize, usize)>,
    lo: i64,
    span: i64,
    limit: usize,
    newest: bool,
}

fn query_strategy() -> impl Strategy<Value = GenQuery> {
    (
        0..4usize,
        prop::option::of((any::<bool>(), 0..2usize)),
        prop::option::of(0..2usize),
        prop::collection::vec((0..4usize, 0..WORDS.len()), 0..2),
        -3600..3 * 3600i64,
        1..6 * 3600i64,
        1..30usize,
        any::<bool>(),
    )
        .prop_map(
            |(target, pod, container, filters, lo, span, limit, newest)| GenQuery {
                target,
                pod,
                container,
                filters,
                lo,
                span,
                limit,
                newest,
            },
        )
}

fn query_text(q: &GenQuery) -> String {
    let mut matchers = vec![match q.target {
        0 => r#"namespace="alpha""#.to_string(),
        1 => r#"namespace=~"alpha|beta""#.to_string(),
        2 => r#"namespace!="beta""#.to_string(),
        _ => r#"namespace=~".+""#.to_string(),
    }];
    if let Some((eq, p)) = q.pod {
        matchers.push(format!(
            r#"pod{}"{}""#,
            if eq { "=" } else { "!=" },
            PODS[p]
        ));
    }
    if let Some(c) = q.container {
        matchers.push(format!(r#"container=~"{}|none""#, CONTAINERS[c]));
    }
    let mut text = format!("pod{{{}}}", matchers.join(", "));
    for (op, w) in &q.filters {
        let word = WORDS[*w];
        text.push_str(&match op {
            0 => format!(r#" |= "{word}""#),
            1 => format!(r#" != "{word}""#),
            2 => format!(r#" |~ "{}|zzz""#, regex::escape(word)),
            _ => format!(r#" !~ "^{}""#, regex::escape(word)),
        });
    }
    text
}

/// Reads everything and applies the query the slow, plain way.
fn reference(root: &Path, q: &GenQuery, lo: i64, hi: i64) -> (Vec<(i64, String)>, bool) {
    let target_ok = |ns: &str| match q.target {
        0 => ns == "alpha",
        1 => ns == "alpha" || ns == "beta",
        2 => ns != "beta",
        _ => !ns.is_empty(),
    };
    let mut all: Vec<(i64, String, String, usize, String)> = Vec::new();
    let mut namespaces: Vec<String> = std::fs::read_dir(root.join("pod"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    namespaces.sort();
    for ns in namespaces.iter().filter(|n| target_ok(n)) {
        let mut names: Vec<String> = std::fs::read_dir(root.join("pod").join(ns))
            .expect("dir")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        names.sort();
        for name in names {
            let Ok(hour) = chrono::NaiveDateTime::parse_from_str(
                &format!("{}:00:00", &name[..13]),
                "%Y-%m-%d_%H:%M:%S",
            ) else {
                continue;
            };
            let hour_start = hour.and_utc().timestamp_nanos_opt().expect("ns");
            if !(hour_start <= hi && hour_start + 3_600_000_000_000 > lo) {
                continue;
            }
            let text =
                std::fs::read_to_string(root.join("pod").join(ns).join(&name)).expect("read");
            let mut offset = 0;
            for raw in text.split_inclusive('\n') {
                let here = offset;
                offset += raw.len();
                let Some(line) = raw.strip_suffix('\n') else {
                    continue;
                }; // torn tail
                let Some((time, rest)) = line.split_once('[') else {
                    continue;
                };
                let Ok(t) = chrono::DateTime::parse_from_rfc3339(time) else {
                    continue;
                };
                let ts = t.timestamp_nanos_opt().expect("ns");
                let Some((fields, message)) = rest.split_once("] ") else {
                    continue;
                };
                let f: Vec<&str> = fields.split('|').collect();
                if ts < lo || ts > hi || f.len() != 3 {
                    continue;
                }
                if let Some((eq, p)) = q.pod {
                    if (f[1] == PODS[p]) != eq {
                        continue;
                    }
                }
                if let Some(c) = q.container {
                    if f[2] != CONTAINERS[c] && f[2] != "none" {
                        continue;
                    }
                }
                let passes = q.filters.iter().all(|(op, w)| {
                    let word = WORDS[*w];
                    match op {
                        0 => message.contains(word),
                        1 => !message.contains(word),
                        2 => message.contains(word) || message.contains("zzz"),
                        _ => !message.starts_with(word),
                    }
                });
                if passes {
                    all.push((ts, ns.clone(), name.clone(), here, line.to_string()));
                }
            }
        }
    }
    all.sort();
    let truncated = all.len() > q.limit;
    let kept: Vec<(i64, String)> = if q.newest {
        all[all.len().saturating_sub(q.limit)..]
            .iter()
            .map(|x| (x.0, x.4.clone()))
            .collect()
    } else {
        all[..all.len().min(q.limit)]
            .iter()
            .map(|x| (x.0, x.4.clone()))
            .collect()
    };
    (kept, truncated)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, .. ProptestConfig::default() })]

    #[test]
    fn store_answers_like_the_reference(
        files in prop::collection::vec(file_strategy(), 1..8),
        queries in prop::collection::vec(query_strategy(), 1..6),
        block in prop_oneof![Just(64u64), Just(300u64), Just(4096u64), Just(1u64 << 20)],
    ) {
        let root = support::temp_dir("prop");
        write_tree(&root, &files);
        let store = Store::with_block_bytes(root.clone(), Arc::new(Metrics::new()), block);
        for q in &queries {
            let text = query_text(q);
            let parsed = parse_log_query(&text).expect("generated queries parse");
            let lo = (BASE + q.lo) * 1_000_000_000;
            let hi = lo + q.span * 1_000_000_000;
            let cancelled = AtomicBool::new(false);
            let found = store
                .search(&Search {
                    query: &parsed,
                    lo,
                    hi,
                    limit: q.limit,
                    keep: if q.newest { Keep::Newest } else { Keep::Oldest },
                    deadline: Instant::now() + Duration::from_secs(30),
                    cancelled: &cancelled,
                })
                .expect("search");
            let ours: Vec<(i64, String)> = found
                .lines
                .iter()
                .enumerate()
                .map(|(i, l)| {
                    let text = found.line_text(i).expect("line reads back");
                    (l.ts, String::from_utf8_lossy(&text).to_string())
                })
                .collect();
            let (expected, truncated) = reference(&root, q, lo, hi);
            prop_assert_eq!(&ours, &expected, "query {} window {}..{}", text, lo, hi);
            prop_assert_eq!(found.truncated, truncated, "truncation of {}", text);
        }
        let _ = std::fs::remove_dir_all(&root);
    }
}
