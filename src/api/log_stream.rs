//! Sending a log answer (both APIs' query answers and the tail's batches) within the one budget
//! that what answers in flight hold shares ([`super::ANSWER_BYTES_IN_FLIGHT`]).

use std::sync::Arc;

use axum::response::Response;

use super::log_encode;
use super::request::Deadline;
use super::{envelope, SharedState};
use crate::api::error::ApiError;

/// Bytes of answer encoded at a time: what a slow reader holds.
const ANSWER_CHUNK: usize = 256 * 1024;

/// Sends a log answer as it is encoded, a chunk at a time, once the answer budget has room for
/// what it holds (positions, open files, a chunk each); waits for room until the deadline.
pub async fn stream(
    state: &SharedState,
    mut answer: log_encode::LogAnswer,
    deadline: Deadline,
) -> Result<Response, ApiError> {
    let answer = tokio::task::spawn_blocking(move || answer.prepare().map(|()| answer))
        .await
        .map_err(|e| ApiError::Internal(format!("grouping the answer failed: {e}")))??;
    let held =
        hold_answer_budget(state, answer.held_bytes() + 2 * ANSWER_CHUNK, deadline.at).await?;
    let chunks = futures_util::stream::unfold(Some((answer, held)), |state| async move {
        let (mut answer, held) = state?;
        let encoded = tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(ANSWER_CHUNK + 4096);
            let more = answer.fill(&mut out, ANSWER_CHUNK);
            (answer, out, more)
        })
        .await;
        match encoded {
            Ok((answer, out, Ok(more))) => {
                let next = more.then_some((answer, held));
                (!out.is_empty() || next.is_some())
                    .then(|| (Ok::<_, std::io::Error>(bytes::Bytes::from(out)), next))
            }
            Ok((_, _, Err(e))) => Some((Err(std::io::Error::other(e)), None)),
            Err(e) => Some((Err(std::io::Error::other(e)), None)),
        }
    });
    Ok(envelope::json_response(axum::body::Body::from_stream(
        chunks,
    )))
}

/// Takes `bytes` from the budget of log answers in flight (query answers and tail batches alike),
/// waiting for room until `deadline`.
pub async fn hold_answer_budget(
    state: &SharedState,
    bytes: usize,
    deadline: tokio::time::Instant,
) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    let weight = u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX);
    tokio::time::timeout_at(
        deadline,
        Arc::clone(&state.answer_budget).acquire_many_owned(weight),
    )
    .await
    .map_err(|_| {
        ApiError::Timeout(
            "query timed out waiting for memory to send its answer (answers in flight)".into(),
        )
    })?
    .map_err(|_| ApiError::Unavailable("Janus is shutting down".into()))
}
