//! `/api/v1/query` and `/api/v1/query_range`: read the request, ask the engine who answers
//! (the one routing decision), hand the query to the upstream, the lines path or the numbers
//! path. A metric-only query is forwarded verbatim, even one Janus's own parser would refuse.

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};

use super::{lines, numbers, proxy, request, Face, SharedState};
use crate::engine::{prepare, Prepared};
use crate::error::ApiError;
use crate::logql::lexer::Dialect;
use crate::params::QueryKind;

pub async fn instant(state: State<SharedState>, request: Request) -> Response {
    route(state, request, QueryKind::Instant).await
}

pub async fn range(state: State<SharedState>, request: Request) -> Response {
    route(state, request, QueryKind::Range).await
}

async fn route(State(state): State<SharedState>, request: Request, kind: QueryKind) -> Response {
    let read = match request::read(request).await {
        Ok(read) => read,
        Err(e) => return e.into_response(),
    };
    let text = read.params.get("query");
    let Some(tokens) = prepare::route(text, state.engine.limits().evaluate_metric_queries) else {
        return proxy::forward(&state, read).await;
    };
    let answered = match state
        .engine
        .prepare(text, tokens, Dialect::Prometheus)
        .await
    {
        Err(e) => Err(ApiError::from(e)),
        Ok(Prepared::Empty) => lines::answer(&state, &read.params, kind, None).await,
        Ok(Prepared::Lines(parsed)) => {
            lines::answer(&state, &read.params, kind, Some(parsed)).await
        }
        Ok(Prepared::Expression(expression)) => {
            numbers::answer(&state, &read.params, &read.parts.headers, kind, &expression).await
        }
    };
    Face::Log.mark(answered.unwrap_or_else(IntoResponse::into_response))
}
