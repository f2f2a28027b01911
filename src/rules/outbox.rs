//! What leaves the ruler waits in a bounded queue: alerts for Alertmanager, samples for remote
//! write. When it is full the oldest are dropped (the caller counts them): a receiver that is
//! down must cost memory up to the bound, not without one. One task drains it batch by batch.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};

pub struct Outbox<T> {
    items: Mutex<VecDeque<T>>,
    wake: tokio::sync::Notify,
    capacity: usize,
}

impl<T: Send + 'static> Outbox<T> {
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Outbox {
            items: Mutex::new(VecDeque::new()),
            wake: tokio::sync::Notify::new(),
            capacity,
        })
    }

    /// Adds `items`, dropping the oldest beyond the capacity: how many were dropped.
    pub fn put(&self, items: impl IntoIterator<Item = T>) -> u64 {
        let mut dropped = 0;
        if let Ok(mut queue) = self.items.lock() {
            queue.extend(items);
            while queue.len() > self.capacity {
                queue.pop_front();
                dropped += 1;
            }
        }
        self.wake.notify_one();
        dropped
    }

    /// Items waiting.
    pub fn len(&self) -> usize {
        self.items.lock().map(|q| q.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn take(&self, n: usize) -> Vec<T> {
        match self.items.lock() {
            Ok(mut q) => {
                let n = q.len().min(n);
                q.drain(..n).collect()
            }
            Err(_) => Vec::new(),
        }
    }

    /// Hands the items to `send`, at most `batch` at a time, for as long as the process runs.
    pub fn spawn_drain<F, Fut>(self: &Arc<Self>, batch: usize, send: F)
    where
        F: Fn(Vec<T>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                me.wake.notified().await;
                loop {
                    let items = me.take(batch);
                    if items.is_empty() {
                        break;
                    }
                    send(items).await;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_are_dropped_beyond_the_capacity() {
        let q = Outbox::new(3);
        assert_eq!(q.put([1, 2]), 0);
        assert_eq!(q.put([3, 4, 5]), 2);
        assert_eq!(q.take(10), vec![3, 4, 5]);
        assert!(q.is_empty());
    }
}
