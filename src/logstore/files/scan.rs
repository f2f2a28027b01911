//! The scan engine: from a parsed log query and a time window to the matching lines.
//!
//! Work is split into (file, block) units taken from the file indexes. Units outside the window
//! are dropped; the rest are ordered by the best timestamp they can hold (newest first for
//! newest-N) and taken by worker threads from a shared cursor. Each worker reads its block with
//! one `pread`, then finds candidate lines the way ripgrep does: a selective literal (`|=`) or an
//! anchor-free regex is searched in the whole block first, and only the line around a hit is
//! parsed; the bracket fields are checked before any other filter. Once the answer holds `limit`
//! lines and no remaining unit can hold a better one, the workers stop.

use std::cmp::Ordering as CmpOrdering;
use std::collections::BinaryHeap;
use std::fs::File;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::index::{Block, FileIndex};
use super::workers::Workers;
use super::Search;
use crate::logql::LineFilter;
use crate::logstore::line;
pub use crate::logstore::{Keep, ScanStop};

/// One file to scan with its index, in global order (target name, then file name).
pub struct ScanFile {
    /// The file's target (namespace or node), for the answer's order.
    pub target: String,
    /// The open file, read by position.
    pub file: File,
    /// The file's index, shared with the cache.
    pub index: Arc<FileIndex>,
    /// Start of the hour its name promises (nanoseconds).
    pub hour_start: i64,
}

/// A matching line, held by position rather than by content: an answer of 100,000 long lines
/// costs a few megabytes until it is read back while the answer is sent. Ordered by (time,
/// target, file, position): the answer's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The line's time, nanoseconds.
    pub ts: i64,
    /// Index into the scan's file list, which is sorted by target then file name.
    pub file: usize,
    /// Byte offset of the line in its file.
    pub offset: u64,
    /// Bytes of the line, without its newline.
    pub len: usize,
}

impl Hit {
    fn key(&self) -> (i64, usize, u64) {
        (self.ts, self.file, self.offset)
    }
}

impl Ord for Hit {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        self.key().cmp(&other.key())
    }
}

impl PartialOrd for Hit {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

/// A matching line as the scanner sees it, borrowed from the block being scanned.
pub struct Match<'a> {
    /// Index of the file in the scan's file list.
    pub file: usize,
    /// Byte offset of the line in its file.
    pub offset: u64,
    /// The line's bytes without its newline.
    pub raw: &'a [u8],
    /// The line parsed.
    pub line: &'a line::Line<'a>,
    /// Labels the query's parsers extracted from the line (LogQL `| json`, `| logfmt`).
    pub extracted: Option<&'a crate::logql::pipeline::Outcome>,
}

impl Match<'_> {
    fn to_hit(&self) -> Hit {
        Hit {
            ts: self.line.ts,
            file: self.file,
            offset: self.offset,
            len: self.raw.len(),
        }
    }
}

/// What a scan found, and what it cost.
pub struct ScanOutcome {
    /// Sorted oldest → newest.
    pub hits: Vec<Hit>,
    /// More lines matched than `limit`.
    pub truncated: bool,
    /// Bytes read from files (`janus_store_scanned_bytes_total`).
    pub bytes_read: u64,
    /// Blocks that could not be read (a file truncated or replaced under the scan).
    pub unreadable_blocks: u64,
}

/// The kept lines: a heap whose top is the worst kept line, so it can be replaced.
struct Kept {
    keep: Keep,
    limit: usize,
    newest: BinaryHeap<std::cmp::Reverse<Hit>>,
    oldest: BinaryHeap<Hit>,
    overflowed: bool,
}

impl Kept {
    fn new(keep: Keep, limit: usize) -> Self {
        Kept {
            keep,
            limit,
            newest: BinaryHeap::new(),
            oldest: BinaryHeap::new(),
            overflowed: false,
        }
    }

    fn len(&self) -> usize {
        self.newest.len() + self.oldest.len()
    }

    fn push(&mut self, hit: Hit) {
        match self.keep {
            Keep::Newest => {
                self.newest.push(std::cmp::Reverse(hit));
                if self.newest.len() > self.limit {
                    self.newest.pop();
                    self.overflowed = true;
                }
            }
            Keep::Oldest => {
                self.oldest.push(hit);
                if self.oldest.len() > self.limit {
                    self.oldest.pop();
                    self.overflowed = true;
                }
            }
        }
    }

    /// Time of the worst kept line once full: a unit that cannot reach it is not needed.
    fn worst_kept(&self) -> Option<i64> {
        if self.len() < self.limit {
            return None;
        }
        match self.keep {
            Keep::Newest => self.newest.peek().map(|h| h.0.ts),
            Keep::Oldest => self.oldest.peek().map(|h| h.ts),
        }
    }

    fn into_sorted(self) -> Vec<Hit> {
        let mut hits: Vec<Hit> = match self.keep {
            Keep::Newest => self.newest.into_iter().map(|r| r.0).collect(),
            Keep::Oldest => self.oldest.into_vec(),
        };
        hits.sort_unstable();
        hits
    }
}

struct Unit {
    file: usize,
    block: Block,
}

/// Every block of `files` that may hold lines of `[lo, hi]`.
fn units_in_window(files: &[ScanFile], lo: i64, hi: i64) -> Vec<Unit> {
    files
        .iter()
        .enumerate()
        .flat_map(|(i, f)| {
            f.index
                .all_blocks()
                .filter(move |b| b.max_ts >= lo && b.min_ts <= hi)
                .map(move |b| Unit { file: i, block: *b })
        })
        .collect()
}

/// Can lines of this unit still get into the answer, given the time of the worst line kept?
fn can_improve(unit: &Unit, keep: Keep, worst_kept: Option<i64>) -> bool {
    match (worst_kept, keep) {
        (None, _) => true,
        // Ties may still win on (target, file, position): keep equal times.
        (Some(worst_kept), Keep::Newest) => unit.block.max_ts >= worst_kept,
        (Some(worst_kept), Keep::Oldest) => unit.block.min_ts <= worst_kept,
    }
}

/// Bytes read and blocks that could not be read, over all workers.
#[derive(Default)]
struct Tally {
    bytes_read: AtomicUsize,
    unreadable: AtomicUsize,
}

impl Tally {
    fn record(&self, read: std::io::Result<usize>) {
        match read {
            Ok(n) => self.bytes_read.fetch_add(n, Ordering::Relaxed),
            Err(_) => self.unreadable.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Scans for the lines to keep: workers take units best-first until no remaining unit can
/// improve the kept lines, then a probe says whether more lines matched than were kept.
pub fn scan(
    files: &[ScanFile],
    req: &Search<'_>,
    workers: &Workers,
) -> Result<ScanOutcome, ScanStop> {
    let mut units = units_in_window(files, req.lo, req.hi);
    match req.keep {
        Keep::Newest => units.sort_by_key(|u| std::cmp::Reverse(u.block.max_ts)),
        Keep::Oldest => units.sort_by_key(|u| u.block.min_ts),
    }
    let filters = req.query.filters_by_cost();
    let prefilter = Prefilter::choose(&req.query.filters);
    let kept = Mutex::new(Kept::new(req.keep, req.limit.max(1)));
    let cursor = AtomicUsize::new(0);
    let stop: Mutex<Option<ScanStop>> = Mutex::new(None);
    let stopping = AtomicBool::new(false);
    let tally = Tally::default();
    // The first unit that was not needed: where a truncation probe would continue.
    let first_unneeded = AtomicUsize::new(usize::MAX);

    let worker = || {
        let mut buf = Vec::new();
        loop {
            if stopping.load(Ordering::Relaxed) {
                return;
            }
            let i = cursor.fetch_add(1, Ordering::Relaxed);
            let Some(unit) = units.get(i) else { return };
            let worst_kept = kept.lock().ok().and_then(|k| k.worst_kept());
            if !can_improve(unit, req.keep, worst_kept) {
                // Sorted by their best time: no later unit can improve either.
                first_unneeded.fetch_min(i, Ordering::Relaxed);
                stopping.store(true, Ordering::Relaxed);
                return;
            }
            if let Some(why) = interrupted(req.deadline, req.cancelled) {
                if let Ok(mut s) = stop.lock() {
                    s.get_or_insert(why);
                }
                stopping.store(true, Ordering::Relaxed);
                return;
            }
            let mut local = Kept::new(req.keep, req.limit.max(1));
            tally.record(scan_unit(
                files,
                unit,
                req,
                &filters,
                &prefilter,
                &mut buf,
                &mut |m| local.push(m.to_hit()),
            ));
            let local_overflowed = local.overflowed;
            if let Ok(mut k) = kept.lock() {
                k.overflowed |= local_overflowed;
                for hit in local.into_sorted() {
                    k.push(hit);
                }
            }
        }
    };
    workers.run(units.len(), worker);
    if let Some(why) = stop.into_inner().ok().flatten() {
        return Err(why);
    }
    let mut kept = match kept.into_inner() {
        Ok(kept) => kept,
        Err(poisoned) => poisoned.into_inner(),
    };
    // Stopped early with exactly `limit` lines: look on until one more match says "truncated".
    let from = first_unneeded.load(Ordering::Relaxed);
    let truncated = kept.overflowed
        || (from != usize::MAX
            && more_match(files, &units[from..], req, &filters, &prefilter, &tally)?);
    kept.overflowed = truncated;
    Ok(ScanOutcome {
        truncated,
        hits: kept.into_sorted(),
        bytes_read: tally.bytes_read.into_inner() as u64,
        unreadable_blocks: tally.unreadable.into_inner() as u64,
    })
}

/// Whether any of `units` holds a matching line: the truncation probe, on this thread, stopping
/// at the first match.
fn more_match(
    files: &[ScanFile],
    units: &[Unit],
    req: &Search<'_>,
    filters: &[LineFilter],
    prefilter: &Prefilter,
    tally: &Tally,
) -> Result<bool, ScanStop> {
    let mut buf = Vec::new();
    for unit in units {
        if let Some(why) = interrupted(req.deadline, req.cancelled) {
            return Err(why);
        }
        let mut found = false;
        tally.record(scan_unit(
            files,
            unit,
            req,
            filters,
            prefilter,
            &mut buf,
            &mut |_| found = true,
        ));
        if found {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether a search must stop now, and why.
pub fn interrupted(deadline: Instant, cancelled: &AtomicBool) -> Option<ScanStop> {
    if cancelled.load(Ordering::Relaxed) {
        Some(ScanStop::Cancelled)
    } else if Instant::now() >= deadline {
        Some(ScanStop::Deadline)
    } else {
        None
    }
}

/// Whether the scanner looks for `query`'s lines by a literal or a regex over whole blocks, as
/// `rg` does, rather than reading every line: such a search reads a file it covers whole as
/// fast without an index as with one.
pub fn has_prefilter(query: &crate::logql::LogQuery) -> bool {
    !matches!(Prefilter::choose(&query.filters), Prefilter::None)
}

/// How candidate lines are found in a block.
enum Prefilter {
    /// Every line is a candidate.
    None,
    /// Lines containing this literal (the longest `|=`).
    Literal(Box<memchr::memmem::Finder<'static>>),
    /// Lines where this regex can start a match. Only for patterns without anchors, whose
    /// matches in a line and in the block around it start at the same places.
    Regex(regex::bytes::Regex),
}

impl Prefilter {
    fn choose(filters: &[LineFilter]) -> Prefilter {
        let literal = filters
            .iter()
            .filter_map(|f| match f {
                LineFilter::Contains(finder) if !finder.needle().is_empty() => Some(finder),
                _ => None,
            })
            .max_by_key(|f| f.needle().len());
        if let Some(finder) = literal {
            return Prefilter::Literal(Box::new(finder.clone()));
        }
        for f in filters {
            if let LineFilter::Matches(re) = f {
                let p = re.as_str();
                if !p.contains(['^', '$']) && !p.contains("\\A") && !p.contains("\\z") {
                    return Prefilter::Regex(re.clone());
                }
            }
        }
        Prefilter::None
    }
}

/// Scans one block, calling `emit` for every matching line. Returns the bytes read.
fn scan_unit(
    files: &[ScanFile],
    unit: &Unit,
    req: &Search<'_>,
    filters: &[LineFilter],
    prefilter: &Prefilter,
    buf: &mut Vec<u8>,
    emit: &mut dyn FnMut(Match<'_>),
) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let f = &files[unit.file];
    let len = (unit.block.end - unit.block.start) as usize;
    buf.resize(len, 0);
    f.file.read_exact_at(&mut buf[..len], unit.block.start)?;
    let block = &buf[..len];
    let mut times = line::TimestampCache::default();
    let mut outcome = crate::logql::pipeline::Outcome::default();
    let stream_values = req
        .query
        .pipeline
        .reads_stream_values(req.query.kind.labels());
    let mut check = |start: usize, end: usize| {
        let raw = &block[start..end];
        let Some(l) = line::parse_with(raw, &mut times) else {
            return;
        };
        if l.ts < req.lo || l.ts > req.hi {
            return;
        }
        let Some(ran) = line::passes(req.query, filters, stream_values, &l, &mut outcome) else {
            return;
        };
        emit(Match {
            file: unit.file,
            offset: unit.block.start + start as u64,
            raw,
            line: &l,
            extracted: ran.then_some(&outcome),
        });
    };
    let line_bounds = |pos: usize| {
        let start = memchr::memrchr(b'\n', &block[..pos]).map_or(0, |p| p + 1);
        let end = memchr::memchr(b'\n', &block[pos..]).map_or(block.len(), |p| pos + p);
        (start, end)
    };
    match prefilter {
        Prefilter::None => {
            let mut start = 0;
            for nl in memchr::memchr_iter(b'\n', block) {
                check(start, nl);
                start = nl + 1;
            }
            // A settled file's last line has no newline.
            if start < block.len() {
                check(start, block.len());
            }
        }
        Prefilter::Literal(finder) => {
            let mut from = 0;
            while let Some(p) = finder.find(&block[from..]) {
                let (start, end) = line_bounds(from + p);
                check(start, end);
                from = end + 1;
                if from >= block.len() {
                    break;
                }
            }
        }
        Prefilter::Regex(re) => {
            let mut from = 0;
            while from < block.len() {
                let Some(m) = re.find_at(block, from) else {
                    break;
                };
                let (start, end) = line_bounds(m.start().min(block.len().saturating_sub(1)));
                check(start, end);
                from = end + 1;
            }
        }
    }
    Ok(len)
}

/// Calls `visit` for every matching line of the window, on every core, each worker with its own
/// state from `start`; returns the workers' states for the caller to merge. No line is copied:
/// this is the one pass behind log metrics. `visit` may set `halt` to stop the scan early.
pub fn for_each_match<S: Send>(
    files: &[ScanFile],
    req: &Search<'_>,
    workers: &Workers,
    halt: &AtomicBool,
    bytes_read: &AtomicUsize,
    start: impl Fn() -> S + Sync,
    visit: impl Fn(&mut S, usize, &ScanFile, &line::Line<'_>, Option<&crate::logql::pipeline::Outcome>)
        + Sync,
) -> Result<Vec<S>, ScanStop> {
    let units = units_in_window(files, req.lo, req.hi);
    let filters = req.query.filters_by_cost();
    let prefilter = Prefilter::choose(&req.query.filters);
    let cursor = AtomicUsize::new(0);
    let stop: Mutex<Option<ScanStop>> = Mutex::new(None);
    let states: Mutex<Vec<S>> = Mutex::new(Vec::new());
    let worker = || {
        let mut state = start();
        let mut buf = Vec::new();
        loop {
            let i = cursor.fetch_add(1, Ordering::Relaxed);
            let Some(unit) = units.get(i) else { break };
            if halt.load(Ordering::Relaxed) {
                break;
            }
            if let Some(why) = interrupted(req.deadline, req.cancelled) {
                if let Ok(mut s) = stop.lock() {
                    s.get_or_insert(why);
                }
                break;
            }
            let file = &files[unit.file];
            // A block that changed under the scan is skipped, as in searches.
            let read = scan_unit(files, unit, req, &filters, &prefilter, &mut buf, &mut |m| {
                visit(&mut state, unit.file, file, m.line, m.extracted)
            });
            if let Ok(n) = read {
                bytes_read.fetch_add(n, Ordering::Relaxed);
            }
        }
        if let Ok(mut all) = states.lock() {
            all.push(state);
        }
    };
    workers.run(units.len(), worker);
    if let Some(why) = stop.into_inner().ok().flatten() {
        return Err(why);
    }
    Ok(states.into_inner().unwrap_or_default())
}
