//! Janus's own metrics, served on `/metrics`.
//!
//! Held in one struct shared by the middleware, the upstream client and the health prober, so each
//! counter has exactly one writer and the exposition is always a consistent snapshot.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub handler: String,
    pub code: String,
    pub face: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandlerLabels {
    pub handler: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabels {
    pub handler: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    pub operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    revision: String,
}

mod request_meters;
pub use request_meters::RequestMeters;

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Latency buckets from 0.5 ms to ~16 s: a proxy hop is sub-millisecond, a heavy query seconds.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

pub struct Metrics {
    /// Handles of `requests`, `request_duration` and `upstream_duration` already made.
    pub meters: RequestMeters,
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: HistogramFamily<HandlerLabels>,
    pub in_flight: Gauge,
    pub queued: Gauge,
    pub upstream_duration: HistogramFamily<UpstreamLabels>,
    pub upstream_errors: Family<ReasonLabels, Counter>,
    pub upstream_up: Gauge,
    pub store_skipped_entries: Counter,
    pub store_unparsable_lines: Counter,
    pub store_bytes_indexed: Counter,
    pub store_bytes_scanned: Counter,
    pub store_scan_duration: Histogram,
    /// The ClickHouse backend: statements by operation, their time, what they returned, errors.
    pub clickhouse_duration: Family<OperationLabels, Histogram>,
    pub clickhouse_rows: Counter,
    pub clickhouse_bytes: Counter,
    pub clickhouse_errors: Family<ReasonLabels, Counter>,
    pub ingest_lines: Family<StageLabels, Counter>,
    pub ingest_bytes_written: Counter,
    pub ingest_bytes_received: Counter,
    pub ingest_refused: Family<ReasonLabels, Counter>,
    pub fsync_duration: Histogram,
    pub retention_deleted: Family<ReasonLabels, Counter>,
    pub store_size: Gauge,
    pub ingest_invalid_utf8: Counter,
    pub connections_open: Gauge,
    pub connections_refused: Counter,
    pub index_rebuilds: Counter,
    /// Indexes read back from their persisted files instead of reading their log file.
    pub index_files_loaded: Counter,
    /// Persisted index files not used, by reason (corrupt, stale, foreign, old format).
    pub index_files_refused: Family<ReasonLabels, Counter>,
    pub index_files_written: Counter,
    /// Files scanned whole without an index (a search covering their hour needs none).
    pub files_scanned_unindexed: Counter,
    pub pushed_parts: Counter,
    pub subqueries_evaluated: Counter,
    /// 1 when the last reading of --web.config.file succeeded (or none was needed).
    pub web_config_reload_ok: Gauge,
    pub web_config_reloads: Counter,
    pub web_config_reload_failures: Counter,
    /// TLS handshakes that failed (bad client certificate, protocol, timeout).
    pub tls_handshake_failures: Counter,
    /// Requests by tenant (those of the tenants file, or `none`) and result.
    pub tenant_requests: Family<TenantLabels, Counter>,
    pub tenant_pushed_bytes: Family<TenantNameLabels, Counter>,
    /// Results-cache lookups by face and result (`hit`, `miss`).
    pub cache_requests: Family<CacheRequestLabels, Counter>,
    /// Entries dropped for room or age (not those replaced or cleared).
    pub cache_evictions: Family<CacheFaceLabels, Counter>,
    pub cache_bytes: Family<CacheFaceLabels, Gauge>,
    pub cache_entries: Family<CacheFaceLabels, Gauge>,
    /// The ruler's counters (`janus_rule_*`, `janus_notifications_*`, `janus_remote_write_*`).
    pub rules: RuleMetrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleGroupLabels {
    pub rule_group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertmanagerLabels {
    pub alertmanager: String,
}

/// What the ruler counts: evaluations and their failures, their duration, iterations missed
/// (an evaluation that took longer than the interval), notifications, remote writes, reloads.
pub struct RuleMetrics {
    pub evaluations: Family<RuleGroupLabels, Counter>,
    pub evaluation_failures: Family<RuleGroupLabels, Counter>,
    pub group_duration: Family<RuleGroupLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub group_last_evaluation: Family<RuleGroupLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub iterations_missed: Family<RuleGroupLabels, Counter>,
    pub iterations: Family<RuleGroupLabels, Counter>,
    pub group_rules: Family<RuleGroupLabels, Gauge>,
    pub notifications_sent: Family<AlertmanagerLabels, Counter>,
    pub notifications_errors: Family<AlertmanagerLabels, Counter>,
    pub notifications_dropped: Counter,
    pub notifications_queue_length: Gauge,
    pub remote_write_samples: Counter,
    pub remote_write_failed: Counter,
    pub remote_write_dropped: Counter,
    pub last_reload_successful: Gauge,
    pub last_reload_success_timestamp: Gauge,
    pub log_reads_shared: Counter,
}

impl RuleMetrics {
    fn new(registry: &mut Registry) -> Self {
        let m = RuleMetrics {
            evaluations: Family::default(),
            evaluation_failures: Family::default(),
            group_duration: Family::default(),
            group_last_evaluation: Family::default(),
            iterations_missed: Family::default(),
            iterations: Family::default(),
            group_rules: Family::default(),
            notifications_sent: Family::default(),
            notifications_errors: Family::default(),
            notifications_dropped: Counter::default(),
            notifications_queue_length: Gauge::default(),
            remote_write_samples: Counter::default(),
            remote_write_failed: Counter::default(),
            remote_write_dropped: Counter::default(),
            last_reload_successful: Gauge::default(),
            last_reload_success_timestamp: Gauge::default(),
            log_reads_shared: Counter::default(),
        };
        registry.register(
            "janus_rule_evaluations",
            "Rule evaluations, by group",
            m.evaluations.clone(),
        );
        registry.register(
            "janus_rule_evaluation_failures",
            "Rule evaluations that failed, by group",
            m.evaluation_failures.clone(),
        );
        registry.register(
            "janus_rule_group_last_duration_seconds",
            "How long the group's last evaluation took",
            m.group_duration.clone(),
        );
        registry.register(
            "janus_rule_group_last_evaluation_timestamp_seconds",
            "When the group was last evaluated",
            m.group_last_evaluation.clone(),
        );
        registry.register(
            "janus_rule_group_iterations_missed",
            "Evaluations of the group skipped because the one before took longer than its interval",
            m.iterations_missed.clone(),
        );
        registry.register(
            "janus_rule_group_iterations",
            "Evaluations of the group scheduled",
            m.iterations.clone(),
        );
        registry.register(
            "janus_rule_group_rules",
            "Rules in the group",
            m.group_rules.clone(),
        );
        registry.register(
            "janus_notifications_sent",
            "Alerts sent, by Alertmanager",
            m.notifications_sent.clone(),
        );
        registry.register(
            "janus_notifications_errors",
            "Alerts that could not be sent, by Alertmanager",
            m.notifications_errors.clone(),
        );
        registry.register(
            "janus_notifications_dropped",
            "Alerts dropped because the queue was full",
            m.notifications_dropped.clone(),
        );
        registry.register(
            "janus_notifications_queue_length",
            "Alerts waiting to be sent",
            m.notifications_queue_length.clone(),
        );
        registry.register(
            "janus_remote_write_samples",
            "Samples written to --rules.remote-write.url",
            m.remote_write_samples.clone(),
        );
        registry.register(
            "janus_remote_write_failed_samples",
            "Samples that could not be written after retries",
            m.remote_write_failed.clone(),
        );
        registry.register(
            "janus_remote_write_dropped_samples",
            "Samples dropped because the queue was full",
            m.remote_write_dropped.clone(),
        );
        registry.register(
            "janus_rule_log_reads_shared",
            "Log reads of rule evaluations answered by another evaluation's read at the same time",
            m.log_reads_shared.clone(),
        );
        registry.register(
            "janus_rules_last_reload_successful",
            "Whether the last load of the rule files succeeded",
            m.last_reload_successful.clone(),
        );
        registry.register(
            "janus_rules_last_reload_success_timestamp_seconds",
            "When the rule files last loaded",
            m.last_reload_success_timestamp.clone(),
        );
        m
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheRequestLabels {
    pub face: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CacheFaceLabels {
    pub face: String,
}

impl CacheFaceLabels {
    /// The labels of a face (`metric`, `log`).
    pub fn of(face: &str) -> Self {
        CacheFaceLabels { face: face.into() }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    pub tenant: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantNameLabels {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: String,
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "janus_http_requests",
            "HTTP requests answered, by handler, status code and face (metric, log or janus)",
            requests.clone(),
        );
        let request_duration: HistogramFamily<HandlerLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "janus_http_request_duration_seconds",
            "Time to the response head, by handler and status code",
            request_duration.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "janus_http_requests_in_flight",
            "Requests being answered now",
            in_flight.clone(),
        );
        let queued = Gauge::default();
        registry.register(
            "janus_query_queue_length",
            "Queries waiting for a slot under --query.max-concurrency",
            queued.clone(),
        );
        let upstream_duration: HistogramFamily<UpstreamLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "janus_upstream_request_duration_seconds",
            "Time from sending a request upstream to its response head, by handler",
            upstream_duration.clone(),
        );
        let upstream_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "janus_upstream_errors",
            "Upstream requests that got no answer, by reason (unreachable, timeout, canceled)",
            upstream_errors.clone(),
        );
        // Known reasons start at 0, so that `rate()` and alerts see them before the first error.
        for reason in ["unreachable", "timeout", "canceled"] {
            let _ = upstream_errors.get_or_create(&ReasonLabels {
                reason: reason.into(),
            });
        }
        let upstream_up = Gauge::default();
        registry.register(
            "janus_upstream_up",
            "1 when the upstream's /-/ready answered 200 at the last probe, else 0",
            upstream_up.clone(),
        );
        let store_skipped_entries = Counter::default();
        registry.register(
            "janus_store_skipped_entries",
            "Directory entries passed over while listing the store (odd file names, links, unreadable), counted each time a query meets one",
            store_skipped_entries.clone(),
        );
        let store_unparsable_lines = Counter::default();
        registry.register(
            "janus_store_unparsable_lines",
            "Stored lines without a parsable timestamp, counted once when their file is indexed; queries skip them",
            store_unparsable_lines.clone(),
        );
        let store_bytes_indexed = Counter::default();
        registry.register(
            "janus_store_indexed_bytes",
            "Bytes of hour files read to build or extend their time index",
            store_bytes_indexed.clone(),
        );
        let store_bytes_scanned = Counter::default();
        registry.register(
            "janus_store_scanned_bytes",
            "Bytes of hour files read by log queries",
            store_bytes_scanned.clone(),
        );
        let store_scan_duration = latency_histogram();
        registry.register(
            "janus_store_search_duration_seconds",
            "Time to answer one log search from the store",
            store_scan_duration.clone(),
        );
        let clickhouse_duration = Family::<OperationLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "janus_clickhouse_statement_duration_seconds",
            "Time of one statement sent to ClickHouse (until its last row was read), by operation",
            clickhouse_duration.clone(),
        );
        let clickhouse_rows = Counter::default();
        registry.register(
            "janus_clickhouse_rows_read",
            "Rows Janus read from ClickHouse answers",
            clickhouse_rows.clone(),
        );
        let clickhouse_bytes = Counter::default();
        registry.register(
            "janus_clickhouse_answer_bytes",
            "Bytes of ClickHouse answers Janus read",
            clickhouse_bytes.clone(),
        );
        let clickhouse_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "janus_clickhouse_errors",
            "Statements sent to ClickHouse that failed, by reason (unreachable, server, malformed, timeout, cancelled)",
            clickhouse_errors.clone(),
        );
        let ingest_lines = Family::<StageLabels, Counter>::default();
        registry.register(
            "janus_ingest_lines",
            "Pushed log lines by stage: received (entries decoded), written (stored lines, after splitting multi-line messages), refused (in refused requests)",
            ingest_lines.clone(),
        );
        let ingest_bytes_written = Counter::default();
        registry.register(
            "janus_ingest_written_bytes",
            "Bytes appended to hour files by the push API",
            ingest_bytes_written.clone(),
        );
        let ingest_bytes_received = Counter::default();
        registry.register(
            "janus_ingest_received_bytes",
            "Bytes of push request bodies received, as sent (compressed or not)",
            ingest_bytes_received.clone(),
        );
        let ingest_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "janus_ingest_refused_requests",
            "Push requests refused, by reason (bad_request, too_large, write_failed)",
            ingest_refused.clone(),
        );
        let fsync_duration = latency_histogram();
        registry.register(
            "janus_storage_fsync_duration_seconds",
            "Time spent forcing appended lines to disk (per request under fsync=always, per pass under batch)",
            fsync_duration.clone(),
        );
        let retention_deleted = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "janus_retention_deleted_files",
            "Hour files deleted by retention, by reason (time, size)",
            retention_deleted.clone(),
        );
        let store_size = Gauge::default();
        registry.register(
            "janus_store_size_bytes",
            "Bytes of hour files in the store at the last retention pass",
            store_size.clone(),
        );
        let ingest_invalid_utf8 = Counter::default();
        registry.register(
            "janus_ingest_invalid_utf8_sequences",
            "Invalid UTF-8 sequences in pushed requests, stored as U+FFFD instead of refusing the request",
            ingest_invalid_utf8.clone(),
        );
        let connections_open = Gauge::default();
        registry.register(
            "janus_http_connections_open",
            "Client connections open now (at most --web.max-connections)",
            connections_open.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "janus_http_connections_refused",
            "Client connections closed at once because --web.max-connections were open",
            connections_refused.clone(),
        );
        let index_rebuilds = Counter::default();
        registry.register(
            "janus_store_index_rebuilds",
            "Time indexes thrown away because their file was replaced or rewritten in place",
            index_rebuilds.clone(),
        );
        let index_files_loaded = Counter::default();
        registry.register(
            "janus_store_index_files_loaded",
            "Indexes read back from their persisted file (.janus/index) instead of re-reading the log file",
            index_files_loaded.clone(),
        );
        let index_files_refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "janus_store_index_files_refused",
            "Persisted index files not used (and rebuilt), by reason",
            index_files_refused.clone(),
        );
        let index_files_written = Counter::default();
        registry.register(
            "janus_store_index_files_written",
            "Indexes of files at rest persisted to .janus/index",
            index_files_written.clone(),
        );
        let files_scanned_unindexed = Counter::default();
        registry.register(
            "janus_store_files_scanned_unindexed",
            "Hour files a search read whole without building their index (the search covered their hour)",
            files_scanned_unindexed.clone(),
        );
        let pushed_parts = Counter::default();
        registry.register(
            "janus_query_pushed_parts",
            "Sub-expressions of expressions over logs (or, under the testing switch, of any query) sent to the upstream as queries of their own",
            pushed_parts.clone(),
        );
        let subqueries_evaluated = Counter::default();
        registry.register(
            "janus_query_subqueries_evaluated",
            "Range functions over subqueries evaluated in Janus",
            subqueries_evaluated.clone(),
        );
        let web_config_reload_ok = Gauge::default();
        registry.register(
            "janus_web_config_last_reload_successful",
            "Whether the last reading of --web.config.file succeeded (0: the previous configuration is still in force)",
            web_config_reload_ok.clone(),
        );
        let web_config_reloads = Counter::default();
        registry.register(
            "janus_web_config_reloads",
            "Changes of --web.config.file (or the files it names) read and put in force",
            web_config_reloads.clone(),
        );
        let web_config_reload_failures = Counter::default();
        registry.register(
            "janus_web_config_reload_failures",
            "Changes of --web.config.file refused (the previous configuration stays in force)",
            web_config_reload_failures.clone(),
        );
        let tls_handshake_failures = Counter::default();
        registry.register(
            "janus_tls_handshake_failures",
            "TLS handshakes that failed: certificate refused, protocol error or timeout",
            tls_handshake_failures.clone(),
        );
        let tenant_requests = Family::<TenantLabels, Counter>::default();
        registry.register(
            "janus_tenant_requests",
            "Requests by tenant (`none`: unidentified) and result (`allowed`, `forbidden`, `unidentified`)",
            tenant_requests.clone(),
        );
        let cache_requests = Family::<CacheRequestLabels, Counter>::default();
        registry.register(
            "janus_cache_requests",
            "Results-cache lookups by face (metric, log) and result (hit, miss)",
            cache_requests.clone(),
        );
        let cache_evictions = Family::<CacheFaceLabels, Counter>::default();
        registry.register(
            "janus_cache_evictions",
            "Results-cache entries dropped for room (--query.cache-size) or age (--query.cache-ttl)",
            cache_evictions.clone(),
        );
        let cache_bytes = Family::<CacheFaceLabels, Gauge>::default();
        registry.register(
            "janus_cache_bytes",
            "Bytes of answers the results cache holds, by face",
            cache_bytes.clone(),
        );
        let cache_entries = Family::<CacheFaceLabels, Gauge>::default();
        registry.register(
            "janus_cache_entries",
            "Entries the results cache holds, by face",
            cache_entries.clone(),
        );
        let tenant_pushed_bytes = Family::<TenantNameLabels, Counter>::default();
        registry.register(
            "janus_tenant_pushed_bytes",
            "Push bodies accepted, by tenant",
            tenant_pushed_bytes.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
                revision: option_env!("JANUS_REVISION")
                    .unwrap_or("unknown")
                    .to_string(),
            })
            .set(1);
        registry.register(
            "janus_build_info",
            "Always 1, labelled with the version Janus was built from",
            build_info,
        );
        let rules = RuleMetrics::new(&mut registry);
        Metrics {
            meters: RequestMeters::default(),
            rules,
            registry,
            requests,
            request_duration,
            in_flight,
            queued,
            upstream_duration,
            upstream_errors,
            upstream_up,
            store_skipped_entries,
            store_unparsable_lines,
            store_bytes_indexed,
            store_bytes_scanned,
            store_scan_duration,
            clickhouse_duration,
            clickhouse_rows,
            clickhouse_bytes,
            clickhouse_errors,
            ingest_lines,
            ingest_bytes_written,
            ingest_bytes_received,
            ingest_refused,
            fsync_duration,
            retention_deleted,
            store_size,
            ingest_invalid_utf8,
            connections_open,
            connections_refused,
            index_rebuilds,
            index_files_loaded,
            index_files_refused,
            index_files_written,
            files_scanned_unindexed,
            pushed_parts,
            subqueries_evaluated,
            web_config_reload_ok,
            web_config_reloads,
            web_config_reload_failures,
            tls_handshake_failures,
            tenant_requests,
            tenant_pushed_bytes,
            cache_requests,
            cache_evictions,
            cache_bytes,
            cache_entries,
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }

    /// Counts an answered request and observes its time to the response head.
    pub fn record_request(&self, handler: &str, code: u16, face: &'static str, seconds: f64) {
        self.meters.record(
            (&self.requests, &self.request_duration),
            handler,
            code,
            face,
            seconds,
        );
    }

    /// Observes an upstream's time to its response head.
    pub fn record_upstream(&self, handler: &str, seconds: f64) {
        self.meters
            .record_upstream(&self.upstream_duration, handler, seconds);
    }

    pub fn upstream_error(&self, reason: &str) {
        self.upstream_errors
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_every_family() {
        let m = Metrics::new();
        m.requests
            .get_or_create(&RequestLabels {
                handler: "/api/v1/query".into(),
                code: "200".into(),
                face: "metric".into(),
            })
            .inc();
        m.upstream_error("unreachable");
        m.request_duration
            .get_or_create(&HandlerLabels {
                handler: "/api/v1/query".into(),
                code: "200".into(),
            })
            .observe(0.002);
        let text = m.encode().unwrap();
        for needle in [
            "janus_http_requests_total{handler=\"/api/v1/query\",code=\"200\",face=\"metric\"} 1",
            "# TYPE janus_http_request_duration_seconds histogram",
            "janus_http_requests_in_flight 0",
            "janus_query_queue_length 0",
            "janus_upstream_errors_total{reason=\"unreachable\"} 1",
            "janus_upstream_up 0",
            "janus_build_info{version=",
            "# HELP janus_http_requests_in_flight Requests being answered now.\n",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
    }
}
