//! Configuration: Prometheus-style flags over an optional YAML file over built-in defaults.
//!
//! Flags win over the file so that one file can serve many instances with a flag or two changed.
//! Every refusal names the setting it is about, because an operator reading a crash-looping pod's
//! log has one line to go on.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::ValueEnum;

use crate::ingest::mapping::LabelMapping;
use crate::logstore::files::writer::FsyncMode;

mod file;
mod flags;
mod settings;

pub use file::*;
pub use flags::{CheckCommand, Command, Flags, TestCommand};
use settings::*;

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
    /// The ClickHouse backend (`--storage.clickhouse.url`); `None`: the file store.
    pub storage_clickhouse: Option<crate::logstore::clickhouse::Settings>,
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
    /// The ruler (no rule files: no rules run).
    pub rules: crate::rules::Settings,
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
            .take()
            .or(file.web.listen_address)
            .unwrap_or_else(|| "0.0.0.0:9099".into());
        let listen_address = parse_listen(&listen)
            .ok_or_else(|| invalid("web.listen-address", format!("{listen:?} is not host:port")))?;
        let rules = rules_settings(
            &mut flags,
            file.rules,
            file.web.external_url,
            &listen_address,
        )?;

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
        let storage_clickhouse =
            clickhouse_settings(flags.storage_clickhouse_url, file.storage.clickhouse)?;

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
            storage_clickhouse,
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
            rules,
            log_level,
            log_format,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

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
