//! Configuration: Prometheus-style flags over an optional YAML file over built-in defaults.
//!
//! Flags win over the file so that one file can serve many instances with a flag or two changed.
//! Every refusal names the setting it is about, because an operator reading a crash-looping pod's
//! log has one line to go on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Deserialize;

use crate::ingest::mapping::LabelMapping;
use crate::logstore::files::retention::parse_size;
use crate::logstore::files::writer::FsyncMode;
use crate::time::duration;

/// A setting that could not be accepted, named as the operator wrote it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{setting}: {message}")]
    Invalid { setting: String, message: String },
    #[error("--config.file {path}: {message}")]
    File { path: String, message: String },
    /// `--web.config.file` or `--auth.tenants-file`.
    #[error(transparent)]
    Settings(#[from] crate::auth::settings_file::SettingsFileError),
}

fn invalid(setting: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        setting: setting.to_string(),
        message: message.into(),
    }
}

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
    /// Log level [default: info].
    #[arg(long = "log.level", value_name = "LEVEL", value_enum)]
    pub log_level: Option<LogLevel>,
    /// Log format [default: logfmt].
    #[arg(long = "log.format", value_name = "FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
}

/// The YAML file. Unknown keys are errors: a misspelt key silently ignored is a setting lost.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileConfig {
    pub web: WebFile,
    pub auth: AuthFile,
    pub upstream: UpstreamFile,
    pub storage: StorageFile,
    pub query: QueryFile,
    pub ingest: IngestFile,
    pub retention: RetentionFile,
    pub log: LogFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestFile {
    pub max_body_size: Option<String>,
    pub max_entries: Option<u64>,
    pub max_bytes_in_flight: Option<String>,
    pub creation_grace_period: Option<String>,
    /// Which pushed label names feed namespace, pod, container, node and process.
    pub labels: Option<LabelMapping>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionFile {
    pub time: Option<String>,
    pub size: Option<String>,
    pub interval: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebFile {
    pub listen_address: Option<String>,
    pub shutdown_timeout: Option<String>,
    pub max_connections: Option<u64>,
    pub read_header_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub config_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthFile {
    pub tenants_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamFile {
    pub url: Option<String>,
    pub basic_auth: Option<BasicAuthFile>,
    pub bearer_token_file: Option<PathBuf>,
    pub tls_config: Option<TlsFile>,
    pub forward_headers: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthFile {
    pub username: String,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsFile {
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageFile {
    pub path: Option<PathBuf>,
    pub fsync: Option<String>,
    pub fsync_interval: Option<String>,
    pub max_open_files: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryFile {
    pub timeout: Option<String>,
    pub max_concurrency: Option<u32>,
    pub max_samples: Option<u64>,
    pub max_series: Option<u64>,
    pub log_lookback: Option<String>,
    pub log_limit: Option<u32>,
    pub log_format: Option<String>,
    pub split_interval: Option<String>,
    pub cache_max_freshness: Option<String>,
    pub cache_size: Option<String>,
    pub cache_ttl: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogFile {
    pub level: Option<String>,
    pub format: Option<String>,
}

/// The shape of log answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogAnswerFormat {
    /// Lethe's `resultType: "logs"` (what Venti reads).
    Lethe,
    /// Loki's `resultType: "streams"`.
    Streams,
}

/// The largest `limit` a log query may ask for: the answer is held in memory.
pub const MAX_LOG_LIMIT: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Logfmt,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn level(self) -> tracing::Level {
        match self {
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Error => tracing::Level::ERROR,
        }
    }
}

/// One of `T`'s names, from the flag (already checked by clap), else from the file, else the
/// default; a file value that is none of them is refused with the list.
fn choice<T: ValueEnum>(
    setting: &str,
    flag: Option<T>,
    file: Option<String>,
    default: T,
) -> Result<T, ConfigError> {
    if let Some(value) = flag {
        return Ok(value);
    }
    let Some(text) = file else {
        return Ok(default);
    };
    T::from_str(&text, false).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|p| p.get_name().to_string())
            .collect();
        invalid(
            setting,
            format!("{text:?} is not one of {}", names.join(", ")),
        )
    })
}

/// Credentials sent with every upstream request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamAuth {
    None,
    Basic { username: String, password: String },
    Bearer(String),
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen_address: SocketAddr,
    pub shutdown_timeout: Duration,
    pub upstream_url: reqwest::Url,
    pub upstream_auth: UpstreamAuth,
    pub upstream_ca_pem: Option<Vec<u8>>,
    pub upstream_insecure_skip_verify: bool,
    pub forward_headers: Vec<http::HeaderName>,
    pub storage_path: PathBuf,
    pub query_timeout: Duration,
    pub query_max_concurrency: usize,
    pub query_max_samples: usize,
    pub query_max_series: usize,
    pub query_log_lookback: Duration,
    pub query_log_limit: usize,
    pub query_log_format: LogAnswerFormat,
    /// The results cache's settings (`max_bytes` 0: disabled).
    pub results_cache: crate::results_cache::Settings,
    pub ingest_max_body_size: usize,
    pub ingest_max_entries: usize,
    pub ingest_max_bytes_in_flight: usize,
    /// Pushed timestamps may be at most this far ahead of now.
    pub ingest_creation_grace_period: Duration,
    pub web_max_connections: usize,
    pub web_read_header_timeout: Duration,
    pub web_idle_timeout: Duration,
    /// `--web.config.file`, and what it held at start-up (empty without one).
    pub web_config_file: Option<PathBuf>,
    pub web: crate::auth::web_config::WebConfig,
    /// `--auth.tenants-file`, read at start-up; `None`: no tenants, every client sees all.
    pub tenants: Option<std::sync::Arc<crate::auth::tenants::Tenants>>,
    pub ingest_labels: LabelMapping,
    pub storage_fsync: FsyncMode,
    pub storage_fsync_interval: Duration,
    /// Hour files kept open for appending at most (before the open files limit's share).
    pub storage_max_open_files: usize,
    pub retention_time: Duration,
    pub retention_size: u64,
    pub retention_interval: Duration,
    /// Testing aid, not a flag: evaluate metric-only queries in Janus too, pushing down only the
    /// smallest sub-expressions (selectors and range functions over them), so the evaluator can be
    /// checked against a real Prometheus.
    pub evaluate_metric_queries: bool,
    pub log_level: tracing::Level,
    pub log_format: LogFormat,
}

impl Config {
    /// The push budget in KiB, at least what one full-size push costs, so that any push the
    /// body limit accepts can run alone.
    pub fn ingest_budget_kib(&self) -> u32 {
        let one_push = self.ingest_max_body_size.saturating_mul(4);
        let bytes = self.ingest_max_bytes_in_flight.max(one_push);
        u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX >> 4)
    }

    /// Built-in defaults, as documented in the README.
    pub fn defaults() -> Self {
        Config::from_sources(Flags::default(), FileConfig::default())
            .expect("built-in defaults are valid")
    }

    /// Reads the file named by the flags (if any) and merges everything.
    pub fn load(flags: Flags) -> Result<Self, ConfigError> {
        let file = match &flags.config_file {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Config::from_sources(flags, file)
    }

    pub fn from_sources(mut flags: Flags, file: FileConfig) -> Result<Self, ConfigError> {
        let query = query_settings(&mut flags, file.query)?;
        let retention = retention_settings(&mut flags, file.retention)?;
        let listen = flags
            .listen_address
            .or(file.web.listen_address)
            .unwrap_or_else(|| "0.0.0.0:9099".into());
        let listen_address = parse_listen(&listen)
            .ok_or_else(|| invalid("web.listen-address", format!("{listen:?} is not host:port")))?;

        let shutdown_timeout = parse_duration_setting(
            "web.shutdown-timeout",
            flags.shutdown_timeout.or(file.web.shutdown_timeout),
            "30s",
        )?;

        let upstream = upstream_settings(flags.upstream_url, file.upstream)?;

        let storage_path = flags
            .storage_path
            .or(file.storage.path)
            .unwrap_or_else(|| PathBuf::from("./data"));
        if storage_path.as_os_str().is_empty() {
            return Err(invalid("storage.path", "must not be empty"));
        }

        let ingest_max_body_size = size_setting(
            "ingest.max-body-size",
            flags.ingest_max_body_size.or(file.ingest.max_body_size),
            "64MB",
        )?;
        let ingest_max_entries = count_setting(
            "ingest.max-entries",
            flags.ingest_max_entries,
            file.ingest.max_entries,
            1_000_000,
            1 << 32,
        )? as usize;
        let ingest_max_bytes_in_flight = size_setting(
            "ingest.max-bytes-in-flight",
            flags
                .ingest_max_bytes_in_flight
                .or(file.ingest.max_bytes_in_flight),
            "512MB",
        )?;
        let ingest_creation_grace_period = parse_duration_setting(
            "ingest.creation-grace-period",
            flags
                .ingest_creation_grace_period
                .or(file.ingest.creation_grace_period),
            "10m",
        )?;
        let web_max_connections = count_setting(
            "web.max-connections",
            flags.web_max_connections,
            file.web.max_connections,
            512,
            1_000_000,
        )? as usize;
        let web_read_header_timeout = parse_duration_setting(
            "web.read-header-timeout",
            flags
                .web_read_header_timeout
                .or(file.web.read_header_timeout),
            "10s",
        )?;
        let web_idle_timeout = parse_duration_setting(
            "web.idle-timeout",
            flags.web_idle_timeout.or(file.web.idle_timeout),
            "2m",
        )?;
        for (setting, value) in [
            ("web.read-header-timeout", web_read_header_timeout),
            ("web.idle-timeout", web_idle_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(setting, "must be greater than 0"));
            }
        }
        let web_config_file = flags.web_config_file.or(file.web.config_file);
        let web = match &web_config_file {
            Some(path) => crate::auth::web_config::WebConfig::load(path)?,
            None => crate::auth::web_config::WebConfig::default(),
        };
        let tenants = match flags.tenants_file.or(file.auth.tenants_file) {
            Some(path) => Some(std::sync::Arc::new(crate::auth::tenants::Tenants::load(
                &path,
            )?)),
            None => None,
        };
        let storage_fsync = choice(
            "storage.fsync",
            flags.storage_fsync,
            file.storage.fsync,
            FsyncMode::Batch,
        )?;
        let storage_fsync_interval = parse_duration_setting(
            "storage.fsync-interval",
            flags.storage_fsync_interval.or(file.storage.fsync_interval),
            "1s",
        )?;
        if storage_fsync_interval.is_zero() {
            return Err(invalid("storage.fsync-interval", "must be greater than 0"));
        }
        let storage_max_open_files = count_setting(
            "storage.max-open-files",
            flags.storage_max_open_files,
            file.storage.max_open_files,
            crate::logstore::files::writer::DEFAULT_MAX_OPEN_FILES as u64,
            1_000_000,
        )? as usize;
        let log_level =
            choice("log.level", flags.log_level, file.log.level, LogLevel::Info)?.level();
        let log_format = choice(
            "log.format",
            flags.log_format,
            file.log.format,
            LogFormat::Logfmt,
        )?;

        Ok(Config {
            listen_address,
            shutdown_timeout,
            upstream_url: upstream.url,
            upstream_auth: upstream.auth,
            upstream_ca_pem: upstream.ca_pem,
            upstream_insecure_skip_verify: upstream.insecure_skip_verify,
            forward_headers: upstream.forward_headers,
            storage_path,
            query_timeout: query.query_timeout,
            query_max_concurrency: usize::try_from(query.query_max_concurrency).unwrap_or(1),
            query_max_samples: usize::try_from(query.query_max_samples).unwrap_or(usize::MAX),
            query_max_series: usize::try_from(query.query_max_series).unwrap_or(usize::MAX),
            query_log_lookback: query.query_log_lookback,
            query_log_limit: query.query_log_limit,
            query_log_format: query.query_log_format,
            results_cache: query.results_cache,
            ingest_max_body_size,
            ingest_max_entries,
            ingest_max_bytes_in_flight,
            ingest_creation_grace_period,
            web_max_connections,
            web_read_header_timeout,
            web_idle_timeout,
            web_config_file,
            web,
            tenants,
            ingest_labels: file.ingest.labels.unwrap_or_default(),
            storage_fsync,
            storage_fsync_interval,
            storage_max_open_files,
            retention_time: retention.retention_time,
            retention_size: retention.retention_size,
            retention_interval: retention.retention_interval,
            evaluate_metric_queries: false,
            log_level,
            log_format,
        })
    }
}

/// The upstream's settings, checked together (auth and TLS files are read here).
struct UpstreamSettings {
    url: reqwest::Url,
    auth: UpstreamAuth,
    ca_pem: Option<Vec<u8>>,
    insecure_skip_verify: bool,
    forward_headers: Vec<http::HeaderName>,
}

fn upstream_settings(
    flag_url: Option<String>,
    file: UpstreamFile,
) -> Result<UpstreamSettings, ConfigError> {
    let url_text = flag_url
        .or(file.url)
        .unwrap_or_else(|| "http://127.0.0.1:9090".into());
    let upstream_url = reqwest::Url::parse(&url_text)
        .map_err(|e| invalid("upstream.url", format!("{url_text:?}: {e}")))?;
    if !matches!(upstream_url.scheme(), "http" | "https") {
        return Err(invalid(
            "upstream.url",
            format!("{url_text:?}: scheme must be http or https"),
        ));
    }
    if upstream_url.query().is_some() || upstream_url.fragment().is_some() {
        return Err(invalid(
            "upstream.url",
            format!("{url_text:?}: must not have a query string or fragment"),
        ));
    }

    let upstream_auth = match (file.basic_auth, file.bearer_token_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "upstream.basic_auth",
                "cannot be combined with upstream.bearer_token_file",
            ))
        }
        (Some(basic), None) => {
            let password = match (basic.password, basic.password_file) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        "upstream.basic_auth.password",
                        "set password or password_file, not both",
                    ))
                }
                (Some(p), None) => p,
                (None, Some(path)) => read_secret("upstream.basic_auth.password_file", &path)?,
                (None, None) => String::new(),
            };
            UpstreamAuth::Basic {
                username: basic.username,
                password,
            }
        }
        (None, Some(path)) => {
            UpstreamAuth::Bearer(read_secret("upstream.bearer_token_file", &path)?)
        }
        (None, None) => UpstreamAuth::None,
    };

    let tls = file.tls_config.unwrap_or_default();
    let upstream_ca_pem = match tls.ca_file {
        Some(path) => {
            let pem = std::fs::read(&path).map_err(|e| {
                invalid(
                    "upstream.tls_config.ca_file",
                    format!("{}: {e}", path.display()),
                )
            })?;
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                invalid(
                    "upstream.tls_config.ca_file",
                    format!("{}: {e}", path.display()),
                )
            })?;
            Some(pem)
        }
        None => None,
    };

    let forward_headers = file
        .forward_headers
        .unwrap_or_else(|| vec!["X-Scope-OrgID".to_string()])
        .iter()
        .map(|name| {
            http::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                invalid(
                    "upstream.forward_headers",
                    format!("{name:?} is not a valid header name"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(UpstreamSettings {
        url: upstream_url,
        auth: upstream_auth,
        ca_pem: upstream_ca_pem,
        insecure_skip_verify: tls.insecure_skip_verify,
        forward_headers,
    })
}

/// The query settings: time, concurrency and memory a query may take, and log answer defaults.
struct QuerySettings {
    query_timeout: Duration,
    query_max_concurrency: u64,
    query_max_samples: u64,
    query_max_series: u64,
    query_log_lookback: Duration,
    query_log_limit: usize,
    query_log_format: LogAnswerFormat,
    results_cache: crate::results_cache::Settings,
}

fn query_settings(flags: &mut Flags, file: QueryFile) -> Result<QuerySettings, ConfigError> {
    let query_timeout = parse_duration_setting(
        "query.timeout",
        flags.query_timeout.take().or(file.timeout),
        "2m",
    )?;
    if query_timeout.is_zero() {
        return Err(invalid("query.timeout", "must be greater than 0"));
    }

    // A bound the query semaphore can hold.
    let query_max_concurrency = count_setting(
        "query.max-concurrency",
        flags.query_max_concurrency.take(),
        file.max_concurrency.map(u64::from),
        20,
        1_000_000,
    )?;

    let query_max_samples = count_setting(
        "query.max-samples",
        flags.query_max_samples.take(),
        file.max_samples,
        50_000_000,
        u64::MAX,
    )?;
    let query_max_series = count_setting(
        "query.max-series",
        flags.query_max_series.take(),
        file.max_series,
        10_000,
        u64::MAX,
    )?;
    let query_log_lookback = parse_duration_setting(
        "query.log-lookback",
        flags.query_log_lookback.take().or(file.log_lookback),
        "1m",
    )?;
    if query_log_lookback.is_zero() {
        return Err(invalid("query.log-lookback", "must be greater than 0"));
    }
    let query_log_limit = count_setting(
        "query.log-limit",
        flags.query_log_limit.take(),
        file.log_limit.map(u64::from),
        1000,
        MAX_LOG_LIMIT as u64,
    )? as usize;
    let query_log_format = choice(
        "query.log-format",
        flags.query_log_format.take(),
        file.log_format,
        LogAnswerFormat::Lethe,
    )?;
    let split_interval = parse_duration_setting(
        "query.split-interval",
        flags.query_split_interval.take().or(file.split_interval),
        "24h",
    )?;
    if split_interval < Duration::from_millis(1) {
        return Err(invalid("query.split-interval", "must be at least 1ms"));
    }
    let max_freshness = parse_duration_setting(
        "query.cache-max-freshness",
        flags
            .query_cache_max_freshness
            .take()
            .or(file.cache_max_freshness),
        "10m",
    )?;
    // 0 is a size here: it turns the cache off.
    let cache_size_text = flags
        .query_cache_size
        .take()
        .or(file.cache_size)
        .unwrap_or_else(|| "256MB".into());
    let cache_size = parse_size(&cache_size_text).ok_or_else(|| {
        invalid(
            "query.cache-size",
            format!("{cache_size_text:?} is not a size like 256MB (0 turns the cache off)"),
        )
    })?;
    let cache_ttl = parse_duration_setting(
        "query.cache-ttl",
        flags.query_cache_ttl.take().or(file.cache_ttl),
        "24h",
    )?;
    if cache_ttl.is_zero() {
        return Err(invalid("query.cache-ttl", "must be greater than 0"));
    }
    let results_cache = crate::results_cache::Settings {
        split_interval_ms: i64::try_from(split_interval.as_millis()).unwrap_or(i64::MAX),
        max_freshness,
        max_bytes: cache_size,
        ttl: cache_ttl,
    };
    Ok(QuerySettings {
        query_timeout,
        query_max_concurrency,
        query_max_samples,
        query_max_series,
        query_log_lookback,
        query_log_limit,
        query_log_format,
        results_cache,
    })
}

/// Retention: how old and how large the store may grow.
struct RetentionSettings {
    retention_time: Duration,
    retention_size: u64,
    retention_interval: Duration,
}

fn retention_settings(
    flags: &mut Flags,
    file: RetentionFile,
) -> Result<RetentionSettings, ConfigError> {
    let retention_time = parse_duration_setting(
        "retention.time",
        flags.retention_time.take().or(file.time),
        "0",
    )?;
    let retention_size_text = flags
        .retention_size
        .take()
        .or(file.size)
        .unwrap_or_else(|| "0".into());
    let retention_size = parse_size(&retention_size_text).ok_or_else(|| {
        invalid(
            "retention.size",
            format!("{retention_size_text:?} is not a size like 100GB (or 0)"),
        )
    })?;
    let retention_interval = parse_duration_setting(
        "retention.interval",
        flags.retention_interval.take().or(file.interval),
        "20s",
    )?;
    if retention_interval.is_zero() {
        return Err(invalid("retention.interval", "must be greater than 0"));
    }
    Ok(RetentionSettings {
        retention_time,
        retention_size,
        retention_interval,
    })
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let file_error = |message: String| ConfigError::File {
        path: path.display().to_string(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    // serde_norway's messages name the key path and line, which is what the operator needs.
    serde_norway::from_str(&text).map_err(|e| file_error(e.to_string().replace('\n', " ")))
}

fn read_secret(setting: &str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| invalid(setting, format!("{}: {e}", path.display())))
}

fn parse_listen(text: &str) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse() {
        return Some(addr);
    }
    // Prometheus accepts ":9099" for every interface.
    text.strip_prefix(':')
        .and_then(|port| port.parse::<u16>().ok())
        .map(|port| SocketAddr::from(([0, 0, 0, 0], port)))
}

/// A whole-number setting from the flag (text) or the file, within `1..=max`.
fn count_setting(
    setting: &str,
    flag: Option<String>,
    file: Option<u64>,
    default: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let value = match flag {
        Some(text) => text
            .parse::<u64>()
            .map_err(|_| invalid(setting, format!("{text:?} is not a whole number")))?,
        None => file.unwrap_or(default),
    };
    if value == 0 {
        return Err(invalid(setting, "must be at least 1"));
    }
    if value > max {
        return Err(invalid(setting, format!("must be at most {max}")));
    }
    Ok(value)
}

/// A positive size setting (`64MB`), or its default.
fn size_setting(setting: &str, value: Option<String>, default: &str) -> Result<usize, ConfigError> {
    let text = value.unwrap_or_else(|| default.to_string());
    parse_size(&text)
        .filter(|&n| n > 0)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| invalid(setting, format!("{text:?} is not a size like {default}")))
}

fn parse_duration_setting(
    setting: &str,
    value: Option<String>,
    default: &str,
) -> Result<Duration, ConfigError> {
    let text = value.unwrap_or_else(|| default.to_string());
    duration::parse(&text).map_err(|e| invalid(setting, format!("{text:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        let mut argv = vec!["janus"];
        argv.extend_from_slice(args);
        Flags::try_parse_from(argv).unwrap()
    }

    fn file(yaml: &str) -> FileConfig {
        serde_norway::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_match_the_readme() {
        let c = Config::defaults();
        assert_eq!(c.listen_address.to_string(), "0.0.0.0:9099");
        assert_eq!(c.upstream_url.as_str(), "http://127.0.0.1:9090/");
        assert_eq!(c.storage_path, PathBuf::from("./data"));
        assert_eq!(c.query_timeout, Duration::from_secs(120));
        assert_eq!(c.query_max_concurrency, 20);
        assert_eq!(
            c.forward_headers,
            vec![http::HeaderName::from_static("x-scope-orgid")]
        );
        assert_eq!(c.log_format, LogFormat::Logfmt);
        assert_eq!(c.upstream_auth, UpstreamAuth::None);
    }

    #[test]
    fn flags_override_the_file() {
        let f = file(
            "upstream:\n  url: http://file:9090\nquery:\n  timeout: 30s\n  max_concurrency: 4\n",
        );
        let c = Config::from_sources(flags(&["--upstream.url", "http://flag:9090"]), f).unwrap();
        assert_eq!(c.upstream_url.host_str(), Some("flag"));
        assert_eq!(c.query_timeout, Duration::from_secs(30));
        assert_eq!(c.query_max_concurrency, 4);
    }

    #[test]
    fn errors_name_the_setting() {
        let cases: [(&[&str], &str); 6] = [
            (&["--query.timeout", "2 minutes"], "query.timeout: "),
            (
                &["--query.timeout", "0"],
                "query.timeout: must be greater than 0",
            ),
            (&["--upstream.url", "ftp://x"], "upstream.url: "),
            (&["--upstream.url", "not a url"], "upstream.url: "),
            (&["--web.listen-address", "nowhere"], "web.listen-address: "),
            (
                &["--query.max-concurrency", "0"],
                "query.max-concurrency: must be at least 1",
            ),
        ];
        for (args, prefix) in cases {
            let err = Config::from_sources(flags(args), FileConfig::default()).unwrap_err();
            assert!(err.to_string().starts_with(prefix), "{args:?}: {err}");
        }
        // Enum-valued flags are refused by clap itself, naming the flag and the choices.
        let err = Flags::try_parse_from(["janus", "--log.format", "xml"]).unwrap_err();
        assert!(err.to_string().contains("--log.format"), "{err}");
        assert!(err.to_string().contains("logfmt, json"), "{err}");
        // In the file, the same words as every other setting.
        let err =
            Config::from_sources(Flags::default(), file("log:\n  format: xml\n")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "log.format: \"xml\" is not one of logfmt, json"
        );
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = std::env::temp_dir().join(format!("janus-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.yaml");
        std::fs::write(&path, "upstream:\n  ulr: http://x\n").unwrap();
        let err = Config::load(Flags {
            config_file: Some(path.clone()),
            ..Flags::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("ulr"), "{err}");
        std::fs::write(&path, "upstream:\n  forward_headers: [\"bad header\"]\n").unwrap();
        let err = Config::load(Flags {
            config_file: Some(path),
            ..Flags::default()
        })
        .unwrap_err();
        assert!(
            err.to_string().starts_with("upstream.forward_headers"),
            "{err}"
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn auth_from_files() {
        let dir = std::env::temp_dir().join(format!("janus-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, "s3cret\n").unwrap();
        let f = file(&format!(
            "upstream:\n  bearer_token_file: {}\n",
            token.display()
        ));
        let c = Config::from_sources(Flags::default(), f).unwrap();
        assert_eq!(c.upstream_auth, UpstreamAuth::Bearer("s3cret".into()));
        let f = file("upstream:\n  basic_auth: {username: u, password: p}\n");
        let c = Config::from_sources(Flags::default(), f).unwrap();
        assert_eq!(
            c.upstream_auth,
            UpstreamAuth::Basic {
                username: "u".into(),
                password: "p".into()
            }
        );
        let f = file("upstream:\n  bearer_token_file: /nonexistent/token\n");
        let err = Config::from_sources(Flags::default(), f).unwrap_err();
        assert!(
            err.to_string().starts_with("upstream.bearer_token_file: "),
            "{err}"
        );
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn the_example_file_loads_and_says_the_defaults() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("janus.example.yml");
        let loaded = Config::load(Flags {
            config_file: Some(path),
            ..Flags::default()
        })
        .expect("janus.example.yml is a valid configuration");
        let defaults = Config::defaults();
        assert_eq!(format!("{loaded:?}"), format!("{defaults:?}"));
    }
}
