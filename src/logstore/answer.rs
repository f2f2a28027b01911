//! What a search or a count answers, whatever the backend: the lines of a search by position
//! with where to read them back ([`Found`], [`LineSource`]), a log metric's buckets and an
//! unwrapped aggregation's samples per series. Lines are read back in Lethe's stored format
//! (`time[fields] message`, [`super::line`]) so one encoder serves every backend.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use super::line;
use crate::logql::LogQuery;

/// A search over the store: a parsed query, an inclusive window and how many lines to keep.
pub struct Search<'a> {
    /// The parsed selector and pipeline.
    pub query: &'a LogQuery,
    /// Oldest line time wanted, nanoseconds (inclusive).
    pub lo: i64,
    /// Newest line time wanted, nanoseconds (inclusive).
    pub hi: i64,
    /// Lines to keep at most (0 for a pass over every line, as log metrics make).
    pub limit: usize,
    /// Which end of the window wins when more lines match than `limit`.
    pub keep: Keep,
    /// When the search must give up (answered 503 `timeout`).
    pub deadline: Instant,
    /// Set when the client went away: the scan stops at its next block.
    pub cancelled: &'a AtomicBool,
}

/// A log metric's pass over the store: the parsed query, when to give up, and what the answer
/// may hold. Buckets and unwrapped samples take the same.
pub struct Count<'a> {
    /// The parsed selector and pipeline.
    pub query: &'a LogQuery,
    /// When the pass must give up (answered 503 `timeout`).
    pub deadline: Instant,
    /// Set when the client went away.
    pub cancelled: &'a AtomicBool,
    /// Series (streams, or groups of `grouping`) the answer may hold.
    pub max_series: usize,
    /// Values `| unwrap` reads that the answer may hold (samples only).
    pub max_samples: usize,
    /// `by`/`without`: which labels a series keeps.
    pub grouping: Option<&'a crate::logql::pipeline::Grouping>,
}

/// Per stream (its labels: the line's fields, and what the query's parsers extracted), per
/// bucket: lines and message bytes.
pub type StreamBuckets = BTreeMap<BTreeMap<String, String>, Vec<(u64, u64)>>;

/// The most bytes the label sets of one log metric's series, or of one log answer's streams,
/// may hold: a template can make a 64 KiB label per line, so the count of series alone does not
/// bound their memory.
pub const MAX_LABEL_BYTES: usize = 64 << 20;

/// Per series (its labels), the values `| unwrap` read, oldest first.
pub type SeriesSamples = BTreeMap<BTreeMap<String, String>, Vec<(i64, f64)>>;

/// A line of the answer, by position: read back with [`Found::read_line`] while the answer
/// is encoded, so the lines' content is never all in memory at once.
#[derive(Debug, Clone, Copy)]
pub struct FoundLine {
    /// The line's time, nanoseconds: the answer is ordered by it.
    pub ts: i64,
    /// Which part of the answer's [`LineSource`] holds the line (for this store, a file).
    pub part: usize,
    /// Where in that part the stored line starts.
    pub offset: u64,
    /// The stored line's length in bytes (without its newline).
    pub len: usize,
}

/// Where an answer's lines are read back from while it is encoded: this store's open files,
/// or another backend's buffer of rows. A backend that holds its lines in memory reads them
/// from there; the encoders only ever ask by position.
pub trait LineSource: Send {
    /// Fills `buf` (sized to the line's length) with the stored line at `offset` of `part`;
    /// false when it is no longer there (a file truncated or rewritten under the answer).
    fn read_at(&self, part: usize, offset: u64, buf: &mut [u8]) -> bool;
    /// Memory the source holds until the answer is sent.
    fn held_bytes(&self) -> usize;
}

/// A search's answer: the lines by position, with where to read them back.
pub struct Found {
    /// Oldest → newest; ties by target, file, position.
    pub lines: Vec<FoundLine>,
    /// Where the lines are read back from.
    source: Box<dyn LineSource>,
    /// More lines matched than the limit kept.
    pub truncated: bool,
    /// What the client should know: files skipped, blocks changed under the scan.
    pub warnings: Vec<String>,
    /// Bytes the search read (Loki's `stats` report them).
    pub bytes_scanned: u64,
}

impl Found {
    /// Reads line `i` back into `buf` and returns it parsed. `None` when the file changed under
    /// the answer (truncated, rewritten) so that the bytes there are no longer that line.
    pub fn read_line<'b>(&self, i: usize, buf: &'b mut Vec<u8>) -> Option<line::Line<'b>> {
        let found = self.lines.get(i)?;
        buf.resize(found.len, 0);
        if !self.source.read_at(found.part, found.offset, buf) {
            return None;
        }
        line::parse(buf).filter(|l| l.ts == found.ts)
    }

    /// An answer of `lines` read back from `source` (another backend's rows).
    pub fn from_source(
        lines: Vec<FoundLine>,
        source: Box<dyn LineSource>,
        truncated: bool,
        warnings: Vec<String>,
        bytes_scanned: u64,
    ) -> Self {
        Found {
            lines,
            source,
            truncated,
            warnings,
            bytes_scanned,
        }
    }

    /// Line `i` as stored (`time[fields] message`), read back as [`Found::read_line`] does.
    pub fn line_text(&self, i: usize) -> Option<Vec<u8>> {
        let mut buf = Vec::new();
        self.read_line(i, &mut buf)?;
        Some(buf)
    }

    /// Memory the answer holds until it is sent (positions and open files).
    pub fn held_bytes(&self) -> usize {
        self.lines.len() * std::mem::size_of::<FoundLine>() + self.source.held_bytes()
    }
}

/// Which end of the window to keep when more than `limit` lines match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The newest lines (the default, and Loki's `backward`).
    Newest,
    /// The oldest lines (Lethe's `forward`).
    Oldest,
}

/// Why a scan stopped before its end, in the words the client reads.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScanStop {
    /// The deadline passed.
    #[error("query timed out in query execution")]
    Deadline,
    /// The client went away.
    #[error("query was canceled")]
    Cancelled,
    /// The backend could not answer (ClickHouse unreachable or failing): try again later.
    #[error("the log store is unavailable: {0}")]
    Unavailable(String),
    /// A log metric selected more streams than the query may hold.
    #[error("query processing would load too many samples into memory in query execution: the log selector matches more than {0} streams (--query.max-samples, --query.max-series)")]
    TooManyStreams(usize),
    /// Unwrapped values of a log metric past the samples a query may hold.
    #[error("query processing would load too many samples into memory in query execution: more than {0} unwrapped values (--query.max-samples)")]
    TooManySamples(usize),
    /// The lines of a search past the bytes a backend that holds them (rather than their
    /// positions) may keep for one answer.
    #[error("query processing would load too many samples into memory in query execution: the answer's lines exceed {} MiB (ask for fewer lines with limit, or narrow the query)", .0 >> 20)]
    AnswerTooLarge(usize),
    /// The label sets of the answer's series or streams past the bytes they may hold.
    #[error("query processing would load too many samples into memory in query execution: the labels of the answer's series exceed {} MiB (drop or keep fewer extracted labels)", .0 >> 20)]
    LabelsTooLarge(usize),
}
