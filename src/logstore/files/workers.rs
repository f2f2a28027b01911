//! The scan workers: one pool of threads shared by every query. A query asks for up to as many
//! workers as there are cores; with twenty queries at once they take turns on the same threads
//! rather than each making its own (which once meant up to 64 × 20 threads).

/// A bounded pool of threads for scans and index builds.
pub struct Workers {
    /// `None` when the system would not give Janus the threads: work then runs on the caller's
    /// thread, slower but answered.
    pool: Option<rayon::ThreadPool>,
    threads: usize,
}

impl Workers {
    /// A pool of `threads` threads (at least one).
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("janus-scan-{i}"))
            .build();
        match pool {
            Ok(pool) => Workers {
                pool: Some(pool),
                threads,
            },
            Err(e) => {
                tracing::warn!(error = %e, "no scan worker threads; scanning on the query's own thread");
                Workers {
                    pool: None,
                    threads: 1,
                }
            }
        }
    }

    /// One worker per core.
    pub fn per_core() -> Self {
        Workers::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    }

    /// Runs `work` on up to `wanted` of the pool's threads at once and returns when every copy
    /// has returned; `work` pulls its own items from a shared cursor, so fewer threads (a busy
    /// pool) only means the same work done by fewer hands. Blocking: call it from a blocking
    /// thread, never from a pool thread.
    pub fn run(&self, wanted: usize, work: impl Fn() + Sync) {
        let copies = wanted.clamp(1, self.threads);
        let work = &work;
        let Some(pool) = &self.pool else {
            return work();
        };
        pool.in_place_scope(|scope| {
            for _ in 0..copies {
                scope.spawn(move |_| work());
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn runs_every_item_once_on_at_most_the_pool() {
        let workers = Workers::new(3);
        let next = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        workers.run(64, || loop {
            if next.fetch_add(1, Ordering::Relaxed) >= 1000 {
                return;
            }
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            done.fetch_add(1, Ordering::Relaxed);
            running.fetch_sub(1, Ordering::SeqCst);
        });
        assert_eq!(done.load(Ordering::Relaxed), 1000);
        assert!(most.load(Ordering::SeqCst) <= 3);
    }
}
