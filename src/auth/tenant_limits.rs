//! Limits per tenant: how fast it may push (bytes and lines per second, each with a burst, as
//! Loki's per-tenant ingestion rate limit) and how many of its queries may run at once. One
//! tenant at its limits slows only itself; the server-wide limits still bound everyone together.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// `limits:` of a tenant in the tenants file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFormat {
    /// Sizes as the flags take them (`4MB`).
    push_bytes_per_second: Option<String>,
    push_burst_bytes: Option<String>,
    push_lines_per_second: Option<f64>,
    push_burst_lines: Option<f64>,
    max_concurrent_queries: Option<usize>,
}

/// A token bucket: `rate` per second, at most `burst` saved up.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: f64) -> Self {
        Bucket {
            rate,
            burst,
            tokens: burst,
            at: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = now;
    }

    /// How long until `n` tokens are there (zero: now); `None`: never (more than the burst).
    fn wait_for(&self, n: f64) -> Option<Duration> {
        if n > self.burst {
            return None;
        }
        let missing = (n - self.tokens).max(0.0);
        Some(Duration::from_secs_f64(missing / self.rate))
    }
}

/// Why a push was refused: Loki's words, and when to try again.
#[derive(Debug, Clone, PartialEq)]
pub struct PushRefused {
    pub message: String,
    pub retry_after: Option<Duration>,
}

/// Every query slot of a tenant is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllTaken;

/// A tenant's limits and their state.
#[derive(Debug, Default)]
pub struct TenantLimits {
    bytes: Option<Mutex<Bucket>>,
    lines: Option<Mutex<Bucket>>,
    queries: Option<std::sync::Arc<tokio::sync::Semaphore>>,
    pub max_concurrent_queries: Option<usize>,
}

impl TenantLimits {
    /// Checks the format; `key` names the tenant's `limits` in errors.
    pub fn new(format: LimitsFormat) -> Result<TenantLimits, (String, String)> {
        let size = |key: &str, text: &Option<String>| -> Result<Option<f64>, (String, String)> {
            text.as_deref()
                .map(|t| {
                    // A plain number is bytes.
                    t.trim()
                        .parse::<f64>()
                        .ok()
                        .or_else(|| {
                            crate::logstore::files::retention::parse_size(t).map(|n| n as f64)
                        })
                        .ok_or_else(|| {
                            (key.to_string(), format!("{t:?} is not a size such as 4MB"))
                        })
                })
                .transpose()
        };
        let positive = |key: &str, v: Option<f64>| -> Result<Option<f64>, (String, String)> {
            match v {
                Some(v) if !(v.is_finite() && v > 0.0) => {
                    Err((key.to_string(), "must be greater than 0".to_string()))
                }
                other => Ok(other),
            }
        };
        let bytes_rate = positive(
            "push_bytes_per_second",
            size("push_bytes_per_second", &format.push_bytes_per_second)?,
        )?;
        let bytes_burst = positive(
            "push_burst_bytes",
            size("push_burst_bytes", &format.push_burst_bytes)?,
        )?;
        let lines_rate = positive("push_lines_per_second", format.push_lines_per_second)?;
        let lines_burst = positive("push_burst_lines", format.push_burst_lines)?;
        let bucket = |rate: Option<f64>, burst: Option<f64>, key: &str| match (rate, burst) {
            // Without a burst, one second's worth (a push may come all at once).
            (Some(rate), burst) => Ok(Some(Mutex::new(Bucket::new(rate, burst.unwrap_or(rate))))),
            (None, Some(_)) => Err((key.to_string(), "a burst needs a rate".to_string())),
            (None, None) => Ok(None),
        };
        if format.max_concurrent_queries == Some(0) {
            return Err((
                "max_concurrent_queries".into(),
                "must be greater than 0".into(),
            ));
        }
        Ok(TenantLimits {
            bytes: bucket(bytes_rate, bytes_burst, "push_burst_bytes")?,
            lines: bucket(lines_rate, lines_burst, "push_burst_lines")?,
            queries: format
                .max_concurrent_queries
                .map(|n| std::sync::Arc::new(tokio::sync::Semaphore::new(n))),
            max_concurrent_queries: format.max_concurrent_queries,
        })
    }

    /// Takes `bytes` and `lines` from the tenant's push budget, both or neither.
    pub fn admit_push(&self, tenant: &str, bytes: u64, lines: u64) -> Result<(), PushRefused> {
        let now = Instant::now();
        let mut held = Vec::new();
        for (bucket, n, unit) in [
            (&self.bytes, bytes as f64, "bytes"),
            (&self.lines, lines as f64, "lines"),
        ] {
            if let Some(bucket) = bucket {
                let Ok(mut b) = bucket.lock() else { continue };
                b.refill(now);
                held.push((b, n, unit));
            }
        }
        // The longest wait among the buckets decides; one the request can never fit says so.
        let mut slowest: Option<(Duration, &Bucket, &str)> = None;
        for (b, n, unit) in &held {
            let limit = |what: &str| {
                format!(
                    "Ingestion rate limit exceeded for user {tenant} (limit: {} {unit} per second, burst {}) while attempting to ingest '{lines}' lines totaling '{bytes}' bytes{what}",
                    b.rate, b.burst
                )
            };
            match b.wait_for(*n) {
                None => {
                    return Err(PushRefused {
                        message: limit(": the request is larger than the burst; split it"),
                        retry_after: None,
                    })
                }
                Some(w) if !w.is_zero() && slowest.is_none_or(|(s, _, _)| w > s) => {
                    slowest = Some((w, b, unit));
                }
                Some(_) => {}
            }
        }
        if let Some((wait, b, unit)) = slowest {
            return Err(PushRefused {
                message: format!(
                    "Ingestion rate limit exceeded for user {tenant} (limit: {} {unit} per second) while attempting to ingest '{lines}' lines totaling '{bytes}' bytes, reduce log volume or contact your Janus administrator to see if the limit can be increased",
                    b.rate
                ),
                retry_after: Some(wait),
            });
        }
        for (mut b, n, _) in held {
            b.tokens -= n;
        }
        Ok(())
    }

    /// A slot for one query of the tenant, if it has a limit; `Err` when all are taken.
    pub fn query_slot(&self) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, AllTaken> {
        match &self.queries {
            None => Ok(None),
            Some(slots) => std::sync::Arc::clone(slots)
                .try_acquire_owned()
                .map(Some)
                .map_err(|_| AllTaken),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(yaml: &str) -> TenantLimits {
        TenantLimits::new(serde_norway::from_str(yaml).expect("yaml")).expect("valid")
    }

    #[test]
    fn pushes_within_the_burst_then_at_the_rate() {
        let l = limits("push_bytes_per_second: 1000\npush_burst_bytes: 2000\n");
        assert!(l.admit_push("t", 1500, 1).is_ok());
        let refused = l.admit_push("t", 1000, 1).expect_err("over");
        let wait = refused.retry_after.expect("a retry time");
        assert!(
            wait > Duration::from_millis(300) && wait <= Duration::from_millis(600),
            "{wait:?}"
        );
        assert!(refused
            .message
            .contains("Ingestion rate limit exceeded for user t"));
        // Larger than the burst: never, so no retry time.
        let never = l.admit_push("t", 5000, 1).expect_err("over the burst");
        assert_eq!(never.retry_after, None);
        // Lines are limited on their own; a refusal takes nothing from either bucket.
        let l = limits("push_lines_per_second: 10\npush_bytes_per_second: 1MB\n");
        assert!(l.admit_push("t", 10, 10).is_ok());
        assert!(l.admit_push("t", 10, 1).is_err());
    }

    #[test]
    fn queries_at_once() {
        let l = limits("max_concurrent_queries: 2\n");
        let first = l.query_slot().expect("free");
        let second = l.query_slot().expect("free");
        assert!(first.is_some() && second.is_some());
        assert!(l.query_slot().is_err());
        drop(first);
        assert!(l.query_slot().is_ok());
        assert!(limits("{}").query_slot().expect("no limit").is_none());
    }

    #[test]
    fn bad_limits_are_refused() {
        for yaml in [
            "push_bytes_per_second: 0\n",
            "push_burst_bytes: 1MB\n",
            "push_lines_per_second: -1\n",
            "max_concurrent_queries: 0\n",
            "push_bytes_per_second: fast\n",
        ] {
            let format: LimitsFormat = serde_norway::from_str(yaml).expect("yaml");
            assert!(TenantLimits::new(format).is_err(), "{yaml}");
        }
    }
}
