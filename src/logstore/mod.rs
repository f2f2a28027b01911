//! The log store seam: what everything above the store (the engine, the APIs, the server's
//! background work) asks of logs, whatever holds them. [`files`] — Lethe's flat files on one
//! node — is the first backend; another (ClickHouse, for several stateless replicas) implements
//! the same trait, and the engine's and APIs' tests run unchanged against it.
//!
//! A backend answers searches and counts with the query as parsed (`logql`), pushing down what
//! it can run itself and saying what that is ([`Capabilities`]); the engine runs the rest above
//! it. It names nothing of the HTTP layer.

pub mod answer;
pub mod clickhouse;
pub mod files;
pub mod import;
pub mod line;
mod series_keys;
pub mod write;

use crate::logql::{LogKind, LogQuery};
use std::collections::BTreeSet;

pub use answer::{
    Count, Found, FoundLine, LineSource, Search, SeriesSamples, StreamBuckets, MAX_LABEL_BYTES,
};
pub use answer::{Keep, ScanStop};

/// What a backend runs itself. The file store runs everything in its scan; a backend that
/// cannot run a regex or a parser says so, and the engine filters its lines above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Line filters with literals (`|=`, `!=`).
    pub literal_filters: bool,
    /// Line filters and label matchers with regexes (`|~`, `!~`, `=~`).
    pub regex_filters: bool,
    /// Parsers, label filters and formatting stages (`| json`, `| status >= 500`, …).
    pub pipelines: bool,
    /// Counting lines into buckets and reading unwrapped values (log metrics) in one pass.
    pub metrics: bool,
}

impl Capabilities {
    /// Everything, as both backends run it (ClickHouse runs what SQL cannot above its rows).
    pub const ALL: Capabilities = Capabilities {
        literal_filters: true,
        regex_filters: true,
        pipelines: true,
        metrics: true,
    };

    /// What `query` needs that this backend cannot run, in words for the client; `None` when
    /// it runs it all. `metric`: the query counts lines or reads unwrapped values.
    pub fn lacks(&self, query: &LogQuery, metric: bool) -> Option<&'static str> {
        use crate::logql::LineFilter;
        use promql_parser::label::MatchOp;
        let regex_filter = query
            .filters
            .iter()
            .any(|f| matches!(f, LineFilter::Matches(_) | LineFilter::NotMatches(_)));
        let regex_matcher = query
            .targets
            .iter()
            .chain(query.fields.iter().map(|f| &f.matcher))
            .any(|m| matches!(m.op, MatchOp::Re(_) | MatchOp::NotRe(_)));
        if !query.filters.is_empty() && !regex_filter && !self.literal_filters {
            Some("line filters")
        } else if (regex_filter || regex_matcher) && !self.regex_filters {
            Some("regular expressions")
        } else if !query.pipeline.is_empty() && !self.pipelines {
            Some("pipeline stages (parsers, label filters, formats)")
        } else if metric && !self.metrics {
            Some("log metrics")
        } else {
            None
        }
    }
}

/// Logs as the engine and the APIs read them. Every method is blocking: call it from a
/// blocking thread. Long ones stop at `deadline` or when `cancelled` is set; a backend that can
/// fail (a server away) says so with [`ScanStop::Unavailable`], answered 503.
pub trait LogStore: Send + Sync {
    /// What this backend runs itself.
    fn capabilities(&self) -> Capabilities;

    /// The newest or oldest `limit` lines of the query in a window, filters pushed down.
    fn search(&self, search: &Search<'_>) -> Result<Found, ScanStop>;

    /// Lines and bytes per stream (or per group of `count.grouping`) between consecutive
    /// `bounds`: bucket `j` holds lines with time in `(bounds[j-1], bounds[j]]`; bucket 0 is
    /// unused. `bounds` must be sorted.
    fn buckets(&self, count: &Count<'_>, bounds: &[i64]) -> Result<StreamBuckets, ScanStop>;

    /// The values `| unwrap` reads from the lines of `[lo, hi]`, per series, oldest first. A
    /// line whose value could not be read is a `NaN` under a series labelled `__error__`.
    fn samples(&self, count: &Count<'_>, lo: i64, hi: i64) -> Result<SeriesSamples, ScanStop>;

    /// How many stored chunks (for this store, hour files) the selector reads in `[lo, hi]`:
    /// Loki's `chunks` in `index/stats`.
    fn chunk_count(&self, query: &LogQuery, lo: i64, hi: i64) -> Result<usize, ScanStop>;

    /// The targets (namespaces, nodes) that hold logs of `kind`.
    fn target_names(&self, kind: LogKind) -> Result<Vec<String>, ScanStop>;

    /// The distinct streams of `kind` (label values in [`LogKind::labels`] order) in `[lo, hi]`
    /// of the targets `keep` accepts; `true` when the answer may lack some.
    fn streams(
        &self,
        kind: LogKind,
        keep: &dyn Fn(&str) -> bool,
        lo: i64,
        hi: i64,
    ) -> Result<(BTreeSet<Vec<String>>, bool), ScanStop>;

    /// The targets of `kind` holding logs in `[lo, hi]`, when the backend can tell without
    /// reading them (the file store: from its layout's names alone); `None` otherwise, and the
    /// caller lists [`LogStore::streams`].
    fn targets_in(&self, kind: LogKind, lo: i64, hi: i64) -> Result<Option<Vec<String>>, ScanStop> {
        let _ = (kind, lo, hi);
        Ok(None)
    }

    /// The time of the newest line of one target.
    fn newest_line(&self, kind: LogKind, target: &str) -> Result<Option<i64>, ScanStop>;

    /// Prepares what the last `hours` hours need (indexes, caches), at start-up.
    fn warm_recent(&self, hours: i64);

    /// Forgets what it keeps for data that is gone (deleted files).
    fn forget_deleted(&self);

    /// Builds, in the background and at low priority, what the store keeps for data at rest
    /// that nothing has prepared yet (the file store: the time indexes of sealed hour files,
    /// persisted), so that the first query after a restart does not read a whole hour; what it
    /// did, in files. `stop` ends it early.
    fn prepare_at_rest(&self, stop: &dyn Fn() -> bool) -> usize {
        let _ = stop;
        0
    }

    /// Writes one push, all or nothing: `Ok` only once every line is stored (and as durable
    /// as the backend was configured to make it).
    fn push(&self, batch: &write::Batch<'_>) -> Result<write::Written, write::WriteError>;

    /// Brings the store to a state it can write to at start-up (the file store cuts lines a
    /// killed predecessor left half-written); what it did, in words for the log.
    fn recover(&self) -> Result<Option<String>, String>;

    /// Makes what was written since the last call durable (`--storage.fsync=batch`); the
    /// seconds it took.
    fn sync(&self) -> Result<f64, String>;

    /// Lets go of what writing holds and has not used for a while (`all`: everything, at
    /// shutdown, with what it kept in memory that a restart would need: the file store's
    /// indexes of the files it wrote).
    fn close_idle(&self, all: bool);

    /// One retention pass at time `now`.
    fn enforce_retention(
        &self,
        policy: &write::RetentionPolicy,
        now: i64,
    ) -> write::RetentionOutcome;

    /// Why the store cannot serve now, for `/-/ready`; `None` when it can.
    fn problem(&self) -> Option<String>;

    /// Where the logs are, in words for the status page.
    fn describe(&self) -> String;
}
