//! Evaluating an expression: plan it at its steps, compute its leaves concurrently — log range
//! functions from the store, metric parts from the source, subqueries by evaluating their inner
//! expression at their own steps — then evaluate the rest.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use promql_parser::parser::Expr;

use super::log_metrics::log_call;
use super::source::{MetricAnswer, MetricQuery, MetricSource};
use super::{Engine, EngineError};
use crate::logql::rewrite::HOLT_WINTERS;
use crate::logql::LogQuery;
use crate::promql::eval;
use crate::promql::plan::{self, NodeId};
use crate::promql::value::{Steps, Value};
use crate::promql::EvalError;

/// How deep subqueries may nest: each level is an evaluation (and an async frame) of its own.
const MAX_SUBQUERY_NESTING: usize = 32;

/// What every level of a (possibly nested) evaluation shares.
pub(super) struct Context<'a> {
    pub engine: &'a Engine,
    pub source: &'a dyn MetricSource,
    pub logs: Arc<Vec<LogQuery>>,
    /// The user spelled `holt_winters`: pushed-down text says so too.
    pub holt_winters: bool,
    /// Push only what Janus cannot evaluate (the testing switch, or a LogQL expression).
    pub evaluate_all: bool,
    pub deadline: tokio::time::Instant,
    pub cancelled: Arc<AtomicBool>,
    /// Log leaves shared with other evaluations at the same steps (the ruler's).
    pub shared: Option<&'a super::shared_leaves::SharedLeaves>,
}

type Evaluated = Result<MetricAnswer, EngineError>;

pub(super) fn evaluate<'a>(
    ctx: &'a Context<'a>,
    expr: &'a Expr,
    steps: Steps,
    nesting: usize,
) -> Pin<Box<dyn Future<Output = Evaluated> + Send + 'a>> {
    Box::pin(async move {
        let limits = &ctx.engine.limits;
        let plan = plan::plan(expr, ctx.evaluate_all)?;
        let log_tasks = plan.logs.iter().map(|(node, call)| async move {
            let value = match (ctx.shared, ctx.logs.get(call.log)) {
                (Some(shared), Some(query)) => {
                    let key = format!("{query:?}|{call:?}|{steps:?}");
                    let metrics = &ctx.engine.metrics;
                    shared
                        .get_or_compute(key, steps.start, log_leaf(ctx, call, steps), || {
                            metrics.rules.log_reads_shared.inc();
                        })
                        .await?
                }
                _ => log_leaf(ctx, call, steps).await?,
            };
            Ok((*node, value, Vec::new()))
        });
        let metric_tasks = plan.upstream.iter().map(|(node, text, scalar)| async move {
            let MetricAnswer { value, warnings } = metric_leaf(ctx, text, *scalar, steps).await?;
            Ok::<_, EngineError>((*node, value, warnings))
        });
        let subquery_tasks = plan.subqueries.iter().map(|(node, call)| async move {
            if nesting >= MAX_SUBQUERY_NESTING {
                return Err(EvalError::BadData(format!(
                    "subqueries nested more than {MAX_SUBQUERY_NESTING} deep"
                ))
                .into());
            }
            ctx.engine.metrics.subqueries_evaluated.inc();
            let inner_steps = call.inner_steps(&steps, limits.max_samples)?;
            let inner = evaluate(ctx, call.inner, inner_steps, nesting + 1).await?;
            let at = ctx.deadline.into_std();
            let applied =
                tokio::task::block_in_place(|| call.apply(&inner.value, &inner_steps, &steps, at))?;
            Ok::<_, EngineError>((*node, applied, inner.warnings))
        });
        let (logs_done, metrics_done, subqueries_done) = tokio::join!(
            futures_util::future::join_all(log_tasks),
            futures_util::future::join_all(metric_tasks),
            futures_util::future::join_all(subquery_tasks)
        );
        let mut inputs: HashMap<NodeId, Value> = HashMap::new();
        let mut warnings = Vec::new();
        let mut samples = 0usize;
        for done in logs_done
            .into_iter()
            .chain(metrics_done)
            .chain(subqueries_done)
        {
            let (node, value, w) = done?;
            samples += sample_count(&value);
            inputs.insert(node, value);
            warnings.extend(w);
        }
        if samples > limits.max_samples {
            return Err(EvalError::TooManySamples.into());
        }
        let value = tokio::task::block_in_place(|| eval::evaluate(expr, steps, &inputs))?;
        if sample_count(&value) > limits.max_samples {
            return Err(EvalError::TooManySamples.into());
        }
        Ok(MetricAnswer { value, warnings })
    })
}

/// One log range function at every step, on a blocking thread.
async fn log_leaf(
    ctx: &Context<'_>,
    call: &plan::LogCall,
    steps: Steps,
) -> Result<Value, EngineError> {
    // Each stream holds a value per step: bound the streams by both limits.
    let limits = &ctx.engine.limits;
    let max_streams = limits
        .max_series
        .min(limits.max_samples / steps.count.max(1))
        .max(1);
    let limits_samples = limits.max_samples;
    let (store, logs, call, cancelled) = (
        Arc::clone(&ctx.engine.store),
        Arc::clone(&ctx.logs),
        call.clone(),
        Arc::clone(&ctx.cancelled),
    );
    let at = ctx.deadline.into_std();
    tokio::task::spawn_blocking(move || {
        let query = logs.get(call.log).ok_or_else(|| {
            EngineError::Internal("log selector placeholder without a query".into())
        })?;
        log_call(
            store.as_ref(),
            query,
            &call,
            &steps,
            at,
            &cancelled,
            super::log_metrics::Bounds {
                max_series: max_streams,
                max_samples: limits_samples,
            },
        )
    })
    .await
    .map_err(|e| EngineError::Internal(format!("log metric failed: {e}")))?
}

/// One part without log selectors, answered by the metric source at the same steps.
async fn metric_leaf(
    ctx: &Context<'_>,
    text: &str,
    scalar: bool,
    steps: Steps,
) -> Result<MetricAnswer, EngineError> {
    let (new, old) = (HOLT_WINTERS.1, HOLT_WINTERS.0);
    let text = if ctx.holt_winters {
        std::borrow::Cow::Owned(text.replace(&format!("{new}("), &format!("{old}(")))
    } else {
        std::borrow::Cow::Borrowed(text)
    };
    ctx.engine.metrics.pushed_parts.inc();
    ctx.source
        .query(MetricQuery {
            text: &text,
            steps,
            range: steps.count > 1,
            scalar,
            max_samples: ctx.engine.limits.max_samples,
            deadline: ctx.deadline,
        })
        .await
}

fn sample_count(value: &Value) -> usize {
    match value {
        Value::Scalar(points) => points.len(),
        Value::Vector(series) => series
            .iter()
            .map(|s| s.points.iter().flatten().count())
            .sum(),
        Value::String(_) => 1,
    }
}
