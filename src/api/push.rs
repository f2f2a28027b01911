//! `POST /loki/api/v1/push`: the Loki push API into the store. 204 only once every line of the
//! request is written (and synced, as configured); any refusal leaves the store untouched.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{Face, SharedState};
use crate::error::ApiError;
use crate::ingest::{self, decode};
use crate::telemetry::{ReasonLabels, StageLabels};

pub async fn push(State(state): State<SharedState>, request: Request) -> Response {
    let mut response = match push_inner(&state, request).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err((reason, e)) => {
            state
                .metrics
                .ingest_refused
                .get_or_create(&ReasonLabels {
                    reason: reason.into(),
                })
                .inc();
            e.into_response()
        }
    };
    response.extensions_mut().insert(Face::Log);
    response
}

fn count(state: &SharedState, stage: &str, n: u64) {
    state
        .metrics
        .ingest_lines
        .get_or_create(&StageLabels {
            stage: stage.into(),
        })
        .inc_by(n);
}

/// How long a push waits for a free decoding slot before it is answered 503 (the shipper retries).
const PUSH_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

async fn push_inner(state: &SharedState, request: Request) -> Result<(), (&'static str, ApiError)> {
    let max = state.config.ingest_max_body_size;
    let limits = decode::Limits {
        max_size: max,
        max_entries: state.config.ingest_max_entries,
    };
    // A push costs up to a few times its body in memory while it is read, decoded and rendered:
    // bound how many are in that state at once (--ingest.max-concurrency).
    let _slot = tokio::time::timeout(
        PUSH_QUEUE_WAIT,
        std::sync::Arc::clone(&state.push_slots).acquire_owned(),
    )
    .await
    .map_err(|_| {
        (
            "busy",
            ApiError::Unavailable(
                "too many pushes in flight (--ingest.max-concurrency); retry the request".into(),
            ),
        )
    })?
    .map_err(|_| {
        (
            "busy",
            ApiError::Unavailable("Janus is shutting down".into()),
        )
    })?;
    let (parts, body) = request.into_parts();
    let header_text = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header_text(header::CONTENT_TYPE).unwrap_or_default();
    let content_encoding = header_text(header::CONTENT_ENCODING);
    let body = axum::body::to_bytes(body, max).await.map_err(|_| {
        (
            "too_large",
            ApiError::TooLarge(format!(
                "request body is over the {max}-byte limit (--ingest.max-body-size)"
            )),
        )
    })?;
    state
        .metrics
        .ingest_bytes_received
        .inc_by(body.len() as u64);
    let state_for_work = std::sync::Arc::clone(state);
    let outcome = tokio::task::spawn_blocking(move || {
        let decoded = decode::decode(&content_type, content_encoding.as_deref(), body, limits)
            .map_err(|e| match e {
                decode::DecodeError::TooLarge(_) | decode::DecodeError::TooManyEntries(_) => {
                    ("too_large", ApiError::TooLarge(e.to_string()))
                }
                decode::DecodeError::ContentType(_) => (
                    "content_type",
                    ApiError::UnsupportedMediaType(e.to_string()),
                ),
                other => ("bad_request", ApiError::BadData(other.to_string())),
            })?;
        let streams = decoded.streams;
        if decoded.invalid_utf8 > 0 {
            state_for_work
                .metrics
                .ingest_invalid_utf8
                .inc_by(decoded.invalid_utf8);
        }
        let received: u64 = streams.iter().map(|s| s.entries.len() as u64).sum();
        count(&state_for_work, "received", received);
        let prepared =
            ingest::prepare(&streams, &state_for_work.config.ingest_labels).map_err(|e| {
                count(&state_for_work, "refused", received);
                ("bad_request", ApiError::BadData(e))
            })?;
        let appended = state_for_work.writer.append(&prepared.files).map_err(|e| {
            tracing::error!(error = %e, "appending pushed lines failed");
            (
                "write_failed",
                ApiError::Unavailable(format!(
                    "writing to the store failed: {e}; retry the request"
                )),
            )
        })?;
        count(&state_for_work, "written", prepared.lines);
        state_for_work
            .metrics
            .ingest_bytes_written
            .inc_by(appended.bytes);
        if appended.fsync_seconds > 0.0 {
            state_for_work
                .metrics
                .fsync_duration
                .observe(appended.fsync_seconds);
        }
        Ok(())
    })
    .await;
    match outcome {
        Ok(result) => result,
        Err(e) => Err((
            "write_failed",
            ApiError::Internal(format!("push worker failed: {e}")),
        )),
    }
}
