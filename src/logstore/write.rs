//! What the push path hands a backend, whatever it writes to: one request's lines, already
//! mapped to their stream, validated and split at newlines ([`Batch`]), written all or nothing;
//! and what the server's housekeeping asks of it (retention).

use std::time::Duration;

use crate::logql::LogKind;

/// One push request, ready to write. Borrowed from the decoded request: nothing is copied
/// between decoding and the backend's own encoding.
#[derive(Debug, Default)]
pub struct Batch<'a> {
    /// The request's streams, in request order; a stream may appear more than once.
    pub streams: Vec<BatchStream<'a>>,
    /// Entries the request held (a message with newlines is one entry and several lines).
    pub entries: u64,
    /// Lines to write.
    pub lines: u64,
}

/// The lines of one stream of a push.
#[derive(Debug)]
pub struct BatchStream<'a> {
    /// Pod or node logs.
    pub kind: LogKind,
    /// The stream's labels in [`LogKind::labels`] order (namespace, pod, container / node,
    /// process), each already checked to be a safe target name or field.
    pub values: Vec<String>,
    /// Lines, in request order: time in nanoseconds (from 1970 on) and message (no newline).
    pub lines: Vec<(i64, &'a str)>,
    /// Each line's time as its file wrote it (an import of a Lethe tree keeps `…:00Z` or
    /// `….000000Z` as Lethe answers it); empty when the time is Janus's own rendering (pushes).
    pub time_texts: Vec<&'a str>,
}

/// What a write did, for metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    /// Bytes the backend stored for the request.
    pub bytes: u64,
    /// Time spent making them durable before answering (fsync), in seconds.
    pub fsync_seconds: f64,
}

/// Why a push was not written. Nothing of the request is kept in either case.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The backend failed (disk, network, server): the shipper should retry.
    #[error("writing to the store failed: {0}; retry the request")]
    Failed(String),
    /// The request is more than the backend can write at once and still all or nothing.
    #[error("{0}")]
    TooLarge(String),
}

/// How long and how much the store keeps (`--retention.time`, `--retention.size`; zero turns
/// either off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub max_age: Duration,
    pub max_bytes: u64,
}

/// What one retention pass did, for its log line and metrics.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Chunks (hour files, partitions) deleted for being older than `--retention.time`.
    pub deleted_by_time: u64,
    /// Chunks deleted to bring the store under `--retention.size`.
    pub deleted_by_size: u64,
    /// Bytes those chunks held.
    pub bytes_deleted: u64,
    /// Bytes left in the store.
    pub store_bytes: u64,
    /// Target directories removed once empty (the file store).
    pub dirs_removed: u64,
}
