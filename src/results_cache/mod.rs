//! The results cache: answers that cannot change any more, kept so that a dashboard's refresh
//! asks the upstream (and, later, the store) only for what is new.
//!
//! One moka cache, weighed in bytes (`--query.cache-size`), holds both faces' entries; metric
//! entries also expire after `--query.cache-ttl`. Keys are SHA-256 digests of everything that
//! can change an answer (see [`key`]), so a key never holds a query's text and two requests
//! that differ in anything that matters never share an entry. What may be cached at all, and
//! how a range query is cut into pieces, is [`plan`]'s; how a matrix is kept byte-exact is
//! [`matrix`]'s.

pub mod key;
pub mod matrix;
pub mod plan;
pub mod range;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::telemetry::{CacheFaceLabels, Metrics};

/// Which face an entry answers for (metrics labelled by it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheFace {
    Metric,
    Log,
}

impl CacheFace {
    pub fn name(self) -> &'static str {
        match self {
            CacheFace::Metric => "metric",
            CacheFace::Log => "log",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub face: CacheFace,
    pub digest: [u8; 32],
}

/// What an entry holds.
#[derive(Debug, Clone)]
pub enum Value {
    /// A range query's answer over a stretch of one piece's step grid.
    Extent(Arc<matrix::Extent>),
    /// A whole answer body (an instant query at a time that cannot change).
    Body(Arc<[u8]>),
    /// Something a layer below keeps here (a log file's counts for one log metric,
    /// `store::file_bins`), with its weight: the cache does not know the store's types.
    Held {
        bytes: usize,
        value: Arc<dyn std::any::Any + Send + Sync>,
    },
}

impl Value {
    fn bytes(&self) -> usize {
        match self {
            Value::Extent(e) => e.bytes(),
            Value::Body(b) => b.len(),
            Value::Held { bytes, .. } => *bytes,
        }
    }
}

/// How the cache is set up (from the `--query.*` flags).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Range queries are cut at multiples of this (milliseconds since the epoch).
    pub split_interval_ms: i64,
    /// Points newer than now minus this are never cached.
    pub max_freshness: Duration,
    /// Bytes the cache may hold; 0 disables it.
    pub max_bytes: u64,
    /// How long a metric entry lives.
    pub ttl: Duration,
}

/// What moka itself keeps per entry besides the key and value (its node, the access-order and
/// write-order queue links, the frequency sketch's share, the `Arc`s), counted against the size
/// so that many small entries cannot hold more than `--query.cache-size`.
const ENTRY_OVERHEAD: usize = 256;

/// The largest entry, and the largest upstream text one request assembles through the cache:
/// this share of the cache. A larger answer streams through as it does without the cache.
const MAX_ENTRY_SHARE: u64 = 16;

impl Settings {
    /// Bytes of upstream answer one request may read to answer through the cache (and the
    /// largest entry kept): 1/16 of the cache, at least 64 KiB.
    pub fn max_entry_bytes(&self) -> usize {
        usize::try_from((self.max_bytes / MAX_ENTRY_SHARE).max(64 << 10)).unwrap_or(usize::MAX)
    }

    /// Bytes of upstream text one request may read to answer through the cache: half the
    /// largest entry, since a matrix held weighs about one and a half times its text (each
    /// point's time and end are kept beside it). An answer that could not be kept is not worth
    /// parsing and joining: past this it streams through.
    pub fn max_read_bytes(&self) -> usize {
        self.max_entry_bytes() / 2
    }
}

struct MetricTtl(Duration);

impl moka::Expiry<Key, Value> for MetricTtl {
    fn expire_after_create(&self, key: &Key, _: &Value, _: Instant) -> Option<Duration> {
        (key.face == CacheFace::Metric).then_some(self.0)
    }
}

pub struct ResultsCache {
    cache: moka::sync::Cache<Key, Value>,
    pub settings: Settings,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for ResultsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultsCache")
            .field("settings", &self.settings)
            .finish()
    }
}

impl ResultsCache {
    /// `None` when the configured size is 0 (caching disabled).
    pub fn new(settings: Settings, metrics: Arc<Metrics>) -> Option<Self> {
        if settings.max_bytes == 0 {
            return None;
        }
        let evictions = Arc::clone(&metrics);
        let cache = moka::sync::Cache::builder()
            .max_capacity(settings.max_bytes)
            .weigher(|key: &Key, value: &Value| {
                u32::try_from(value.bytes() + std::mem::size_of_val(key) + ENTRY_OVERHEAD)
                    .unwrap_or(u32::MAX)
            })
            .expire_after(MetricTtl(settings.ttl))
            .eviction_listener(move |key: Arc<Key>, _, cause| {
                if cause.was_evicted() {
                    evictions
                        .cache_evictions
                        .get_or_create(&CacheFaceLabels::of(key.face.name()))
                        .inc();
                }
            })
            .build();
        Some(ResultsCache {
            cache,
            settings,
            metrics,
        })
    }

    pub fn get(&self, key: &Key) -> Option<Value> {
        let found = self.cache.get(key);
        let result = if found.is_some() { "hit" } else { "miss" };
        self.metrics
            .cache_requests
            .get_or_create(&crate::telemetry::CacheRequestLabels {
                face: key.face.name().into(),
                result: result.into(),
            })
            .inc();
        found
    }

    /// Keeps `value` unless it is larger than [`Settings::max_entry_bytes`].
    pub fn insert(&self, key: Key, value: Value) {
        if value.bytes() <= self.settings.max_entry_bytes() {
            self.cache.insert(key, value);
        }
    }

    /// Drops every entry (`POST /api/v1/admin/cache/clear`, after an upstream backfill).
    pub fn clear(&self) {
        self.cache.invalidate_all();
        self.cache.run_pending_tasks();
    }

    /// Sets the bytes and entries gauges by face (at scrape time: one pass over the entries).
    pub fn refresh_gauges(&self) {
        self.cache.run_pending_tasks();
        let mut totals = [(0u64, 0i64); 2];
        for (key, value) in self.cache.iter() {
            let slot = &mut totals[key.face as usize];
            slot.0 += value.bytes() as u64;
            slot.1 += 1;
        }
        for (face, (bytes, entries)) in [CacheFace::Metric, CacheFace::Log].into_iter().zip(totals)
        {
            let labels = CacheFaceLabels::of(face.name());
            self.metrics
                .cache_bytes
                .get_or_create(&labels)
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            self.metrics
                .cache_entries
                .get_or_create(&labels)
                .set(entries);
        }
    }

    /// Bytes held now, as the cache weighs them.
    pub fn weighted_size(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }
}
