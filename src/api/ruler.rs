//! The ruler's APIs, in the shapes Grafana and Prometheus's clients read:
//! `/api/v1/rules` and `/api/v1/alerts` (Janus's rules merged with the upstream's own, so that
//! Grafana's alerting view lists both), the Loki face's `/prometheus/api/v1/rules|alerts`
//! (Janus's only), the read-only `/loki/api/v1/rules[/{namespace}[/{group}]]` in YAML, and
//! `POST /-/reload`. A restricted tenant sees only rules whose every selector is pinned to its
//! namespaces (and none of the upstream's, which Janus cannot confine).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{json, Value};

use super::error::ApiError;
use super::params::Params;
use super::prometheus::merged::{fetch_upstream, UpstreamPart};
use super::request::{self, ReadRequest};
use super::{envelope, Face, SharedState};
use crate::rules::alerting::{Alert, AlertState, Labels};
use crate::rules::file::RuleKind;
use crate::rules::group::{GroupRuntime, Health, RuleRuntime};
use crate::rules::notifier::rfc3339;
use crate::rules::template::go_exponent;

/// What the filters of `/api/v1/rules` ask for.
struct Filter {
    kind: Option<RuleKind>,
    names: HashSet<String>,
    groups: HashSet<String>,
    files: HashSet<String>,
    exclude_alerts: bool,
    matchers: Vec<Vec<promql_parser::label::Matcher>>,
}

/// Grafana sends both `x` and `x[]`: both are read.
fn both(params: &Params, name: &str) -> HashSet<String> {
    params
        .get_all(name)
        .chain(params.get_all(&format!("{name}[]")))
        .map(str::to_string)
        .collect()
}

impl Filter {
    fn read(params: &Params) -> Result<Filter, ApiError> {
        let kind = match params.get("type") {
            "" => None,
            "alert" => Some(RuleKind::Alert),
            "record" => Some(RuleKind::Record),
            other => return Err(ApiError::BadData(format!("not supported value {other:?}"))),
        };
        let exclude_alerts = match params.get("exclude_alerts") {
            "" | "false" => false,
            "true" => true,
            other => {
                return Err(ApiError::BadData(format!(
                    "parsing exclude_alerts: strconv.ParseBool: parsing {other:?}: invalid syntax"
                )))
            }
        };
        let mut matchers = Vec::new();
        for text in both(params, "match") {
            match crate::promql::plan::Parsed::parse(&text) {
                Ok(parsed) => match &*parsed {
                    promql_parser::parser::Expr::VectorSelector(vs) => {
                        matchers.push(vs.matchers.matchers.clone())
                    }
                    _ => {
                        return Err(ApiError::BadData(format!(
                            "invalid parameter \"match[]\": {text:?} is not a series selector"
                        )))
                    }
                },
                Err(e) => {
                    return Err(ApiError::BadData(format!(
                        "invalid parameter \"match[]\": {}",
                        e.trim()
                    )))
                }
            }
        }
        Ok(Filter {
            kind,
            names: both(params, "rule_name"),
            groups: both(params, "rule_group"),
            files: both(params, "file"),
            exclude_alerts,
            matchers,
        })
    }

    fn group(&self, g: &GroupRuntime) -> bool {
        (self.groups.is_empty() || self.groups.contains(&g.name))
            && (self.files.is_empty() || self.files.contains(&g.file))
    }

    fn rule(&self, r: &RuleRuntime) -> bool {
        self.kind.as_ref().is_none_or(|k| *k == r.spec.kind)
            && (self.names.is_empty() || self.names.contains(&r.spec.name))
            && (self.matchers.is_empty()
                || self.matchers.iter().any(|set| {
                    set.iter()
                        .all(|m| m.is_match(r.spec.labels.get(&m.name).map_or("", String::as_str)))
                }))
    }
}

fn time_text(ms: Option<i64>) -> String {
    ms.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339)
}

fn alert_json(a: &Alert) -> Value {
    json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "state": a.state.as_str(),
        "activeAt": rfc3339(a.active_at),
        "value": go_exponent(a.value),
    })
}

fn rule_json(r: &RuleRuntime, exclude_alerts: bool) -> Value {
    let mut rule = json!({
        "name": r.spec.name,
        "query": r.spec.expr.text,
        "labels": r.spec.labels,
        "health": r.health.as_str(),
        "evaluationTime": r.evaluation_seconds,
        "lastEvaluation": time_text(r.last_evaluation),
    });
    if r.health == Health::Err {
        rule["lastError"] = json!(r.last_error);
    }
    match r.spec.kind {
        RuleKind::Record => rule["type"] = json!("recording"),
        RuleKind::Alert => {
            rule["type"] = json!("alerting");
            rule["state"] = json!(r.alerting.state().as_str());
            rule["duration"] = json!(r.spec.for_.as_secs_f64());
            rule["keepFiringFor"] = json!(r.spec.keep_firing_for.as_secs_f64());
            rule["annotations"] = json!(r.spec.annotations);
            if !exclude_alerts {
                let alerts: Vec<Value> = r
                    .alerting
                    .active
                    .values()
                    .filter(|a| a.state != AlertState::Inactive)
                    .map(alert_json)
                    .collect();
                rule["alerts"] = json!(alerts);
            }
        }
    }
    rule
}

/// Whether a restricted tenant may see a rule (an unrestricted one sees all).
fn visible(tenant: Option<&crate::auth::tenants::Tenant>, r: &RuleRuntime) -> bool {
    match tenant.and_then(|t| t.scope.as_ref()) {
        None => true,
        Some(scope) => r
            .spec
            .expr
            .expression
            .confined_to(&|ns| scope.namespaces.contains(ns)),
    }
}

fn restricted(read: &ReadRequest) -> Option<Arc<crate::auth::tenants::Tenant>> {
    super::tenancy::tenant_of(&read.parts.extensions).filter(|t| t.scope.is_some())
}

/// Janus's groups as `/api/v1/rules` shows them, filtered.
fn own_groups(state: &SharedState, read: &ReadRequest, filter: &Filter) -> Vec<Value> {
    let tenant = restricted(read);
    state
        .ruler
        .groups()
        .iter()
        .filter(|g| filter.group(g))
        .filter_map(|g| {
            let rules: Vec<Value> = g
                .rules
                .iter()
                .filter(|r| filter.rule(r) && visible(tenant.as_deref(), r))
                .map(|r| rule_json(r, filter.exclude_alerts))
                .collect();
            (!rules.is_empty()).then(|| {
                json!({
                    "name": g.name,
                    "file": g.file,
                    "rules": rules,
                    "interval": g.interval.as_secs_f64(),
                    "limit": g.limit,
                    "evaluationTime": g.evaluation_seconds,
                    "lastEvaluation": time_text(g.last_evaluation),
                })
            })
        })
        .collect()
}

fn own_alerts(state: &SharedState, read: &ReadRequest) -> Vec<Value> {
    let tenant = restricted(read);
    state
        .ruler
        .groups()
        .iter()
        .flat_map(|g| {
            g.live_alerts()
                .filter(|(r, _)| visible(tenant.as_deref(), r))
                .map(|(_, a)| alert_json(a))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The upstream's `data.<key>` list, or a warning saying why there is none.
async fn upstream_list(
    state: &SharedState,
    read: &ReadRequest,
    key: &str,
) -> Result<Vec<Value>, String> {
    let mut lists = upstream_lists(state, read, key, &[key]).await?;
    Ok(lists.pop().unwrap_or_default())
}

/// The upstream's lists under `data.<key>` for each of `keys` (empty for a restricted
/// tenant, or without an upstream), or why they are missing, naming them `what`.
async fn upstream_lists(
    state: &SharedState,
    read: &ReadRequest,
    what: &str,
    keys: &[&str],
) -> Result<Vec<Vec<Value>>, String> {
    let none = || keys.iter().map(|_| Vec::new()).collect();
    if restricted(read).is_some() {
        return Ok(none());
    }
    let pairs = read.params.pairs().to_vec();
    match fetch_upstream(state, read, &pairs).await {
        UpstreamPart::Json(body) => {
            let parsed: Value = serde_json::from_slice(&body)
                .map_err(|e| format!("the upstream's {what} could not be read: {e}"))?;
            Ok(keys
                .iter()
                .map(|key| parsed["data"][key].as_array().cloned().unwrap_or_default())
                .collect())
        }
        UpstreamPart::Passthrough(r) => Err(format!(
            "the upstream answered {} for its {what}; only Janus's are listed",
            r.status()
        )),
        UpstreamPart::Unavailable(e) => Err(format!("the upstream's {what} are missing: {e}")),
        UpstreamPart::Absent => Ok(none()),
    }
}

async fn rules_answer(
    state: &SharedState,
    request: Request,
    merge: bool,
) -> Result<Response, ApiError> {
    let read = request::read(request).await?;
    let filter = Filter::read(&read.params)?;
    let mut groups = own_groups(state, &read, &filter);
    let mut warnings = Vec::new();
    if merge {
        match upstream_list(state, &read, "groups").await {
            Ok(theirs) => groups.extend(theirs),
            Err(w) => warnings.push(w),
        }
    }
    Ok(envelope::success(json!({ "groups": groups }), &warnings))
}

async fn alerts_answer(
    state: &SharedState,
    request: Request,
    merge: bool,
) -> Result<Response, ApiError> {
    let read = request::read(request).await?;
    let mut alerts = own_alerts(state, &read);
    let mut warnings = Vec::new();
    if merge {
        match upstream_list(state, &read, "alerts").await {
            Ok(theirs) => alerts.extend(theirs),
            Err(w) => warnings.push(w),
        }
    }
    Ok(envelope::success(json!({ "alerts": alerts }), &warnings))
}

/// Without rules of Janus's own, an unrestricted client gets the upstream's answer untouched
/// (its bytes, its encoding), as every merged endpoint does when the store adds nothing.
fn forwarded_untouched(state: &SharedState, request: &Request) -> bool {
    state.ruler.groups().is_empty()
        && super::tenancy::tenant_of(request.extensions()).is_none_or(|t| t.scope.is_none())
}

/// `GET /api/v1/rules`: Janus's rules, then the upstream's.
pub async fn rules(State(state): State<SharedState>, request: Request) -> Response {
    if forwarded_untouched(&state, &request) {
        return super::prometheus::proxy::handler(State(state), request).await;
    }
    Face::Janus.mark(
        rules_answer(&state, request, true)
            .await
            .unwrap_or_else(IntoResponse::into_response),
    )
}

/// `GET /api/v1/alerts`: Janus's active alerts, then the upstream's.
pub async fn alerts(State(state): State<SharedState>, request: Request) -> Response {
    if forwarded_untouched(&state, &request) {
        return super::prometheus::proxy::handler(State(state), request).await;
    }
    Face::Janus.mark(
        alerts_answer(&state, request, true)
            .await
            .unwrap_or_else(IntoResponse::into_response),
    )
}

/// `GET /api/v1/alertmanagers`: the Alertmanagers Janus's ruler sends to, then the upstream's,
/// in Prometheus's shape (`url` is the endpoint alerts are posted to). Without Alertmanagers of
/// its own, the upstream's answer untouched.
pub async fn alertmanagers(State(state): State<SharedState>, request: Request) -> Response {
    if state.ruler.alertmanagers().is_empty() {
        return super::prometheus::proxy::handler(State(state), request).await;
    }
    Face::Janus.mark(
        alertmanagers_answer(&state, request)
            .await
            .unwrap_or_else(IntoResponse::into_response),
    )
}

async fn alertmanagers_answer(state: &SharedState, request: Request) -> Result<Response, ApiError> {
    let read = request::read(request).await?;
    let mut active: Vec<Value> = state
        .ruler
        .alertmanagers()
        .iter()
        .map(|am| json!({ "url": crate::rules::notifier::alerts_endpoint(am) }))
        .collect();
    let mut dropped = Vec::new();
    let mut warnings = Vec::new();
    let keys = ["activeAlertmanagers", "droppedAlertmanagers"];
    match upstream_lists(state, &read, "alertmanagers", &keys).await {
        Ok(mut theirs) => {
            dropped = theirs.pop().unwrap_or_default();
            active.extend(theirs.pop().unwrap_or_default());
        }
        Err(w) => warnings.push(w),
    }
    Ok(envelope::success(
        json!({ "activeAlertmanagers": active, "droppedAlertmanagers": dropped }),
        &warnings,
    ))
}

/// `GET /prometheus/api/v1/rules` (the Loki face): Janus's rules.
pub async fn loki_face_rules(State(state): State<SharedState>, request: Request) -> Response {
    Face::Log.mark(
        rules_answer(&state, request, false)
            .await
            .unwrap_or_else(IntoResponse::into_response),
    )
}

/// `GET /prometheus/api/v1/alerts` (the Loki face): Janus's active alerts.
pub async fn loki_face_alerts(State(state): State<SharedState>, request: Request) -> Response {
    Face::Log.mark(
        alerts_answer(&state, request, false)
            .await
            .unwrap_or_else(IntoResponse::into_response),
    )
}

/// A group in the rule-file format, as Loki's rules API writes it.
#[derive(Serialize)]
struct YamlGroup {
    name: String,
    interval: String,
    #[serde(skip_serializing_if = "is_zero")]
    limit: usize,
    rules: Vec<YamlRule>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Serialize)]
struct YamlRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    alert: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<String>,
    expr: String,
    #[serde(rename = "for", skip_serializing_if = "Option::is_none")]
    for_: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    labels: Labels,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: Labels,
}

fn yaml_group(
    g: &GroupRuntime,
    tenant: Option<&crate::auth::tenants::Tenant>,
) -> Option<YamlGroup> {
    let duration = |d: std::time::Duration| promql_parser::util::display_duration(&d);
    let rules: Vec<YamlRule> = g
        .rules
        .iter()
        .filter(|r| visible(tenant, r))
        .map(|r| YamlRule {
            alert: (r.spec.kind == RuleKind::Alert).then(|| r.spec.name.clone()),
            record: (r.spec.kind == RuleKind::Record).then(|| r.spec.name.clone()),
            expr: r.spec.expr.text.clone(),
            for_: (!r.spec.for_.is_zero()).then(|| duration(r.spec.for_)),
            labels: r.spec.labels.clone(),
            annotations: r.spec.annotations.clone(),
        })
        .collect();
    (!rules.is_empty()).then(|| YamlGroup {
        name: g.name.clone(),
        interval: duration(g.interval),
        limit: g.limit,
        rules,
    })
}

fn yaml(body: Result<String, serde_norway::Error>) -> Response {
    match body {
        Ok(text) => ([(header::CONTENT_TYPE, "application/yaml")], text).into_response(),
        Err(e) => ApiError::Internal(format!("encoding the rules: {e}")).into_response(),
    }
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("{what}\n")).into_response()
}

/// `GET /loki/api/v1/rules[/{namespace}[/{group}]]`: the rule files (namespaces, in Loki's
/// word) and their groups as YAML.
async fn loki_rules_yaml(
    state: &SharedState,
    request: Request,
    namespace: Option<String>,
    group: Option<String>,
) -> Response {
    let read = match request::read(request).await {
        Ok(read) => read,
        Err(e) => return e.into_response(),
    };
    let tenant = restricted(&read);
    let mut files: BTreeMap<String, Vec<YamlGroup>> = BTreeMap::new();
    for g in state.ruler.groups().iter() {
        if namespace.as_ref().is_some_and(|n| *n != g.file)
            || group.as_ref().is_some_and(|n| *n != g.name)
        {
            continue;
        }
        if let Some(y) = yaml_group(g, tenant.as_deref()) {
            files.entry(g.file.clone()).or_default().push(y);
        }
    }
    if files.is_empty() {
        return not_found(if group.is_some() {
            "group does not exist"
        } else {
            "no rule groups found"
        });
    }
    if group.is_some() {
        let one = files.into_values().flatten().next();
        return yaml(serde_norway::to_string(&one));
    }
    yaml(serde_norway::to_string(&files))
}

pub async fn loki_rules(State(state): State<SharedState>, request: Request) -> Response {
    Face::Log.mark(loki_rules_yaml(&state, request, None, None).await)
}

pub async fn loki_rules_namespace(
    State(state): State<SharedState>,
    Path(namespace): Path<String>,
    request: Request,
) -> Response {
    Face::Log.mark(loki_rules_yaml(&state, request, Some(namespace), None).await)
}

pub async fn loki_rules_group(
    State(state): State<SharedState>,
    Path((namespace, group)): Path<(String, String)>,
    request: Request,
) -> Response {
    Face::Log.mark(loki_rules_yaml(&state, request, Some(namespace), Some(group)).await)
}

/// `POST /-/reload`: reads the rule files again. A file with problems keeps the running rules
/// and is refused with every problem named.
pub async fn reload(State(state): State<SharedState>) -> Response {
    match state.ruler.reload().await {
        Ok(groups) => Face::Janus
            .mark((StatusCode::OK, format!("rules reloaded: {groups} groups\n")).into_response()),
        Err(problems) => Face::Janus.mark(
            ApiError::BadData(format!(
                "reloading the rule files failed; the rules loaded before keep running: {problems}"
            ))
            .into_response(),
        ),
    }
}
