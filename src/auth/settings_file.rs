//! The YAML files Janus reads beside its own configuration (`--web.config.file`,
//! `--auth.tenants-file`): one way of reading them and one error shape, naming the flag, the
//! file and the key, so that a bad file is one line an operator can act on.

use std::path::Path;

use serde::de::DeserializeOwned;

/// A setting of a file that could not be accepted.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{flag} {path}: {key}: {message}")]
pub struct SettingsFileError {
    pub flag: &'static str,
    pub path: String,
    pub key: String,
    pub message: String,
}

/// A file being read, for the errors about it.
#[derive(Debug, Clone)]
pub struct SettingsFile {
    flag: &'static str,
    path: String,
}

impl SettingsFile {
    pub fn new(flag: &'static str, path: &Path) -> Self {
        SettingsFile {
            flag,
            path: path.display().to_string(),
        }
    }

    /// An error about `key` (a path in the file).
    pub fn error(&self, key: &str, message: impl Into<String>) -> SettingsFileError {
        SettingsFileError {
            flag: self.flag,
            path: self.path.clone(),
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// Reads and decodes the file; an empty one is `T::default()`. Unknown keys are the
    /// format's to refuse (`deny_unknown_fields`); serde's message names them and the line.
    pub fn read<T: DeserializeOwned + Default>(&self, path: &Path) -> Result<T, SettingsFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| self.error("(file)", format!("cannot read it: {e}")))?;
        if text.trim().is_empty() {
            return Ok(T::default());
        }
        serde_norway::from_str(&text)
            .map_err(|e| self.error("(yaml)", e.to_string().replace('\n', " ")))
    }
}
