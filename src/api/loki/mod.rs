//! The Loki read API (`/loki/api/v1/…`), so that Grafana's Loki datasource reads the store on
//! the same URL: LogQL (stream selectors `{namespace="…"}`, line filters, metric queries) through
//! the same engine as the Prometheus API, Loki's parameters and answer shapes, and Loki's errors:
//! plain text with the HTTP status, not Prometheus's JSON.

pub mod meta;
pub mod params;
pub mod push;
pub mod tail;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use super::log_encode::LogAnswer;
use super::request::{self, Deadline};
use super::{envelope, Face, SharedState};
use crate::api::error::ApiError;
use crate::api::params::Params;
use crate::auth::tenants::Tenant;
use crate::config::LogAnswerFormat;
use crate::engine::{EngineError, MetricFuture, MetricQuery, MetricSource, SourceErrorKind};
use crate::engine::{LineSearch, Prepared};
use crate::logql::lexer::{tokenize, Dialect};
use crate::logql::LogQuery;
use crate::promql::encode;
use crate::promql::value::Steps;
use params::{self as lp, BadParameter};

/// LogQL reads logs only: a part that names no log stream has no source to ask.
struct NoMetrics;

impl MetricSource for NoMetrics {
    fn query<'a>(&'a self, query: MetricQuery<'a>) -> MetricFuture<'a> {
        Box::pin(async move {
            Err(EngineError::Source {
                kind: SourceErrorKind::BadData,
                message: format!(
                    "{} is not LogQL: select streams with {{namespace=\"…\"}} or {{node=\"…\"}} (metrics are on the Prometheus API, /api/v1/query)",
                    query.text
                ),
            })
        })
    }
}

/// A refusal as Loki answers it: the message as plain text, with the status.
pub struct LokiError {
    status: StatusCode,
    message: String,
}

impl LokiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        LokiError {
            status,
            message: message.into(),
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<ApiError> for LokiError {
    fn from(e: ApiError) -> Self {
        let status = match e {
            // Loki answers query limits (series, samples) as the client's mistake.
            ApiError::BadData(_) | ApiError::Execution(_) => StatusCode::BAD_REQUEST,
            // A deadline passed: Loki's gateway timeout.
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ref other => other.status(),
        };
        LokiError {
            status,
            message: e.to_string(),
        }
    }
}

impl From<BadParameter> for LokiError {
    fn from(e: BadParameter) -> Self {
        LokiError {
            status: StatusCode::BAD_REQUEST,
            message: e.0,
        }
    }
}

impl From<crate::engine::EngineError> for LokiError {
    fn from(e: crate::engine::EngineError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for LokiError {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", self.message),
        )
            .into_response()
    }
}

pub(super) fn answer(result: Result<Response, LokiError>) -> Response {
    Face::Log.mark(result.unwrap_or_else(IntoResponse::into_response))
}

/// Parses `text` as LogQL on a blocking thread (regexes compile there); for a restricted
/// tenant, every selector of it is narrowed to the tenant's namespaces (another's answer as if
/// it held nothing).
pub(super) async fn prepare(
    state: &SharedState,
    tenant: Option<&Tenant>,
    text: &str,
) -> Result<Prepared, LokiError> {
    if text.trim().is_empty() {
        return Err(LokiError {
            status: StatusCode::BAD_REQUEST,
            message: "parse error : syntax error: unexpected $end".into(),
        });
    }
    let tokens = tokenize(text);
    let prepared = state.engine.prepare(text, tokens, Dialect::Loki).await?;
    Ok(match tenant.and_then(|t| t.scope.as_ref()) {
        // The Loki API reads no metrics: there is nothing upstream to confine.
        Some(scope) => prepared.narrowed(|query| scope.restrict(query), None),
        None => prepared,
    })
}

/// The tenant a request was identified as (with `--auth.tenants-file`).
pub(super) fn tenant(read: &request::ReadRequest) -> Option<Arc<Tenant>> {
    super::tenancy::tenant_of(&read.parts.extensions)
}

/// `GET|POST /loki/api/v1/query_range`: lines of a log query, or a metric query's matrix.
pub async fn query_range(State(state): State<SharedState>, request: Request) -> Response {
    answer(query_range_inner(&state, request).await)
}

async fn query_range_inner(state: &SharedState, request: Request) -> Result<Response, LokiError> {
    let read = request::read(request).await?;
    let params = &read.params;
    let (start, end) = lp::bounds(params)?;
    if end < start {
        return Err(BadParameter("end timestamp must not be before start time".into()).into());
    }
    let limit = lp::limit(params)?;
    let (keep, order) = lp::direction(params)?;
    let step = lp::step(params, start, end)?;
    let deadline = Deadline::own(params, &state.config)?;
    let started = Instant::now();
    match prepare(state, tenant(&read).as_deref(), params.get("query")).await? {
        Prepared::Lines(query) => {
            let query = query.map_err(crate::engine::EngineError::from)?;
            // Loki's range is `[start, end)` for lines.
            let search = LineSearch {
                query,
                lo: start,
                hi: end.saturating_sub(1),
                limit,
                keep,
            };
            lines(state, search, order, deadline, started).await
        }
        Prepared::Expression(expression) => {
            let steps = Steps {
                start,
                step,
                count: step_count(start, end, step),
            };
            numbers(state, &expression, steps, true, deadline, started).await
        }
        Prepared::Empty => Err(BadParameter("query must not be empty".into()).into()),
    }
}

/// `GET|POST /loki/api/v1/query`: an instant metric query (Loki answers log queries on its
/// range endpoint only).
pub async fn query(State(state): State<SharedState>, request: Request) -> Response {
    answer(query_inner(&state, request).await)
}

async fn query_inner(state: &SharedState, request: Request) -> Result<Response, LokiError> {
    let read = request::read(request).await?;
    let params = &read.params;
    let time = match params.get("time") {
        "" => crate::api::params::Timestamp::now().0,
        value => lp::parse_time(value)
            .map_err(|e| BadParameter(format!("could not parse 'time' parameter: {e}")))?,
    };
    lp::limit(params)?;
    lp::direction(params)?;
    let deadline = Deadline::own(params, &state.config)?;
    let started = Instant::now();
    match prepare(state, tenant(&read).as_deref(), params.get("query")).await? {
        Prepared::Expression(expression) => {
            let steps = Steps {
                start: time,
                step: 1,
                count: 1,
            };
            numbers(state, &expression, steps, false, deadline, started).await
        }
        Prepared::Lines(_) => Err(BadParameter(
            "log queries are not supported as an instant query type, please change your query to a range query type".into(),
        )
        .into()),
        Prepared::Empty => Err(BadParameter("query must not be empty".into()).into()),
    }
}

/// Loki's `stats` object, with what Janus measures: bytes read and the time taken.
fn stats(bytes: u64, entries: usize, started: Instant) -> String {
    let seconds = started.elapsed().as_secs_f64();
    let per_second = if seconds > 0.0 {
        (bytes as f64 / seconds) as u64
    } else {
        0
    };
    format!(
        "{{\"summary\":{{\"bytesProcessedPerSecond\":{per_second},\"totalBytesProcessed\":{bytes},\"execTime\":{seconds},\"queueTime\":0,\"totalEntriesReturned\":{entries}}}}}"
    )
}

async fn lines(
    state: &SharedState,
    search: LineSearch,
    order: super::log_encode::Order,
    deadline: Deadline,
    started: Instant,
) -> Result<Response, LokiError> {
    let slot = state.log_limiter.acquire(deadline.at).await?;
    let kind = search.query.kind;
    let pipeline = search.query.pipeline.clone();
    let (mut found, _slot) = state.engine.search_lines(search, deadline.at, slot).await?;
    let warnings = std::mem::take(&mut found.warnings);
    let stats = stats(found.bytes_scanned, found.lines.len(), started);
    let answer = LogAnswer::new(found, kind, order, LogAnswerFormat::Streams, warnings)
        .with_data_field("stats", stats)
        .with_pipeline(pipeline);
    super::log_stream::stream(state, answer, deadline)
        .await
        .map_err(LokiError::from)
}

async fn numbers(
    state: &SharedState,
    expression: &crate::engine::Expression,
    steps: Steps,
    range: bool,
    deadline: Deadline,
    started: Instant,
) -> Result<Response, LokiError> {
    let _slot = state.log_limiter.acquire(deadline.at).await?;
    let answer = state
        .engine
        .evaluate(expression, steps, &NoMetrics, deadline.at)
        .await?;
    let data = encode::data(&answer.value, &steps, range);
    // The data object with Loki's `stats` added after the result.
    let mut body = data.into_bytes();
    body.pop();
    body.extend_from_slice(b",\"stats\":");
    body.extend_from_slice(stats(0, 0, started).as_bytes());
    body.push(b'}');
    Ok(envelope::success_json(&body, &answer.warnings))
}

/// The label sets of the window's streams that any of `selectors` selects (every stream
/// without one), as Loki shows them (no `__name__`).
pub(super) async fn streams(
    state: &SharedState,
    params: &Params,
    selectors: Vec<LogQuery>,
) -> Result<Vec<BTreeMap<String, String>>, LokiError> {
    let (start, end) = lp::bounds(params)?;
    let store = Arc::clone(&state.store);
    let series = tokio::task::spawn_blocking(move || {
        let chosen = (!selectors.is_empty()).then_some(selectors.as_slice());
        crate::engine::series::store_series(store.as_ref(), chosen, start, end)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("listing streams failed: {e}")))?
    .map_err(ApiError::from)?;
    Ok(series
        .into_iter()
        .map(|mut labels| {
            labels.remove("__name__");
            labels
        })
        .collect())
}

/// Label names (`None`) or one label's values of every stream in the window, from the store's
/// layout when it can tell them without reading the streams (namespaces, nodes, which kinds
/// hold logs); `None` when the streams must be listed.
async fn from_layout(
    state: &SharedState,
    params: &Params,
    label: Option<&str>,
) -> Result<Option<BTreeSet<String>>, LokiError> {
    let (start, end) = lp::bounds(params)?;
    let (store, label) = (Arc::clone(&state.store), label.map(str::to_string));
    let answered = tokio::task::spawn_blocking(move || {
        crate::engine::series::layout_answer(store.as_ref(), label.as_deref(), start, end)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("listing the layout failed: {e}")))?
    .map_err(ApiError::from)?;
    Ok(answered.map(|names| names.into_iter().filter(|n| n != "__name__").collect()))
}

/// The stream selector of a labels request's `query`, if it has one.
async fn query_selector(
    state: &SharedState,
    read: &request::ReadRequest,
) -> Result<Vec<LogQuery>, LokiError> {
    match read.params.get("query") {
        "" => everything(state, tenant(read).as_deref()).await,
        text => Ok(vec![selector(state, tenant(read).as_deref(), text).await?]),
    }
}

/// What "no selector" means for a request: every stream (an empty list) — or, for a restricted
/// tenant, every stream its scope reaches, as selectors narrowed to it.
pub(super) async fn everything(
    state: &SharedState,
    tenant: Option<&Tenant>,
) -> Result<Vec<LogQuery>, LokiError> {
    if tenant.is_none_or(|t| t.scope.is_none()) {
        return Ok(Vec::new());
    }
    let mut all = Vec::new();
    for text in [r#"{namespace=~".+"}"#, r#"{node=~".+"}"#] {
        all.push(selector(state, tenant, text).await?);
    }
    Ok(all)
}

/// A stream selector (with or without line filters) as the labels endpoints take it.
pub(super) async fn selector(
    state: &SharedState,
    tenant: Option<&Tenant>,
    text: &str,
) -> Result<LogQuery, LokiError> {
    match prepare(state, tenant, text).await? {
        Prepared::Lines(query) => Ok(query.map_err(crate::engine::EngineError::from)?),
        _ => Err(BadParameter(format!(
            "{text:?} is not a stream selector such as {{namespace=\"shop\"}}"
        ))
        .into()),
    }
}

/// `GET|POST /loki/api/v1/labels`: the label names of the window's streams.
pub async fn labels(State(state): State<SharedState>, request: Request) -> Response {
    answer(
        async {
            let read = request::read(request).await?;
            let selectors = query_selector(&state, &read).await?;
            if selectors.is_empty() {
                if let Some(names) = from_layout(&state, &read.params, None).await? {
                    return Ok(envelope::success(names, &[]));
                }
            }
            let names: BTreeSet<String> = streams(&state, &read.params, selectors)
                .await?
                .into_iter()
                .flat_map(|labels| labels.into_keys())
                .collect();
            Ok(envelope::success(names, &[]))
        }
        .await,
    )
}

/// `GET /loki/api/v1/label/{name}/values`: one label's values in the window's streams.
pub async fn label_values(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    answer(
        async {
            let read = request::read(request).await?;
            let selectors = query_selector(&state, &read).await?;
            if selectors.is_empty() {
                if let Some(values) = from_layout(&state, &read.params, Some(&name)).await? {
                    return Ok(envelope::success(values, &[]));
                }
            }
            let values: BTreeSet<String> = streams(&state, &read.params, selectors)
                .await?
                .into_iter()
                .filter_map(|mut labels| labels.remove(&name))
                .collect();
            Ok(envelope::success(values, &[]))
        }
        .await,
    )
}

/// `GET|POST /loki/api/v1/series`: the label sets of the streams `match[]` selects.
pub async fn series(State(state): State<SharedState>, request: Request) -> Response {
    answer(
        async {
            let read = request::read(request).await?;
            let params = &read.params;
            let mut selectors = Vec::new();
            for text in params.get_all("match[]").chain(params.get_all("match")) {
                selectors.push(selector(&state, tenant(&read).as_deref(), text).await?);
            }
            if selectors.is_empty() {
                selectors = everything(&state, tenant(&read).as_deref()).await?;
            }
            let series = streams(&state, params, selectors).await?;
            Ok(envelope::success(series, &[]))
        }
        .await,
    )
}

/// `GET /loki/api/v1/status/buildinfo`: Janus's build, in Loki's shape.
pub async fn buildinfo() -> Response {
    let body = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "revision": option_env!("JANUS_REVISION").unwrap_or(""),
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    });
    Face::Log.mark(envelope::json_response(body.to_string()))
}

/// `GET|POST /loki/api/v1/index/volume`: bytes of the lines a stream selector selects over the
/// window, per series (the labels the selector names, or `targetLabels`), largest first, at most
/// `limit` (default 100).
pub async fn volume(State(state): State<SharedState>, request: Request) -> Response {
    answer(volume_inner(&state, request, false).await)
}

/// `GET|POST /loki/api/v1/index/volume_range`: the same per `step`, as a matrix.
pub async fn volume_range(State(state): State<SharedState>, request: Request) -> Response {
    answer(volume_inner(&state, request, true).await)
}

async fn volume_inner(
    state: &SharedState,
    request: Request,
    range: bool,
) -> Result<Response, LokiError> {
    let read = request::read(request).await?;
    let params = &read.params;
    let (start, end) = lp::bounds(params)?;
    if end <= start {
        return Err(
            BadParameter("end timestamp must not be before or equal to start time".into()).into(),
        );
    }
    let limit = lp::limit(params)?;
    if !matches!(params.get("aggregateBy"), "" | "series") {
        return Err(BadParameter(format!(
            "aggregateBy {:?} is not supported yet: Janus aggregates volumes by series",
            params.get("aggregateBy")
        ))
        .into());
    }
    let text = params.get("query");
    let query = selector(state, tenant(&read).as_deref(), text).await?;
    // Grouped by the labels the selector names (or those asked for), as Loki groups volumes.
    let mut by: Vec<String> = match params.get("targetLabels") {
        "" => query
            .targets
            .iter()
            .map(|m| m.name.clone())
            .chain(
                query
                    .fields
                    .iter()
                    .map(|f| query.kind.labels()[f.field].to_string()),
            )
            .collect(),
        labels => labels.split(',').map(|l| l.trim().to_string()).collect(),
    };
    by.sort();
    by.dedup();
    if let Some(bad) = by.iter().find(|l| !is_label_name(l)) {
        return Err(BadParameter(format!("{bad:?} is not a label name")).into());
    }
    let (steps, window) = if range {
        let step = lp::step(params, start, end)?;
        let steps = Steps {
            start,
            step,
            count: step_count(start, end, step),
        };
        (steps, step)
    } else {
        // One window `[start, end)`, as Loki's range is: evaluated a nanosecond before `end`
        // over exactly `end − start` (PromQL windows are open at their start).
        let steps = Steps {
            start: end - 1,
            step: 1,
            count: 1,
        };
        (steps, end.saturating_sub(start))
    };
    let expression_text = format!(
        "sum by ({}) (bytes_over_time({text} [{}ms]))",
        by.join(", "),
        (window.saturating_add(999_999) / 1_000_000).max(1)
    );
    let deadline = Deadline::own(params, &state.config)?;
    let Prepared::Expression(expression) =
        prepare(state, tenant(&read).as_deref(), &expression_text).await?
    else {
        return Err(BadParameter(format!("{text:?} is not a stream selector")).into());
    };
    let _slot = state.log_limiter.acquire(deadline.at).await?;
    let mut answer = state
        .engine
        .evaluate(&expression, steps, &NoMetrics, deadline.at)
        .await?;
    // Largest first, at most `limit` series (by their total over the steps).
    if let crate::promql::value::Value::Vector(series) = &mut answer.value {
        let total = |s: &crate::promql::value::Series| s.points.iter().flatten().sum::<f64>();
        series.sort_by(|a, b| total(b).total_cmp(&total(a)));
        series.truncate(limit);
    }
    // The instant volume is stamped `end`, as Loki stamps it.
    let shown = if range {
        steps
    } else {
        Steps {
            start: end,
            ..steps
        }
    };
    let data = encode::data(&answer.value, &shown, range);
    Ok(envelope::success_json(data.as_bytes(), &answer.warnings))
}

/// Steps from `start` to `end` (`lp::step` has bounded them to 11,000), computed wide: the span
/// of two extreme times does not fit an i64.
fn step_count(start: i64, end: i64, step: i64) -> usize {
    let span = (i128::from(end) - i128::from(start)).max(0);
    usize::try_from(span / i128::from(step.max(1))).unwrap_or(0) + 1
}

fn is_label_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}
