//! Process logs: logfmt (Prometheus's default) or JSON, on stderr.

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::prelude::*;

use crate::config::{Config, LogFormat};

pub fn init(config: &Config) {
    let level = LevelFilter::from_level(config.log_level);
    let registry = tracing_subscriber::registry().with(level);
    // try_init: a second initialisation (tests building several servers) is not an error.
    let _ = match config.log_format {
        LogFormat::Logfmt => registry
            .with(
                tracing_logfmt::builder()
                    .layer()
                    .with_writer(std::io::stderr),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(std::io::stderr),
            )
            .try_init(),
    };
}
