//! The embedded log store, compatible with Lethe's flat files (`docs/storage.md`).
//!
//! Reading only, for now: layout listing ([`layout`]), line parsing ([`line`]), per-file time
//! indexes ([`index`]) and the scan engine ([`scan`]).

#![warn(missing_docs)]

pub mod beneath;
pub mod file_bins;
pub mod index;
pub mod index_file;
pub mod layout;
pub mod line;
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
    Found, FoundLine, LineSource, Search, SeriesSamples, StreamBuckets, MAX_LABEL_BYTES,
};
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

/// The first byte of every series key. A key is never empty: comparing two empty vectors
/// (whose pointers dangle) costs a masked vector load that the CPU must fault-suppress, which
/// made hash-map probes of `sum(count_over_time(…))` (one empty key) 40 % of the scan.
const KEY_START: u8 = b'k';

/// Bucket arrays one log metric may hold across its scan workers, in units of its streams
/// limit: a stream met by several workers is counted by each (each holds an array for it).
const MAX_BUCKET_COPIES: usize = 2;

/// A stream's key while counting (no parser, no grouping): its fields joined by `|` (a field
/// never holds one).
fn stream_key(key: &mut Vec<u8>, line: &line::Line<'_>) {
    key.clear();
    key.push(KEY_START);
    for (n, field) in line.fields[..line.field_count].iter().enumerate() {
        if n > 0 {
            key.push(b'|');
        }
        key.extend_from_slice(field);
    }
}

/// How a metric's series keys are made: which stream fields the grouping keeps is asked once
/// per query, not once per line.
struct KeyPlan<'g> {
    kind: LogKind,
    fields_kept: [bool; 3],
    grouping: Option<&'g crate::logql::pipeline::Grouping>,
}

impl<'g> KeyPlan<'g> {
    fn new(kind: LogKind, grouping: Option<&'g crate::logql::pipeline::Grouping>) -> Self {
        let mut fields_kept = [false; 3];
        for (kept, name) in fields_kept.iter_mut().zip(kind.labels()) {
            *kept = grouping.is_none_or(|g| g.keeps(name));
        }
        KeyPlan {
            kind,
            fields_kept,
            grouping,
        }
    }

    /// A stream's key as its labels — fields and extracted ones, those the grouping keeps —
    /// each as length-prefixed name and value.
    fn labels_key(
        &self,
        key: &mut Vec<u8>,
        line: &line::Line<'_>,
        extracted: Option<&crate::logql::pipeline::Outcome>,
    ) {
        key.clear();
        key.push(KEY_START);
        let mut put = |name: &str, value: &[u8]| {
            for part in [name.as_bytes(), value] {
                key.extend_from_slice(&(part.len() as u32).to_le_bytes());
                key.extend_from_slice(part);
            }
        };
        let fields = self
            .kind
            .labels()
            .iter()
            .zip(&line.fields[..line.field_count])
            .zip(self.fields_kept);
        for ((name, value), kept) in fields {
            if kept && extracted.is_none_or(|o| o.shows_stream_label(name)) {
                put(name, value);
            }
        }
        // A marked line keeps its mark through any grouping (Loki's `GroupedLabels`): the
        // engine refuses metrics over marked lines.
        for (name, value) in extracted.iter().flat_map(|o| o.labels.iter()) {
            if name == "__error__" || self.grouping.is_none_or(|g| g.keeps(name)) {
                put(name, value.as_bytes());
            }
        }
    }
}

/// The labels of a key made by [`KeyPlan::labels_key`] (a sorted map: extracted labels may come after
/// the fields in any order).
fn pairs_labels(key: &[u8]) -> BTreeMap<String, String> {
    let mut key = key.get(1..).unwrap_or_default();
    let mut labels = BTreeMap::new();
    let take = |rest: &mut &[u8]| -> Option<String> {
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let part = rest.get(4..4 + len)?;
        let text = String::from_utf8_lossy(part).into_owned();
        *rest = &rest[4 + len..];
        Some(text)
    };
    while let (Some(name), Some(value)) = (take(&mut key), take(&mut key)) {
        labels.entry(name).or_insert(value);
    }
    labels
}

/// The labels of a stream key made by [`stream_key`].
fn key_labels(kind: LogKind, key: &[u8]) -> BTreeMap<String, String> {
    kind.labels()
        .iter()
        .zip(key.get(1..).unwrap_or_default().split(|&b| b == b'|'))
        .map(|(name, v)| (name.to_string(), String::from_utf8_lossy(v).into_owned()))
        .collect()
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
            root,
            metrics,
            workers: Workers::per_core(),
            results: None,
        }
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

    /// Runs a search. Blocking: call it from a blocking thread.
    pub fn search(&self, s: &Search<'_>) -> Result<Found, ScanStop> {
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

    /// Counts the lines (and message bytes) of each stream between consecutive `bounds`: bucket
    /// `j` (1 ≤ j < bounds.len()) holds lines with time in `(bounds[j-1], bounds[j]]`; bucket 0
    /// is unused. `bounds` must be sorted. One pass over the window's lines, on every core.
    pub fn buckets(
        &self,
        query: &LogQuery,
        bounds: &[i64],
        deadline: Instant,
        cancelled: &AtomicBool,
        max_streams: usize,
        grouping: Option<&crate::logql::pipeline::Grouping>,
    ) -> Result<StreamBuckets, ScanStop> {
        let (Some(&first), Some(&last)) = (bounds.first(), bounds.last()) else {
            return Ok(BTreeMap::new());
        };
        let (lo, hi) = (first.saturating_add(1), last);
        let (files, mut request) = self.metric_files(query, lo, hi, deadline, cancelled)?;
        // Files whose counts for this query are remembered are not read; files that no longer
        // change are also counted into bins, read whole, and remembered (`file_bins`).
        let remembering = self.remembering(query, grouping, bounds, files);
        let files = remembering.scan;
        if let Some((a, b)) = remembering.span {
            request.lo = request.lo.min(a);
            request.hi = request.hi.max(b);
        }
        let (roles, grid) = (&remembering.roles, remembering.grid);
        let gave_up = AtomicBool::new(false);
        type Counts = rustc_hash::FxHashMap<crate::logql::short_eq::Key, Vec<(u64, u64)>>;
        // Each new stream costs a bucket array: past the limit the scan stops (the caller
        // answers 422), so memory stays bounded by streams × buckets.
        let too_many = AtomicBool::new(false);
        let too_big = AtomicBool::new(false);
        let bucket_arrays = std::sync::atomic::AtomicUsize::new(0);
        let max_bucket_arrays = max_streams.saturating_mul(MAX_BUCKET_COPIES);
        let plan = KeyPlan::new(query.kind, grouping);
        let bytes_read = std::sync::atomic::AtomicUsize::new(0);
        let states = scan::for_each_match(
            &files,
            &request,
            &self.workers,
            &too_many,
            &bytes_read,
            || {
                (
                    Counts::default(),
                    crate::logql::short_eq::Key::default(),
                    0usize,
                    file_bins::Fine::default(),
                    file_bins::Added::default(),
                )
            },
            |(counts, key, key_bytes, fine, fine_cost), file_index, _file, line, extracted| {
                let j = bounds.partition_point(|&b| b < line.ts);
                let in_window = j != 0 && j < bounds.len();
                let remember = match (grid, roles.get(file_index)) {
                    (Some(grid), Some(Some(_))) => Some(grid),
                    _ => None,
                };
                if !in_window && remember.is_none() {
                    return;
                }
                match (grouping, extracted) {
                    (None, None) => stream_key(&mut key.0, line),
                    _ => plan.labels_key(&mut key.0, line, extracted),
                }
                // Bytes of the line as the pipeline leaves it (Loki counts the same).
                let message = extracted.map_or(line.message, |o| o.message(line.message));
                let remember =
                    remember.filter(|_| !gave_up.load(std::sync::atomic::Ordering::Relaxed));
                if let Some(grid) = remember {
                    if fine_cost.bins < file_bins::MAX_BINS_PER_WORKER
                        && fine_cost.key_bytes < file_bins::MAX_KEY_BYTES_PER_WORKER
                    {
                        let added = file_bins::add(
                            fine,
                            file_index,
                            key,
                            grid.bin_end(line.ts),
                            message.len() as u64,
                        );
                        fine_cost.bins += added.bins;
                        fine_cost.key_bytes += added.key_bytes;
                    } else {
                        // Past the bound nothing is remembered; what was counted is dropped.
                        gave_up.store(true, std::sync::atomic::Ordering::Relaxed);
                        fine.clear();
                    }
                }
                if !in_window {
                    return;
                }
                let slot = match counts.get_mut(key) {
                    Some(slot) => slot,
                    None => {
                        // One worker alone over the limit means the answer is too: stop every
                        // worker before the next stream's buckets are allocated.
                        // All workers' bucket arrays together: each worker keeps its own
                        // array for a stream it meets, so without a shared bound a query could
                        // hold the limit's buckets once per core.
                        let held = bucket_arrays.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if counts.len() >= max_streams || held >= max_bucket_arrays {
                            too_many.store(true, std::sync::atomic::Ordering::Relaxed);
                            return;
                        }
                        // Labels made by templates can be large: their bytes are bounded too.
                        *key_bytes += key.0.len();
                        if *key_bytes > MAX_LABEL_BYTES {
                            too_big.store(true, std::sync::atomic::Ordering::Relaxed);
                            too_many.store(true, std::sync::atomic::Ordering::Relaxed);
                            return;
                        }
                        counts
                            .entry(key.clone())
                            .or_insert_with(|| vec![(0, 0); bounds.len()])
                    }
                };
                slot[j].0 += 1;
                slot[j].1 += message.len() as u64;
            },
        );
        self.metrics
            .store_bytes_scanned
            .inc_by(bytes_read.into_inner() as u64);
        if too_big.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(ScanStop::LabelsTooLarge(MAX_LABEL_BYTES));
        }
        if too_many.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(ScanStop::TooManyStreams(max_streams));
        }
        let states = states?;
        let labels_of = |key: &[u8]| {
            if grouping.is_none() && query.pipeline.is_empty() {
                key_labels(query.kind, key)
            } else {
                pairs_labels(key)
            }
        };
        let mut merged = StreamBuckets::new();
        let mut fines = Vec::with_capacity(states.len());
        for (counts, _, _, fine, _) in states {
            for (key, buckets) in counts {
                let labels = labels_of(&key.0);
                if merged.len() >= max_streams && !merged.contains_key(&labels) {
                    return Err(ScanStop::TooManyStreams(max_streams));
                }
                let slot = merged
                    .entry(labels)
                    .or_insert_with(|| vec![(0, 0); bounds.len()]);
                for (s, b) in slot.iter_mut().zip(buckets) {
                    s.0 += b.0;
                    s.1 += b.1;
                }
            }
            fines.push(fine);
        }
        if let Some(cache) = self
            .results
            .as_ref()
            .filter(|_| !gave_up.load(std::sync::atomic::Ordering::Relaxed))
        {
            for (file_index, role) in roles.iter().enumerate() {
                let Some(key) = role else { continue };
                let bins = file_bins::collect(&mut fines, file_index, &labels_of);
                cache.insert(
                    key.clone(),
                    crate::results_cache::Value::Held {
                        bytes: bins.bytes(),
                        value: Arc::new(bins),
                    },
                );
            }
        }
        for bins in &remembering.remembered {
            file_bins::add_into(bins, bounds, &mut merged, max_streams)
                .map_err(ScanStop::TooManyStreams)?;
        }
        Ok(merged)
    }

    /// Which of `files` a log metric reads, which of those it also remembers, and the
    /// remembered counts that stand for the others (see `file_bins`).
    fn remembering(
        &self,
        query: &LogQuery,
        grouping: Option<&crate::logql::pipeline::Grouping>,
        bounds: &[i64],
        files: Vec<ScanFile>,
    ) -> file_bins::Remembering {
        let grid = file_bins::Grid::of(bounds);
        let (Some(cache), Some(grid)) = (self.results.as_ref(), grid) else {
            return file_bins::Remembering::none(files);
        };
        let freshness = i64::try_from(cache.settings.max_freshness.as_nanos()).unwrap_or(i64::MAX);
        let settled_before = crate::time::timestamp::Timestamp::now()
            .0
            .saturating_sub(freshness);
        let query_text = format!("{query:?}\n{grouping:?}");
        let mut out = file_bins::Remembering::none(Vec::new());
        out.grid = Some(grid);
        for file in files {
            // Lines' times from the index; a file read whole without one (its hour lies inside
            // the window) is settled when its hour is, and is read whole anyway.
            let times = match (file.index.min_ts(), file.index.max_ts()) {
                (Some(a), Some(b)) if a != i64::MIN && b != i64::MAX => Some((a, b)),
                _ => None,
            };
            let settled = match times {
                Some((_, newest)) => newest < settled_before,
                None => {
                    file.index.blocks.iter().all(|b| b.min_ts == i64::MIN)
                        && file.hour_start.saturating_add(layout::HOUR_NANOS) <= settled_before
                }
            };
            if !settled {
                out.roles.push(None);
                out.scan.push(file);
                continue;
            }
            let key = file_bins::key(&query_text, &file.target, &file.index, grid);
            let remembered = match cache.get(&key) {
                Some(crate::results_cache::Value::Held { value, .. }) => {
                    value.downcast::<file_bins::FileBins>().ok()
                }
                _ => None,
            };
            match remembered {
                Some(bins) => out.remembered.push(bins),
                None => {
                    if let Some((oldest, newest)) = times {
                        out.span = Some(match out.span {
                            Some((a, b)) => (a.min(oldest), b.max(newest)),
                            None => (oldest, newest),
                        });
                    }
                    out.roles.push(Some(key));
                    out.scan.push(file);
                }
            }
        }
        out
    }

    /// The values a pipeline's `| unwrap` reads from every matching line in `(lo, hi]`, per
    /// series (its labels, those `grouping` keeps, without the unwrapped label), oldest first.
    /// A line whose value could not be read is a `NaN` under a series labelled `__error__`.
    /// Past `max_series` series or `max_samples` values the scan stops (answered 422).
    #[allow(clippy::too_many_arguments)]
    pub fn samples(
        &self,
        query: &LogQuery,
        lo: i64,
        hi: i64,
        deadline: Instant,
        cancelled: &AtomicBool,
        max_series: usize,
        max_samples: usize,
        grouping: Option<&crate::logql::pipeline::Grouping>,
    ) -> Result<SeriesSamples, ScanStop> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (files, request) = self.metric_files(query, lo, hi, deadline, cancelled)?;
        type Values = rustc_hash::FxHashMap<crate::logql::short_eq::Key, Vec<(i64, f64)>>;
        let halt = AtomicBool::new(false);
        let held = AtomicUsize::new(0);
        let key_bytes = AtomicUsize::new(0);
        let plan = KeyPlan::new(query.kind, grouping);
        let bytes_read = AtomicUsize::new(0);
        let states = scan::for_each_match(
            &files,
            &request,
            &self.workers,
            &halt,
            &bytes_read,
            || (Values::default(), crate::logql::short_eq::Key::default()),
            |(values, key), _, _file, line, outcome| {
                let Some(outcome) = outcome else { return };
                // A marked line's key keeps `__error__` whatever the grouping (`labels_key`).
                plan.labels_key(&mut key.0, line, Some(outcome));
                if held.fetch_add(1, Ordering::Relaxed) >= max_samples {
                    halt.store(true, Ordering::Relaxed);
                    return;
                }
                let sample = (line.ts, outcome.sample.unwrap_or(f64::NAN));
                let full = values.len() >= max_series;
                match values.get_mut(key) {
                    Some(series) => series.push(sample),
                    None if full => halt.store(true, Ordering::Relaxed),
                    None => {
                        if key_bytes.fetch_add(key.0.len(), Ordering::Relaxed) > MAX_LABEL_BYTES {
                            halt.store(true, Ordering::Relaxed);
                            return;
                        }
                        values.insert(key.clone(), vec![sample]);
                    }
                }
            },
        );
        self.metrics
            .store_bytes_scanned
            .inc_by(bytes_read.into_inner() as u64);
        let states = states?;
        if halt.load(Ordering::Relaxed) {
            return Err(if key_bytes.load(Ordering::Relaxed) > MAX_LABEL_BYTES {
                ScanStop::LabelsTooLarge(MAX_LABEL_BYTES)
            } else if held.load(Ordering::Relaxed) > max_samples {
                ScanStop::TooManySamples(max_samples)
            } else {
                ScanStop::TooManyStreams(max_series)
            });
        }
        let mut merged = SeriesSamples::new();
        for (values, _) in states {
            for (key, series) in values {
                let labels = pairs_labels(&key.0);
                if merged.len() >= max_series && !merged.contains_key(&labels) {
                    return Err(ScanStop::TooManyStreams(max_series));
                }
                merged.entry(labels).or_default().extend(series);
            }
        }
        for series in merged.values_mut() {
            series.sort_by_key(|s| s.0);
        }
        Ok(merged)
    }

    /// The hour files a log metric over `[lo, hi]` reads, opened, and the search over them.
    /// Log metrics read every matching line of the window: hours it covers need no index.
    fn metric_files<'q>(
        &self,
        query: &'q LogQuery,
        lo: i64,
        hi: i64,
        deadline: Instant,
        cancelled: &'q AtomicBool,
    ) -> Result<(Vec<ScanFile>, Search<'q>), ScanStop> {
        let candidates = self.candidates(
            &[query.kind],
            |name| query.target_matches(name),
            |file| layout::hour_overlaps(file.hour_start, lo, hi),
        );
        let mut warnings = Vec::new();
        let stop = || scan::interrupted(deadline, cancelled).is_some();
        let whole = |file: &layout::HourFile| covers_hour(file, lo, hi);
        let files = self.open_and_index(candidates, &mut warnings, &stop, &whole);
        if let Some(why) = scan::interrupted(deadline, cancelled) {
            return Err(why);
        }
        let search = Search {
            query,
            lo,
            hi,
            limit: 0,
            keep: Keep::Oldest,
            deadline,
            cancelled,
        };
        Ok((files, search))
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

    /// Target directory names of a kind (for labels, targets and metadata).
    pub fn target_names(&self, kind: LogKind) -> Vec<String> {
        let mut skipped = layout::Skipped::default();
        layout::targets(&self.root, kind, |_| true, &mut skipped)
            .into_iter()
            .map(|t| t.name)
            .collect()
    }

    /// The distinct streams of `kind` (label values in [`LogKind::labels`] order) in hour files
    /// overlapping `[lo, hi]` of targets that `keep` accepts; `true` when a file had more
    /// streams than its index remembers.
    pub fn streams(
        &self,
        kind: LogKind,
        keep: impl Fn(&str) -> bool,
        lo: i64,
        hi: i64,
    ) -> (std::collections::BTreeSet<Vec<String>>, bool) {
        let candidates = self.candidates(&[kind], keep, |file| {
            layout::hour_overlaps(file.hour_start, lo, hi)
        });
        let mut warnings = Vec::new();
        let files = self.open_and_index(candidates, &mut warnings, &|| false, &|_| false);
        let mut out = std::collections::BTreeSet::new();
        let mut capped = false;
        /// Streams one answer may list; beyond it the answer says so.
        const MAX_ANSWER_STREAMS: usize = 100_000;
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
        (out, capped)
    }

    /// Time of the newest line of a target (its newest hour file that holds a line).
    pub fn newest_line(&self, kind: LogKind, target: &str) -> Option<i64> {
        let mut skipped = layout::Skipped::default();
        let found = layout::targets(&self.root, kind, |name| name == target, &mut skipped);
        let target = found.first()?;
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
                return Some(ts);
            }
        }
        None
    }

    /// Indexes the hour files of the last `hours` hours, newest first, so that queries over
    /// recent logs find their indexes built. Meant for a background thread at start-up.
    pub fn warm_recent(&self, hours: i64) {
        let now = crate::time::timestamp::Timestamp::now().0;
        let since = now - hours * layout::HOUR_NANOS;
        let mut candidates = self.candidates(
            &[LogKind::Pod, LogKind::Node],
            |_| true,
            |file| file.hour_start + layout::HOUR_NANOS > since,
        );
        candidates.sort_by_key(|(_, f)| std::cmp::Reverse(f.hour_start));
        let mut warnings = Vec::new();
        let files = self.open_and_index(candidates, &mut warnings, &|| false, &|_| false);
        tracing::info!(files = files.len(), hours, "indexed recent log files");
    }

    /// Drops the cached indexes of files that no longer exist (after retention deleted them).
    pub fn forget_deleted(&self) {
        self.indexes.forget_missing();
    }
}

fn open_no_follow(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // A file swapped for a link is not opened.
    options.custom_flags(libc::O_NOFOLLOW);
    options.open(path)
}
