//! `--query.max-concurrency`: at most N queries at once, the rest wait in a FIFO queue.
//!
//! Waiting counts against the query's deadline (as in Prometheus's active query tracker), so a
//! queued query times out with the same 503 `timeout` as a slow one instead of waiting forever.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::api::error::ApiError;
use crate::telemetry::Metrics;

pub struct QueryLimiter {
    slots: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl QueryLimiter {
    pub fn new(max_concurrency: usize, metrics: Arc<Metrics>) -> Self {
        QueryLimiter {
            slots: Arc::new(Semaphore::new(max_concurrency)),
            metrics,
        }
    }

    /// Waits for a slot until `deadline`. The permit frees the slot when dropped.
    pub async fn acquire(&self, deadline: Instant) -> Result<OwnedSemaphorePermit, ApiError> {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            return Ok(permit);
        }
        self.metrics.queued.inc();
        let waited =
            tokio::time::timeout_at(deadline, Arc::clone(&self.slots).acquire_owned()).await;
        self.metrics.queued.dec();
        match waited {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(ApiError::Unavailable("Janus is shutting down".into())),
            Err(_) => Err(ApiError::Timeout(
                "query timed out while waiting in the queue for a free slot (--query.max-concurrency)"
                    .into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn queues_then_times_out() {
        let metrics = Arc::new(Metrics::new());
        let limiter = QueryLimiter::new(1, Arc::clone(&metrics));
        let held = limiter
            .acquire(Instant::now() + Duration::from_secs(1))
            .await
            .unwrap();
        let err = limiter
            .acquire(Instant::now() + Duration::from_millis(20))
            .await
            .unwrap_err();
        assert_eq!(err.error_type(), "timeout");
        assert_eq!(metrics.queued.get(), 0);
        drop(held);
        assert!(limiter
            .acquire(Instant::now() + Duration::from_millis(20))
            .await
            .is_ok());
    }
}
