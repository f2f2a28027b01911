//! Settings read and checked from flags, file and defaults together: each refusal names the
//! setting. `Config::load` assembles their results.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use super::file::{ClickHouseFile, QueryFile, RetentionFile, RulesFile, UpstreamFile};
use super::flags::Flags;
use super::{choice, invalid, ConfigError, LogAnswerFormat, UpstreamAuth, MAX_LOG_LIMIT};
use crate::logstore::files::retention::parse_size;
use crate::time::duration;

/// The upstream's settings, checked together (auth and TLS files are read here).
pub(super) struct UpstreamSettings {
    pub(super) url: reqwest::Url,
    pub(super) auth: UpstreamAuth,
    pub(super) ca_pem: Option<Vec<u8>>,
    pub(super) insecure_skip_verify: bool,
    pub(super) forward_headers: Vec<http::HeaderName>,
}

pub(super) fn upstream_settings(
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
pub(super) struct QuerySettings {
    pub(super) query_timeout: Duration,
    pub(super) query_max_concurrency: u64,
    pub(super) query_max_samples: u64,
    pub(super) query_max_series: u64,
    pub(super) query_log_lookback: Duration,
    pub(super) query_log_limit: usize,
    pub(super) query_log_format: LogAnswerFormat,
    pub(super) results_cache: crate::results_cache::Settings,
}

pub(super) fn query_settings(
    flags: &mut Flags,
    file: QueryFile,
) -> Result<QuerySettings, ConfigError> {
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
pub(super) struct RetentionSettings {
    pub(super) retention_time: Duration,
    pub(super) retention_size: u64,
    pub(super) retention_interval: Duration,
}

pub(super) fn retention_settings(
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

pub(super) fn read_secret(setting: &str, path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| invalid(setting, format!("{}: {e}", path.display())))
}

pub(super) fn parse_listen(text: &str) -> Option<SocketAddr> {
    if let Ok(addr) = text.parse() {
        return Some(addr);
    }
    // Prometheus accepts ":9099" for every interface.
    text.strip_prefix(':')
        .and_then(|port| port.parse::<u16>().ok())
        .map(|port| SocketAddr::from(([0, 0, 0, 0], port)))
}

/// A whole-number setting from the flag (text) or the file, within `1..=max`.
pub(super) fn count_setting(
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
pub(super) fn size_setting(
    setting: &str,
    value: Option<String>,
    default: &str,
) -> Result<usize, ConfigError> {
    let text = value.unwrap_or_else(|| default.to_string());
    parse_size(&text)
        .filter(|&n| n > 0)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| invalid(setting, format!("{text:?} is not a size like {default}")))
}

pub(super) fn parse_duration_setting(
    setting: &str,
    value: Option<String>,
    default: &str,
) -> Result<Duration, ConfigError> {
    let text = value.unwrap_or_else(|| default.to_string());
    duration::parse(&text).map_err(|e| invalid(setting, format!("{text:?}: {e}")))
}

/// The ClickHouse backend's settings, when a URL is given by flag or file; its password and CA
/// are read here.
pub(super) fn clickhouse_settings(
    flag_url: Option<String>,
    file: Option<ClickHouseFile>,
) -> Result<Option<crate::logstore::clickhouse::Settings>, ConfigError> {
    let file = file.unwrap_or_default();
    let Some(url) = flag_url.or(file.url.clone()).filter(|u| !u.is_empty()) else {
        if file.database.is_some() || file.user.is_some() || file.cluster.is_some() {
            return Err(invalid(
                "storage.clickhouse",
                "database, user and cluster need storage.clickhouse.url",
            ));
        }
        return Ok(None);
    };
    let parsed = reqwest::Url::parse(&url)
        .map_err(|e| invalid("storage.clickhouse.url", format!("{url:?}: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(
            "storage.clickhouse.url",
            format!("{url:?}: scheme must be http or https (ClickHouse's HTTP interface)"),
        ));
    }
    let password = match &file.password_file {
        Some(path) => Some(read_secret("storage.clickhouse.password_file", path)?),
        None => None,
    };
    let tls = file.tls_config.unwrap_or_default();
    let ca_pem = match tls.ca_file {
        Some(path) => {
            let pem = std::fs::read(&path).map_err(|e| {
                invalid(
                    "storage.clickhouse.tls_config.ca_file",
                    format!("{}: {e}", path.display()),
                )
            })?;
            Some(pem)
        }
        None => None,
    };
    let database = file.database.unwrap_or_else(|| "janus".into());
    if database.is_empty() {
        return Err(invalid("storage.clickhouse.database", "must not be empty"));
    }
    Ok(Some(crate::logstore::clickhouse::Settings {
        connection: crate::logstore::clickhouse::client::Connection {
            url,
            user: file.user,
            password,
            ca_pem,
            insecure_skip_verify: tls.insecure_skip_verify,
        },
        database,
        cluster: file.cluster.filter(|c| !c.is_empty()),
    }))
}

fn http_url(setting: &str, text: &str) -> Result<reqwest::Url, ConfigError> {
    let url = reqwest::Url::parse(text).map_err(|e| invalid(setting, format!("{text:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(invalid(
            setting,
            format!("{text:?}: must be an http or https URL with a host"),
        ));
    }
    Ok(url)
}

/// The ruler's settings: flags over the file (a list given by flag replaces the file's).
pub(super) fn rules_settings(
    flags: &mut Flags,
    file: RulesFile,
    file_external_url: Option<String>,
    listen: &std::net::SocketAddr,
) -> Result<crate::rules::Settings, ConfigError> {
    let external_url = flags.web_external_url.take().or(file_external_url);
    let files = if flags.rules_files.is_empty() {
        file.files.unwrap_or_default()
    } else {
        std::mem::take(&mut flags.rules_files)
    };
    let evaluation_interval = parse_duration_setting(
        "rules.evaluation-interval",
        flags
            .rules_evaluation_interval
            .take()
            .or(file.evaluation_interval),
        "1m",
    )?;
    if evaluation_interval.is_zero() {
        return Err(invalid(
            "rules.evaluation-interval",
            "must be greater than 0",
        ));
    }
    let am_texts = if flags.alertmanager_urls.is_empty() {
        file.alertmanager_urls.unwrap_or_default()
    } else {
        std::mem::take(&mut flags.alertmanager_urls)
    };
    let alertmanagers = am_texts
        .iter()
        .map(|t| http_url("alertmanager.url", t))
        .collect::<Result<Vec<_>, _>>()?;
    let remote_write = match flags
        .rules_remote_write_url
        .take()
        .or(file.remote_write_url)
    {
        Some(t) if !t.is_empty() => Some(http_url("rules.remote-write.url", &t)?),
        _ => None,
    };
    let external_labels = file.external_labels.unwrap_or_default();
    for name in external_labels.keys() {
        if !crate::rules::file::valid_label_name(name) {
            return Err(invalid(
                "rules.external_labels",
                format!("{name:?} is not a valid label name"),
            ));
        }
    }
    let external_url = match external_url.filter(|u| !u.is_empty()) {
        Some(text) => http_url("web.external-url", &text)?
            .as_str()
            .trim_end_matches('/')
            .to_string(),
        None => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "localhost".into());
            format!("http://{host}:{}", listen.port())
        }
    };
    Ok(crate::rules::Settings {
        files,
        evaluation_interval,
        external_labels,
        external_url,
        alertmanagers,
        remote_write,
    })
}
