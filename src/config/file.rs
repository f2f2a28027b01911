//! The YAML configuration file's shape: one struct per section, unknown keys refused.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;
use crate::ingest::mapping::LabelMapping;

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
    pub rules: RulesFile,
}

/// The ruler: rule files, where alerts and recorded series go.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RulesFile {
    /// Paths or globs of rule files.
    pub files: Option<Vec<String>>,
    pub evaluation_interval: Option<String>,
    pub alertmanager_urls: Option<Vec<String>>,
    pub remote_write_url: Option<String>,
    /// Added to alerts sent and series written, when they lack the label.
    pub external_labels: Option<std::collections::BTreeMap<String, String>>,
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
    pub external_url: Option<String>,
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
    pub clickhouse: Option<ClickHouseFile>,
    pub fsync: Option<String>,
    pub fsync_interval: Option<String>,
    pub max_open_files: Option<u64>,
}

/// `storage.clickhouse`: the ClickHouse backend.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseFile {
    pub url: Option<String>,
    pub database: Option<String>,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub tls_config: Option<TlsFile>,
    pub cluster: Option<String>,
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

pub(super) fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
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
