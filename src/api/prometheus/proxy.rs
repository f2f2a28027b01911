//! Forwarding to the upstream: wait for a query slot, forward verbatim. Janus never judges a
//! metric query; the upstream does.

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::response::{IntoResponse, Response};

use crate::api::error::ApiError;
use crate::api::request::{self, Deadline, ReadRequest};
use crate::api::{Face, SharedState};
use crate::upstream::Forward;

/// The handler of every route that only the upstream answers.
pub async fn handler(State(state): State<SharedState>, request: Request) -> Response {
    match request::read(request).await {
        Ok(read) => forward(&state, read).await,
        Err(e) => Face::Metric.mark(e.into_response()),
    }
}

/// Forwards a request that was already read.
pub async fn forward(state: &SharedState, read: ReadRequest) -> Response {
    Face::Metric.mark(match send_upstream(state, read).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    })
}

async fn send_upstream(state: &SharedState, read: ReadRequest) -> Result<Response, ApiError> {
    let ReadRequest {
        parts,
        body,
        params,
    } = read;
    let deadline = Deadline::forwarded(&params, &state.config);
    let _slot = state.limiter.acquire(deadline.at).await?;
    let handler = parts
        .extensions
        .get::<MatchedPath>()
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
            deadline: deadline.at,
            budget: deadline.budget,
            uncompressed: false,
        })
        .await?;
    let (head, body) = answer.into_parts();
    Ok(Response::from_parts(head, Body::new(body)))
}
