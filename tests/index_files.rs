//! Cold queries: a search covering whole hours reads them without building an index, and the
//! indexes of files at rest survive a restart (`.janus/index`), trusted only when they describe
//! the file as it is now — every damaged or foreign index file is refused and rebuilt, and the
//! answers never change.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use janus::logql::parse_log_query;
use janus::logstore::files::{Search, Store};
use janus::logstore::Keep;
use janus::logstore::LogStore;
use janus::telemetry::{Metrics, ReasonLabels};

const NS: i64 = 1_000_000_000;
/// 2024-01-01T00:00:00Z.
const HOUR0: i64 = 1_704_067_200;

/// Two namespaces, two hours each, of mostly ordered lines (every 97th a minute late), a rare
/// token in a few; files dated an hour ago, as files at rest are.
fn tree() -> PathBuf {
    let root = support::temp_dir("indexfiles");
    for ns in ["shop", "auth"] {
        let dir = root.join("pod").join(ns);
        std::fs::create_dir_all(&dir).expect("mkdir");
        for hour in 0..2i64 {
            let mut text = String::new();
            for i in 0..6000i64 {
                let late = if i % 97 == 0 { 60 } else { 0 };
                let t = HOUR0 + hour * 3600 + (i * 3599 / 6000) - late;
                let time = chrono::DateTime::<chrono::Utc>::from_timestamp(t, 0)
                    .expect("time")
                    .format("%Y-%m-%dT%H:%M:%SZ");
                let token = if i % 1500 == 7 { " RARE-TOKEN" } else { "" };
                text.push_str(&format!(
                    "{time}[{ns}|{ns}-{}|app] request {i} served in {}ms{token}\n",
                    i % 5,
                    i % 300
                ));
            }
            std::fs::write(dir.join(format!("2024-01-01_{hour:02}.log")), text).expect("write");
        }
    }
    support::set_modified_tree(
        &root,
        std::time::SystemTime::now() - Duration::from_secs(3600),
    );
    root
}

struct Opened {
    store: Store,
    metrics: Arc<Metrics>,
}

fn open(root: &Path) -> Opened {
    let metrics = Arc::new(Metrics::new());
    Opened {
        store: Store::with_block_bytes(root.to_path_buf(), Arc::clone(&metrics), 4096),
        metrics,
    }
}

/// The lines a search finds, as text, with the truncation flag.
fn search(store: &Store, query: &str, lo: i64, hi: i64, limit: usize) -> (Vec<String>, bool) {
    let query = parse_log_query(query).expect("parses");
    let cancelled = AtomicBool::new(false);
    let found = store
        .search(&Search {
            query: &query,
            lo,
            hi,
            limit,
            keep: Keep::Newest,
            deadline: Instant::now() + Duration::from_secs(30),
            cancelled: &cancelled,
        })
        .expect("search");
    let lines = (0..found.lines.len())
        .map(|i| String::from_utf8_lossy(&found.line_text(i).expect("reads back")).into_owned())
        .collect();
    (lines, found.truncated)
}

const ALL: &str = r#"pod{namespace=~"shop|auth"}"#;
const RARE: &str = r#"pod{namespace=~"shop|auth"} |= "RARE-TOKEN""#;
const TWO_HOURS: (i64, i64) = (HOUR0 * NS, (HOUR0 + 7200) * NS - 1);

fn index_file(root: &Path, ns: &str, hour: u32) -> PathBuf {
    root.join(format!(
        ".janus/index/pod/{ns}/2024-01-01_{hour:02}.log.idx"
    ))
}

fn refused(metrics: &Metrics, reason: &str) -> u64 {
    metrics
        .index_files_refused
        .get_or_create(&ReasonLabels {
            reason: reason.into(),
        })
        .get()
}

#[test]
fn a_search_covering_whole_hours_reads_them_without_an_index() {
    let root = tree();
    let cold = open(&root);
    let (lo, hi) = TWO_HOURS;
    let rare = search(&cold.store, RARE, lo, hi, 1000);
    assert_eq!(rare.0.len(), 16, "{:?}", rare.0);
    assert_eq!(cold.metrics.files_scanned_unindexed.get(), 4);
    assert_eq!(cold.metrics.store_bytes_indexed.get(), 0, "no index built");
    assert!(!root.join(".janus/index").exists());

    // The same answers from indexes: built by a search that reads every line.
    let warm = open(&root);
    let newest = search(&warm.store, ALL, lo, hi, 50);
    assert!(warm.metrics.store_bytes_indexed.get() > 0);
    assert_eq!(search(&warm.store, RARE, lo, hi, 1000), rare);
    assert_eq!(search(&cold.store, ALL, lo, hi, 50), newest);
    // Limits and truncation are the same without an index.
    for limit in [1, 5, 15, 16, 17] {
        let fresh = open(&root);
        std::fs::remove_dir_all(root.join(".janus")).ok();
        let unindexed = search(&fresh.store, RARE, lo, hi, limit);
        assert_eq!(
            unindexed,
            search(&warm.store, RARE, lo, hi, limit),
            "limit {limit}"
        );
        assert_eq!(unindexed.1, limit < 16);
    }

    // A window that cuts an hour builds that hour's index (it lets the scan skip).
    let partial = open(&root);
    std::fs::remove_dir_all(root.join(".janus")).ok();
    let cut = search(&partial.store, RARE, lo + 1800 * NS, hi, 1000);
    assert!(partial.metrics.store_bytes_indexed.get() > 0);
    assert_eq!(partial.metrics.files_scanned_unindexed.get(), 2);
    assert_eq!(cut, search(&warm.store, RARE, lo + 1800 * NS, hi, 1000));
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn indexes_survive_a_restart() {
    let root = tree();
    let (lo, hi) = TWO_HOURS;
    let first = open(&root);
    let newest = search(&first.store, ALL, lo, hi, 100);
    assert_eq!(first.metrics.index_files_written.get(), 4);
    for ns in ["shop", "auth"] {
        assert!(index_file(&root, ns, 1).is_file());
    }
    // A new store (a restart) reads the indexes back instead of the files.
    let second = open(&root);
    assert_eq!(search(&second.store, ALL, lo, hi, 100), newest);
    assert_eq!(second.metrics.index_files_loaded.get(), 4);
    assert_eq!(second.metrics.store_bytes_indexed.get(), 0);
    // And a search covering the hours now uses them too.
    assert_eq!(
        search(&second.store, RARE, lo, hi, 1000),
        search(&first.store, RARE, lo, hi, 1000)
    );
    assert_eq!(second.metrics.files_scanned_unindexed.get(), 0);
    // Retention takes a file's index with the file.
    let now = (HOUR0 + 30 * 24 * 3600) * NS;
    let outcome =
        janus::logstore::files::retention::run(&root, now, Duration::from_secs(3600), 0, &|_| {
            false
        });
    assert_eq!(outcome.deleted_by_time, 4);
    assert!(!index_file(&root, "shop", 0).exists());
    assert!(!index_file(&root, "auth", 1).exists());
    let _ = std::fs::remove_dir_all(root);
}

#[test]
fn damaged_or_foreign_index_files_are_rebuilt_never_trusted() {
    let root = tree();
    let (lo, hi) = TWO_HOURS;
    let reference = search(&open(&root).store, ALL, lo, hi, 200);
    let target = index_file(&root, "shop", 0);
    let good = std::fs::read(&target).expect("index written");
    let other = std::fs::read(index_file(&root, "auth", 0)).expect("index written");

    type Damage = fn(&Path, &[u8], &[u8]);
    let cases: [(&str, Damage, Option<&str>); 5] = [
        (
            "truncated",
            |p, good, _| std::fs::write(p, &good[..good.len() / 2]).unwrap(),
            Some("corrupt"),
        ),
        (
            "a byte flipped",
            |p, good, _| {
                let mut bad = good.to_vec();
                let middle = bad.len() / 2;
                bad[middle] ^= 1;
                std::fs::write(p, bad).unwrap()
            },
            Some("corrupt"),
        ),
        (
            "an older format",
            |p, good, _| {
                let mut old = good.to_vec();
                old[8..12].copy_from_slice(&0u32.to_le_bytes());
                std::fs::write(p, old).unwrap()
            },
            Some("old format"),
        ),
        (
            "another file's index",
            |p, _, other| std::fs::write(p, other).unwrap(),
            Some("another file"),
        ),
        (
            "not an index at all",
            |p, _, _| std::fs::write(p, b"hello\n").unwrap(),
            Some("corrupt"),
        ),
    ];
    for (what, damage, reason) in cases {
        damage(&target, &good, &other);
        let store = open(&root);
        assert_eq!(search(&store.store, ALL, lo, hi, 200), reference, "{what}");
        if let Some(reason) = reason {
            assert_eq!(refused(&store.metrics, reason), 1, "{what}");
        }
        assert_eq!(store.metrics.index_files_loaded.get(), 3, "{what}");
        assert_eq!(
            store.metrics.index_files_written.get(),
            1,
            "{what}: rebuilt and rewritten"
        );
        assert_eq!(
            std::fs::read(&target).unwrap(),
            good,
            "{what}: the same index again"
        );
    }

    // A log file replaced under its index (new inode, other lines): the index is refused.
    let log = root.join("pod/shop/2024-01-01_00.log");
    let replaced = std::fs::read_to_string(&log)
        .unwrap()
        .replace("request", "answer!");
    std::fs::remove_file(&log).unwrap();
    std::fs::write(&log, replaced).unwrap();
    support::set_modified_tree(
        &root.join("pod"),
        std::time::SystemTime::now() - Duration::from_secs(3600),
    );
    let store = open(&root);
    let query = r#"pod{namespace="shop"} |= "answer!""#;
    let after = search(&store.store, query, lo, hi, 100_000);
    assert_eq!(refused(&store.metrics, "another file"), 1);
    // The same as a store that never had an index: every line of the new file in the window.
    let fresh = support::temp_dir("indexfiles-fresh");
    support::copy_tree(&root.join("pod"), &fresh.join("pod"));
    assert_eq!(after, search(&open(&fresh).store, query, lo, hi, 100_000));
    assert_eq!(
        after.0.len(),
        5998,
        "6000 lines, two of them late into the hour before"
    );
    let _ = std::fs::remove_dir_all(fresh);

    // A link planted under the index's name is not read through, and is replaced, not followed.
    let outside = support::temp_dir("indexfiles-outside");
    std::fs::write(outside.join("victim"), b"keep").unwrap();
    std::fs::remove_file(&target).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), &target).unwrap();
    let store = open(&root);
    search(&store.store, ALL, lo, hi, 10);
    assert_eq!(std::fs::read(outside.join("victim")).unwrap(), b"keep");
    assert!(std::fs::symlink_metadata(&target).unwrap().is_file());
    let _ = std::fs::remove_dir_all(root);
    let _ = std::fs::remove_dir_all(outside);
}

/// Files at rest that nothing indexed (read whole by a literal search, or never queried) are
/// indexed by the background pass and their indexes persisted: after a restart, the newest
/// lines of an hour come from its index, not from reading the hour.
#[test]
fn files_at_rest_are_indexed_in_the_background_and_kept() {
    let root = tree();
    let first = open(&root);
    // A search over whole hours reads them without indexing them, by design.
    let (rare, _) = search(&first.store, RARE, TWO_HOURS.0, TWO_HOURS.1, 100);
    assert!(!rare.is_empty());
    assert!(!index_file(&root, "shop", 0).exists());
    assert_eq!(first.store.prepare_at_rest(&|| false), 4);
    for (ns, hour) in [("shop", 0), ("shop", 1), ("auth", 0), ("auth", 1)] {
        assert!(index_file(&root, ns, hour).exists(), "{ns} {hour}");
    }
    // Nothing left to do the second time.
    assert_eq!(first.store.prepare_at_rest(&|| false), 0);
    // A restart reads the persisted indexes back: the newest lines need no pass over a file.
    let second = open(&root);
    let (newest, truncated) = search(&second.store, ALL, TWO_HOURS.0, TWO_HOURS.1, 10);
    assert_eq!((newest.len(), truncated), (10, true));
    assert_eq!(
        second.metrics.store_bytes_indexed.get(),
        0,
        "no file was read to index it"
    );
    assert!(second.metrics.index_files_loaded.get() > 0);
    // A stop ends the pass at once.
    let third_root = tree();
    let third = open(&third_root);
    assert_eq!(third.store.prepare_at_rest(&|| true), 0);
    std::fs::remove_dir_all(root).ok();
    std::fs::remove_dir_all(third_root).ok();
}

/// Files Janus writes carry their index from the writer: pushes in many small batches build it
/// as they append (no read of the file), with short blocks continued rather than one per push;
/// a query then reads nothing to index, the index is written at shutdown, and a restart finds
/// the newest lines from it. Lines another writer appended meanwhile are indexed by reading
/// them, and the answers are the same as a store that read everything.
#[test]
fn files_janus_writes_carry_their_index_from_the_writer() {
    use janus::logql::LogKind;
    use janus::logstore::write::{Batch, BatchStream};
    let root = support::temp_dir("indexfiles-writer");
    let first = open(&root);
    let texts: Vec<String> = (0..3000)
        .map(|i| format!("pushed line {i} of the hour"))
        .collect();
    for chunk in 0..30usize {
        let lines: Vec<(i64, &str)> = (chunk * 100..chunk * 100 + 100)
            .map(|i| ((HOUR0 + i as i64) * NS, texts[i].as_str()))
            .collect();
        let batch = Batch {
            streams: vec![BatchStream {
                kind: LogKind::Pod,
                values: vec!["shop".into(), format!("shop-{}", chunk % 3), "app".into()],
                lines,
                time_texts: Vec::new(),
            }],
            entries: 100,
            lines: 100,
        };
        first.store.push(&batch).expect("push");
    }
    let hour = (HOUR0 * NS, (HOUR0 + 3600) * NS - 1);
    let q = r#"pod{namespace="shop"}"#;
    let (newest, truncated) = search(&first.store, q, hour.0, hour.1, 10);
    assert_eq!((newest.len(), truncated), (10, true));
    // In time order: the ten newest, 2990 to 2999.
    assert!(newest[0].contains("pushed line 2990 "), "{newest:?}");
    assert!(newest[9].contains("pushed line 2999 "), "{newest:?}");
    assert_eq!(
        first.metrics.store_bytes_indexed.get(),
        0,
        "the writer's index was complete: nothing was read to index"
    );
    // Another writer appends to the same file: those lines are read to extend the index.
    let path = root.join("pod/shop/2024-01-01_00.log");
    let mut other = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open");
    std::io::Write::write_all(
        &mut other,
        b"2024-01-01T00:59:59Z[shop|fluent|bit] appended by another writer\n",
    )
    .expect("append");
    drop(other);
    let (newest, _) = search(&first.store, q, hour.0, hour.1, 1);
    assert!(newest[0].contains("another writer"), "{}", newest[0]);
    assert!(first.metrics.store_bytes_indexed.get() > 0);
    // Shutdown writes the index; a restart reads it back and reads no file to answer.
    assert!(!index_file(&root, "shop", 0).exists());
    first.store.close_idle(true);
    assert!(index_file(&root, "shop", 0).exists());
    let second = open(&root);
    let (again, _) = search(&second.store, q, hour.0, hour.1, 10);
    assert_eq!(second.metrics.store_bytes_indexed.get(), 0);
    assert!(second.metrics.index_files_loaded.get() > 0);
    // The same answer as a store that builds its index by reading the file.
    let _ = std::fs::remove_dir_all(root.join(".janus/index"));
    let third = open(&root);
    let (read, _) = search(&third.store, q, hour.0, hour.1, 10);
    assert!(third.metrics.store_bytes_indexed.get() > 0);
    assert_eq!(again, read);
    let (all, _) = search(&third.store, q, hour.0, hour.1, 10_000);
    assert_eq!(all.len(), 3001);
    let _ = std::fs::remove_dir_all(root);
}
