//! Who a request is, when `--auth.tenants-file` is given, and which paths a restricted tenant
//! may reach.
//!
//! The rule is fail-closed: a restricted tenant reaches only the paths whose answers Janus
//! filters by its namespaces (see [`FILTERED`]); every other path is refused with 403 and a
//! message saying why, so that a path not yet taught the rule can never leak another tenant's
//! data. An unrestricted tenant (`all: true`) reaches everything, and its answers are the
//! upstream's bytes.
//!
//! Towards the upstream a tenant has one identity: the client's own `X-Scope-OrgID` is dropped
//! and the tenant's `upstream_org_id`, if any, sent instead, so no tenant can name another's
//! Mimir or Cortex organisation.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use super::SharedState;
use crate::api::error::ApiError;
use crate::auth::tenants::{Presented, Tenant};
use crate::telemetry::TenantLabels;

use crate::auth::web_guard::{PeerAddr, VerifiedUser, OPEN_PATHS};

/// The routes a restricted tenant may use: those whose answers are filtered by its namespaces,
/// or hold no data of anyone's.
const FILTERED: &[&str] = &[
    // The status page, without the upstream's address and the store's path (`api::status`).
    "/",
    // The query page and its files: they hold no data, and the page asks the paths below.
    "/graph",
    "/ui/{file}",
    "/loki/api/v1/push",
    "/loki/api/v1/status/buildinfo",
    "/loki/api/v1/format_query",
    // The Loki face: every selector narrowed to the tenant's scope (`loki::prepare`), and "no
    // selector" meaning the scope's streams (`loki::everything`).
    "/loki/api/v1/query",
    "/loki/api/v1/query_range",
    "/loki/api/v1/labels",
    "/loki/api/v1/label/{name}/values",
    "/loki/api/v1/series",
    "/loki/api/v1/index/stats",
    "/loki/api/v1/index/volume",
    "/loki/api/v1/index/volume_range",
    "/loki/api/v1/tail",
    "/loki/api/v1/detected_labels",
    "/loki/api/v1/detected_fields",
    "/loki/api/v1/detected_field/{name}/values",
    // The Prometheus API's queries: log selectors narrowed, metric selectors confined
    // (`api::prometheus::query`), metric-only queries parsed, confined and printed before forwarding.
    "/api/v1/query",
    "/api/v1/query_range",
    // Merged endpoints: `match[]` confined, or the tenant's own series when none is given
    // (`api::prometheus::merged`).
    "/api/v1/labels",
    "/api/v1/label/{name}/values",
    "/api/v1/series",
    // Metadata cut to the names of the tenant's series; targets to those labelled with its
    // namespaces (`api::prometheus::metadata`, `api::prometheus::targets`).
    "/api/v1/metadata",
    "/api/v1/targets",
    // Rules and alerts: only Janus's rules whose every selector is pinned to the tenant's
    // namespaces, none of the upstream's (`api::ruler`).
    "/api/v1/rules",
    "/api/v1/alerts",
    "/prometheus/api/v1/rules",
    "/prometheus/api/v1/alerts",
    "/loki/api/v1/rules",
    "/loki/api/v1/rules/{namespace}",
    "/loki/api/v1/rules/{namespace}/{group}",
];

pub async fn tenancy(
    State(state): State<SharedState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(tenants) = state.config.tenants.as_deref() else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    if OPEN_PATHS.contains(&path) || (path == "/metrics" && tenants.metrics_open) {
        return next.run(request).await;
    }
    let headers = request.headers();
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let presented = Presented {
        verified_user: request
            .extensions()
            .get::<VerifiedUser>()
            .map(|u| u.0.as_str()),
        bearer,
        header: tenants
            .header
            .as_ref()
            .and_then(|h| headers.get(&h.name))
            .and_then(|v| v.to_str().ok()),
        peer: request.extensions().get::<PeerAddr>().map(|p| p.0.ip()),
    };
    let Some(tenant) = tenants.identify(&presented) else {
        count(&state, "none", "unidentified");
        return (
            StatusCode::UNAUTHORIZED,
            [(http::header::WWW_AUTHENTICATE, "Basic realm=\"janus\"")],
            "Unauthorized\n",
        )
            .into_response();
    };
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    if tenant.scope.is_some() && !route.as_deref().is_some_and(|r| FILTERED.contains(&r)) {
        count(&state, &tenant.name, "forbidden");
        return ApiError::Forbidden(format!(
            "tenant {:?} may see only its namespaces, and Janus does not filter {} by namespace yet",
            tenant.name,
            request.uri().path()
        ))
        .into_response();
    }
    count(&state, &tenant.name, "allowed");
    let upstream_identity = http::HeaderName::from_static("x-scope-orgid");
    request.headers_mut().remove(&upstream_identity);
    if let Some(org) = tenant
        .upstream_org_id
        .as_deref()
        .and_then(|o| http::HeaderValue::from_str(o).ok())
    {
        request.headers_mut().insert(upstream_identity, org);
    }
    // Its queries at once (pushes have their own rate): past the limit, 429 at once.
    let slot = if route.as_deref() == Some("/loki/api/v1/push") {
        None
    } else {
        match tenant.limits.query_slot() {
            Ok(slot) => slot,
            Err(crate::auth::tenant_limits::AllTaken) => {
                count(&state, &tenant.name, "limited");
                return ApiError::RateLimited {
                    message: format!(
                        "too many outstanding requests: tenant {:?} has {} queries running (its max_concurrent_queries)",
                        tenant.name,
                        tenant.limits.max_concurrent_queries.unwrap_or(0)
                    ),
                    retry_after: Some(std::time::Duration::from_secs(1)),
                }
                .into_response();
            }
        }
    };
    request.extensions_mut().insert(Arc::clone(&tenant));
    let response = next.run(request).await;
    drop(slot);
    response
}

fn count(state: &SharedState, tenant: &str, result: &str) {
    state
        .metrics
        .tenant_requests
        .get_or_create(&TenantLabels {
            tenant: tenant.to_string(),
            result: result.to_string(),
        })
        .inc();
}

/// The tenant a request was identified as, if tenants are configured.
pub fn tenant_of(request_extensions: &http::Extensions) -> Option<Arc<Tenant>> {
    request_extensions.get::<Arc<Tenant>>().cloned()
}
