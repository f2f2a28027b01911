//! How rules ask for their values: the query engine, exactly as `/api/v1/query` runs an
//! expression (log parts from the store, metric parts from a [`MetricSource`]) — the gateway's
//! upstream when serving (`upstream::metric_source::UpstreamMetrics`), in-memory series in
//! `janus test rules`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::engine::{Engine, Expression, MetricSource};
use crate::promql::value::{Steps, Value};

use super::alerting::Labels;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A range answer: each series with its points `(ms, value)`.
pub type RangeSeries = Vec<(Labels, Vec<(i64, f64)>)>;

/// Evaluates rule expressions.
pub trait Querier: Send + Sync + 'static {
    /// The expression's samples at `at_ms`.
    fn instant<'a>(
        &'a self,
        expr: &'a Expression,
        at_ms: i64,
    ) -> BoxFuture<'a, Result<Vec<(Labels, f64)>, String>>;

    /// The expression at `count` steps from `start_ms`, `step_ms` apart.
    fn range<'a>(
        &'a self,
        expr: &'a Expression,
        start_ms: i64,
        step_ms: i64,
        count: usize,
    ) -> BoxFuture<'a, Result<RangeSeries, String>>;
}

/// The engine with a metric source, each evaluation bounded by `timeout`.
pub struct EngineQuerier {
    pub engine: Arc<Engine>,
    pub source: Arc<dyn MetricSource>,
    pub timeout: Duration,
    /// Log reads shared by rules evaluated at the same time.
    pub shared: crate::engine::shared_leaves::SharedLeaves,
}

const NS_PER_MS: i64 = 1_000_000;

impl EngineQuerier {
    async fn run(&self, expr: &Expression, steps: Steps) -> Result<Value, String> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        self.engine
            .evaluate_sharing(
                expr,
                steps,
                self.source.as_ref(),
                deadline,
                Some(&self.shared),
            )
            .await
            .map(|a| a.value)
            .map_err(|e| e.to_string())
    }
}

impl Querier for EngineQuerier {
    fn instant<'a>(
        &'a self,
        expr: &'a Expression,
        at_ms: i64,
    ) -> BoxFuture<'a, Result<Vec<(Labels, f64)>, String>> {
        Box::pin(async move {
            let steps = Steps {
                start: at_ms.saturating_mul(NS_PER_MS),
                step: 1,
                count: 1,
            };
            match self.run(expr, steps).await? {
                Value::Vector(series) => Ok(series
                    .into_iter()
                    .filter_map(|s| s.points.first().copied().flatten().map(|v| (s.labels, v)))
                    .collect()),
                // Prometheus's rule query function makes a scalar a sample without labels.
                Value::Scalar(points) => Ok(points
                    .first()
                    .map(|v| vec![(Labels::new(), *v)])
                    .unwrap_or_default()),
                Value::String(_) => Err("rule result is a string, not a vector or scalar".into()),
            }
        })
    }

    fn range<'a>(
        &'a self,
        expr: &'a Expression,
        start_ms: i64,
        step_ms: i64,
        count: usize,
    ) -> BoxFuture<'a, Result<RangeSeries, String>> {
        Box::pin(async move {
            let steps = Steps {
                start: start_ms.saturating_mul(NS_PER_MS),
                step: step_ms.max(1).saturating_mul(NS_PER_MS),
                count,
            };
            let at = |k: usize| start_ms + step_ms * k as i64;
            match self.run(expr, steps).await? {
                Value::Vector(series) => Ok(series
                    .into_iter()
                    .map(|s| {
                        let points = s
                            .points
                            .iter()
                            .enumerate()
                            .filter_map(|(k, v)| v.map(|v| (at(k), v)))
                            .collect();
                        (s.labels, points)
                    })
                    .collect()),
                Value::Scalar(points) => Ok(vec![(
                    Labels::new(),
                    points
                        .iter()
                        .enumerate()
                        .map(|(k, v)| (at(k), *v))
                        .collect(),
                )]),
                Value::String(_) => Err("rule result is a string, not a vector or scalar".into()),
            }
        })
    }
}
