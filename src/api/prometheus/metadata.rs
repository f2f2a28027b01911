//! `/api/v1/metadata`: the upstream's metric metadata, with `pod` and `node` added when the store
//! holds such logs.
//!
//! Metadata is per metric name, not per series, so a restricted tenant's answer is cut to the
//! names of series it may see: the upstream is asked for `__name__` values under the tenant's
//! namespace matcher, and only those names' entries are kept (the log entries only when the
//! scope reaches such logs). If that question cannot be answered, no upstream entry is shown:
//! the filter fails closed, with a warning.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::value::RawValue;

use super::merged::{self, Envelope, UpstreamPart};
use super::proxy;
use crate::api::error::ApiError;
use crate::api::{request, Face, SharedState};
use crate::auth::tenants::Scope;
use crate::logql::LogKind;
use crate::logstore::{LogStore, ScanStop};

/// Prometheus's metadata entry, fields in its order.
#[derive(Serialize)]
struct MetadataEntry {
    #[serde(rename = "type")]
    kind: &'static str,
    help: &'static str,
    unit: &'static str,
}

pub async fn metadata(State(state): State<SharedState>, request: Request) -> Response {
    let read = match request::read(request).await {
        Ok(read) => read,
        Err(e) => return e.into_response(),
    };
    let tenant = crate::api::tenancy::tenant_of(&read.parts.extensions);
    let scope: Option<Scope> = tenant.as_deref().and_then(|t| t.scope.clone());
    let metric = read.params.get("metric").to_string();
    let store = Arc::clone(&state.store);
    let in_scope = scope.clone();
    let visible: Result<Vec<LogKind>, ScanStop> = tokio::task::spawn_blocking(move || {
        let mut kinds = Vec::new();
        for kind in [LogKind::Pod, LogKind::Node] {
            if (metric.is_empty() || metric == kind.name())
                && log_kind_visible(store.as_ref(), kind, in_scope.as_ref())?
            {
                kinds.push(kind);
            }
        }
        Ok(kinds)
    })
    .await
    .unwrap_or_else(|e| Err(ScanStop::Unavailable(e.to_string())));
    // A store that cannot answer: the upstream's metadata with a warning.
    let (kinds, store_warning) = match visible {
        Ok(kinds) => (kinds, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    if kinds.is_empty() && scope.is_none() && store_warning.is_none() {
        return proxy::forward(&state, read).await;
    }
    let mut warnings: Vec<String> = store_warning.into_iter().collect();
    let mut entries: BTreeMap<String, Box<RawValue>> = BTreeMap::new();
    // A restricted tenant's `limit` applies after the filter, so the upstream is asked for all.
    let pairs: Vec<(String, String)> = read
        .params
        .pairs()
        .iter()
        .filter(|(k, _)| scope.is_none() || k != "limit")
        .cloned()
        .collect();
    match merged::fetch_upstream(&state, &read, &pairs).await {
        UpstreamPart::Passthrough(response) => return response,
        UpstreamPart::Unavailable(why) => warnings.push(why),
        UpstreamPart::Absent => {}
        UpstreamPart::Json(body) => {
            match serde_json::from_slice::<Envelope<BTreeMap<String, Box<RawValue>>>>(&body) {
                Ok(e) => {
                    entries.extend(e.data);
                    warnings.extend(e.warnings);
                }
                Err(e) => return merged::bad_upstream(e),
            }
        }
    }
    if let Some(scope) = &scope {
        if !entries.is_empty() {
            match names_in_scope(&state, &read, scope).await {
                Ok(names) => entries.retain(|name, _| names.contains(name)),
                Err(why) => {
                    entries.clear();
                    warnings.push(why);
                }
            }
        }
    }
    for kind in kinds {
        let help = match kind {
            LogKind::Pod => "Pod logs in Janus's log store: pod{namespace=\"…\", pod=\"…\", container=\"…\"} with |= != |~ !~ line filters",
            LogKind::Node => "Node logs in Janus's log store: node{node=\"…\", process=\"…\"} with |= != |~ !~ line filters",
        };
        let entry = [MetadataEntry {
            kind: "unknown",
            help,
            unit: "",
        }];
        match serde_json::to_string(&entry) {
            Ok(json) => {
                entries.insert(kind.name().into(), merged::raw(json));
            }
            Err(e) => return Face::Log.mark(ApiError::Internal(e.to_string()).into_response()),
        }
    }
    let limit = read.params.limit(0, usize::MAX).unwrap_or(0);
    if limit > 0 && entries.len() > limit {
        entries = entries.into_iter().take(limit).collect();
    }
    Face::Log.mark(merged::encode(&entries, &warnings))
}

/// Whether the store holds logs of `kind` that `scope` (if any) reaches.
fn log_kind_visible(
    store: &dyn LogStore,
    kind: LogKind,
    scope: Option<&Scope>,
) -> Result<bool, ScanStop> {
    let names = store.target_names(kind)?;
    Ok(match (scope, kind) {
        (None, _) => !names.is_empty(),
        (Some(scope), LogKind::Pod) => names.iter().any(|n| scope.namespaces.contains(n)),
        (Some(scope), LogKind::Node) => scope.node_logs && !names.is_empty(),
    })
}

/// The metric names of the series `scope` reaches, asked of the upstream.
async fn names_in_scope(
    state: &SharedState,
    read: &request::ReadRequest,
    scope: &Scope,
) -> Result<BTreeSet<String>, String> {
    let pairs = [(
        "match[]".to_string(),
        format!("{{{}}}", scope.namespace_matcher()),
    )];
    let why = |e: String| {
        format!("upstream metadata not shown: the tenant's metric names could not be asked ({e})")
    };
    match merged::fetch_upstream_at(
        state,
        read,
        &Method::GET,
        "/api/v1/label/__name__/values",
        &pairs,
    )
    .await
    {
        UpstreamPart::Json(body) => serde_json::from_slice::<Envelope<BTreeSet<String>>>(&body)
            .map(|e| e.data)
            .map_err(|e| why(e.to_string())),
        UpstreamPart::Unavailable(e) => Err(why(e)),
        UpstreamPart::Passthrough(response) => Err(why(format!("status {}", response.status()))),
        UpstreamPart::Absent => Err(why("not asked".into())),
    }
}
