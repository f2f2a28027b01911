//! The one middleware: counts, times and logs every request, so handlers stay about answers.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use super::{Face, SharedState};

pub async fn observe(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    // Clones that share the request's bytes (no allocation): the access log needs them after
    // the request has moved on.
    let method = request.method().clone();
    let uri = request.uri().clone();
    // Unmatched paths share one label so a scanner cannot blow up the metric's cardinality.
    let handler = request.extensions().get::<MatchedPath>().cloned();

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
    state.metrics.record_request(
        handler.as_ref().map_or("other", MatchedPath::as_str),
        status,
        face.as_str(),
        elapsed.as_secs_f64(),
    );
    tracing::info!(
        target: "janus::access",
        method = %method,
        path = %uri.path(),
        status,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        face = face.as_str(),
        "request"
    );
    response
}
