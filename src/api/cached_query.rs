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
use super::request::ReadRequest;
use super::{proxy, Face, SharedState};
use crate::params::{QueryKind, Timestamp};
use crate::results_cache::key::{normalized_query, KeyBuilder};
use crate::results_cache::matrix::{self, Extent};
use crate::results_cache::plan::{cacheable_expression, Piece, RangePlan};
use crate::results_cache::{CacheFace, ResultsCache, Value};

/// Parameters that do not change an answer, or that the pieces stand in for.
const NOT_IN_KEY: [&str; 6] = ["query", "start", "end", "step", "time", "timeout"];

/// Answers a metric-only query from the cache where it can, else forwards it.
pub async fn answer(state: &SharedState, read: ReadRequest, kind: QueryKind) -> Response {
    let Some(cache) = state.results_cache.as_deref() else {
        return proxy::forward(state, read).await;
    };
    if skips_cache(&read) || !expression_is_cacheable(read.params.get("query")).await {
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
            && crate::params::parse_duration_nanos(timeout).is_ok_and(|n| n > 0));
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
    let mut key = KeyBuilder::new(CacheFace::Metric, kind);
    key.part(normalized_query(read.params.get("query")).as_bytes());
    let mut others: Vec<&(String, String)> = read
        .params
        .pairs()
        .iter()
        .filter(|(k, _)| !NOT_IN_KEY.contains(&k.as_str()) && k != "nocache")
        .collect();
    others.sort();
    for (k, v) in others {
        key.part(k.as_bytes()).part(v.as_bytes());
    }
    key.part(b"headers");
    for name in &state.config.forward_headers {
        for value in read.parts.headers.get_all(name) {
            key.part(name.as_str().as_bytes()).part(value.as_bytes());
        }
    }
    key.part(state.upstream.base_url().as_bytes());
    key
}

/// Seconds with milliseconds, as Prometheus reads a time (`t` is not negative here).
fn seconds(ms: i64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// The newest point time that can no longer change: now minus the freshness bound.
fn cutoff_ms(cache: &ResultsCache) -> i64 {
    let freshness = i64::try_from(cache.settings.max_freshness.as_millis()).unwrap_or(i64::MAX);
    Timestamp::now().as_millis().saturating_sub(freshness)
}

async fn range(state: &SharedState, cache: &ResultsCache, read: ReadRequest) -> Response {
    let Ok(range) = read.params.range() else {
        // Refusals of the range are the upstream's to word.
        return proxy::forward(state, read).await;
    };
    let Some(plan) = RangePlan::new(
        range.start.0,
        range.end.0,
        range.step_nanos,
        cache.settings.split_interval_ms,
    ) else {
        return proxy::forward(state, read).await;
    };
    let mut base = base_key(state, &read, "range");
    base.number(plan.step)
        .number(plan.from % plan.step)
        .number(cache.settings.split_interval_ms);
    let cutoff = plan.last_point_at_or_before(cutoff_ms(cache));

    // What each piece holds, and what it lacks.
    let mut held: Vec<Option<Arc<Extent>>> = Vec::with_capacity(plan.pieces.len());
    let mut gaps: Vec<(usize, i64, i64)> = Vec::new();
    let mut keys = Vec::with_capacity(plan.pieces.len());
    for (i, piece) in plan.pieces.iter().enumerate() {
        let mut key = base.clone();
        key.number(piece.index);
        let key = key.finish();
        let extent = match cache.get(&key) {
            Some(Value::Extent(e)) => Some(e),
            _ => None,
        };
        for (a, b) in missing(piece, extent.as_deref(), plan.step) {
            gaps.push((i, a, b));
        }
        held.push(extent);
        keys.push(key);
    }

    let step = read.params.get("step").to_string();
    let asks = gaps.iter().map(|&(_, a, b)| {
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
            match fetch_upstream_typed(state, read, &Method::POST, "/api/v1/query_range", &pairs)
                .await
            {
                (UpstreamPart::Json(body), Some(t)) if t == "application/json" => {
                    matrix::parse(&body, a, b)
                }
                _ => None,
            }
        }
    });
    let fetched: Vec<Option<Extent>> = futures_util::future::join_all(asks).await;
    if fetched.iter().any(Option::is_none) {
        // An error, warnings or another shape: the upstream answers the whole query itself.
        return proxy::forward(state, read).await;
    }
    let fetched: Vec<Extent> = fetched.into_iter().flatten().collect();

    // Each piece's parts in time order; what can no longer change is kept.
    let mut parts: Vec<Arc<Extent>> = Vec::new();
    for (i, piece) in plan.pieces.iter().enumerate() {
        let overlapping = held[i]
            .as_deref()
            .filter(|e| e.from <= piece.to && e.to >= piece.from);
        let news: Vec<&Extent> = gaps
            .iter()
            .zip(&fetched)
            .filter(|((g, _, _), _)| *g == i)
            .map(|(_, e)| e)
            .collect();
        let mut ordered: Vec<Arc<Extent>> = news.iter().map(|e| Arc::new((*e).clone())).collect();
        if let Some(e) = overlapping {
            ordered.push(Arc::new(e.cut(piece.from, piece.to)));
        }
        ordered.sort_by_key(|e| e.from);
        if let (Some(cutoff), false) = (cutoff, news.is_empty()) {
            if let Some(kept) = grown(overlapping, &news, cutoff) {
                cache.insert(keys[i].clone(), Value::Extent(Arc::new(kept)));
            }
        }
        parts.extend(ordered);
    }
    let refs: Vec<&Extent> = parts.iter().map(|e| e.as_ref()).collect();
    json(
        &read.parts.headers,
        matrix::encode(&refs, plan.from, plan.to),
    )
}

/// The stretches of `piece` that `held` does not cover (at most two: before and after it).
fn missing(piece: &Piece, held: Option<&Extent>, step: i64) -> Vec<(i64, i64)> {
    match held {
        Some(e) if e.from <= piece.to && e.to >= piece.from => {
            let mut gaps = Vec::new();
            if piece.from < e.from {
                gaps.push((piece.from, e.from - step));
            }
            if e.to < piece.to {
                gaps.push((e.to + step, piece.to));
            }
            gaps
        }
        _ => vec![(piece.from, piece.to)],
    }
}

/// What a piece keeps after a fetch: the held extent (overlapping the piece) joined with the
/// new parts, which are cut next to it, or the new part alone when it held nothing there; cut
/// at the last point that can no longer change. `None` when nothing that old is there.
fn grown(held: Option<&Extent>, news: &[&Extent], cutoff: i64) -> Option<Extent> {
    let mut joined: Option<Extent> = held.cloned();
    for new in news {
        joined = Some(match joined {
            Some(j) => j.join(new),
            None => (*new).clone(),
        });
    }
    let joined = joined?;
    (joined.from <= cutoff).then(|| joined.cut(joined.from, cutoff.min(joined.to)))
}

async fn instant(state: &SharedState, cache: &ResultsCache, read: ReadRequest) -> Response {
    let time = read.params.get("time");
    let at = match crate::params::parse_time(time) {
        Ok(t) if !time.is_empty() && t.0 >= 0 && t.0 % 1_000_000 == 0 => t.as_millis(),
        _ => return proxy::forward(state, read).await,
    };
    if at > cutoff_ms(cache) {
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
    match fetch_upstream_typed(state, &read, &method, &path, read.params.pairs()).await {
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
