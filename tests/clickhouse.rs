//! The ClickHouse backend against a real `clickhouse-server` (Debian's 18.16, started by the
//! test on free ports): the same pushed data answers the same through the file store and through
//! ClickHouse (random streams, lines and windows, every kind of query); two Janus replicas on one
//! ClickHouse; ClickHouse going away and coming back; a table made by someone else refused at
//! start-up; a two-shard cluster through a `Distributed` table.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use janus::logql::pipeline::Grouping;
use janus::logql::{LogKind, LogQuery};
use janus::logstore::clickhouse::{client::Connection, ClickHouse, Settings};
use janus::logstore::write::{Batch, BatchStream};
use janus::logstore::{Count, Keep, LogStore, Search};
use janus::telemetry::Metrics;
use proptest::prelude::*;
use support::clickhouse::ClickHouseServer;

const BASE: i64 = 1_704_067_200_000_000_000; // 2024-01-01T00:00:00Z
const SECOND: i64 = 1_000_000_000;

fn server() -> &'static ClickHouseServer {
    ClickHouseServer::shared()
}

fn settings(url: &str, database: &str) -> Settings {
    Settings {
        connection: Connection {
            url: url.into(),
            ..Default::default()
        },
        database: database.into(),
        cluster: None,
    }
}

fn fresh_database() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "parity_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// One generated line: stream choice, time offset, message choice.
#[derive(Debug, Clone)]
struct GenLine {
    stream: usize,
    offset: i64,
    message: usize,
}

const STREAMS: [(LogKind, [&str; 3]); 7] = [
    (LogKind::Pod, ["a", "web-1", "app"]),
    (LogKind::Pod, ["a", "web-2", "app"]),
    (LogKind::Pod, ["a", "web-2", "side"]),
    (LogKind::Pod, ["b", "api-1", "app"]),
    (LogKind::Pod, ["c", "web-1", "app"]),
    (LogKind::Node, ["n1", "kubelet", ""]),
    (LogKind::Node, ["n2", "containerd", ""]),
];

const MESSAGES: [&str; 10] = [
    "level=info status=200 took=12 msg=\"ok\"",
    "level=error status=500 took=250 msg=\"upstream failed\"",
    "level=warn status=404 took=3",
    "ERROR connection refused to 10.0.0.1:5432",
    "{\"level\":\"error\",\"status\":503,\"took\":1.5}",
    "{\"level\":\"info\",\"status\":200,\"took\":0.25}",
    "percent 50% and under_score \\ back'slash",
    "Ünïcödé Error line",
    "first\nsecond line after a newline",
    "",
];

fn lines_strategy() -> impl Strategy<Value = Vec<GenLine>> {
    prop::collection::vec(
        (
            0..STREAMS.len(),
            // Three hours, often on the same few instants (ties), sometimes anywhere.
            prop_oneof![3 => (0..20i64).prop_map(|s| s * 600 * SECOND), 7 => 0..3 * 3600 * SECOND],
            0..MESSAGES.len(),
        )
            .prop_map(|(stream, offset, message)| GenLine {
                stream,
                offset,
                message,
            }),
        1..150,
    )
}

/// The lines pushed as a batch, as the push path hands it to a backend (messages split at
/// newlines, as `ingest::prepare` splits them).
fn batch(lines: &[GenLine]) -> Batch<'static> {
    let mut batch = Batch::default();
    for l in lines {
        let (kind, values) = STREAMS[l.stream];
        let values: Vec<String> = values[..kind.labels().len()]
            .iter()
            .map(|v| v.to_string())
            .collect();
        let parts: Vec<(i64, &'static str)> = MESSAGES[l.message]
            .split('\n')
            .map(|m| (BASE + l.offset, m))
            .collect();
        batch.entries += 1;
        batch.lines += parts.len() as u64;
        batch.streams.push(BatchStream {
            kind,
            values,
            lines: parts,
            time_texts: Vec::new(),
        });
    }
    batch
}

/// A selector with its pipeline, as the engine parses one inside an expression (pipelines are
/// LogQL's).
fn parse_log_query(text: &str) -> Result<LogQuery, janus::logql::SyntaxError> {
    let tokens = janus::logql::lexer::tokenize(text);
    janus::logql::parse::parse_embedded(text, &tokens, 0).map(|(q, _)| q)
}

const QUERIES: [&str; 14] = [
    r#"pod{namespace="a"}"#,
    r#"pod{namespace=~"a|b", pod=~"web-.*"}"#,
    r#"pod{namespace!="c", container="app"} |= "error""#,
    r#"pod{namespace=~".+"} |~ "(?i)error" != "refused""#,
    r#"pod{namespace="a"} |= "50%" |= "under_score \\""#,
    r#"pod{namespace=~"[ab]"} |~ "\\w+=5\\d\\d""#,
    r#"pod{namespace="b"} !~ "status=[45]""#,
    r#"node{node="n1"}"#,
    r#"node{node=~"n.*", process!="kubelet"} |= "line""#,
    r#"pod{namespace=~"a|b|c"} | logfmt | status >= 500"#,
    r#"pod{namespace="a"} | json | level = "error""#,
    r#"pod{namespace=~".*"} |~ "Ünï""#,
    r#"pod{namespace=~".*", pod!~"web-1"} | logfmt | line_format "{{.msg}}""#,
    r#"pod{namespace="a"} |> "<_> status=<_> <_>""#,
];

fn compare(files: &dyn LogStore, ch: &dyn LogStore, lo: i64, hi: i64, step: i64) {
    let never = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(60);
    for text in QUERIES {
        let query = parse_log_query(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        for (keep, limit) in [
            (Keep::Newest, 3),
            (Keep::Oldest, 3),
            (Keep::Newest, 1000),
            (Keep::Oldest, 1),
        ] {
            let search = Search {
                query: &query,
                lo,
                hi,
                limit,
                keep,
                deadline,
                cancelled: &never,
            };
            let a = files.search(&search).expect("file search");
            let b = ch.search(&search).expect("clickhouse search");
            let lines = |f: &janus::logstore::Found| -> Vec<String> {
                (0..f.lines.len())
                    .map(|i| String::from_utf8_lossy(&f.line_text(i).expect("line")).into_owned())
                    .collect()
            };
            assert_eq!(lines(&a), lines(&b), "{text} {keep:?} {limit} [{lo}, {hi}]");
            assert_eq!(
                a.truncated, b.truncated,
                "{text} {keep:?} {limit} truncated"
            );
        }
        let bounds: Vec<i64> = (0..=((hi - lo) / step)).map(|k| lo + k * step).collect();
        let uneven: Vec<i64> = vec![lo, lo + step / 3, lo + step, hi];
        for b in [&bounds, &uneven] {
            for grouping in [
                None,
                Some(Grouping::By(vec!["namespace".into(), "status".into()])),
            ] {
                let count = Count {
                    query: &query,
                    deadline,
                    cancelled: &never,
                    max_series: 10_000,
                    max_samples: 0,
                    grouping: grouping.as_ref(),
                };
                let x = files.buckets(&count, b);
                let y = ch.buckets(&count, b);
                assert_eq!(x, y, "buckets {text} {grouping:?} {b:?}");
            }
        }
        assert_eq!(
            files.chunk_count(&query, lo, hi),
            ch.chunk_count(&query, lo, hi),
            "chunks {text}"
        );
    }
    for text in [
        r#"pod{namespace=~".+"} | logfmt | unwrap took"#,
        r#"pod{namespace="a"} | json | unwrap took"#,
    ] {
        let query = parse_log_query(text).unwrap_or_else(|e| panic!("{text}: {e:?}"));
        for grouping in [None, Some(Grouping::Without(vec!["pod".into()]))] {
            let count = Count {
                query: &query,
                deadline,
                cancelled: &never,
                max_series: 1000,
                max_samples: 100_000,
                grouping: grouping.as_ref(),
            };
            let x = files.samples(&count, lo, hi);
            let y = ch.samples(&count, lo, hi);
            let show = |r: Result<janus::logstore::SeriesSamples, janus::logstore::ScanStop>| {
                format!("{r:?}")
            };
            assert_eq!(show(x), show(y), "samples {text} {grouping:?}");
        }
    }
    for kind in [LogKind::Pod, LogKind::Node] {
        assert_eq!(
            files.target_names(kind),
            ch.target_names(kind),
            "targets {kind:?}"
        );
        let keep = |t: &str| t != "c";
        assert_eq!(
            files.streams(kind, &keep, lo, hi),
            ch.streams(kind, &keep, lo, hi),
            "streams {kind:?}"
        );
        for target in ["a", "b", "n1", "zz"] {
            assert_eq!(
                files.newest_line(kind, target),
                ch.newest_line(kind, target),
                "newest {target}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    /// Random pushes, random windows and steps: every answer equal from both backends.
    #[test]
    fn both_backends_answer_the_same(
        pushes in prop::collection::vec(lines_strategy(), 1..4),
        lo in 0..3 * 3600 * SECOND,
        len in 1..3 * 3600 * SECOND,
        step in prop_oneof![Just(60 * SECOND), Just(600 * SECOND), Just(1800 * SECOND)],
    ) {
        let metrics = Arc::new(Metrics::new());
        let root = support::temp_dir("parity-files");
        let files = janus::logstore::files::Store::new(root.clone(), Arc::clone(&metrics));
        // Tiny pages: searches SQL cannot run whole cross many page boundaries (ties included).
        let ch = ClickHouse::open(&settings(&server().url(), &fresh_database()), Arc::clone(&metrics))
            .expect("clickhouse opens")
            .with_search_page(3);
        for lines in &pushes {
            let b = batch(lines);
            LogStore::push(&files, &b).expect("file push");
            ch.push(&b).expect("clickhouse push");
        }
        let (lo, hi) = (BASE + lo, BASE + lo + len);
        compare(&files, &ch, lo, hi, step);
        compare(&files, &ch, BASE - 3600 * SECOND, BASE + 4 * 3600 * SECOND, 600 * SECOND);
        // Not vacuous: over the whole span every pushed line is found, by both.
        let pushed: u64 = pushes.iter().map(|l| batch(l).lines).sum();
        let never = AtomicBool::new(false);
        for store in [&files as &dyn LogStore, &ch] {
            let mut found = 0;
            for text in [r#"pod{namespace=~".+"}"#, r#"node{node=~".+"}"#] {
                let query = parse_log_query(text).expect("parses");
                found += store
                    .search(&Search {
                        query: &query,
                        lo: BASE - SECOND,
                        hi: BASE + 4 * 3600 * SECOND,
                        limit: 100_000,
                        keep: Keep::Newest,
                        deadline: Instant::now() + Duration::from_secs(60),
                        cancelled: &never,
                    })
                    .expect("search")
                    .lines
                    .len() as u64;
            }
            prop_assert_eq!(found, pushed);
        }
        let _ = std::fs::remove_dir_all(root);
    }
}

/// SQL text never carries a literal unescaped: a selector value or filter with quotes and
/// backslashes finds exactly its lines.
#[test]
fn hostile_literals_are_escaped() {
    let metrics = Arc::new(Metrics::new());
    let ch =
        ClickHouse::open(&settings(&server().url(), &fresh_database()), metrics).expect("opens");
    let b = Batch {
        streams: vec![BatchStream {
            kind: LogKind::Pod,
            values: vec!["a".into(), "p".into(), "c".into()],
            lines: vec![
                (BASE, "x' OR 1=1 --"),
                (BASE + 1, "a\\'b"),
                (BASE + 2, "plain"),
            ],
            time_texts: Vec::new(),
        }],
        entries: 3,
        lines: 3,
    };
    ch.push(&b).expect("push");
    let never = AtomicBool::new(false);
    for (text, want) in [
        (r#"pod{namespace="a"} |= "' OR 1=1 --""#, 1),
        (r#"pod{namespace="a"} |= "\\'b""#, 1),
        (r#"pod{namespace="a', 'x"}"#, 0),
        (r#"pod{namespace="a"} != "'""#, 1),
    ] {
        let query = parse_log_query(text).expect("parses");
        let found = ch
            .search(&Search {
                query: &query,
                lo: BASE - SECOND,
                hi: BASE + SECOND,
                limit: 100,
                keep: Keep::Newest,
                deadline: Instant::now() + Duration::from_secs(30),
                cancelled: &never,
            })
            .expect("search");
        assert_eq!(found.lines.len(), want, "{text}");
    }
}

/// A table Janus did not make (a column missing) is refused at start-up, naming the column.
#[test]
fn a_foreign_table_is_refused_at_start_up() {
    let db = fresh_database();
    server().sql(&format!("CREATE DATABASE {db}"));
    server().sql(&format!(
        "CREATE TABLE {db}.logs (kind Enum8('pod' = 1, 'node' = 2), target String, ts Int64, line String) ENGINE = MergeTree ORDER BY ts"
    ));
    let e = ClickHouse::open(&settings(&server().url(), &db), Arc::new(Metrics::new()))
        .err()
        .expect("refused");
    assert!(e.contains("has no column stream"), "{e}");
    let e = ClickHouse::open(
        &settings("http://127.0.0.1:1", "janus"),
        Arc::new(Metrics::new()),
    )
    .err()
    .expect("refused");
    assert!(e.contains("unreachable"), "{e}");
}

/// Two Janus replicas on one ClickHouse: a push through one is read through the other at once,
/// with the same answers; ClickHouse stopped → 503 naming it (no crash), started again → both
/// answer again without a restart; nothing is written under --storage.path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_store_and_survive_clickhouse_restarts() {
    let dir = support::temp_dir("clickhouse-replicas");
    let mut server = tokio::task::spawn_blocking(move || ClickHouseServer::start(&dir))
        .await
        .expect("starts");
    let url = server.url();
    let with = |url: String| {
        move |c: &mut janus::config::Config| c.storage_clickhouse = Some(settings(&url, "replicas"))
    };
    let a = support::start_janus("http://127.0.0.1:1", with(url.clone())).await;
    let b = support::start_janus("http://127.0.0.1:1", with(url.clone())).await;
    let now = janus::time::timestamp::Timestamp::now().0;
    support::push_json(
        &a,
        &serde_json::json!({"streams": [{"stream": {"namespace": "shop", "pod": "web-1", "container": "app"},
            "values": [[now.to_string(), "level=error msg=\"through a\""], [(now + 1).to_string(), "second"]]}]}),
    )
    .await;
    let ask = |j: &support::TestJanus, path: &'static str, query: &'static str| {
        let url = j.url.clone();
        async move {
            let r = support::raw_client()
                .get(format!("{url}{path}"))
                .query(&[("query", query), ("limit", "10")])
                .send()
                .await
                .expect("answer");
            support::answer_parts(r).await
        }
    };
    for (path, query) in [
        ("/api/v1/query", r#"pod{namespace="shop"}"#),
        (
            "/loki/api/v1/query_range",
            r#"{namespace="shop"} | logfmt | level="error""#,
        ),
        (
            "/api/v1/query",
            r#"count_over_time(pod{namespace="shop"}[5m])"#,
        ),
        ("/api/v1/label/namespace/values", ""),
    ] {
        let (sa, _, ba) = ask(&a, path, query).await;
        let (sb, _, bb) = ask(&b, path, query).await;
        assert_eq!((sa, sb), (200, 200), "{path} {query}: {ba}");
        assert!(ba.contains("shop"), "{path} {query}: {ba}");
        // The same data; Loki's `stats` (times) and an instant query's `now` differ.
        let data = |body: &str| -> serde_json::Value {
            serde_json::from_str::<serde_json::Value>(body).expect("json")["data"]["result"].clone()
        };
        if path != "/api/v1/query" || query.starts_with("pod") {
            assert_eq!(data(&ba), data(&bb), "{path} {query}");
        }
    }
    let (_, _, lines) = ask(&b, "/api/v1/query", r#"pod{namespace="shop"}"#).await;
    assert!(
        lines.contains("through a") && lines.contains("second"),
        "{lines}"
    );
    assert_eq!(
        std::fs::read_dir(&a.storage)
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );

    tokio::task::block_in_place(|| server.kill());
    let (status, _, body) = ask(&b, "/api/v1/query", r#"pod{namespace="shop"}"#).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("log store is unavailable") && body.contains("unreachable"),
        "{body}"
    );
    let (status, _, body) = support::get(&b, "/-/ready", &[]).await;
    assert_eq!(status, 503, "{body}");
    // Listings say so too, rather than answer as an empty store.
    let (status, _, body) = support::get(&b, "/loki/api/v1/labels", &[]).await;
    assert_eq!(status, 503, "{body}");
    let (status, _, body) = support::get(
        &b,
        "/api/v1/series",
        &[("match[]", r#"pod{namespace="shop"}"#)],
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("log store is unavailable"), "{body}");
    let r = support::raw_client()
        .post(format!("{}/loki/api/v1/push", a.url))
        .header("Content-Type", "application/json")
        .body(serde_json::json!({"streams": [{"stream": {"namespace": "shop", "pod": "p", "container": "c"}, "values": [[now.to_string(), "lost?"]]}]}).to_string())
        .send()
        .await
        .expect("push answered");
    assert_eq!(r.status(), 503);

    tokio::task::block_in_place(|| server.restart());
    let (status, _, body) = ask(&b, "/api/v1/query", r#"pod{namespace="shop"}"#).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("through a") && !body.contains("lost?"),
        "{body}"
    );
    a.stop().await;
    b.stop().await;
}

/// A statement past its deadline is killed on the server (18.16 does not stop a query whose
/// client left): nothing of Janus's is still running afterwards.
#[test]
fn a_statement_past_its_deadline_is_killed() {
    let metrics = Arc::new(Metrics::new());
    let client = janus::logstore::clickhouse::client::Client::new(
        &Connection {
            url: server().url(),
            ..Default::default()
        },
        metrics,
    )
    .expect("client");
    let never = AtomicBool::new(false);
    let slow = "SELECT sleepEachRow(0.5), number FROM system.numbers LIMIT 100 SETTINGS max_block_size = 1 FORMAT TabSeparated";
    let started = Instant::now();
    let rows = client.select(
        "test",
        slow,
        janus::logstore::clickhouse::client::Bounds {
            deadline: Instant::now() + Duration::from_millis(1500),
            max_memory: 1 << 30,
        },
        &never,
    );
    // The deadline ends it before its first row (18.16 buffers them) or while they are read.
    let outcome = rows.and_then(|mut rows| loop {
        match rows.next_row() {
            Ok(Some(_)) => {}
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    });
    assert!(
        matches!(
            outcome,
            Err(janus::logstore::clickhouse::client::ChError::Deadline)
        ),
        "a 50 s statement with a 1.5 s deadline: {outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let mut running = String::new();
    for _ in 0..50 {
        running = server().sql("SELECT count() FROM system.processes WHERE query LIKE '%sleepEachRow(0.5)%' AND query NOT LIKE '%system.processes%'");
        if running.trim() == "0" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        running.trim(),
        "0",
        "the statement still runs on the server"
    );
}

/// Two shards on loopback behind a `Distributed` table: pushes spread by namespace, reads see
/// every shard, answers equal the file store's.
#[test]
fn two_shards_through_a_distributed_table() {
    let ports: Vec<(u16, u16)> = (0..2)
        .map(|_| {
            (
                support::clickhouse::free_port(),
                support::clickhouse::free_port(),
            )
        })
        .collect();
    let remote = format!(
        "<two><shard><replica><host>127.0.0.1</host><port>{}</port></replica></shard>\
         <shard><replica><host>127.0.0.1</host><port>{}</port></replica></shard></two>",
        ports[0].1, ports[1].1
    );
    let servers: Vec<ClickHouseServer> = ports
        .iter()
        .enumerate()
        .map(|(i, (http, tcp))| {
            ClickHouseServer::start_in_cluster(
                &support::temp_dir(&format!("shard{i}")),
                *http,
                *tcp,
                &remote,
            )
        })
        .collect();
    // Without ZooKeeper there is no distributed DDL: the operator makes each shard's tables
    // with the statements Janus would send (`ON CLUSTER` dropped), and Janus finds them.
    let layout = janus::logstore::clickhouse::schema::Layout {
        database: "janus".into(),
        cluster: Some("two".into()),
        version: janus::logstore::clickhouse::schema::Version(18, 16),
    };
    let ddl: Vec<String> = layout
        .create_statements()
        .iter()
        .map(|s| s.replace(" ON CLUSTER `two`", ""))
        .collect();
    for s in &servers {
        for statement in &ddl {
            s.sql(statement);
        }
    }
    let metrics = Arc::new(Metrics::new());
    let mut cluster_settings = settings(&servers[0].url(), "janus");
    cluster_settings.cluster = Some("two".into());
    let ch =
        ClickHouse::open(&cluster_settings, Arc::clone(&metrics)).expect("opens on the cluster");
    let root = support::temp_dir("shards-files");
    let files = janus::logstore::files::Store::new(root, metrics);
    let lines: Vec<GenLine> = (0..200)
        .map(|i| GenLine {
            stream: i % STREAMS.len(),
            offset: (i as i64) * 37 * SECOND,
            message: i % MESSAGES.len(),
        })
        .collect();
    let b = batch(&lines);
    ch.push(&b).expect("push to the cluster");
    LogStore::push(&files, &b).expect("file push");
    let on_shard = |s: &ClickHouseServer| -> u64 {
        s.sql("SELECT count() FROM janus.logs_local")
            .trim()
            .parse()
            .expect("count")
    };
    let (one, two) = (on_shard(&servers[0]), on_shard(&servers[1]));
    assert!(one > 0 && two > 0, "both shards hold lines: {one} + {two}");
    assert_eq!(one + two, b.lines);
    compare(&files, &ch, BASE, BASE + 3 * 3600 * SECOND, 600 * SECOND);
}

/// Every line a store answers, as (time, fields, message): the time text is the store's own
/// (a Lethe file keeps what its writer wrote; ClickHouse renders nanoseconds), the rest is not.
/// Time, fields, message and the time's text as answered.
type Line3 = (i64, Vec<Vec<u8>>, Vec<u8>, Vec<u8>);

fn all_lines(store: &dyn LogStore) -> Vec<Line3> {
    let never = AtomicBool::new(false);
    let mut out = Vec::new();
    for text in [r#"pod{namespace=~".*"}"#, r#"node{node=~".*"}"#] {
        let query = parse_log_query(text).expect("parses");
        let found = store
            .search(&Search {
                query: &query,
                lo: 0,
                hi: i64::MAX,
                limit: 100_000,
                keep: Keep::Oldest,
                deadline: Instant::now() + Duration::from_secs(60),
                cancelled: &never,
            })
            .expect("search");
        let mut buf = Vec::new();
        for i in 0..found.lines.len() {
            let l = found.read_line(i, &mut buf).expect("line");
            out.push((
                l.ts,
                l.fields[..l.field_count]
                    .iter()
                    .map(|f| f.to_vec())
                    .collect(),
                l.message.to_vec(),
                l.time_text.to_vec(),
            ));
        }
    }
    out.sort();
    out
}

/// `janus import --from <tree>` loads Lethe's sample tree into ClickHouse: every line, with a
/// progress line and a summary; run again, it imports nothing twice, and after a file grew it
/// imports only the new lines.
#[test]
fn a_lethe_tree_is_imported_and_the_import_resumes() {
    let tree = support::lethe_testdata();
    let work = support::temp_dir("import");
    let db = fresh_database();
    let config = work.join("janus.yml");
    std::fs::write(
        &config,
        format!(
            "storage:\n  clickhouse:\n    url: {}\n    database: {db}\n",
            server().url()
        ),
    )
    .expect("config");
    let progress = work.join("progress");
    let run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_janus"))
            .arg(format!("--config.file={}", config.display()))
            .args(["import", "--from"])
            .arg(&tree)
            .arg("--progress-file")
            .arg(&progress)
            .output()
            .expect("janus import runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let summary = run();
    let files = janus::logstore::files::Store::new(tree.clone(), Arc::new(Metrics::new()));
    let ch =
        ClickHouse::open(&settings(&server().url(), &db), Arc::new(Metrics::new())).expect("opens");
    let want = all_lines(&files);
    assert!(want.len() > 50, "the sample tree has lines");
    let got = all_lines(&ch);
    assert!(
        got == want,
        "{} lines imported, {} in the tree",
        got.len(),
        want.len()
    );
    assert!(
        summary.starts_with(&format!("imported {} lines", want.len())),
        "{summary}"
    );

    // Nothing twice.
    let again = run();
    assert!(again.starts_with("imported 0 lines"), "{again}");
    assert_eq!(all_lines(&ch).len(), want.len());

    // A file that grew: only its new lines.
    let grown = tree.join("pod/namespace01/2009-11-10_22.log");
    assert!(grown.is_file(), "sample file {}", grown.display());
    // (Lethe left its last line without a newline; a writer appending ends it first.)
    let ends_open = !std::fs::read(&grown).expect("read").ends_with(b"\n");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&grown)
        .expect("append");
    use std::io::Write;
    if ends_open {
        f.write_all(b"\n").expect("write");
    }
    writeln!(
        f,
        "2009-11-10T22:59:59.5Z[namespace01|new-pod|app] appended after the import"
    )
    .expect("write");
    drop(f);
    let third = run();
    assert!(third.starts_with("imported 1 lines"), "{third}");
    let files = janus::logstore::files::Store::new(tree.clone(), Arc::new(Metrics::new()));
    let (got, want) = (all_lines(&ch), all_lines(&files));
    let show = |a: &[Line3], b: &[Line3]| -> Vec<String> {
        a.iter()
            .filter(|l| !b.contains(l))
            .map(|l| format!("{} {}", l.0, String::from_utf8_lossy(&l.2)))
            .collect()
    };
    assert!(
        got == want,
        "only imported: {:?}; only in the tree: {:?}",
        show(&got, &want),
        show(&want, &got)
    );

    // Without a ClickHouse to import into, a clear refusal.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_janus"))
        .args(["import", "--from"])
        .arg(&tree)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("set --storage.clickhouse.url"));
}

/// A recording proxy in front of ClickHouse: forwards every request, keeps the statements sent
/// in request bodies (queries; an INSERT's statement travels in the URL with its rows as body).
async fn recording_proxy(target: String) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::body::Bytes;
    use axum::extract::{OriginalUri, State};
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    type Shared = (String, Arc<std::sync::Mutex<Vec<String>>>, reqwest::Client);
    async fn forward(
        State((target, seen, client)): State<Shared>,
        OriginalUri(uri): OriginalUri,
        body: Bytes,
    ) -> (axum::http::StatusCode, Vec<u8>) {
        let url = format!(
            "{target}{}",
            uri.path_and_query().map_or("/", |p| p.as_str())
        );
        if !url.contains("query=") {
            if let Ok(mut seen) = seen.lock() {
                seen.push(String::from_utf8_lossy(&body).into_owned());
            }
        }
        let r = client
            .post(url)
            .body(body)
            .send()
            .await
            .expect("clickhouse answers");
        let status = axum::http::StatusCode::from_u16(r.status().as_u16()).expect("status");
        (status, r.bytes().await.expect("body").to_vec())
    }
    let app = axum::Router::new().fallback(forward).with_state((
        target,
        Arc::clone(&seen),
        reqwest::Client::new(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, seen)
}

/// What Janus sends to a current server: the schema for 21.8 and later (LowCardinality, codecs,
/// the n-gram index) and every kind of SELECT it generates run on a current engine (PyPI
/// `chdb-core`, in process) and answer as 18.16 answered them on the same rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_run_on_a_current_engine() {
    let (proxy, seen) = recording_proxy(server().url()).await;
    let db = fresh_database();
    let lines: Vec<GenLine> = (0..300)
        .map(|i| GenLine {
            stream: (i * 7) % STREAMS.len(),
            offset: (i as i64 % 40) * 271 * SECOND,
            message: (i * 3) % MESSAGES.len(),
        })
        .collect();
    let db2 = db.clone();
    let recorded = tokio::task::spawn_blocking(move || {
        let ch = ClickHouse::open(&settings(&proxy, &db2), Arc::new(Metrics::new()))
            .expect("opens")
            .with_search_page(5);
        let b = batch(&lines);
        ch.push(&b).expect("push");
        seen.lock().expect("lock").clear();
        // Every query the backend makes, over a window holding all the lines.
        let files = janus::logstore::files::Store::new(
            support::temp_dir("chdb-files"),
            Arc::new(Metrics::new()),
        );
        LogStore::push(&files, &b).expect("file push");
        compare(&files, &ch, BASE, BASE + 3 * 3600 * SECOND, 600 * SECOND);
        let statements = seen.lock().expect("lock").clone();
        statements
    })
    .await
    .expect("ran");
    let statements: Vec<String> = recorded
        .into_iter()
        .filter(|s| s.starts_with("SELECT") && s.contains(&db) && !s.contains("system."))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(
        statements.len() > 20,
        "{} statements recorded",
        statements.len()
    );
    let layout = janus::logstore::clickhouse::schema::Layout {
        database: db.clone(),
        cluster: None,
        version: janus::logstore::clickhouse::schema::Version(26, 9),
    };
    let rows = server().sql(&format!(
        "SELECT kind, target, stream, container, ts, time, seq, line FROM {db}.logs FORMAT TabSeparated"
    ));
    let expected: Vec<String> = statements.iter().map(|sql| server().sql(sql)).collect();
    let answered = expected.iter().filter(|e| !e.trim().is_empty()).count();
    assert!(
        answered * 2 > expected.len(),
        "only {answered} of {} statements find rows",
        expected.len()
    );
    let case = serde_json::json!({
        "ddl": layout.create_statements(),
        "table": format!("`{db}`.logs"),
        "rows": rows,
        "statements": statements.iter().zip(&expected).map(|(sql, expected)| serde_json::json!({
            "sql": sql,
            "expected": expected,
            "ordered": sql.contains("ORDER BY"),
        })).collect::<Vec<_>>(),
    });
    let file = support::temp_dir("chdb").join("case.json");
    std::fs::write(&file, case.to_string()).expect("case");
    let out = std::process::Command::new(support::required_env("JANUS_TEST_PYTHON"))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/compat-tests/chdb_check.py"
        ))
        .arg(&file)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
            .chars()
            .take(4000)
            .collect::<String>()
    );
    println!("{}", String::from_utf8_lossy(&out.stdout));
}

/// Lines are held whole by this backend (the file store holds positions): a search of 5,000
/// lines of 64 KiB (320 MB) is refused before it is read, under a 2 GiB address-space cap,
/// and the process stays alive and under its RSS bound; a smaller answer still comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_lines_are_bounded_in_memory() {
    use support::guarded::Guarded;
    let work = support::temp_dir("clickhouse-cap");
    let config = work.join("janus.yml");
    std::fs::write(
        &config,
        format!(
            "storage:\n  clickhouse:\n    url: {}\n    database: {}\n",
            server().url(),
            fresh_database()
        ),
    )
    .expect("config");
    let mut janus = Guarded::start_2g(
        &work.join("unused"),
        "http://127.0.0.1:1",
        &[&format!("--config.file={}", config.display())],
        None,
    )
    .await;
    let now = janus::time::timestamp::Timestamp::now().0;
    let line = "x".repeat(64 << 10);
    for push in 0..10i64 {
        let values: Vec<serde_json::Value> = (0..250i64)
            .map(|i| {
                serde_json::json!([(now - 60_000_000_000 + push * 1000 + i).to_string(), line])
            })
            .collect();
        let body = serde_json::json!({"streams": [{"stream": {"namespace": "big", "pod": "p", "container": "c"}, "values": values}]});
        support::push_json_to(&janus.url, &body).await;
    }
    let janus_url = janus.url.clone();
    let ask = |limit: &'static str| {
        let url = janus_url.clone();
        async move {
            let r = support::raw_client()
                .get(format!("{url}/api/v1/query"))
                .query(&[("query", r#"pod{namespace="big"}[5m]"#), ("limit", limit)])
                .send()
                .await
                .expect("answer");
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default())
        }
    };
    let (status, body) = ask("5000").await;
    assert_eq!(status, 422, "{}", &body[..body.len().min(300)]);
    assert!(
        body.contains("exceed 128 MiB"),
        "{}",
        &body[..body.len().min(300)]
    );
    janus.assert_alive_and_bounded("a 320 MB search on ClickHouse");
    let (status, body) = ask("100").await;
    assert_eq!(status, 200, "{}", &body[..body.len().min(300)]);
    let answer: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(answer["data"]["result"].as_array().map(Vec::len), Some(100));
    janus.assert_alive_and_bounded("a 6.4 MB search on ClickHouse");
}
