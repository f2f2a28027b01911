//! The file store, the first [`crate::logstore::LogStore`]: Lethe's flat files on one node
//! (`docs/storage.md`). Reading: layout listing ([`layout`]), per-file time indexes ([`index`])
//! and the scan engine ([`scan`]); writing: pushes rendered into hour files ([`render`]) and
//! appended all or nothing ([`writer`]); [`retention`] deletes whole hour files.

#![warn(missing_docs)]

pub mod beneath;
mod counting;
pub mod file_bins;
pub mod index;
pub mod index_file;
pub mod layout;
pub mod render;
pub mod retention;
pub mod scan;
pub mod workers;
pub mod writer;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

pub use super::answer::{
    Count, Found, FoundLine, LineSource, Search, SeriesSamples, StreamBuckets, MAX_LABEL_BYTES,
};
use super::write::{Batch, RetentionOutcome, RetentionPolicy, WriteError, Written};
use super::{Capabilities, LogStore};
use crate::logql::{LogKind, LogQuery};
use crate::telemetry::Metrics;
use index::IndexCache;
use scan::{Keep, ScanFile, ScanStop};
use workers::Workers;

/// Bytes of one chunk of a file read without an index: large reads, and several per hour file
/// so that the workers share a file.
const UNINDEXED_CHUNK: u64 = 1 << 20;

/// How much of an hour a window may leave out and still be said to cover it: an index could
/// skip at most that sliver (a window ending at `11:59:59.999`, Prometheus's millisecond times,
/// leaves out under a millisecond).
const COVER_SLACK: i64 = 60_000_000_000;

/// Whether `[lo, hi]` covers the hour of `file` (within [`COVER_SLACK`] at either end): nearly
/// every line it holds in its hour is wanted, so there is nothing worth an index to skip. Lines
/// outside the window are left out by their own time, as every line is.
fn covers_hour(file: &layout::HourFile, lo: i64, hi: i64) -> bool {
    let end = file.hour_start.saturating_add(layout::HOUR_NANOS);
    lo <= file.hour_start.saturating_add(COVER_SLACK) && hi >= end.saturating_sub(COVER_SLACK)
}

/// The files an answer's lines are in, kept open until it is sent.
struct OpenFiles(Vec<File>);

impl LineSource for OpenFiles {
    fn read_at(&self, part: usize, offset: u64, buf: &mut [u8]) -> bool {
        use std::os::unix::fs::FileExt;
        self.0
            .get(part)
            .is_some_and(|file| file.read_exact_at(buf, offset).is_ok())
    }

    fn held_bytes(&self) -> usize {
        self.0.len() * 64
    }
}

/// The store: one root with `pod/` and `node/` trees, the index cache and the scan workers, shared
/// by every query.
pub struct Store {
    root: PathBuf,
    indexes: IndexCache,
    metrics: Arc<Metrics>,
    workers: Workers,
    /// Where the counts of files that no longer change are remembered (`file_bins`).
    results: Option<Arc<crate::results_cache::ResultsCache>>,
    /// Appends pushed lines to the hour files.
    writer: writer::Writer,
}

impl Store {
    /// A store over `root`, with a scan worker per core.
    pub fn new(root: PathBuf, metrics: Arc<Metrics>) -> Self {
        Store::with_block_bytes(root, metrics, index::BLOCK_BYTES)
    }

    /// A store whose indexes cut blocks of about `block_bytes` (tests use tiny ones).
    pub fn with_block_bytes(root: PathBuf, metrics: Arc<Metrics>, block_bytes: u64) -> Self {
        Store {
            indexes: IndexCache::persisted_under(root.clone(), block_bytes),
            metrics,
            workers: Workers::per_core(),
            results: None,
            writer: writer::Writer::new(root.clone(), writer::FsyncMode::Batch),
            root,
        }
    }

    /// The same store, writing pushes with `fsync` and at most `max_open_files` appenders open.
    pub fn writing(mut self, fsync: writer::FsyncMode, max_open_files: usize) -> Self {
        self.writer =
            writer::Writer::new(self.root.clone(), fsync).with_max_open_files(max_open_files);
        self
    }

    /// The writer pushes go through (its open appenders, batch fsync, idle closing).
    pub fn writer(&self) -> &writer::Writer {
        &self.writer
    }

    /// The same store, remembering log-metric counts of files that no longer change in `cache`.
    pub fn remembering_in(
        mut self,
        cache: Option<Arc<crate::results_cache::ResultsCache>>,
    ) -> Self {
        self.results = cache;
        self
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How many hour files hold the selector's streams in `[lo, hi]` (Loki's "chunks").
    pub fn hour_file_count(&self, query: &LogQuery, lo: i64, hi: i64) -> usize {
        self.candidates(
            &[query.kind],
            |name| query.target_matches(name),
            |file| layout::hour_overlaps(file.hour_start, lo, hi),
        )
        .len()
    }

    /// The hour files of the targets of `kinds` that `keep_target` accepts and `keep_file`
    /// wants, with their target's name; entries skipped on the way are counted.
    fn candidates(
        &self,
        kinds: &[LogKind],
        keep_target: impl Fn(&str) -> bool,
        keep_file: impl Fn(&layout::HourFile) -> bool,
    ) -> Vec<(String, layout::HourFile)> {
        let mut skipped = layout::Skipped::default();
        let mut candidates = Vec::new();
        for &kind in kinds {
            for target in layout::targets(&self.root, kind, &keep_target, &mut skipped) {
                for file in layout::hour_files(&target, &mut skipped) {
                    if keep_file(&file) {
                        candidates.push((target.name.clone(), file));
                    }
                }
            }
        }
        self.metrics.store_skipped_entries.inc_by(skipped.entries);
        candidates
    }

    /// Opens the candidate files (never following links) and gets their indexes, in parallel.
    /// A file `whole` accepts and that has no index yet is not indexed: it is planned as
    /// line-aligned chunks of unknown time, read once by the scan as `rg` would read it —
    /// building its index first would read it twice. Other files without an index are indexed
    /// (their first full read), or their index read back from its persisted file.
    fn open_and_index(
        &self,
        candidates: Vec<(String, layout::HourFile)>,
        warnings: &mut Vec<String>,
        stop: &(dyn Fn() -> bool + Sync),
        whole: &(dyn Fn(&layout::HourFile) -> bool + Sync),
    ) -> Vec<ScanFile> {
        let slots: Vec<std::sync::Mutex<Option<Result<ScanFile, String>>>> = candidates
            .iter()
            .map(|_| std::sync::Mutex::new(None))
            .collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let work = || loop {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let Some((target, hour)) = candidates.get(i) else {
                return;
            };
            let opened = open_no_follow(&hour.path).and_then(|file| {
                let index = if whole(hour) && !self.indexes.has_index(&hour.path) {
                    self.metrics.files_scanned_unindexed.inc();
                    Arc::new(index::unindexed_plan(&file, UNINDEXED_CHUNK)?)
                } else {
                    let (index, work) = self.indexes.get(&hour.path, &file, stop)?;
                    self.count_index_work(&work);
                    index
                };
                Ok(ScanFile {
                    target: target.clone(),
                    file,
                    index,
                    hour_start: hour.hour_start,
                })
            });
            let result = match opened {
                Ok(f) => Some(Ok(f)),
                // Deleted by retention between listing and opening: not part of the answer.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                // Deadline or cancellation: the search reports it.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => None,
                Err(e) => Some(Err(format!("{}/{}: {e}", target, hour.name))),
            };
            if let Ok(mut slot) = slots[i].lock() {
                *slot = result;
            }
        };
        self.workers.run(candidates.len(), work);
        let mut files = Vec::new();
        for slot in slots {
            match slot.into_inner().ok().flatten() {
                Some(Ok(f)) => files.push(f),
                Some(Err(e)) => warnings.push(format!("skipped unreadable file {e}")),
                None => {}
            }
        }
        files
    }

    fn count_index_work(&self, work: &index::IndexWork) {
        let m = &self.metrics;
        m.store_bytes_indexed.inc_by(work.bytes_indexed);
        m.store_unparsable_lines.inc_by(work.new_bad_lines);
        if work.rebuilt {
            m.index_rebuilds.inc();
        }
        if work.loaded {
            m.index_files_loaded.inc();
        }
        if work.written {
            m.index_files_written.inc();
        }
        if let Some(reason) = work.refused {
            m.index_files_refused
                .get_or_create(&crate::telemetry::ReasonLabels {
                    reason: reason.to_string(),
                })
                .inc();
        }
    }
}

impl LogStore for Store {
    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    /// Runs a search. Blocking: call it from a blocking thread.
    fn search(&self, s: &Search<'_>) -> Result<Found, ScanStop> {
        let started = Instant::now();
        let candidates = self.candidates(
            &[s.query.kind],
            |name| s.query.target_matches(name),
            |file| layout::hour_overlaps(file.hour_start, s.lo, s.hi),
        );
        let mut warnings = Vec::new();
        let stop = || scan::interrupted(s.deadline, s.cancelled).is_some();
        // A search the scanner can run on literals or regexes needs no index for the hours it
        // covers whole; one that reads every line (newest-N without a filter) does.
        let prefiltered = scan::has_prefilter(s.query);
        let whole = |file: &layout::HourFile| prefiltered && covers_hour(file, s.lo, s.hi);
        let files = self.open_and_index(candidates, &mut warnings, &stop, &whole);
        if let Some(why) = scan::interrupted(s.deadline, s.cancelled) {
            return Err(why);
        }
        let outcome = scan::scan(&files, s, &self.workers)?;
        self.metrics.store_bytes_scanned.inc_by(outcome.bytes_read);
        self.metrics
            .store_scan_duration
            .observe(started.elapsed().as_secs_f64());
        if outcome.unreadable_blocks > 0 {
            warnings.push(format!(
                "{} blocks changed while being read and were skipped",
                outcome.unreadable_blocks
            ));
        }
        Ok(Found::from_source(
            outcome
                .hits
                .into_iter()
                .map(|h| FoundLine {
                    ts: h.ts,
                    part: h.file,
                    offset: h.offset,
                    len: h.len,
                })
                .collect(),
            Box::new(OpenFiles(files.into_iter().map(|f| f.file).collect())),
            outcome.truncated,
            warnings,
            outcome.bytes_read,
        ))
    }

    fn buckets(&self, count: &Count<'_>, bounds: &[i64]) -> Result<StreamBuckets, ScanStop> {
        self.count_buckets(count, bounds)
    }

    fn samples(&self, count: &Count<'_>, lo: i64, hi: i64) -> Result<SeriesSamples, ScanStop> {
        self.unwrapped_samples(count, lo, hi)
    }

    fn chunk_count(&self, query: &LogQuery, lo: i64, hi: i64) -> Result<usize, ScanStop> {
        Ok(self.hour_file_count(query, lo, hi))
    }

    /// Target directory names of a kind (for labels, targets and metadata).
    fn target_names(&self, kind: LogKind) -> Result<Vec<String>, ScanStop> {
        let mut skipped = layout::Skipped::default();
        Ok(layout::targets(&self.root, kind, |_| true, &mut skipped)
            .into_iter()
            .map(|t| t.name)
            .collect())
    }

    /// Targets with a non-empty hour file overlapping the window: directory and file names only
    /// (100 namespaces of 720 hours: one listing each, not 72,000 indexes).
    fn targets_in(&self, kind: LogKind, lo: i64, hi: i64) -> Result<Option<Vec<String>>, ScanStop> {
        let mut skipped = layout::Skipped::default();
        Ok(Some(
            layout::targets(&self.root, kind, |_| true, &mut skipped)
                .into_iter()
                .filter(|t| layout::has_hour_in(t, lo, hi))
                .map(|t| t.name)
                .collect(),
        ))
    }

    /// The distinct streams of `kind` (label values in [`LogKind::labels`] order) in hour files
    /// overlapping `[lo, hi]` of targets that `keep` accepts; `true` when a file had more
    /// streams than its index remembers.
    fn streams(
        &self,
        kind: LogKind,
        keep: &dyn Fn(&str) -> bool,
        lo: i64,
        hi: i64,
    ) -> Result<(std::collections::BTreeSet<Vec<String>>, bool), ScanStop> {
        let candidates = self.candidates(&[kind], keep, |file| {
            layout::hour_overlaps(file.hour_start, lo, hi)
        });
        let mut out = std::collections::BTreeSet::new();
        let mut capped = false;
        /// Streams one answer may list; beyond it the answer says so.
        const MAX_ANSWER_STREAMS: usize = 100_000;
        let mut candidates = candidates.into_iter().peekable();
        while candidates.peek().is_some() {
            let chunk: Vec<_> = candidates.by_ref().take(FILES_AT_ONCE).collect();
            let mut warnings = Vec::new();
            let files = self.open_and_index(chunk, &mut warnings, &|| false, &|_| false);
            // A file that could not be read leaves the answer incomplete: it says so.
            capped |= !warnings.is_empty();
            for f in &files {
                // A file whose index could not remember all its streams is read for them.
                let read;
                let streams = if f.index.streams_capped {
                    read = index::read_streams(&f.file, MAX_ANSWER_STREAMS).unwrap_or_default();
                    &read
                } else {
                    &f.index.streams
                };
                if out.len() >= MAX_ANSWER_STREAMS {
                    capped = true;
                    break;
                }
                for fields in streams {
                    let values: Vec<String> = fields
                        .split(|&b| b == b'|')
                        .map(|v| String::from_utf8_lossy(v).into_owned())
                        .collect();
                    if values.len() == kind.labels().len() {
                        out.insert(values);
                    }
                }
            }
            if out.len() >= MAX_ANSWER_STREAMS {
                capped = true;
                break;
            }
        }
        Ok((out, capped))
    }

    /// Time of the newest line of a target (its newest hour file that holds a line).
    fn newest_line(&self, kind: LogKind, target: &str) -> Result<Option<i64>, ScanStop> {
        let mut skipped = layout::Skipped::default();
        let found = layout::targets(&self.root, kind, |name| name == target, &mut skipped);
        let Some(target) = found.first() else {
            return Ok(None);
        };
        let mut files = layout::hour_files(target, &mut skipped);
        files.sort_by_key(|f| std::cmp::Reverse(f.hour_start));
        for hour in files {
            let Ok(file) = open_no_follow(&hour.path) else {
                continue;
            };
            let Ok((index, work)) = self.indexes.get(&hour.path, &file, &|| false) else {
                continue;
            };
            self.count_index_work(&work);
            if let Some(ts) = index.max_ts() {
                return Ok(Some(ts));
            }
        }
        Ok(None)
    }

    /// Indexes the hour files of the last `hours` hours, newest first, so that queries over
    /// recent logs find their indexes built. Meant for a background thread at start-up.
    fn warm_recent(&self, hours: i64) {
        let now = crate::time::timestamp::Timestamp::now().0;
        let since = now - hours * layout::HOUR_NANOS;
        let mut candidates = self.candidates(
            &[LogKind::Pod, LogKind::Node],
            |_| true,
            |file| file.hour_start + layout::HOUR_NANOS > since,
        );
        candidates.sort_by_key(|(_, f)| std::cmp::Reverse(f.hour_start));
        // A chunk at a time: a day of a thousand namespaces is more files than descriptors.
        let mut indexed = 0;
        for chunk in candidates.chunks(FILES_AT_ONCE) {
            let mut warnings = Vec::new();
            indexed += self
                .open_and_index(chunk.to_vec(), &mut warnings, &|| false, &|_| false)
                .len();
        }
        tracing::info!(files = indexed, hours, "indexed recent log files");
    }

    /// Indexes (and so persists) the sealed hour files that have no index yet, newest first,
    /// one at a time with a pause between them, lowering the calling thread to the lowest
    /// priority (call it on a thread of its own): written by
    /// others (Lethe, Fluent Bit) or never queried, they would otherwise be read whole by the
    /// first newest-N query after a restart.
    fn prepare_at_rest(&self, stop: &dyn Fn() -> bool) -> usize {
        lower_this_threads_priority();
        // Indexes built in memory (as Janus appended, or by queries of files still written
        // then) cost only their writing.
        let mut done = self.indexes.persist_pending();
        self.metrics.index_files_written.inc_by(done as u64);
        let mut candidates = self.candidates(&[LogKind::Pod, LogKind::Node], |_| true, |_| true);
        candidates.sort_by_key(|(_, f)| std::cmp::Reverse(f.hour_start));
        for (_, hour) in candidates {
            if stop() {
                break;
            }
            if self.indexes.has_index(&hour.path) {
                continue;
            }
            let sealed = std::fs::symlink_metadata(&hour.path)
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|m| m.elapsed().ok())
                .is_some_and(|age| age >= index::SETTLED);
            if !sealed {
                continue;
            }
            let Ok(file) = open_no_follow(&hour.path) else {
                continue;
            };
            if let Ok((_, work)) = self.indexes.get(&hour.path, &file, stop) {
                self.count_index_work(&work);
                done += 1;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        done
    }

    /// Drops the cached indexes of files that no longer exist (after retention deleted them).
    fn forget_deleted(&self) {
        self.indexes.forget_missing();
    }

    /// Renders the push into its hour files and appends them, all or nothing.
    fn push(&self, batch: &Batch<'_>) -> Result<Written, WriteError> {
        let appended = self
            .writer
            .append_observed(
                &render::hour_files(batch),
                &|relative, file, before, bytes| {
                    self.indexes
                        .note_append(&self.root.join(relative), file, before, bytes)
                },
            )
            .map_err(|e| WriteError::Failed(e.to_string()))?;
        Ok(Written {
            bytes: appended.bytes,
            fsync_seconds: appended.fsync_seconds,
        })
    }

    fn recover(&self) -> Result<Option<String>, String> {
        match self.writer.repair_after_crash() {
            Ok(repaired) if !repaired.is_empty() => Ok(Some(format!(
                "cut unterminated lines left by an interrupted write in {} files",
                repaired.len()
            ))),
            Ok(_) => Ok(None),
            Err(e) => Err(format!("repairing files after a crash failed: {e}")),
        }
    }

    fn sync(&self) -> Result<f64, String> {
        self.writer.sync_dirty().map_err(|e| e.to_string())
    }

    fn close_idle(&self, all: bool) {
        if let Err(e) = self.writer.close_idle(all) {
            tracing::warn!(error = %e, "closing idle log files failed");
        }
        if all {
            // At shutdown: the indexes the writer built, so the next start finds them.
            let written = self.indexes.persist_pending();
            if written > 0 {
                self.metrics.index_files_written.inc_by(written as u64);
            }
        }
    }

    /// One retention pass over the tree, sparing the files being written.
    fn enforce_retention(&self, policy: &RetentionPolicy, now: i64) -> RetentionOutcome {
        retention::run(&self.root, now, policy.max_age, policy.max_bytes, &|path| {
            self.writer.is_open(path)
        })
    }

    /// Why the store cannot serve, if it cannot: its root is not a usable directory.
    fn problem(&self) -> Option<String> {
        match std::fs::metadata(&self.root) {
            Ok(meta) if meta.is_dir() => None,
            Ok(_) => Some(format!(
                "storage path {} is not a directory",
                self.root.display()
            )),
            Err(e) => Some(format!("storage path {}: {e}", self.root.display())),
        }
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}

/// Files held open at once by a listing or a warm-up: a month of a hundred namespaces is 72,000
/// files, more than the descriptors a process has (all at once, the opens past the limit failed
/// and a listing silently lacked their streams).
const FILES_AT_ONCE: usize = 256;

/// Background work runs at the lowest scheduling priority, so that queries keep the cores.
fn lower_this_threads_priority() {
    // SAFETY: setpriority on this thread (who = 0 with PRIO_PROCESS names the calling thread
    // on Linux) changes nothing else; a failure leaves the priority as it was.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, 19);
    }
}

pub(crate) fn open_no_follow(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // A file swapped for a link is not opened.
    options.custom_flags(libc::O_NOFOLLOW);
    options.open(path)
}
