//! The one middleware: counts, times and logs every request, so handlers stay about answers.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::{Face, SharedState};
use crate::telemetry::{HandlerLabels, RequestLabels};

pub async fn observe(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    // Unmatched paths share one label so a scanner cannot blow up the metric's cardinality.
    let handler = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "other".to_string());

    state.metrics.in_flight.inc();
    let response = next.run(request).await;
    state.metrics.in_flight.dec();

    let status = response.status().as_u16();
    let face = response
        .extensions()
        .get::<Face>()
        .copied()
        .unwrap_or(Face::Janus);
    let elapsed = started.elapsed();
    let code = status.to_string();
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            handler: handler.clone(),
            code: code.clone(),
            face: face.as_str().to_string(),
        })
        .inc();
    state
        .metrics
        .request_duration
        .get_or_create(&HandlerLabels { handler, code })
        .observe(elapsed.as_secs_f64());
    tracing::info!(
        target: "janus::access",
        method = %method,
        path = %path,
        status,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        face = face.as_str(),
        "request"
    );
    response
}
