//! Request bodies in flight, bounded together. Every route but the push reads its body whole
//! (form parameters, up to 16 MiB each) and decodes it into parameters, so 512 connections each
//! sending a full body would hold over 16 GiB. A request with a body first takes three times
//! its declared length (the body and what is decoded from it; the largest a body may be, when
//! it declares none) from one budget, holds it until its answer's head, and waits for room up
//! to [`QUEUE_WAIT`]; past it, 503. Pushes have their own budget (`--ingest.max-bytes-in-flight`),
//! bodiless requests take nothing.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::SharedState;
use crate::api::error::ApiError;

/// Bytes request bodies (other than pushes) and their decoded parameters may hold at once:
/// five full-size form bodies, or thousands of dashboard-sized ones.
pub const REQUEST_BYTES_IN_FLIGHT: usize = 256 << 20;

/// What a body of `n` bytes is taken to hold while its request runs.
const COST_PER_BODY_BYTE: usize = 3;

/// How long a request waits for room before it is refused.
pub const QUEUE_WAIT: Duration = Duration::from_secs(30);

pub async fn body_budget(
    State(state): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let chunked = request.headers().contains_key(header::TRANSFER_ENCODING);
    let is_push = request.uri().path() == "/loki/api/v1/push";
    let bytes = match (declared, chunked) {
        _ if is_push || matches!(*request.method(), Method::GET | Method::HEAD) => 0,
        (Some(n), _) => n.min(super::request::MAX_FORM_BODY),
        (None, true) => super::request::MAX_FORM_BODY,
        (None, false) => 0,
    };
    if bytes == 0 {
        return next.run(request).await;
    }
    let kib = u32::try_from((bytes * COST_PER_BODY_BYTE).div_ceil(1024)).unwrap_or(u32::MAX);
    let permit = tokio::time::timeout(
        QUEUE_WAIT,
        Arc::clone(&state.request_budget).acquire_many_owned(kib),
    )
    .await;
    match permit {
        Ok(Ok(_held)) => next.run(request).await,
        Ok(Err(_)) => ApiError::Unavailable("Janus is shutting down".into()).into_response(),
        Err(_) => ApiError::Unavailable(format!(
            "too many request bytes in flight: request bodies held at once are bounded to {} MiB; retry later",
            REQUEST_BYTES_IN_FLIGHT >> 20
        ))
        .into_response(),
    }
}
