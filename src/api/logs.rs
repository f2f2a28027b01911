//! Answering a log query from the store: parameters → LetheQL → window → search → encode.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::response::{IntoResponse, Response};

use super::log_encode;
use super::query::QueryKind;
use super::request::Deadline;
use super::SharedState;
use crate::config::{LogAnswerFormat, MAX_LOG_LIMIT};
use crate::error::ApiError;
use crate::logql;
use crate::params::{Params, Timestamp};
use crate::store::scan::{Keep, ScanStop};
use crate::store::Search;

/// The order lines are returned in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Ascending,
    Descending,
}

pub async fn answer(
    state: &SharedState,
    params: &Params,
    headers: &axum::http::HeaderMap,
    kind: QueryKind,
) -> Response {
    // Parsing compiles regexes and builds deep trees: not on the async threads.
    let text = params.get("query").to_string();
    let routed = tokio::task::spawn_blocking(move || route(&text))
        .await
        .unwrap_or_else(|e| Err(ApiError::Internal(format!("query parser failed: {e}"))));
    let outcome = match routed {
        Ok(Route::Lines(parsed)) => answer_inner(state, params, kind, parsed).await,
        Ok(Route::Expression(rewritten, expr)) => {
            super::expr::answer(state, params, headers, kind, rewritten, expr).await
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

enum Route {
    /// A bare log selector with its pipeline: lines. The parse is kept until the parameters
    /// before it have been checked, so errors come in Prometheus's order.
    Lines(Option<Result<logql::LogQuery, ApiError>>),
    /// Log metrics, aggregations, mixed expressions: numbers.
    Expression(
        crate::logql::rewrite::Rewritten,
        crate::promql::plan::Parsed,
    ),
}

/// Lines or numbers? A query that is one log selector (with pipeline and range) asks for lines;
/// anything around it makes it an expression.
fn route(text: &str) -> Result<Route, ApiError> {
    if text.trim().is_empty() {
        return Ok(Route::Lines(None)); // refused with Prometheus's words by the lines path
    }
    let rewritten = crate::logql::rewrite::rewrite(text)?;
    match crate::promql::plan::Parsed::parse(&rewritten.promql) {
        Ok(expr)
            if rewritten.logs.len() == 1
                && matches!(
                    &*expr,
                    promql_parser::parser::Expr::VectorSelector(_)
                        | promql_parser::parser::Expr::MatrixSelector(_)
                ) =>
        {
            Ok(Route::Lines(Some(logql::parse_log_query(text))))
        }
        Ok(expr) => Ok(Route::Expression(rewritten, expr)),
        // A query that starts with a log selector is worded best by the lines parser, with
        // positions in the query as written.
        Err(e) => {
            let starts_with_selector = logql::lexer::LOG_SELECTORS
                .iter()
                .any(|name| text.trim_start().starts_with(name));
            match logql::parse_log_query(text) {
                Err(ours) if starts_with_selector => Err(ours),
                _ => Err(ApiError::BadData(format!(
                    "invalid parameter \"query\": {}",
                    e.trim()
                ))),
            }
        }
    }
}

/// Sets the flag when dropped: a client that goes away drops the handler future, and the scan
/// sees the flag at its next block.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

async fn answer_inner(
    state: &SharedState,
    params: &Params,
    kind: QueryKind,
    parsed: Option<Result<logql::LogQuery, ApiError>>,
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
        Some(f) => LogAnswerFormat::parse(f).unwrap_or(config.query_log_format),
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

    let _slot = state.log_limiter.acquire(deadline.at).await?;
    let cancelled = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(Arc::clone(&cancelled));
    let store = Arc::clone(&state.store);
    let std_deadline = deadline.at.into_std();
    let searched = tokio::task::spawn_blocking(move || {
        store
            .search(&Search {
                query: &query,
                lo,
                hi,
                limit,
                keep,
                deadline: std_deadline,
                cancelled: &cancelled,
            })
            .map(|found| (found, query.kind))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("log search failed: {e}")))?;
    let (found, log_kind) = match searched {
        Ok(found) => found,
        Err(ScanStop::Deadline) => {
            return Err(ApiError::Timeout(
                "query timed out in query execution".into(),
            ))
        }
        Err(ScanStop::Cancelled) => return Err(ApiError::Canceled("query was canceled".into())),
        Err(ScanStop::TooManyStreams(_)) => {
            return Err(ApiError::Internal(
                "a line search cannot exceed a stream limit".into(),
            ))
        }
    };
    let mut found = found;
    let mut warnings = std::mem::take(&mut found.warnings);
    if found.truncated {
        warnings.push("results truncated due to limit".into());
    }
    let answer = log_encode::LogAnswer::new(found, log_kind, order, format, warnings);
    // What answers being sent hold (positions, open files, a chunk each) has one budget.
    let weight =
        u32::try_from((answer.held_bytes() + 2 * ANSWER_CHUNK).div_ceil(1024)).unwrap_or(u32::MAX);
    let held = tokio::time::timeout_at(
        deadline.at,
        Arc::clone(&state.answer_budget).acquire_many_owned(weight),
    )
    .await
    .map_err(|_| {
        ApiError::Timeout(
            "query timed out waiting for memory to send its answer (answers in flight)".into(),
        )
    })?
    .map_err(|_| ApiError::Unavailable("Janus is shutting down".into()))?;
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
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        axum::body::Body::from_stream(chunks),
    )
        .into_response())
}

/// Bytes of answer encoded at a time: what a slow reader holds.
const ANSWER_CHUNK: usize = 256 * 1024;

enum Window {
    Instant(Timestamp),
    Range(Timestamp, Timestamp),
}
