//! What can go wrong while planning and evaluating an expression, in Prometheus's words. The
//! HTTP layer maps these to `errorType`s once (`error.rs`).

/// An evaluation that cannot give an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// The expression asks for something PromQL does not allow (`bad_data`).
    #[error("{0}")]
    BadData(String),
    /// A valid expression that fails on the values it meets (`execution`), e.g. many-to-many
    /// matching.
    #[error("{0}")]
    Execution(String),
    /// The query's deadline passed while evaluating.
    #[error("query timed out in query execution")]
    Timeout,
    /// More samples than `--query.max-samples` would be held at once.
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
}
