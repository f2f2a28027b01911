//! Janus's own endpoints: the status page, liveness, readiness and `/metrics`.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};

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
async fn store_problem(state: &SharedState) -> Option<String> {
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

/// A small human page. Client libraries (prometheus-api-client's connection check) only need
/// a 200 here, so a restricted tenant gets one too, but without the upstream's address and the
/// store's path, which are not its business.
pub async fn root(State(state): State<SharedState>, request: axum::extract::Request) -> Response {
    if let Some(tenant) = super::tenancy::tenant_of(request.extensions()) {
        if let Some(scope) = &tenant.scope {
            return Html(format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>Janus</title></head><body>\
                 <h1>Janus {version}</h1>\
                 <p>Signed in as tenant {name}: metrics and logs of namespaces matching \
                 <code>{namespaces}</code>{nodes}.</p></body></html>\n",
                version = env!("CARGO_PKG_VERSION"),
                name = escape(&tenant.name),
                namespaces = escape(&scope.namespaces.matcher_value()),
                nodes = if scope.node_logs { ", and node logs" } else { "" },
            ))
            .into_response();
        }
    }
    let health = state.upstream.health();
    let upstream_status = match health.up {
        None => "not probed yet".to_string(),
        Some(true) => format!("up: {}", health.detail),
        Some(false) => format!("down: {}", health.detail),
    };
    let checked = health
        .checked_at
        .map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339())
        .unwrap_or_else(|| "never".into());
    let store = match store_problem(&state).await {
        None => "usable".to_string(),
        Some(problem) => problem,
    };
    let started = chrono::DateTime::<chrono::Utc>::from(state.started).to_rfc3339();
    let mut page = String::new();
    let _ = writeln!(
        page,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Janus</title></head><body>\
         <h1>Janus {version}</h1>\
         <p>One PromQL endpoint for metrics and logs: the Prometheus HTTP API at this URL, metric \
         queries answered by the upstream, log queries by the embedded store.</p>\
         <table>\
         <tr><th align=left>Upstream</th><td>{upstream}</td></tr>\
         <tr><th align=left>Upstream health</th><td>{upstream_status} (checked {checked})</td></tr>\
         <tr><th align=left>Log store</th><td>{store_path} ({store})</td></tr>\
         <tr><th align=left>Started</th><td>{started}</td></tr>\
         </table>\
         <p><a href=\"/metrics\">/metrics</a> · <a href=\"/-/ready\">/-/ready</a> · \
         <a href=\"/api/v1/status/buildinfo\">/api/v1/status/buildinfo</a></p>\
         </body></html>",
        version = env!("CARGO_PKG_VERSION"),
        upstream = escape(state.upstream.base_url()),
        upstream_status = escape(&upstream_status),
        store_path = escape(&state.store.describe()),
        store = escape(&store),
    );
    Html(page).into_response()
}

fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
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
