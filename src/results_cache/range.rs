//! A range query answered piece by piece: each piece from what the cache holds, only what it
//! lacks asked (by the caller's `fetch`, all at once), what can no longer change kept, and the
//! whole written byte for byte as the upstream writes it. Shared by the HTTP path (a client's
//! metric-only query) and the engine (the metric parts of an expression Janus evaluates).

use std::future::Future;
use std::sync::Arc;

use super::key::{normalized_query, KeyBuilder};
use super::matrix::{self, Extent};
use super::plan::{Piece, RangePlan};
use super::{CacheFace, ResultsCache, Value};

/// The key parts every entry of one query shares: its kind, its text's tokens, the forwarded
/// headers' values (an identity never reads another's entry) and the upstream.
pub fn base_key<'h>(
    kind: &str,
    query: &str,
    forwarded: impl Iterator<Item = (&'h str, &'h [u8])>,
    upstream: &str,
) -> KeyBuilder {
    let mut key = KeyBuilder::new(CacheFace::Metric, kind);
    key.part(normalized_query(query).as_bytes());
    key.part(b"headers");
    for (name, value) in forwarded {
        key.part(name.as_bytes()).part(value);
    }
    key.part(upstream.as_bytes());
    key
}

/// The newest point time that can no longer change: now minus the freshness bound (ms).
pub fn cutoff_ms(cache: &ResultsCache) -> i64 {
    let freshness = i64::try_from(cache.settings.max_freshness.as_millis()).unwrap_or(i64::MAX);
    crate::time::timestamp::Timestamp::now()
        .as_millis()
        .saturating_sub(freshness)
}

/// The whole answer over `plan`, or `None` when a stretch could not be asked (the caller then
/// passes the query through whole). `fetch(a, b)` asks the upstream for the grid points
/// `[a, b]` (milliseconds) and reads a plain matrix answer.
pub async fn answer<F, Fut>(
    cache: &ResultsCache,
    base: KeyBuilder,
    plan: &RangePlan,
    fetch: F,
) -> Option<Vec<u8>>
where
    F: Fn(i64, i64) -> Fut,
    Fut: Future<Output = Option<Extent>>,
{
    let mut base = base;
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
    let fetched: Vec<Option<Extent>> =
        futures_util::future::join_all(gaps.iter().map(|&(_, a, b)| fetch(a, b))).await;
    // Shared, not copied: an extent is as large as the upstream's answer for its stretch.
    let fetched: Vec<Arc<Extent>> = fetched
        .into_iter()
        .map(|e| e.map(Arc::new))
        .collect::<Option<_>>()?;

    // Each piece's parts in time order; what can no longer change is kept.
    let mut parts: Vec<Arc<Extent>> = Vec::new();
    for (i, piece) in plan.pieces.iter().enumerate() {
        let overlapping = held[i]
            .as_deref()
            .filter(|e| e.from <= piece.to && e.to >= piece.from);
        let news: Vec<&Arc<Extent>> = gaps
            .iter()
            .zip(&fetched)
            .filter(|((g, _, _), _)| *g == i)
            .map(|(_, e)| e)
            .collect();
        let mut ordered: Vec<Arc<Extent>> = news.iter().map(|e| Arc::clone(e)).collect();
        if let Some(e) = held[i]
            .as_ref()
            .filter(|e| e.from <= piece.to && e.to >= piece.from)
        {
            // Held extents lie within their piece: the entry itself, not a copy of it.
            ordered.push(if e.from >= piece.from && e.to <= piece.to {
                Arc::clone(e)
            } else {
                Arc::new(e.cut(piece.from, piece.to))
            });
        }
        let news: Vec<&Extent> = news.into_iter().map(|e| e.as_ref()).collect();
        ordered.sort_by_key(|e| e.from);
        if let (Some(cutoff), false) = (cutoff, news.is_empty()) {
            if let Some(kept) = grown(overlapping, &news, cutoff) {
                cache.insert(keys[i].clone(), Value::Extent(Arc::new(kept)));
            }
        }
        parts.extend(ordered);
    }
    let refs: Vec<&Extent> = parts.iter().map(|e| e.as_ref()).collect();
    Some(matrix::encode(&refs, plan.from, plan.to))
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
