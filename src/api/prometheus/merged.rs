//! Endpoints answered by both faces: `labels`, `label/<name>/values` and `series` (and, through
//! the helpers here, `metadata` and `targets`). The store's part is worked out first; when it adds nothing the request is simply
//! forwarded (the upstream's bytes come back untouched). Otherwise the upstream is asked for an
//! uncompressed answer, the two are merged and encoded as Prometheus encodes them. An upstream
//! that is down leaves the log part answering, with a warning.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use super::proxy;
use crate::api::error::ApiError;
use crate::api::params::{Params, Timestamp};
use crate::api::request::{self, Deadline, ReadRequest};
use crate::api::{Face, SharedState};
use crate::logql::{self, LogQuery};
use crate::logstore::ScanStop;
use crate::upstream::Forward;

/// Upstream answers read for merging are held in memory; beyond this they are refused.
const MAX_MERGED_UPSTREAM_BODY: usize = 256 << 20;

/// What a merged endpoint asks of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Labels,
    Values,
    Series,
}

pub async fn labels(state: State<SharedState>, request: Request) -> Response {
    label_endpoint(state, request, Endpoint::Labels, None).await
}

pub async fn label_values(
    state: State<SharedState>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    label_endpoint(state, request, Endpoint::Values, Some(name)).await
}

pub async fn series(state: State<SharedState>, request: Request) -> Response {
    label_endpoint(state, request, Endpoint::Series, None).await
}

/// The `match[]` values split by face.
struct Matches {
    logs: Vec<LogQuery>,
    metrics: Vec<String>,
}

/// Blocking (compiles regexes): call it from a blocking thread.
fn split_matches(params: &Params) -> Result<Matches, ApiError> {
    let mut logs = Vec::new();
    let mut metrics = Vec::new();
    // All `match[]` values share one regex budget, split by their regexes.
    let values: Vec<(&str, Option<usize>)> = params
        .get_all("match[]")
        .map(|m| {
            (
                m,
                logql::involves_logs(m).then(|| logql::regex_budget::count(m)),
            )
        })
        .collect();
    let regexes: usize = values.iter().filter_map(|(_, n)| *n).sum();
    for (m, log_regexes) in values {
        if let Some(n) = log_regexes {
            let budget = logql::regex_budget::MAX_REGEX_BYTES / regexes.max(1) * n.max(1);
            let q = logql::parse::parse_log_query_within(m, budget)
                .map_err(|e| ApiError::BadData(format!("invalid parameter \"match[]\": {e}")))?;
            if !q.filters.is_empty() || q.range.is_some() {
                return Err(ApiError::BadData(format!(
                    "invalid parameter \"match[]\": {m:?}: a series selector takes no line filters or range"
                )));
            }
            logs.push(q);
        } else {
            metrics.push(m.to_string());
        }
    }
    Ok(Matches { logs, metrics })
}

/// A restricted tenant's `match[]`: each metric selector confined to its namespaces (parsed,
/// given the namespace matcher, printed; remembered per tenant; one Janus cannot parse is
/// refused), log selectors kept for narrowing after the split; without any, the tenant's own
/// series of both faces.
async fn confined_matches(
    read: ReadRequest,
    tenant: &Arc<crate::auth::tenants::Tenant>,
) -> Result<ReadRequest, ApiError> {
    let Some(scope) = tenant.scope.as_ref() else {
        return Ok(read);
    };
    share_regex_budget(&read.params).await?;
    let mut values = Vec::new();
    for m in read.params.get_all("match[]") {
        if logql::involves_logs(m) {
            values.push(m.to_string());
            continue;
        }
        let confined = crate::auth::confined_texts::confine(tenant, m, true)
            .await
            .unwrap_or_else(|| Ok(m.to_string()))
            .map_err(|e| {
                ApiError::BadData(format!(
                    "invalid parameter \"match[]\": {}; a series selector Janus cannot parse cannot be confined to the tenant's namespaces",
                    e.trim()
                ))
            })?;
        values.push(confined);
    }
    if values.is_empty() {
        values.push(format!("{{{}}}", scope.namespace_matcher()));
        values.push(r#"pod{namespace=~".+"}"#.to_string());
        if scope.node_logs {
            values.push(r#"node{node=~".+"}"#.to_string());
        }
    }
    request::with_values(read, "match[]", &values)
}

/// Several metric `match[]` with regexes share one request's regex budget, as log ones do in
/// [`split_matches`]: each is checked against its share before any is confined (confining one
/// checks it against the whole budget, which a lone selector has).
async fn share_regex_budget(params: &Params) -> Result<(), ApiError> {
    use crate::logql::regex_budget;
    let metric: Vec<String> = params
        .get_all("match[]")
        .filter(|m| !logql::involves_logs(m))
        .map(str::to_string)
        .collect();
    let regex_like = |m: &String| m.contains("=~") || m.contains("!~");
    if metric.len() < 2 || !metric.iter().any(regex_like) {
        return Ok(());
    }
    tokio::task::spawn_blocking(move || {
        let tokens: Vec<_> = metric.iter().map(|m| logql::lexer::tokenize(m)).collect();
        let counts: Vec<usize> = metric
            .iter()
            .zip(&tokens)
            .map(|(m, t)| regex_budget::count_in(m, t))
            .collect();
        let total: usize = counts.iter().sum();
        for ((m, tokens), n) in metric.iter().zip(&tokens).zip(counts) {
            if n > 0 {
                regex_budget::check_within(m, tokens, regex_budget::MAX_REGEX_BYTES / total * n)
                    .map_err(|e| {
                        ApiError::BadData(format!("invalid parameter \"match[]\": {e}"))
                    })?;
            }
        }
        Ok(())
    })
    .await
    .map_err(|e| ApiError::Internal(format!("checking match[] regexes failed: {e}")))?
}

/// `start`/`end` as Prometheus reads them for metadata endpoints (unbounded by default).
fn window(params: &Params) -> Result<(i64, i64), ApiError> {
    let lo = params.time_or("start", Timestamp(i64::MIN))?;
    let hi = params.time_or("end", Timestamp(i64::MAX))?;
    Ok((lo.0, hi.0))
}

async fn label_endpoint(
    State(state): State<SharedState>,
    request: Request,
    endpoint: Endpoint,
    name: Option<String>,
) -> Response {
    let read = match request::read(request).await {
        Ok(read) => read,
        Err(e) => return e.into_response(),
    };
    let tenant = crate::api::tenancy::tenant_of(&read.parts.extensions);
    let scope = tenant.as_deref().and_then(|t| t.scope.as_ref());
    let read = match tenant.as_ref().filter(|t| t.scope.is_some()) {
        Some(tenant) => match confined_matches(read, tenant).await {
            Ok(read) => read,
            Err(e) => return Face::Log.mark(e.into_response()),
        },
        None => read,
    };
    let (lo, hi) = match window(&read.params) {
        Ok(w) => w,
        // Refusals of the window are the upstream's to word.
        Err(_) => return proxy::forward(&state, read).await,
    };
    let params = read.params.clone();
    let split = tokio::task::spawn_blocking(move || split_matches(&params))
        .await
        .unwrap_or_else(|e| Err(ApiError::Internal(format!("match[] parser failed: {e}"))));
    let mut matches = match split {
        Ok(m) => m,
        Err(e) => return Face::Log.mark(e.into_response()),
    };
    if let Some(scope) = scope {
        matches.logs.iter_mut().for_each(|q| scope.restrict(q));
    }
    // With only metric matchers (or none, for series) the store has nothing to add.
    let store_applies =
        !matches.logs.is_empty() || (endpoint != Endpoint::Series && matches.metrics.is_empty());
    if !store_applies {
        return proxy::forward(&state, read).await;
    }
    // Namespaces, nodes and which kinds hold logs are the layout's names: no stream is read.
    let unselected = endpoint != Endpoint::Series
        && matches.logs.is_empty()
        && matches.metrics.is_empty()
        && scope.is_none();
    if unselected {
        let (store, label) = (Arc::clone(&state.store), name.clone());
        let answered = tokio::task::spawn_blocking(move || {
            crate::engine::series::layout_answer(store.as_ref(), label.as_deref(), lo, hi)
        })
        .await
        .unwrap_or_else(|e| Err(ScanStop::Unavailable(e.to_string())));
        if let Ok(Some(names)) = answered {
            if names.is_empty() {
                return proxy::forward(&state, read).await;
            }
            let theirs = fetch_upstream(&state, &read, read.params.pairs()).await;
            let limit = read.params.limit(0, usize::MAX).unwrap_or(0);
            let mut warnings = Vec::new();
            let ours = Part::Strings(names.into_iter().collect());
            return match merge(ours, theirs, &mut warnings) {
                Ok(merged) => Face::Log.mark(encode_part(merged, limit, warnings)),
                Err(response) => *response,
            };
        }
    }
    let store = Arc::clone(&state.store);
    let selectors = (!matches.logs.is_empty()).then(|| matches.logs.clone());
    let listed = tokio::task::spawn_blocking(move || {
        crate::engine::series::store_series(store.as_ref(), selectors.as_deref(), lo, hi)
    })
    .await
    .unwrap_or_else(|e| Err(ScanStop::Unavailable(e.to_string())));
    // A store that cannot answer fails a request about logs; one about metrics gets the
    // upstream's part with a warning, as an upstream that cannot answer gives the store's.
    let (series, store_warning) = match listed {
        Ok(series) => (series, None),
        Err(e) if !matches.logs.is_empty() => {
            return Face::Log.mark(ApiError::from(e).into_response())
        }
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    if series.is_empty() && matches.logs.is_empty() && store_warning.is_none() {
        return proxy::forward(&state, read).await;
    }
    let ours = store_part(endpoint, series, name);
    let upstream_params = upstream_pairs(&read.params, &matches);
    let limit = read.params.limit(0, usize::MAX).unwrap_or(0);
    let mut warnings: Vec<String> = store_warning.into_iter().collect();
    let theirs = match upstream_params {
        None => UpstreamPart::Absent,
        Some(pairs) => fetch_upstream(&state, &read, &pairs).await,
    };
    let merged = match merge(ours, theirs, &mut warnings) {
        Ok(merged) => merged,
        Err(response) => return *response,
    };
    Face::Log.mark(encode_part(merged, limit, warnings))
}

/// The store's answer for the endpoint: label names, one label's values, or series.
fn store_part(
    endpoint: Endpoint,
    series: Vec<BTreeMap<String, String>>,
    name: Option<String>,
) -> Part {
    match endpoint {
        Endpoint::Labels => Part::Strings(
            series
                .iter()
                .flat_map(|s| s.keys().cloned())
                .collect::<BTreeSet<_>>(),
        ),
        Endpoint::Values => {
            let name = name.unwrap_or_default();
            Part::Strings(
                series
                    .iter()
                    .filter_map(|s| s.get(&name).cloned())
                    .collect(),
            )
        }
        Endpoint::Series => Part::Series(series),
    }
}

/// The parameters for the upstream's part: unchanged when no log matcher was given, without
/// the log matchers otherwise, and `None` (not asked) when every matcher was a log selector.
fn upstream_pairs(params: &Params, matches: &Matches) -> Option<Vec<(String, String)>> {
    if matches.logs.is_empty() {
        Some(params.pairs().to_vec())
    } else if matches.metrics.is_empty() {
        None
    } else {
        Some(
            params
                .pairs()
                .iter()
                .filter(|(k, v)| k != "match[]" || matches.metrics.contains(v))
                .cloned()
                .collect(),
        )
    }
}

/// Both parts in one; the upstream's refusal or an unreadable answer is the response itself.
fn merge(
    ours: Part,
    theirs: UpstreamPart,
    warnings: &mut Vec<String>,
) -> Result<Part, Box<Response>> {
    match (ours, theirs) {
        (_, UpstreamPart::Passthrough(response)) => Err(Box::new(response)),
        (ours, UpstreamPart::Unavailable(why)) => {
            warnings.push(why);
            Ok(ours)
        }
        (ours, UpstreamPart::Absent) => Ok(ours),
        (Part::Strings(mut ours), UpstreamPart::Json(body)) => {
            let e = serde_json::from_slice::<Envelope<Vec<String>>>(&body)
                .map_err(|e| Box::new(bad_upstream(e)))?;
            ours.extend(e.data);
            warnings.extend(e.warnings);
            Ok(Part::Strings(ours))
        }
        (Part::Series(mut ours), UpstreamPart::Json(body)) => {
            let e = serde_json::from_slice::<Envelope<Vec<BTreeMap<String, String>>>>(&body)
                .map_err(|e| Box::new(bad_upstream(e)))?;
            ours.extend(e.data);
            warnings.extend(e.warnings);
            Ok(Part::Series(ours))
        }
    }
}

/// Sorted, deduplicated (series), cut to `limit` with Prometheus's warning, encoded.
fn encode_part(merged: Part, limit: usize, mut warnings: Vec<String>) -> Response {
    match merged {
        Part::Strings(set) => {
            let mut values: Vec<String> = set.into_iter().collect();
            truncate(&mut values, limit, &mut warnings);
            encode(&values, &warnings)
        }
        Part::Series(mut series) => {
            series.sort_by(compare_label_sets);
            series.dedup();
            truncate(&mut series, limit, &mut warnings);
            encode(&series, &warnings)
        }
    }
}

enum Part {
    Strings(BTreeSet<String>),
    Series(Vec<BTreeMap<String, String>>),
}

pub(in crate::api) enum UpstreamPart {
    /// Not asked: every matcher was a log selector.
    Absent,
    /// A 2xx JSON answer to merge.
    Json(bytes::Bytes),
    /// The upstream's own refusal, passed on unchanged.
    Passthrough(Response),
    /// Unreachable or too slow: the log part answers alone, with this warning.
    Unavailable(String),
}

/// Asks the upstream with `pairs` as the request's parameters, uncompressed.
pub(in crate::api) async fn fetch_upstream(
    state: &SharedState,
    read: &ReadRequest,
    pairs: &[(String, String)],
) -> UpstreamPart {
    fetch_upstream_at(
        state,
        read,
        &read.parts.method,
        read.parts.uri.path(),
        pairs,
    )
    .await
}

/// [`fetch_upstream`] with another method and path, for a question the answer depends on (a
/// tenant's metric names for its metadata).
pub(super) async fn fetch_upstream_at(
    state: &SharedState,
    read: &ReadRequest,
    method: &Method,
    path: &str,
    pairs: &[(String, String)],
) -> UpstreamPart {
    fetch_upstream_typed(state, read, method, path, pairs, None)
        .await
        .0
}

/// [`fetch_upstream_at`], with the `Content-Type` of a 2xx answer (a cached answer is given
/// the type the upstream gave it).
pub(super) async fn fetch_upstream_typed(
    state: &SharedState,
    read: &ReadRequest,
    method: &Method,
    path: &str,
    pairs: &[(String, String)],
    budget: Option<&std::sync::atomic::AtomicIsize>,
) -> (UpstreamPart, Option<HeaderValue>) {
    let encoded = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let (path_and_query, body) = if method == Method::POST {
        (path.to_string(), bytes::Bytes::from(encoded))
    } else if encoded.is_empty() {
        (path.to_string(), bytes::Bytes::new())
    } else {
        (format!("{path}?{encoded}"), bytes::Bytes::new())
    };
    let mut headers = read.parts.headers.clone();
    if method == Method::POST {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
    }
    let deadline = Deadline::forwarded(&read.params, &state.config);
    let handler = read
        .parts
        .extensions
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let slot = match state.limiter.acquire(deadline.at).await {
        Ok(slot) => slot,
        Err(e) => {
            return (
                UpstreamPart::Unavailable(format!("upstream not asked: {e}")),
                None,
            )
        }
    };
    let answer = state
        .upstream
        .forward(Forward {
            method: method.clone(),
            path_and_query: &path_and_query,
            headers: &headers,
            body,
            handler: &handler,
            deadline: deadline.at,
            budget: deadline.budget,
            uncompressed: true,
        })
        .await;
    drop(slot);
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => return (UpstreamPart::Unavailable(e.to_string()), None),
    };
    if !answer.status().is_success() {
        let (head, body) = answer.into_parts();
        return (
            UpstreamPart::Passthrough(Face::Log.mark(Response::from_parts(head, body))),
            None,
        );
    }
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let read = match budget {
        Some(budget) => {
            state
                .upstream
                .read_body_within(answer.into_body(), budget, deadline.at)
                .await
        }
        None => state
            .upstream
            .read_body(answer.into_body(), MAX_MERGED_UPSTREAM_BODY, deadline.at)
            .await
            .map(Some),
    };
    let part = match read {
        Ok(Some(body)) => UpstreamPart::Json(body),
        // Over the reader's budget (a results-cache piece): the caller streams the query.
        Ok(None) => UpstreamPart::Unavailable("the answer is larger than its budget".into()),
        Err(e) => UpstreamPart::Unavailable(e.to_string()),
    };
    (part, content_type)
}

#[derive(Deserialize)]
pub(super) struct Envelope<T> {
    pub(super) data: T,
    #[serde(default)]
    pub(super) warnings: Vec<String>,
}

pub(super) fn encode<T: Serialize>(data: T, warnings: &[String]) -> Response {
    crate::api::envelope::success(data, warnings)
}

fn truncate<T>(items: &mut Vec<T>, limit: usize, warnings: &mut Vec<String>) {
    if limit > 0 && items.len() > limit {
        items.truncate(limit);
        warnings.push("results truncated due to limit".into());
    }
}

/// Prometheus's `labels.Compare`: label by label (sorted by name), name then value.
fn compare_label_sets(
    a: &BTreeMap<String, String>,
    b: &BTreeMap<String, String>,
) -> std::cmp::Ordering {
    a.iter().cmp(b.iter())
}

pub(super) fn bad_upstream(e: serde_json::Error) -> Response {
    Face::Log.mark(
        ApiError::Unavailable(format!(
            "the upstream's answer could not be read for merging: {e}"
        ))
        .into_response(),
    )
}

/// Upstream JSON objects kept verbatim, in the upstream's key order.
pub(super) struct OrderedRaw(pub(super) Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for OrderedRaw {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedRaw;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedRaw, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                    out.push((k, v));
                }
                Ok(OrderedRaw(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl Serialize for OrderedRaw {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

pub(super) fn raw(json: String) -> Box<RawValue> {
    RawValue::from_string(json).unwrap_or_else(|_| {
        RawValue::from_string("null".into()).unwrap_or_else(|_| unreachable!("null is JSON"))
    })
}
