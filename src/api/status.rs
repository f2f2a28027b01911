//! Janus's own endpoints: liveness, readiness, `/metrics` and the cache's admin endpoint (the
//! status page is `status_page`).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::SharedState;
use crate::api::error::ApiError;

pub async fn healthy() -> Response {
    text(StatusCode::OK, "Janus is Healthy.\n")
}

/// Ready once the configuration is loaded (it is, or we would not be serving) and the store's
/// root is a usable directory. The upstream's health is deliberately not part of it: logs must
/// stay served while the upstream is down.
pub async fn ready(State(state): State<SharedState>) -> Response {
    match store_problem(&state).await {
        None => text(StatusCode::OK, "Janus is Ready.\n"),
        Some(problem) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("Janus is not ready: {problem}\n"),
        ),
    }
}

/// Why the store cannot serve, if it cannot. A backend may ask its server (ClickHouse): off
/// the async threads.
pub(super) async fn store_problem(state: &SharedState) -> Option<String> {
    let store = std::sync::Arc::clone(&state.store);
    tokio::task::spawn_blocking(move || store.problem())
        .await
        .unwrap_or_else(|e| Some(e.to_string()))
}

pub async fn metrics(State(state): State<SharedState>) -> Response {
    if let Some(cache) = state.results_cache.clone() {
        // One pass over the entries: off the async threads.
        let _ = tokio::task::spawn_blocking(move || cache.refresh_gauges()).await;
    }
    match state.metrics.encode() {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => ApiError::Internal(format!("encoding metrics: {e}")).into_response(),
    }
}

fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

/// `POST /api/v1/admin/cache/clear`: every cached answer dropped (after an upstream backfill or
/// a rewrite of old log files, so nothing older than the change is served). 204, as
/// Prometheus's admin endpoints answer; with the cache off there is nothing to drop.
pub async fn clear_cache(State(state): State<SharedState>) -> Response {
    if let Some(cache) = state.results_cache.clone() {
        let _ = tokio::task::spawn_blocking(move || cache.clear()).await;
        tracing::info!("results cache cleared on request");
    }
    StatusCode::NO_CONTENT.into_response()
}
