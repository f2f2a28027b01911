//! `/api/v1/query` and `/api/v1/query_range`: read the request, ask the engine who answers
//! (the one routing decision), hand the query to the upstream, the lines path or the numbers
//! path. A metric-only query is forwarded verbatim, even one Janus's own parser would refuse.

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};

use super::{cached_query, lines, numbers};
use crate::api::error::ApiError;
use crate::api::params::QueryKind;
use crate::api::{request, Face, SharedState};
use crate::engine::{prepare, Prepared};
use crate::logql::lexer::Dialect;

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
    let tenant = crate::api::tenancy::tenant_of(&read.parts.extensions);
    let scope = tenant.as_deref().and_then(|t| t.scope.as_ref());
    let Some(tokens) = prepare::route(text, state.engine.limits().evaluate_metric_queries) else {
        return match tenant.as_ref().filter(|t| t.scope.is_some()) {
            Some(tenant) => match confined(read, tenant).await {
                Ok(read) => cached_query::answer(&state, read, kind).await,
                Err(e) => e.into_response(),
            },
            None => cached_query::answer(&state, read, kind).await,
        };
    };
    let prepared = state
        .engine
        .prepare(text, tokens, Dialect::Prometheus)
        .await
        .map(|prepared| match scope {
            Some(scope) => {
                prepared.narrowed(|query| scope.restrict(query), Some(&scope.confinement()))
            }
            None => prepared,
        });
    let answered = match prepared {
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

/// A metric-only query of a restricted tenant, confined to its namespaces: parsed, every
/// selector given the namespace matcher, printed (remembered per tenant, worked out on a
/// blocking thread the first time), and forwarded in place of the original. A query Janus
/// cannot parse (an upstream's own dialect) cannot be confined, so it is refused.
async fn confined(
    read: request::ReadRequest,
    tenant: &std::sync::Arc<crate::auth::tenants::Tenant>,
) -> Result<request::ReadRequest, ApiError> {
    let printed = crate::auth::confined_texts::confine(tenant, read.params.get("query"), false)
        .await
        .ok_or_else(|| ApiError::Internal("confining a query of an unrestricted tenant".into()))?
        .map_err(|e| {
            ApiError::BadData(format!(
                "invalid parameter \"query\": {}; tenant {:?} sees only its namespaces, and a query Janus cannot parse as PromQL cannot be confined to them",
                e.trim(),
                tenant.name
            ))
        })?;
    request::with_param(read, "query", &printed)
}
