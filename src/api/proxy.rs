//! Forwarding to the upstream: read the request once, work out its deadline, wait for a query
//! slot, forward verbatim. Janus never judges a metric query; the upstream does.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use tokio::time::Instant;

use super::{Face, SharedState};
use crate::error::ApiError;
use crate::params::Params;
use crate::upstream::Forward;

/// Prometheus reads form bodies up to 10 MiB; a little more leaves room for other upstreams.
const MAX_FORM_BODY: usize = 16 << 20;
/// How long past a client's own `timeout` Janus waits for the upstream's timeout answer.
const UPSTREAM_TIMEOUT_GRACE: Duration = Duration::from_millis(500);

pub async fn forward(State(state): State<SharedState>, request: Request) -> Response {
    let mut response = match forward_inner(&state, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    response.extensions_mut().insert(Face::Metric);
    response
}

async fn forward_inner(state: &SharedState, request: Request) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_FORM_BODY)
        .await
        .map_err(|_| ApiError::TooLarge(format!("request body over {MAX_FORM_BODY} bytes")))?;

    // The deadline is the smaller of the request's `timeout` and --query.timeout. A `timeout`
    // Janus cannot read is left for the upstream to refuse in its own words.
    let is_form = parts.method == Method::POST
        && parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let params = Params::parse(parts.uri.query(), is_form.then_some(&body[..]));
    let (budget, grace) = match params.timeout() {
        // The upstream enforces a `timeout` it was sent; a short grace lets its own answer
        // (in its own words) arrive before Janus gives up.
        Ok(Some(requested)) if requested < state.config.query_timeout => {
            (requested, UPSTREAM_TIMEOUT_GRACE)
        }
        _ => (state.config.query_timeout, Duration::ZERO),
    };
    let deadline = Instant::now() + budget + grace;

    let _slot = state.limiter.acquire(deadline).await?;
    let handler = parts
        .extensions
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let answer = state
        .upstream
        .forward(Forward {
            method: parts.method.clone(),
            path_and_query,
            headers: &parts.headers,
            body,
            handler: &handler,
            deadline,
            budget,
        })
        .await?;
    let (head, body) = answer.into_parts();
    Ok(Response::from_parts(head, Body::new(body)))
}
