//! The ClickHouse backend: logs in a ClickHouse table (or a cluster's `Distributed` table), so
//! that several stateless Janus replicas serve one store. Selectors, the window and line filters
//! run in SQL where ClickHouse computes exactly what Janus does ([`sql`]); every row is checked
//! again in Janus with the same code the file store runs per line ([`crate::logstore::line::passes`]),
//! which also runs what SQL cannot (parsers, label filters, formats, `unwrap`). Answers are the
//! file store's: lines rendered in Lethe's format, the same order and the same counts.

pub mod client;
pub mod rows;
pub mod schema;
pub mod sql;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use client::{Bounds, ChError, Client, Connection, DEFAULT_MAX_MEMORY};
use schema::Layout;

use super::line::{self, Line};
use super::series_keys::{key_labels, pairs_labels, stream_key, KeyPlan};
use super::write::{Batch, RetentionOutcome, RetentionPolicy, WriteError, Written};
use super::{
    Capabilities, Count, Found, FoundLine, Keep, LineSource, LogStore, ScanStop, Search,
    SeriesSamples, StreamBuckets, MAX_LABEL_BYTES,
};
use crate::logql::pipeline::Outcome;
use crate::logql::{LogKind, LogQuery};
use crate::telemetry::Metrics;

/// What `--storage.clickhouse.*` configures.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub connection: Connection,
    /// Database of Janus's tables (default `janus`).
    pub database: String,
    /// A `remote_servers` cluster name: tables made `ON CLUSTER`, reads and writes through a
    /// `Distributed` table.
    pub cluster: Option<String>,
}

/// Rows one push may insert: ClickHouse writes an INSERT's rows as one block, all or nothing,
/// up to `max_insert_block_size` rows (its default, set explicitly); a larger push is refused
/// rather than written in parts.
pub const MAX_ROWS_PER_PUSH: u64 = 1_048_576;

/// Bytes of lines one search answer may hold: the file store keeps positions and reads lines
/// back while sending, this backend keeps the lines themselves, so their bytes are bounded
/// before they are read (half of the answers' budget, `api::ANSWER_BYTES_IN_FLIGHT`).
pub const MAX_ANSWER_BYTES: usize = 128 << 20;

/// Streams one listing may return; beyond it the answer says so (as the file store's).
const MAX_ANSWER_STREAMS: usize = 100_000;

const HOUR: i64 = 3_600_000_000_000;

pub struct ClickHouse {
    client: Client,
    layout: Layout,
    /// The next line's push order: starts at the wall clock in nanoseconds, so a restarted or
    /// second replica's lines sort after older ones of the same time.
    seq: AtomicU64,
    /// Rows of a search page ([`SEARCH_PAGE`]).
    search_page: usize,
}

/// The lines of a search, rendered in Lethe's format into one buffer.
struct Rendered(Vec<u8>);

impl LineSource for Rendered {
    fn read_at(&self, _part: usize, offset: u64, buf: &mut [u8]) -> bool {
        let start = offset as usize;
        match self.0.get(start..start + buf.len()) {
            Some(bytes) => {
                buf.copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }

    fn held_bytes(&self) -> usize {
        self.0.capacity()
    }
}

fn stop(e: ChError) -> ScanStop {
    match e {
        ChError::Deadline => ScanStop::Deadline,
        ChError::Cancelled => ScanStop::Cancelled,
        other => ScanStop::Unavailable(other.to_string()),
    }
}

/// A row of the stored columns, unescaped.
struct Row {
    out: Vec<u8>,
    ranges: Vec<std::ops::Range<usize>>,
}

impl Row {
    fn new() -> Self {
        Row {
            out: Vec::new(),
            ranges: Vec::new(),
        }
    }

    fn read(&mut self, raw: &[u8], want: usize) -> Result<(), ScanStop> {
        rows::fields(raw, &mut self.out, &mut self.ranges);
        if self.ranges.len() != want {
            return Err(ScanStop::Unavailable(format!(
                "ClickHouse answered a row of {} columns, {want} expected",
                self.ranges.len()
            )));
        }
        Ok(())
    }

    fn get(&self, i: usize) -> &[u8] {
        &self.out[self.ranges[i].clone()]
    }

    /// The row `target, stream, container, ts, line[, seq, time]` as a stored line (its time
    /// text empty unless the row kept the one its file wrote).
    fn line(&self, kind: LogKind) -> Result<Line<'_>, ScanStop> {
        let ts = rows::number::<i64>(self.get(3)).ok_or_else(|| {
            ScanStop::Unavailable("ClickHouse answered a time that is not a number".into())
        })?;
        Ok(Line {
            ts,
            time_text: self
                .ranges
                .get(6)
                .map_or(&b""[..], |r| &self.out[r.clone()]),
            fields: [self.get(0), self.get(1), self.get(2)],
            field_count: kind.labels().len(),
            message: self.get(4),
        })
    }
}

/// Lethe's text of a time: RFC 3339, UTC, nanoseconds (as the writer writes it).
fn time_text(ts: i64) -> String {
    let t = chrono::DateTime::<chrono::Utc>::from_timestamp(
        ts.div_euclid(1_000_000_000),
        ts.rem_euclid(1_000_000_000) as u32,
    )
    .unwrap_or_default();
    t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

impl ClickHouse {
    /// Connects, detects the server's version, creates Janus's database and tables if missing
    /// and checks them. An error names what is wrong, in one line.
    pub fn open(settings: &Settings, metrics: Arc<Metrics>) -> Result<Self, String> {
        let client = Client::new(&settings.connection, metrics)?;
        let database = if settings.database.is_empty() {
            "janus"
        } else {
            &settings.database
        };
        let layout = schema::prepare(&client, database, settings.cluster.as_deref())?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        tracing::info!(
            url = client.url(),
            version = format!("{}.{}", layout.version.0, layout.version.1),
            table = layout.table(),
            "log store: ClickHouse"
        );
        Ok(ClickHouse {
            client,
            layout,
            seq: AtomicU64::new(now),
            search_page: SEARCH_PAGE,
        })
    }

    /// The same store, reading searches SQL cannot run whole in pages of `rows` (tests use
    /// tiny pages to cross many page boundaries).
    pub fn with_search_page(mut self, rows: usize) -> Self {
        self.search_page = rows.max(1);
        self
    }

    fn bounds(deadline: Instant) -> Bounds {
        Bounds {
            deadline,
            max_memory: DEFAULT_MAX_MEMORY,
        }
    }

    /// Runs a small statement of housekeeping; an error is logged and `None` (the next pass
    /// tries again).
    fn small(&self, operation: &'static str, sql: &str) -> Option<String> {
        match self.client.execute(operation, sql) {
            Ok(text) => Some(text),
            Err(e) => {
                tracing::warn!(error = %e, operation, "ClickHouse statement failed");
                None
            }
        }
    }

    /// Runs a listing's statement and returns its answer whole (a listing's rows are few).
    fn listing(&self, operation: &'static str, sql: &str) -> Result<String, ScanStop> {
        self.client.execute(operation, sql).map_err(stop)
    }

    /// Reads the rows of `query` in `[lo, hi]` (and `tail`: more conditions, the order, a
    /// limit) and calls `each` with each line that passes and what its pipeline extracted;
    /// `each` returns false to stop. Says how many rows were read and where the last one sorts.
    #[allow(clippy::too_many_arguments)]
    fn each_line(
        &self,
        operation: &'static str,
        query: &LogQuery,
        lo: i64,
        hi: i64,
        tail: &str,
        deadline: Instant,
        cancelled: &AtomicBool,
        each: &mut EachLine<'_>,
    ) -> Result<RowsRead, ScanStop> {
        let (conditions, _) = sql::conditions(query, lo, hi);
        let statement = format!(
            "SELECT target, stream, container, ts, line, seq, time FROM {} WHERE {}{tail} FORMAT TabSeparated",
            self.layout.table(),
            conditions.join(" AND ")
        );
        let mut rows = self
            .client
            .select(operation, &statement, Self::bounds(deadline), cancelled)
            .map_err(stop)?;
        let filters = query.filters_by_cost();
        let stream_values = query.pipeline.reads_stream_values(query.kind.labels());
        let mut outcome = Outcome::default();
        let mut row = Row::new();
        let mut read = RowsRead::default();
        while let Some(raw) = rows.next_row().map_err(stop)? {
            row.read(raw, 7)?;
            let l = row.line(query.kind)?;
            read.rows += 1;
            read.last = Some((
                l.ts,
                l.fields[0].to_vec(),
                rows::number(row.get(5)).unwrap_or(0),
            ));
            if l.ts < lo || l.ts > hi {
                continue;
            }
            if !std::str::from_utf8(l.fields[0]).is_ok_and(|t| query.target_matches(t)) {
                continue;
            }
            let Some(ran) = line::passes(query, &filters, stream_values, &l, &mut outcome) else {
                continue;
            };
            if !each(&l, ran.then_some(&outcome))? {
                read.stopped = true;
                break;
            }
        }
        Ok(read)
    }
}

/// What [`ClickHouse::each_line`] read.
#[derive(Default)]
struct RowsRead {
    rows: usize,
    /// Sort key (time, target, push order) of the last row read: where the next page starts.
    last: Option<(i64, Vec<u8>, u64)>,
    /// `each` asked to stop.
    stopped: bool,
}

/// Rows of one page of a search whose query SQL cannot run whole (a pipeline, a pattern, a
/// regex left to Janus): ClickHouse sorts at most this many rows at a time.
pub const SEARCH_PAGE: usize = 10_000;

/// What [`ClickHouse::each_line`] calls per passing line: false stops the reading.
type EachLine<'f> = dyn FnMut(&Line<'_>, Option<&Outcome>) -> Result<bool, ScanStop> + 'f;

/// Whether consecutive bounds are all `g` apart: then a row's bucket is arithmetic in SQL.
fn even_step(bounds: &[i64]) -> Option<i64> {
    let g = bounds.get(1)?.checked_sub(*bounds.first()?)?;
    (g > 0 && bounds.windows(2).all(|w| w[1].checked_sub(w[0]) == Some(g))).then_some(g)
}

impl LogStore for ClickHouse {
    fn capabilities(&self) -> Capabilities {
        Capabilities::ALL
    }

    fn search(&self, s: &Search<'_>) -> Result<Found, ScanStop> {
        let (_, whole) = sql::conditions(s.query, s.lo, s.hi);
        let dir = match s.keep {
            Keep::Newest => "DESC",
            Keep::Oldest => "ASC",
        };
        let mut buf = Vec::new();
        let mut lines: Vec<FoundLine> = Vec::new();
        let mut truncated = false;
        let mut bytes_scanned = 0u64;
        let mut keep_line = |l: &Line<'_>, _: Option<&Outcome>| {
            if s.limit > 0 && lines.len() == s.limit {
                truncated = true;
                return Ok(false);
            }
            if buf.len() + l.message.len() > MAX_ANSWER_BYTES {
                return Err(ScanStop::AnswerTooLarge(MAX_ANSWER_BYTES));
            }
            let offset = buf.len();
            if l.time_text.is_empty() {
                buf.extend_from_slice(time_text(l.ts).as_bytes());
            } else {
                buf.extend_from_slice(l.time_text);
            }
            buf.push(b'[');
            for (n, field) in l.fields[..l.field_count].iter().enumerate() {
                if n > 0 {
                    buf.push(b'|');
                }
                buf.extend_from_slice(field);
            }
            buf.extend_from_slice(b"] ");
            buf.extend_from_slice(l.message);
            bytes_scanned += (buf.len() - offset) as u64 + 1;
            lines.push(FoundLine {
                ts: l.ts,
                part: 0,
                offset: offset as u64,
                len: buf.len() - offset,
            });
            Ok(true)
        };
        let order = format!(" ORDER BY ts {dir}, target {dir}, seq {dir}");
        if whole {
            // SQL is the whole query: its LIMIT is the answer's, one more row says truncated.
            let limit = match s.limit {
                0 => String::new(),
                n => format!(" LIMIT {}", n + 1),
            };
            self.each_line(
                "search",
                s.query,
                s.lo,
                s.hi,
                &format!("{order}{limit}"),
                s.deadline,
                s.cancelled,
                &mut keep_line,
            )?;
        } else {
            // Pages in the answer's order, each starting after the last row of the one before,
            // until the answer is full or the window is read.
            let before = if dir == "DESC" { "<" } else { ">" };
            let mut after = String::new();
            loop {
                let read = self.each_line(
                    "search",
                    s.query,
                    s.lo,
                    s.hi,
                    &format!("{after}{order} LIMIT {}", self.search_page),
                    s.deadline,
                    s.cancelled,
                    &mut keep_line,
                )?;
                let Some((ts, target, seq)) = read.last.filter(|_| !read.stopped) else {
                    break;
                };
                if read.rows < self.search_page {
                    break;
                }
                let target = sql::quote_bytes(&target);
                after = format!(
                    " AND (ts {before} {ts} OR (ts = {ts} AND (target {before} {target} OR (target = {target} AND seq {before} {seq}))))"
                );
            }
        }
        if s.keep == Keep::Newest {
            lines.reverse();
        }
        Ok(Found::from_source(
            lines,
            Box::new(Rendered(buf)),
            truncated,
            Vec::new(),
            bytes_scanned,
        ))
    }

    fn buckets(&self, count: &Count<'_>, bounds: &[i64]) -> Result<StreamBuckets, ScanStop> {
        let Count {
            query,
            deadline,
            cancelled,
            max_series: max_streams,
            grouping,
            ..
        } = *count;
        let (Some(&first), Some(&last)) = (bounds.first(), bounds.last()) else {
            return Ok(BTreeMap::new());
        };
        let (lo, hi) = (first.saturating_add(1), last);
        let plan = KeyPlan::new(query.kind, grouping);
        let mut counts: BTreeMap<Vec<u8>, Vec<(u64, u64)>> = BTreeMap::new();
        let mut key = Vec::new();
        let mut key_bytes = 0usize;
        let mut add = |key: &Vec<u8>, j: usize, lines: u64, bytes: u64| -> Result<(), ScanStop> {
            let slot = match counts.get_mut(key) {
                Some(slot) => slot,
                None => {
                    if counts.len() >= max_streams {
                        return Err(ScanStop::TooManyStreams(max_streams));
                    }
                    key_bytes += key.len();
                    if key_bytes > MAX_LABEL_BYTES {
                        return Err(ScanStop::LabelsTooLarge(MAX_LABEL_BYTES));
                    }
                    counts
                        .entry(key.clone())
                        .or_insert_with(|| vec![(0, 0); bounds.len()])
                }
            };
            if let Some(b) = slot.get_mut(j) {
                b.0 += lines;
                b.1 += bytes;
            }
            Ok(())
        };
        let (conditions, whole) = sql::conditions(query, lo, hi);
        match even_step(bounds).filter(|_| whole) {
            Some(g) => {
                // Counted in ClickHouse: bucket j holds (first + (j-1)g, first + jg].
                let statement = format!(
                    "SELECT target, stream, container, intDiv(ts - ({first}) - 1, {g}) + 1 AS j, count(), sum(length(line)) \
                     FROM {} WHERE {} GROUP BY target, stream, container, j FORMAT TabSeparated",
                    self.layout.table(),
                    conditions.join(" AND ")
                );
                let mut rows = self
                    .client
                    .select("buckets", &statement, Self::bounds(deadline), cancelled)
                    .map_err(stop)?;
                let mut row = Row::new();
                while let Some(raw) = rows.next_row().map_err(stop)? {
                    row.read(raw, 6)?;
                    let (Some(j), Some(n), Some(b)) = (
                        rows::number::<usize>(row.get(3)),
                        rows::number::<u64>(row.get(4)),
                        rows::number::<u64>(row.get(5)),
                    ) else {
                        return Err(ScanStop::Unavailable(
                            "ClickHouse answered a count that is not a number".into(),
                        ));
                    };
                    let l = Line {
                        ts: 0,
                        time_text: b"",
                        fields: [row.get(0), row.get(1), row.get(2)],
                        field_count: query.kind.labels().len(),
                        message: b"",
                    };
                    match grouping {
                        None => stream_key(&mut key, &l),
                        Some(_) => plan.labels_key(&mut key, &l, None),
                    }
                    if j >= 1 && j < bounds.len() {
                        add(&key, j, n, b)?;
                    }
                }
            }
            None => {
                self.each_line(
                    "buckets",
                    query,
                    lo,
                    hi,
                    "",
                    deadline,
                    cancelled,
                    &mut |l, extracted| {
                        let j = bounds.partition_point(|&b| b < l.ts);
                        if j == 0 || j >= bounds.len() {
                            return Ok(true);
                        }
                        match (grouping, extracted) {
                            (None, None) => stream_key(&mut key, l),
                            _ => plan.labels_key(&mut key, l, extracted),
                        }
                        let message = extracted.map_or(l.message, |o| o.message(l.message));
                        add(&key, j, 1, message.len() as u64)?;
                        Ok(true)
                    },
                )?;
            }
        }
        let by_fields = grouping.is_none() && query.pipeline.is_empty();
        Ok(counts
            .into_iter()
            .map(|(key, buckets)| {
                let labels = if by_fields {
                    key_labels(query.kind, &key)
                } else {
                    pairs_labels(&key)
                };
                (labels, buckets)
            })
            .collect())
    }

    fn samples(&self, count: &Count<'_>, lo: i64, hi: i64) -> Result<SeriesSamples, ScanStop> {
        let Count {
            query,
            deadline,
            cancelled,
            max_series,
            max_samples,
            grouping,
        } = *count;
        let plan = KeyPlan::new(query.kind, grouping);
        let mut values: BTreeMap<Vec<u8>, Vec<(i64, f64)>> = BTreeMap::new();
        let mut key = Vec::new();
        let (mut held, mut key_bytes) = (0usize, 0usize);
        self.each_line(
            "samples",
            query,
            lo,
            hi,
            "",
            deadline,
            cancelled,
            &mut |l, outcome| {
                let Some(outcome) = outcome else {
                    return Ok(true);
                };
                plan.labels_key(&mut key, l, Some(outcome));
                held += 1;
                if held > max_samples {
                    return Err(ScanStop::TooManySamples(max_samples));
                }
                let sample = (l.ts, outcome.sample.unwrap_or(f64::NAN));
                let full = values.len() >= max_series;
                match values.get_mut(&key) {
                    Some(series) => series.push(sample),
                    None if full => return Err(ScanStop::TooManyStreams(max_series)),
                    None => {
                        key_bytes += key.len();
                        if key_bytes > MAX_LABEL_BYTES {
                            return Err(ScanStop::LabelsTooLarge(MAX_LABEL_BYTES));
                        }
                        values.insert(key.clone(), vec![sample]);
                    }
                }
                Ok(true)
            },
        )?;
        let mut merged = SeriesSamples::new();
        for (key, series) in values {
            merged.entry(pairs_labels(&key)).or_default().extend(series);
        }
        for series in merged.values_mut() {
            series.sort_by_key(|s| s.0);
        }
        Ok(merged)
    }

    fn chunk_count(&self, query: &LogQuery, lo: i64, hi: i64) -> Result<usize, ScanStop> {
        let (lo, hi) = hour_window(lo, hi);
        let statement = format!(
            "SELECT target, uniqExact(intDiv(ts, {HOUR})) FROM {} WHERE {} AND ts >= {lo} AND ts <= {hi} GROUP BY target FORMAT TabSeparated",
            self.layout.table(),
            sql::kind_condition(query.kind)
        );
        let text = self.listing("chunks", &statement)?;
        Ok(text
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .filter(|(target, _)| query.target_matches(target))
            .filter_map(|(_, n)| n.parse::<usize>().ok())
            .sum())
    }

    fn target_names(&self, kind: LogKind) -> Result<Vec<String>, ScanStop> {
        let statement = format!(
            "SELECT DISTINCT target FROM {} WHERE {} ORDER BY target FORMAT TabSeparated",
            self.layout.table(),
            sql::kind_condition(kind)
        );
        let text = self.listing("targets", &statement)?;
        Ok(unescaped_lines(&text, 1).map(|mut v| v.remove(0)).collect())
    }

    fn streams(
        &self,
        kind: LogKind,
        keep: &dyn Fn(&str) -> bool,
        lo: i64,
        hi: i64,
    ) -> Result<(BTreeSet<Vec<String>>, bool), ScanStop> {
        let (lo, hi) = hour_window(lo, hi);
        let statement = format!(
            "SELECT DISTINCT target, stream, container FROM {} WHERE {} AND ts >= {lo} AND ts <= {hi} LIMIT {} FORMAT TabSeparated",
            self.layout.table(),
            sql::kind_condition(kind),
            MAX_ANSWER_STREAMS + 1
        );
        let text = self.listing("streams", &statement)?;
        let mut out = BTreeSet::new();
        let mut capped = false;
        for mut values in unescaped_lines(&text, 3) {
            if out.len() >= MAX_ANSWER_STREAMS {
                capped = true;
                break;
            }
            values.truncate(kind.labels().len());
            if keep(&values[0]) {
                out.insert(values);
            }
        }
        Ok((out, capped))
    }

    fn newest_line(&self, kind: LogKind, target: &str) -> Result<Option<i64>, ScanStop> {
        let statement = format!(
            "SELECT max(ts) FROM {} WHERE {} AND target = {} HAVING count() > 0 FORMAT TabSeparated",
            self.layout.table(),
            sql::kind_condition(kind),
            sql::quote(target)
        );
        Ok(self.listing("newest", &statement)?.trim().parse().ok())
    }

    fn warm_recent(&self, _hours: i64) {}

    fn forget_deleted(&self) {}

    fn push(&self, batch: &Batch<'_>) -> Result<Written, WriteError> {
        if batch.lines > MAX_ROWS_PER_PUSH {
            return Err(WriteError::TooLarge(format!(
                "a push of {} lines is more than ClickHouse writes at once, all or nothing ({MAX_ROWS_PER_PUSH}); send smaller batches",
                batch.lines
            )));
        }
        let mut body = Vec::new();
        let mut seq = self.seq.fetch_add(batch.lines, Ordering::Relaxed);
        let put = |body: &mut Vec<u8>, bytes: &[u8]| {
            let mut n = bytes.len() as u64;
            loop {
                let b = (n & 0x7f) as u8;
                n >>= 7;
                if n == 0 {
                    body.push(b);
                    break;
                }
                body.push(b | 0x80);
            }
            body.extend_from_slice(bytes);
        };
        for stream in &batch.streams {
            let kind: u8 = match stream.kind {
                LogKind::Pod => 1,
                LogKind::Node => 2,
            };
            let field = |i: usize| stream.values.get(i).map_or("", String::as_str);
            for (n, &(ts, message)) in stream.lines.iter().enumerate() {
                body.push(kind);
                put(&mut body, field(0).as_bytes());
                put(&mut body, field(1).as_bytes());
                put(&mut body, field(2).as_bytes());
                body.extend_from_slice(&ts.to_le_bytes());
                put(
                    &mut body,
                    stream.time_texts.get(n).map_or(&b""[..], |t| t.as_bytes()),
                );
                body.extend_from_slice(&seq.to_le_bytes());
                seq += 1;
                put(&mut body, message.as_bytes());
            }
        }
        let bytes = body.len() as u64;
        let mut settings = vec![("max_insert_block_size", MAX_ROWS_PER_PUSH.to_string())];
        if self.layout.cluster.is_some() {
            // Acknowledged only once every shard has its rows.
            settings.push(("insert_distributed_sync", "1".into()));
        }
        self.client
            .insert(
                &format!(
                    "INSERT INTO {} (kind, target, stream, container, ts, time, seq, line) FORMAT RowBinary",
                    self.layout.table()
                ),
                body,
                &settings,
            )
            .map_err(|e| WriteError::Failed(e.to_string()))?;
        Ok(Written {
            bytes,
            fsync_seconds: 0.0,
        })
    }

    fn recover(&self) -> Result<Option<String>, String> {
        Ok(None)
    }

    fn sync(&self) -> Result<f64, String> {
        Ok(0.0)
    }

    fn close_idle(&self, _all: bool) {}

    fn enforce_retention(&self, policy: &RetentionPolicy, now: i64) -> RetentionOutcome {
        let mut out = RetentionOutcome::default();
        let statement = format!(
            "SELECT partition_id, partition, sum(bytes_on_disk) FROM system.parts \
             WHERE database = {} AND table = {} AND active GROUP BY partition_id, partition ORDER BY partition FORMAT TabSeparated",
            sql::quote(&self.layout.database),
            sql::quote(self.layout.local_table().rsplit('.').next().unwrap_or("logs")),
        );
        let Some(text) = self.small("retention", &statement) else {
            return out;
        };
        // (id, first nanosecond of the day, bytes), oldest first.
        let mut days: Vec<(String, i64, u64)> = text
            .lines()
            .filter_map(|l| {
                let mut parts = l.split('\t');
                let id = parts.next()?.to_string();
                let date =
                    chrono::NaiveDate::parse_from_str(parts.next()?.trim_matches('\''), "%Y-%m-%d")
                        .ok()?;
                let start = date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_nanos_opt()?;
                let bytes = parts.next()?.parse().ok()?;
                Some((id, start, bytes))
            })
            .collect();
        days.sort_by_key(|d| d.1);
        let mut total: u64 = days.iter().map(|d| d.2).sum();
        let today = now.div_euclid(24 * HOUR) * 24 * HOUR;
        let max_age = i64::try_from(policy.max_age.as_nanos()).unwrap_or(i64::MAX);
        let on_cluster = match &self.layout.cluster {
            Some(c) => format!(" ON CLUSTER {}", schema::ident(c)),
            None => String::new(),
        };
        for (id, start, bytes) in days {
            let end = start.saturating_add(24 * HOUR);
            let by_time = max_age > 0 && end <= now.saturating_sub(max_age);
            // Today's partition is being written: never dropped for size.
            let by_size = policy.max_bytes > 0 && total > policy.max_bytes && start < today;
            if !by_time && !by_size {
                continue;
            }
            let drop = format!(
                "ALTER TABLE {}{on_cluster} DROP PARTITION ID {}",
                self.layout.local_table(),
                sql::quote(&id)
            );
            if self.small("retention", &drop).is_some() {
                total = total.saturating_sub(bytes);
                out.bytes_deleted += bytes;
                if by_time {
                    out.deleted_by_time += 1;
                } else {
                    out.deleted_by_size += 1;
                }
            }
        }
        out.store_bytes = total;
        out
    }

    fn problem(&self) -> Option<String> {
        match self.client.execute("ping", "SELECT 1") {
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        }
    }

    fn describe(&self) -> String {
        format!("ClickHouse {} ({})", self.client.url(), self.layout.table())
    }
}

/// `[lo, hi]` widened to whole hours, as the file store answers listings by hour file.
fn hour_window(lo: i64, hi: i64) -> (i64, i64) {
    (
        lo.div_euclid(HOUR).saturating_mul(HOUR),
        hi.div_euclid(HOUR)
            .saturating_mul(HOUR)
            .saturating_add(HOUR - 1),
    )
}

/// Rows of `columns` text fields, unescaped, lossily as UTF-8.
fn unescaped_lines(text: &str, columns: usize) -> impl Iterator<Item = Vec<String>> + '_ {
    text.lines().filter_map(move |l| {
        let (mut out, mut ranges) = (Vec::new(), Vec::new());
        rows::fields(l.as_bytes(), &mut out, &mut ranges);
        (ranges.len() == columns).then(|| {
            ranges
                .iter()
                .map(|r| String::from_utf8_lossy(&out[r.clone()]).into_owned())
                .collect()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_and_windows() {
        assert_eq!(even_step(&[0, 10, 20, 30]), Some(10));
        assert_eq!(even_step(&[0, 10, 25]), None);
        assert_eq!(even_step(&[5]), None);
        assert_eq!(hour_window(HOUR + 5, HOUR + 6), (HOUR, 2 * HOUR - 1));
        assert_eq!(hour_window(i64::MIN, i64::MAX).1, i64::MAX);
        assert_eq!(
            time_text(1_704_067_200_000_000_001),
            "2024-01-01T00:00:00.000000001Z"
        );
    }
}
