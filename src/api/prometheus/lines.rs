//! Lines: a log selector with its pipeline, answered from the store. Parameters in
//! Prometheus's order → window → the engine's search → the answer streamed in chunks, with what
//! answers in flight hold bounded by one budget.

use axum::response::Response;

use crate::api::error::ApiError;
use crate::api::log_encode::{self, Order};
use crate::api::params::{Params, QueryKind, Timestamp};
use crate::api::request::Deadline;
use crate::api::SharedState;
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
    crate::api::log_stream::stream(state, answer, deadline).await
}

enum Window {
    Instant(Timestamp),
    Range(Timestamp, Timestamp),
}
