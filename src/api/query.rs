//! `/api/v1/query` and `/api/v1/query_range`: the one place that decides which face answers.
//! A query with a log selector or a line filter is Janus's; every other query is forwarded
//! verbatim, even one Janus's own parser would refuse.

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};

use super::{logs, proxy, request, Face, SharedState};
use crate::logql;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    Instant,
    Range,
}

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
    if logql::involves_logs(read.params.get("query")) || state.config.evaluate_metric_queries {
        let mut response = logs::answer(&state, &read.params, &read.parts.headers, kind).await;
        response.extensions_mut().insert(Face::Log);
        response
    } else {
        proxy::forward(&state, read).await
    }
}
