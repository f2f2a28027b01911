//! The query engine: everything between a query's text and its typed answer, with no HTTP in
//! it. The HTTP layer reads parameters, asks [`prepare::route`] who answers, and for Janus's
//! queries calls [`Engine::evaluate`] (numbers) or [`Engine::search_lines`] (lines), then
//! encodes. A test or another binary can drive the engine the same way, with any
//! [`MetricSource`] for the metric parts.

#![warn(missing_docs)]

pub mod error;
mod evaluate;
pub mod lines;
pub mod log_metrics;
pub mod prepare;
pub mod series;
pub mod shared_leaves;
pub mod source;
mod unwrapped;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

pub use error::{EngineError, SourceErrorKind};
pub use lines::LineSearch;
pub use prepare::{Expression, Prepared};
pub use source::{MetricAnswer, MetricFuture, MetricQuery, MetricSource};

use crate::logstore::LogStore;
use crate::promql::value::Steps;
use crate::telemetry::Metrics;

/// What one query may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Samples held at once (`--query.max-samples`).
    pub max_samples: usize,
    /// Series of one log metric (`--query.max-series`).
    pub max_series: usize,
    /// The testing switch: evaluate everything Janus can, pushing only selectors and range
    /// functions over them to the metric source.
    pub evaluate_metric_queries: bool,
}

/// The query engine: a store to read, the limits every query runs within, and the counters that
/// show what was evaluated here and what was pushed to a metric source.
pub struct Engine {
    store: Arc<dyn LogStore>,
    limits: Limits,
    metrics: Arc<Metrics>,
}

/// Sets the flag when dropped: a query whose future is dropped (its client went away) stops
/// its scans at their next block.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Refuses a query that needs what the log backend cannot run (422 `execution`, naming it),
/// rather than answer it without that part.
fn runs_it(
    store: &dyn LogStore,
    query: &crate::logql::LogQuery,
    metric: bool,
) -> Result<(), EngineError> {
    match store.capabilities().lacks(query, metric) {
        None => Ok(()),
        Some(what) => Err(crate::promql::EvalError::Execution(format!(
            "the log store backend cannot run {what}"
        ))
        .into()),
    }
}

/// Runs `work` on a blocking thread, with a flag it must read inside its loops: the flag is set
/// when the caller stops waiting (a client that went away, a dropped query). `hold` (a query
/// slot) is kept until the work has really ended, not only until the caller left, so a slot
/// never frees while its work still runs.
pub async fn blocking<T: Send + 'static>(
    hold: impl Send + 'static,
    work: impl FnOnce(&AtomicBool) -> T + Send + 'static,
) -> Result<T, EngineError> {
    let cancelled = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(Arc::clone(&cancelled));
    tokio::task::spawn_blocking(move || {
        let out = work(&cancelled);
        drop(hold);
        out
    })
    .await
    .map_err(|e| EngineError::Internal(format!("blocking work failed: {e}")))
}

impl Engine {
    /// An engine over `store`; one per process, shared by every request.
    pub fn new(store: Arc<dyn LogStore>, limits: Limits, metrics: Arc<Metrics>) -> Self {
        Engine {
            store,
            limits,
            metrics,
        }
    }

    /// The limits queries run within (the HTTP layer routes by the testing switch).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Parses a query Janus answers, on a blocking thread (regexes are compiled and a deep tree
    /// built); `tokens` are those [`prepare::route`] made (or the whole query's, for the Loki
    /// API), `dialect` the API it came by.
    pub async fn prepare(
        &self,
        text: &str,
        tokens: Vec<crate::logql::lexer::Token>,
        dialect: crate::logql::lexer::Dialect,
    ) -> Result<Prepared, EngineError> {
        let text = text.to_string();
        tokio::task::spawn_blocking(move || prepare::parse(&text, tokens, dialect))
            .await
            .map_err(|e| EngineError::Internal(format!("query parser failed: {e}")))?
    }

    /// Evaluates an expression at `steps` by the deadline, its metric parts asked of `source`.
    pub async fn evaluate(
        &self,
        expression: &Expression,
        steps: Steps,
        source: &dyn MetricSource,
        deadline: tokio::time::Instant,
    ) -> Result<MetricAnswer, EngineError> {
        self.evaluate_sharing(expression, steps, source, deadline, None)
            .await
    }

    /// [`Engine::evaluate`], its log leaves shared with other evaluations at the same steps
    /// through `shared` (the ruler's rules).
    pub async fn evaluate_sharing(
        &self,
        expression: &Expression,
        steps: Steps,
        source: &dyn MetricSource,
        deadline: tokio::time::Instant,
        shared: Option<&shared_leaves::SharedLeaves>,
    ) -> Result<MetricAnswer, EngineError> {
        let cancelled = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(Arc::clone(&cancelled));
        let context = evaluate::Context {
            engine: self,
            source,
            logs: Arc::clone(&expression.logs),
            holt_winters: expression.holt_winters,
            evaluate_all: self.limits.evaluate_metric_queries || expression.evaluate_all,
            deadline,
            cancelled,
            shared,
        };
        evaluate::evaluate(&context, &expression.expr, steps, 0).await
    }
}
