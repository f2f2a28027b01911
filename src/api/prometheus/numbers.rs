//! Numbers: an expression Janus evaluates (log metrics, aggregations, mixed with metrics).
//! Parameters are read in Prometheus's order, a concurrency slot taken, the engine asked with
//! the upstream as its metric source, and the value encoded as Prometheus does.

use axum::http::HeaderMap;
use axum::response::Response;

use crate::api::error::ApiError;
use crate::api::params::{Params, QueryKind};
use crate::api::request::Deadline;
use crate::api::{envelope, SharedState};
use crate::engine::Expression;
use crate::promql::encode;
use crate::upstream::metric_source::UpstreamSource;

pub async fn answer(
    state: &SharedState,
    params: &Params,
    headers: &HeaderMap,
    kind: QueryKind,
    expression: &Expression,
) -> Result<Response, ApiError> {
    let steps = params.steps(kind)?;
    let deadline = Deadline::own(params, &state.config)?;
    // An expression that waits on the upstream takes an upstream slot, so that a slow upstream
    // never starves the queries answered from the store alone.
    let limiter = if state.config.evaluate_metric_queries || expression.reads_metrics() {
        &state.limiter
    } else {
        &state.log_limiter
    };
    let _slot = limiter.acquire(deadline.at).await?;
    let source = UpstreamSource {
        upstream: &state.upstream,
        headers,
        budget: deadline.budget,
        cache: state.results_cache.as_deref(),
        forward_headers: &state.config.forward_headers,
    };
    let answer = state
        .engine
        .evaluate(expression, steps, &source, deadline.at)
        .await?;
    let data = encode::data(&answer.value, &steps, kind == QueryKind::Range);
    Ok(envelope::success_json(data.as_bytes(), &answer.warnings))
}
