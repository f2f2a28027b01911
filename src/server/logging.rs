//! Process logs: logfmt (Prometheus's default) or JSON, on stderr.
//!
//! The access log (one line per request, target `janus::access`) is gathered in memory and
//! written in batches: a write system call per request was a measurable part of a forwarded
//! request's cost (docs/benchmarks.md, Performance II). Every other line is written at once.
//! A batch is written within [`ACCESS_FLUSH_INTERVAL`], when it reaches [`ACCESS_BUFFER_BYTES`]
//! (by the request that fills it, so a slow stderr slows requests rather than growing memory),
//! and at exit ([`flush`]).

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::prelude::*;

use crate::config::{Config, LogFormat};

/// The longest an access line waits in memory.
pub const ACCESS_FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// The most access lines held in memory, in bytes.
pub const ACCESS_BUFFER_BYTES: usize = 64 * 1024;

/// Access lines not yet written; set once the thread that writes them runs (until then, and
/// without it, access lines are written as they come).
static ACCESS: OnceLock<Mutex<Vec<u8>>> = OnceLock::new();

pub fn init(config: &Config) {
    let level = LevelFilter::from_level(config.log_level);
    let registry = tracing_subscriber::registry().with(level);
    // try_init: a second initialisation (tests building several servers) is not an error.
    let initialised = match config.log_format {
        LogFormat::Logfmt => registry
            .with(tracing_logfmt::builder().layer().with_writer(Stderr))
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_writer(Stderr),
            )
            .try_init(),
    };
    if initialised.is_ok() {
        spawn_flusher();
    }
}

/// Writes the access lines held in memory (at exit, and by the flusher).
pub fn flush() {
    let Some(buffer) = ACCESS.get() else { return };
    let Ok(mut held) = buffer.lock() else { return };
    if !held.is_empty() {
        let _ = std::io::stderr().lock().write_all(&held);
        held.clear();
    }
}

fn spawn_flusher() {
    let spawned = std::thread::Builder::new()
        .name("janus-access-log".into())
        .spawn(|| loop {
            std::thread::sleep(ACCESS_FLUSH_INTERVAL);
            flush();
        });
    match spawned {
        Ok(_) => {
            ACCESS.get_or_init(|| Mutex::new(Vec::with_capacity(8 * 1024)));
        }
        Err(e) => eprintln!("janus: cannot start the access log writer: {e}"),
    }
}

/// Where log lines go: stderr, access lines by way of the batch.
#[derive(Clone, Copy)]
struct Stderr;

/// A writer for one line: straight to stderr or into the access batch.
enum LineWriter {
    Direct(std::io::Stderr),
    Access,
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = LineWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter::Direct(std::io::stderr())
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        if meta.target() == "janus::access" && ACCESS.get().is_some() {
            LineWriter::Access
        } else {
            LineWriter::Direct(std::io::stderr())
        }
    }
}

impl Write for LineWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        match self {
            LineWriter::Direct(stderr) => stderr.write(bytes),
            LineWriter::Access => {
                let Some(buffer) = ACCESS.get() else {
                    return std::io::stderr().write(bytes);
                };
                let mut held = buffer
                    .lock()
                    .map_err(|_| std::io::Error::other("access log buffer poisoned"))?;
                held.extend_from_slice(bytes);
                if held.len() >= ACCESS_BUFFER_BYTES {
                    std::io::stderr().lock().write_all(&held)?;
                    held.clear();
                }
                Ok(bytes.len())
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            LineWriter::Direct(stderr) => stderr.flush(),
            LineWriter::Access => Ok(()),
        }
    }
}
