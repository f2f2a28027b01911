//! Why the engine gives no answer. Each part keeps its own error (`logql::SyntaxError`,
//! `promql::EvalError`, `store::scan::ScanStop`); the HTTP layer maps this enum to Prometheus's
//! `errorType`s in one place (`error.rs`).

use crate::logql::SyntaxError;
use crate::logstore::ScanStop;
use crate::promql::EvalError;

/// Prometheus's error types a metric source can answer with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceErrorKind {
    /// The source refused the part as malformed.
    BadData,
    /// The part was valid but failed while running.
    Execution,
    /// The source did not answer before the deadline.
    Timeout,
    /// The source was asked to stop.
    Canceled,
    /// The source could not be reached or read.
    Unavailable,
}

impl SourceErrorKind {
    /// The kind of an upstream's `errorType`; anything unknown means the source failed.
    pub fn from_error_type(error_type: &str) -> SourceErrorKind {
        match error_type {
            "bad_data" => SourceErrorKind::BadData,
            "execution" => SourceErrorKind::Execution,
            "timeout" => SourceErrorKind::Timeout,
            "canceled" => SourceErrorKind::Canceled,
            _ => SourceErrorKind::Unavailable,
        }
    }
}

/// Why the engine gave no answer; `error.rs` maps each to Prometheus's error type.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The query text could not be read.
    #[error(transparent)]
    Syntax(#[from] SyntaxError),
    /// The expression could not be evaluated (types, matching, samples, time).
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// A scan stopped early: deadline, cancellation, too many streams.
    #[error(transparent)]
    Stopped(#[from] ScanStop),
    /// The metric source refused a part or could not answer it.
    #[error("{message}")]
    Source {
        /// Which of Prometheus's error types the source answered with.
        kind: SourceErrorKind,
        /// The source's own words, passed on to the client.
        message: String,
    },
    /// The query waited past its deadline for memory to hold its answer.
    #[error("{0}")]
    Timeout(String),
    /// A bug in Janus (a worker thread that panicked); never the answer to user input.
    #[error("{0}")]
    Internal(String),
}
