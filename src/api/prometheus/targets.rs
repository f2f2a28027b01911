//! `/api/v1/targets`: the upstream's targets, then one active target per namespace and node
//! directory of the store (what Venti builds its workload tree from).
//!
//! For a restricted tenant the list is filtered, failing closed: an active target is kept only
//! when its `namespace` label (the one its series carry, and metric confinement matches) is in
//! the tenant's scope, a dropped one only when its discovered `__meta_kubernetes_namespace` is;
//! any other field of the upstream's answer (such as per-pool counts of dropped targets, which
//! would count other teams' targets) is left out. The store's targets are its namespaces in
//! scope, and node directories only when node logs are.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::merged::{self, Envelope, OrderedRaw, UpstreamPart};
use super::proxy;
use crate::api::error::ApiError;
use crate::api::{request, Face, SharedState};
use crate::auth::tenants::Scope;
use crate::logql::LogKind;
use crate::logstore::{LogStore, ScanStop};

pub async fn targets(State(state): State<SharedState>, request: Request) -> Response {
    let read = match request::read(request).await {
        Ok(read) => read,
        Err(e) => return e.into_response(),
    };
    let tenant = crate::api::tenancy::tenant_of(&read.parts.extensions);
    let scope: Option<Scope> = tenant.as_deref().and_then(|t| t.scope.clone());
    let wanted = read.params.get("state").to_ascii_lowercase();
    if wanted == "dropped" && scope.is_none() {
        return proxy::forward(&state, read).await;
    }
    let store = Arc::clone(&state.store);
    let in_scope = scope.clone();
    let listed: Result<Vec<Box<RawValue>>, ScanStop> = if wanted == "dropped" {
        Ok(Vec::new())
    } else {
        tokio::task::spawn_blocking(move || log_targets(store.as_ref(), in_scope.as_ref()))
            .await
            .unwrap_or_else(|e| Err(ScanStop::Unavailable(e.to_string())))
    };
    // A store that cannot answer: the upstream's targets with a warning.
    let (ours, store_warning) = match listed {
        Ok(ours) => (ours, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    if ours.is_empty() && scope.is_none() && store_warning.is_none() {
        return proxy::forward(&state, read).await;
    }
    let mut warnings: Vec<String> = store_warning.into_iter().collect();
    let mut data = OrderedRaw(Vec::new());
    let mut active: Vec<Box<RawValue>> = Vec::new();
    match merged::fetch_upstream(&state, &read, read.params.pairs()).await {
        UpstreamPart::Passthrough(response) => return response,
        UpstreamPart::Unavailable(why) => warnings.push(why),
        UpstreamPart::Absent => {}
        UpstreamPart::Json(body) => {
            let ordered = match serde_json::from_slice::<Envelope<OrderedRaw>>(&body) {
                Ok(e) => {
                    warnings.extend(e.warnings);
                    e.data
                }
                Err(e) => return merged::bad_upstream(e),
            };
            let filtered = match &scope {
                Some(scope) => filter_for(scope, ordered),
                None => Ok(ordered),
            };
            let ordered = match filtered {
                Ok(ordered) => ordered,
                Err(e) => return merged::bad_upstream(e),
            };
            for (key, value) in ordered.0 {
                if key == "activeTargets" {
                    match serde_json::from_str::<Vec<Box<RawValue>>>(value.get()) {
                        Ok(list) => active = list,
                        Err(e) => return merged::bad_upstream(e),
                    }
                    data.0.push((key, merged::raw("null".into())));
                } else {
                    data.0.push((key, value));
                }
            }
        }
    }
    active.extend(ours);
    let active_json = match serde_json::to_string(&active) {
        Ok(j) => merged::raw(j),
        Err(e) => return Face::Log.mark(ApiError::Internal(e.to_string()).into_response()),
    };
    match data.0.iter_mut().find(|(k, _)| k == "activeTargets") {
        Some(slot) => slot.1 = active_json,
        None => {
            data.0.insert(0, ("activeTargets".into(), active_json));
            if !data.0.iter().any(|(k, _)| k == "droppedTargets") {
                data.0
                    .push(("droppedTargets".into(), merged::raw("[]".into())));
            }
        }
    }
    Face::Log.mark(merged::encode(&data, &warnings))
}

/// The labels a target is judged by.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TargetLabels {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    discovered_labels: BTreeMap<String, String>,
}

/// The upstream's targets answer cut to what `scope` reaches: the two lists filtered, every
/// other field dropped.
fn filter_for(scope: &Scope, upstream: OrderedRaw) -> Result<OrderedRaw, serde_json::Error> {
    let mut out = Vec::new();
    for (key, value) in upstream.0 {
        let namespace_of: fn(&TargetLabels) -> Option<&String> = match key.as_str() {
            "activeTargets" => |t| t.labels.get("namespace"),
            "droppedTargets" => |t| t.discovered_labels.get("__meta_kubernetes_namespace"),
            _ => continue,
        };
        let list: Vec<Box<RawValue>> = serde_json::from_str(value.get())?;
        let mut kept = Vec::new();
        for target in list {
            let labels: TargetLabels = serde_json::from_str(target.get())?;
            if namespace_of(&labels).is_some_and(|n| scope.namespaces.contains(n)) {
                kept.push(target);
            }
        }
        out.push((key, merged::raw(serde_json::to_string(&kept)?)));
    }
    Ok(OrderedRaw(out))
}

/// Prometheus's target object, fields in its order; Lethe's fields (`discoveredLabels`,
/// `health`, `lastScrape`) are among them, so Venti reads it as it read Lethe's.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LogTarget {
    discovered_labels: BTreeMap<&'static str, String>,
    labels: BTreeMap<&'static str, String>,
    scrape_pool: &'static str,
    scrape_url: &'static str,
    global_url: &'static str,
    last_error: &'static str,
    last_scrape: String,
    last_scrape_duration: u8,
    health: &'static str,
    scrape_interval: &'static str,
    scrape_timeout: &'static str,
}

/// The store's targets that `scope` (if any) reaches.
fn log_targets(
    store: &dyn LogStore,
    scope: Option<&Scope>,
) -> Result<Vec<Box<RawValue>>, ScanStop> {
    let mut out = Vec::new();
    for kind in [LogKind::Pod, LogKind::Node] {
        let meta_label = match kind {
            LogKind::Pod => "__meta_kubernetes_namespace",
            LogKind::Node => "__meta_kubernetes_node_name",
        };
        for name in store.target_names(kind)? {
            let visible = match (scope, kind) {
                (None, _) => true,
                (Some(scope), LogKind::Pod) => scope.namespaces.contains(&name),
                (Some(scope), LogKind::Node) => scope.node_logs,
            };
            if !visible {
                continue;
            }
            let newest = store.newest_line(kind, &name)?;
            let last_scrape = newest
                .map(|ns| {
                    chrono::DateTime::<chrono::Utc>::from_timestamp(
                        ns.div_euclid(1_000_000_000),
                        ns.rem_euclid(1_000_000_000) as u32,
                    )
                    .unwrap_or_default()
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                })
                .unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
            let target = LogTarget {
                discovered_labels: BTreeMap::from([
                    (meta_label, name.clone()),
                    ("job", kind.name().to_string()),
                ]),
                labels: BTreeMap::from([
                    ("job", kind.name().to_string()),
                    (kind.target_label(), name.clone()),
                ]),
                scrape_pool: kind.name(),
                scrape_url: "",
                global_url: "",
                last_error: "",
                last_scrape,
                last_scrape_duration: 0,
                health: if newest.is_some() { "up" } else { "unknown" },
                scrape_interval: "",
                scrape_timeout: "",
            };
            if let Ok(json) = serde_json::to_string(&target) {
                out.push(merged::raw(json));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_sees_only_targets_in_its_namespaces_and_no_counts() {
        let scope = Scope::for_tests(&["shop", "cart-.*"], false);
        let upstream = r#"{"activeTargets":[
            {"discoveredLabels":{"__meta_kubernetes_namespace":"shop"},"labels":{"job":"x","namespace":"shop"},"scrapePool":"x"},
            {"discoveredLabels":{"__meta_kubernetes_namespace":"shop"},"labels":{"job":"x","namespace":"auth"},"scrapePool":"x"},
            {"discoveredLabels":{},"labels":{"job":"prometheus"},"scrapePool":"prometheus"},
            {"discoveredLabels":{},"labels":{"job":"y","namespace":"cart-7"},"scrapePool":"y"},
            {"discoveredLabels":{},"labels":{"job":"y","namespace":"cart"},"scrapePool":"y"}],
          "droppedTargets":[
            {"discoveredLabels":{"__meta_kubernetes_namespace":"auth","namespace":"shop"}},
            {"discoveredLabels":{"__meta_kubernetes_namespace":"cart-1"}}],
          "droppedTargetCounts":{"x":2}}"#;
        let parsed: OrderedRaw = serde_json::from_str(upstream).expect("json");
        let filtered = filter_for(&scope, parsed).expect("filtered");
        let keys: Vec<&str> = filtered.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["activeTargets", "droppedTargets"]);
        let active = filtered.0[0].1.get();
        assert!(active.contains(r#""namespace":"shop""#) && active.contains("cart-7"));
        assert!(!active.contains("auth") && !active.contains("prometheus"));
        assert!(!active.contains(r#""namespace":"cart""#), "{active}");
        let dropped = filtered.0[1].1.get();
        assert!(
            dropped.contains("cart-1") && !dropped.contains("auth"),
            "{dropped}"
        );
    }

    #[test]
    fn an_unreadable_target_list_is_an_error_not_an_empty_one() {
        let scope = Scope::for_tests(&["shop"], false);
        let parsed: OrderedRaw =
            serde_json::from_str(r#"{"activeTargets":{"not":"a list"}}"#).expect("json");
        assert!(filter_for(&scope, parsed).is_err());
    }
}
