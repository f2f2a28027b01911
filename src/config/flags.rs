//! The command line: Prometheus-style flags (`--storage.path=…`), each one optional so that
//! the YAML file and the defaults can fill what is not given.

use std::path::PathBuf;

use clap::Parser;

use super::{LogAnswerFormat, LogFormat, LogLevel};
use crate::logstore::files::writer::FsyncMode;

/// Command-line flags. None has a clap default: an absent flag must not hide the file's value.
#[derive(Debug, Default, Parser)]
#[command(
    name = "janus",
    version,
    about = "One PromQL endpoint for metrics and logs: Prometheus HTTP API gateway with an embedded log store"
)]
pub struct Flags {
    /// YAML configuration file; flags override its values.
    #[arg(long = "config.file", value_name = "PATH")]
    pub config_file: Option<PathBuf>,
    /// Address to listen on [default: 0.0.0.0:9099].
    #[arg(long = "web.listen-address", value_name = "ADDR")]
    pub listen_address: Option<String>,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT [default: 30s].
    #[arg(long = "web.shutdown-timeout", value_name = "DURATION")]
    pub shutdown_timeout: Option<String>,
    /// Upstream Prometheus-compatible server for metric queries [default: http://127.0.0.1:9090].
    #[arg(long = "upstream.url", value_name = "URL")]
    pub upstream_url: Option<String>,
    /// Root of the log store [default: ./data].
    #[arg(long = "storage.path", value_name = "PATH")]
    pub storage_path: Option<PathBuf>,
    /// Keep logs in ClickHouse instead of files: its HTTP interface, e.g. http://clickhouse:8123
    /// (database, user, password_file, tls_config, cluster under storage.clickhouse in the file).
    #[arg(long = "storage.clickhouse.url", value_name = "URL")]
    pub storage_clickhouse_url: Option<String>,
    /// Longest time a query may take [default: 2m].
    #[arg(long = "query.timeout", value_name = "DURATION")]
    pub query_timeout: Option<String>,
    /// Queries answered at once; more wait in a queue [default: 20].
    #[arg(long = "query.max-concurrency", value_name = "N")]
    pub query_max_concurrency: Option<String>,
    /// Window of an instant log query without a [range] [default: 1m].
    #[arg(long = "query.log-lookback", value_name = "DURATION")]
    pub query_log_lookback: Option<String>,
    /// Lines a log query returns unless its `limit` says otherwise [default: 1000].
    #[arg(long = "query.log-limit", value_name = "N")]
    pub query_log_limit: Option<String>,
    /// Shape of log answers without a `format` parameter [default: lethe].
    #[arg(long = "query.log-format", value_name = "FORMAT", value_enum)]
    pub query_log_format: Option<LogAnswerFormat>,
    /// Largest push request body, after decompression, e.g. 64MB [default: 64MB].
    #[arg(long = "ingest.max-body-size", value_name = "SIZE")]
    pub ingest_max_body_size: Option<String>,
    /// Most entries one push request may hold [default: 1000000].
    #[arg(long = "ingest.max-entries", value_name = "N")]
    pub ingest_max_entries: Option<String>,
    /// Memory that pushes in flight may hold together (body, entries, rendered lines); more
    /// wait (up to 30s), then 503 [default: 512MB].
    #[arg(long = "ingest.max-bytes-in-flight", value_name = "SIZE")]
    pub ingest_max_bytes_in_flight: Option<String>,
    /// How far ahead of now a pushed entry's timestamp may be (Loki's creation_grace_period);
    /// later ones are refused with 400 [default: 10m].
    #[arg(long = "ingest.creation-grace-period", value_name = "DURATION")]
    pub ingest_creation_grace_period: Option<String>,
    /// Most open client connections; more are closed at once [default: 512].
    #[arg(long = "web.max-connections", value_name = "N")]
    pub web_max_connections: Option<String>,
    /// Longest time a client may take to send a request's head [default: 10s].
    #[arg(long = "web.read-header-timeout", value_name = "DURATION")]
    pub web_read_header_timeout: Option<String>,
    /// A connection with no request in flight is closed after this long [default: 2m].
    #[arg(long = "web.idle-timeout", value_name = "DURATION")]
    pub web_idle_timeout: Option<String>,
    /// Prometheus's web configuration file: TLS, basic-auth users, response headers; read
    /// again when it or the files it names change.
    #[arg(long = "web.config.file", value_name = "PATH")]
    pub web_config_file: Option<PathBuf>,
    /// Tenants: who a request is (user, token, a proxy's header) and which namespaces it may
    /// read and push into; without it every client sees everything.
    #[arg(long = "auth.tenants-file", value_name = "PATH")]
    pub tenants_file: Option<PathBuf>,
    /// When pushed lines are forced to disk [default: batch].
    #[arg(long = "storage.fsync", value_name = "MODE", value_enum)]
    pub storage_fsync: Option<FsyncMode>,
    /// Longest time between syncs with --storage.fsync=batch [default: 1s].
    #[arg(long = "storage.fsync-interval", value_name = "DURATION")]
    pub storage_fsync_interval: Option<String>,
    /// Most hour files kept open for appending; never more than a quarter of the open files
    /// limit [default: 1024].
    #[arg(long = "storage.max-open-files", value_name = "N")]
    pub storage_max_open_files: Option<String>,
    /// Hour files older than this are deleted; 0 keeps them (Lethe's choice is 15d) [default: 0].
    #[arg(long = "retention.time", value_name = "DURATION")]
    pub retention_time: Option<String>,
    /// Oldest hour files are deleted while the store is larger, e.g. 100GB; 0 is off [default: 0].
    #[arg(long = "retention.size", value_name = "SIZE")]
    pub retention_size: Option<String>,
    /// How often retention runs [default: 20s].
    #[arg(long = "retention.interval", value_name = "DURATION")]
    pub retention_interval: Option<String>,
    /// Most samples an expression over logs may hold in memory at once [default: 50000000].
    #[arg(long = "query.max-samples", value_name = "N")]
    pub query_max_samples: Option<String>,
    /// Most log streams one log metric may select [default: 10000].
    #[arg(long = "query.max-series", value_name = "N")]
    pub query_max_series: Option<String>,
    /// Range queries are cut at multiples of this for the results cache [default: 24h].
    #[arg(long = "query.split-interval", value_name = "DURATION")]
    pub query_split_interval: Option<String>,
    /// Points newer than this are never cached (they may still change) [default: 10m].
    #[arg(long = "query.cache-max-freshness", value_name = "DURATION")]
    pub query_cache_max_freshness: Option<String>,
    /// Memory the results cache may hold, e.g. 256MB; 0 disables it [default: 256MB].
    #[arg(long = "query.cache-size", value_name = "SIZE")]
    pub query_cache_size: Option<String>,
    /// How long a cached metric answer is kept [default: 24h].
    #[arg(long = "query.cache-ttl", value_name = "DURATION")]
    pub query_cache_ttl: Option<String>,
    /// Rule file (Prometheus's format, or Venti's AlertRuleFile); a glob; repeatable. Read
    /// again on SIGHUP and POST /-/reload.
    #[arg(long = "rules.file", value_name = "PATH")]
    pub rules_files: Vec<String>,
    /// How often rule groups without their own interval are evaluated [default: 1m].
    #[arg(long = "rules.evaluation-interval", value_name = "DURATION")]
    pub rules_evaluation_interval: Option<String>,
    /// Alertmanager to send alerts to, e.g. http://alertmanager:9093; repeatable.
    #[arg(long = "alertmanager.url", value_name = "URL")]
    pub alertmanager_urls: Vec<String>,
    /// Prometheus remote-write endpoint for recorded series and ALERTS, e.g.
    /// http://prometheus:9090/api/v1/write.
    #[arg(long = "rules.remote-write.url", value_name = "URL")]
    pub rules_remote_write_url: Option<String>,
    /// The URL users reach Janus at (alerts link to its query page) [default: http://<hostname>:<port>].
    #[arg(long = "web.external-url", value_name = "URL")]
    pub web_external_url: Option<String>,
    /// Log level [default: info].
    #[arg(long = "log.level", value_name = "LEVEL", value_enum)]
    pub log_level: Option<LogLevel>,
    /// Log format [default: logfmt].
    #[arg(long = "log.format", value_name = "FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Without a command, Janus serves.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What `janus <command>` does instead of serving.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Load a file store (a Lethe or Janus tree) into the configured log store
    /// (--storage.clickhouse.url). Resumable: the same command again goes on where it stopped.
    Import {
        /// Root of the tree to load (the directory holding pod/ and node/).
        #[arg(long = "from", value_name = "PATH")]
        from: PathBuf,
        /// Where the import records how far it got.
        #[arg(
            long = "progress-file",
            value_name = "PATH",
            default_value = "janus-import.progress"
        )]
        progress_file: PathBuf,
    },
    /// Check files without serving (exit 1 when a problem is found).
    Check {
        #[command(subcommand)]
        what: CheckCommand,
    },
    /// Run unit tests offline.
    Test {
        #[command(subcommand)]
        what: TestCommand,
    },
}

/// What `janus check` checks.
#[derive(Debug, clap::Subcommand)]
pub enum CheckCommand {
    /// The configuration these flags and `--config.file` make, as the server would load it
    /// (files it names included: web config, CA files, rule files), without serving: a
    /// deployment's arguments checked before they roll out. Exit 1 on any problem.
    Config,
    /// Rule files, as `promtool check rules` does: every problem with its file, line, group and
    /// rule; expressions may read logs, metrics or both.
    Rules {
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
    },
}

/// What `janus test` tests.
#[derive(Debug, clap::Subcommand)]
pub enum TestCommand {
    /// Rule unit tests in promtool's format, with `input_logs` for log lines; no upstream needed.
    Rules {
        #[arg(value_name = "FILE", required = true)]
        files: Vec<PathBuf>,
    },
}
