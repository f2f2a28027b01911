//! Lines: a log selector with its pipeline, answered from the store. Parameters in
//! Prometheus's order → window → the engine's search → the answer streamed in chunks, with what
//! answers in flight hold bounded by one budget.

use std::sync::Arc;

use axum::response::Response;

use super::log_encode::{self, Order};
use super::request::Deadline;
use super::{envelope, SharedState};
use crate::api::error::ApiError;
use crate::api::params::{Params, QueryKind, Timestamp};
use crate::config::{LogAnswerFormat, MAX_LOG_LIMIT};
use crate::engine::LineSearch;
use crate::logql::{self, SyntaxError};
use crate::logstore::Keep;

/// `parsed` is the engine's parse of the query (`None`: the query is empty).
pub async fn answer(
    state: &SharedState,
    params: &Params,
    kind: QueryKind,
    parsed: Option<Result<logql::LogQuery, SyntaxError>>,
) -> Result<Response, ApiError> {
    let config = &state.config;
    // Parameters in Prometheus's order (times, then timeout), then the query itself.
    let window = match kind {
        QueryKind::Instant => Window::Instant(params.time_or("time", Timestamp::now())?),
        QueryKind::Range => {
            let (start, end) = params.log_range()?;
            Window::Range(start, end)
        }
    };
    let deadline = Deadline::own(params, config)?;
    let text = params.query()?;
    let query = match parsed {
        Some(parsed) => parsed?,
        None => logql::parse_log_query(text)?,
    };
    let limit = params.limit(config.query_log_limit, MAX_LOG_LIMIT)?;
    // Default: the newest lines, oldest first. `forward`: the oldest (Lethe's choice).
    // `backward`: the newest, newest first (Loki's meaning).
    let (keep, order) = match params.choice("direction", &["forward", "backward"])? {
        None => (Keep::Newest, Order::Ascending),
        Some("forward") => (Keep::Oldest, Order::Ascending),
        Some(_) => (Keep::Newest, Order::Descending),
    };
    let format = match params.choice("format", &["lethe", "streams"])? {
        // `choice` allowed only these names.
        Some(f) => <LogAnswerFormat as clap::ValueEnum>::from_str(f, false)
            .unwrap_or(config.query_log_format),
        None => config.query_log_format,
    };
    let (lo, hi) = match window {
        Window::Instant(t) => {
            let range = query.range.unwrap_or(config.query_log_lookback);
            let range = i64::try_from(range.as_nanos()).unwrap_or(i64::MAX);
            (t.0.saturating_sub(range), t.0)
        }
        Window::Range(start, end) => (start.0, end.0),
    };

    let slot = state.log_limiter.acquire(deadline.at).await?;
    let log_kind = query.kind;
    let pipeline = query.pipeline.clone();
    let (mut found, _slot) = state
        .engine
        .search_lines(
            LineSearch {
                query,
                lo,
                hi,
                limit,
                keep,
            },
            deadline.at,
            slot,
        )
        .await?;
    let mut warnings = std::mem::take(&mut found.warnings);
    if found.truncated {
        warnings.push("results truncated due to limit".into());
    }
    let answer = log_encode::LogAnswer::new(found, log_kind, order, format, warnings)
        .with_pipeline(pipeline);
    stream(state, answer, deadline).await
}

/// Sends a log answer as it is encoded, a chunk at a time, once the answer budget has room for
/// what it holds (positions, open files, a chunk each); waits for room until the deadline.
pub(super) async fn stream(
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
pub(super) async fn hold_answer_budget(
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

/// Bytes of answer encoded at a time: what a slow reader holds.
const ANSWER_CHUNK: usize = 256 * 1024;

enum Window {
    Instant(Timestamp),
    Range(Timestamp, Timestamp),
}
