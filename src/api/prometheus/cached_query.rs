//! Metric-only queries through the results cache. A range query is cut into pieces at the split
//! interval on its own step grid; each piece is answered from what the cache holds, and only
//! what it lacks is asked of the upstream (all pieces at once, each taking a query slot). Points
//! older than the freshness bound are kept for next time; the pieces' answers are joined and
//! written byte for byte as the upstream writes the whole answer. An instant query at an
//! explicit time older than the bound is kept whole.
//!
//! Anything the cache cannot answer exactly goes to the upstream untouched: a request that asks
//! not to be cached (`nocache=1`, `Cache-Control: no-cache`/`no-store`), a parameter the cache
//! does not know (`stats`, `lookback_delta`, …) or a `timeout` it cannot read, an expression
//! with `@` or one Janus cannot parse, a range that cannot be cut on milliseconds, and any piece
//! answer that is not a plain successful matrix (an error, warnings, histograms) — then the whole
//! query is forwarded as the client sent it, so the client gets the upstream's own words.

use std::sync::Arc;

use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use super::merged::{fetch_upstream_typed, UpstreamPart};
use super::proxy;
use crate::api::params::QueryKind;
use crate::api::request::ReadRequest;
use crate::api::{Face, SharedState};
use crate::results_cache::key::KeyBuilder;
use crate::results_cache::matrix;
use crate::results_cache::plan::{cacheable_expression, RangePlan};
use crate::results_cache::range::{self, cutoff_ms};
use crate::results_cache::{ResultsCache, Value};

/// Answers a metric-only query from the cache where it can, else forwards it.
pub async fn answer(state: &SharedState, read: ReadRequest, kind: QueryKind) -> Response {
    let Some(cache) = state.results_cache.as_deref() else {
        return proxy::forward(state, read).await;
    };
    if skips_cache(&read) {
        return proxy::forward(state, read).await;
    }
    match kind {
        QueryKind::Range => range(state, cache, read).await,
        QueryKind::Instant => instant(state, cache, read).await,
    }
}

/// The parameters a cached answer may be given for: on a hit the upstream is not asked, so a
/// parameter it would refuse, or one whose meaning Janus does not know (`lookback_delta`,
/// `limit`, another server's `dedup` or `partial_response`), sends the request through.
const KNOWN: [&str; 7] = [
    "query", "time", "start", "end", "step", "timeout", "nocache",
];

/// The client asked for a fresh answer, or for something the cache cannot vouch for.
fn skips_cache(read: &ReadRequest) -> bool {
    if read
        .params
        .pairs()
        .iter()
        .any(|(k, _)| !KNOWN.contains(&k.as_str()))
    {
        return true;
    }
    let timeout = read.params.get("timeout");
    let valid_timeout = timeout.is_empty()
        || (!timeout.starts_with('-')
            && crate::api::params::parse_duration_nanos(timeout).is_ok_and(|n| n > 0));
    if !valid_timeout {
        return true;
    }
    let nocache = read.params.get("nocache");
    let asked = matches!(nocache, "1" | "true");
    let header = read
        .parts
        .headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',').any(|d| {
                matches!(
                    d.trim().to_ascii_lowercase().as_str(),
                    "no-cache" | "no-store"
                )
            })
        });
    asked || header
}

/// [`cacheable_expression`], on a blocking thread for a long text.
async fn expression_is_cacheable(text: &str) -> bool {
    if text.len() <= 4096 {
        return cacheable_expression(text);
    }
    let text = text.to_string();
    tokio::task::spawn_blocking(move || cacheable_expression(&text))
        .await
        .unwrap_or(false)
}

/// The key parts every entry of this request shares.
fn base_key(state: &SharedState, read: &ReadRequest, kind: &str) -> KeyBuilder {
    let forwarded = state.config.forward_headers.iter().flat_map(|name| {
        read.parts
            .headers
            .get_all(name)
            .iter()
            .map(move |v| (name.as_str(), v.as_bytes()))
    });
    range::base_key(
        kind,
        read.params.get("query"),
        forwarded,
        state.upstream.base_url(),
    )
}

/// Seconds with milliseconds, as Prometheus reads a time (`t` is not negative here).
fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

async fn range(state: &SharedState, cache: &ResultsCache, read: ReadRequest) -> Response {
    let Ok(params) = read.params.range() else {
        // Refusals of the range are the upstream's to word.
        return proxy::forward(state, read).await;
    };
    let Some(plan) = RangePlan::new(
        params.start.0,
        params.end.0,
        params.step_nanos,
        cache.settings.split_interval_ms,
    ) else {
        return proxy::forward(state, read).await;
    };
    if !expression_is_cacheable(read.params.get("query")).await {
        return proxy::forward(state, read).await;
    }
    let step = read.params.get("step").to_string();
    // The upstream text this request may hold to answer through the cache; past it, the query
    // streams through uncached.
    let budget = std::sync::atomic::AtomicIsize::new(
        isize::try_from(cache.settings.max_read_bytes()).unwrap_or(isize::MAX),
    );
    let budget = &budget;
    let fetch = |a: i64, b: i64| {
        let mut pairs: Vec<(String, String)> = read
            .params
            .pairs()
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "start" | "end" | "step"))
            .cloned()
            .collect();
        pairs.push(("start".into(), seconds(a)));
        pairs.push(("end".into(), seconds(b)));
        pairs.push(("step".into(), step.clone()));
        let read = &read;
        async move {
            match fetch_upstream_typed(
                state,
                read,
                &Method::POST,
                "/api/v1/query_range",
                &pairs,
                Some(budget),
            )
            .await
            {
                (UpstreamPart::Json(body), Some(t)) if t == "application/json" => {
                    matrix::parse(&body, a, b)
                }
                _ => None,
            }
        }
    };
    let answered = range::answer(cache, base_key(state, &read, "range"), &plan, fetch).await;
    match answered {
        Some(body) => json(&read.parts.headers, body),
        // An error, warnings or another shape: the upstream answers the whole query itself.
        None => proxy::forward(state, read).await,
    }
}

async fn instant(state: &SharedState, cache: &ResultsCache, read: ReadRequest) -> Response {
    let time = read.params.get("time");
    let at = match crate::api::params::parse_time(time) {
        Ok(t) if !time.is_empty() && t.0 >= 0 && t.0 % 1_000_000 == 0 => t.as_millis(),
        _ => return proxy::forward(state, read).await,
    };
    if at > cutoff_ms(cache) || !expression_is_cacheable(read.params.get("query")).await {
        return proxy::forward(state, read).await;
    }
    let mut key = base_key(state, &read, "instant");
    key.number(at);
    let key = key.finish();
    if let Some(Value::Body(body)) = cache.get(&key) {
        return json(&read.parts.headers, body.to_vec());
    }
    let method = read.parts.method.clone();
    let path = read.parts.uri.path().to_string();
    let budget = std::sync::atomic::AtomicIsize::new(
        isize::try_from(cache.settings.max_read_bytes()).unwrap_or(isize::MAX),
    );
    match fetch_upstream_typed(
        state,
        &read,
        &method,
        &path,
        read.params.pairs(),
        Some(&budget),
    )
    .await
    {
        // Kept when it is Prometheus's plain answer, served as Prometheus serves it.
        (UpstreamPart::Json(body), Some(t)) if t == "application/json" && plain_success(&body) => {
            cache.insert(key, Value::Body(Arc::from(&body[..])));
            json(&read.parts.headers, body.to_vec())
        }
        // Anything else (a refusal, another shape or type) in the upstream's own bytes and
        // encoding: asked again as the client asked.
        _ => proxy::forward(state, read).await,
    }
}

/// A successful answer with nothing else (no warnings, infos or statistics).
fn plain_success(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Plain<'a> {
        #[serde(borrow)]
        status: &'a str,
        #[allow(dead_code)]
        #[serde(borrow)]
        data: &'a serde_json::value::RawValue,
    }
    serde_json::from_slice::<Plain<'_>>(body).is_ok_and(|p| p.status == "success")
}

/// An answer Janus wrote, encoded as Prometheus encodes its own: the first of `gzip` or
/// `deflate` (zlib) the client lists, else none (Prometheus's compression handler).
fn json(request: &http::HeaderMap, body: Vec<u8>) -> Response {
    use std::io::Write;
    let wanted = request
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .find(|e| matches!(*e, "gzip" | "deflate"));
    let encoded = match wanted {
        Some("gzip") => {
            let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            w.write_all(&body)
                .and_then(|()| w.finish())
                .ok()
                .map(|b| ("gzip", b))
        }
        Some(_) => {
            let mut w = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            w.write_all(&body)
                .and_then(|()| w.finish())
                .ok()
                .map(|b| ("deflate", b))
        }
        None => None,
    };
    let mut response = match encoded {
        Some((encoding, bytes)) => (
            StatusCode::OK,
            [(header::CONTENT_ENCODING, HeaderValue::from_static(encoding))],
            bytes,
        )
            .into_response(),
        None => (StatusCode::OK, body).into_response(),
    };
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Face::Metric.mark(response)
}
