//! Log reads shared between evaluations at the same steps. Rules are evaluated in groups, and
//! the rules of a group (an alert and the recording of the same count, say) often read the same
//! log leaf — one selector, pipeline, range function and grouping — at the same time: the first
//! evaluation to need it computes it, the others wait for and share its value. Only callers that
//! hand the engine a `SharedLeaves` share (the ruler); a query of the HTTP API never does.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use super::EngineError;
use crate::promql::value::Value;
use crate::promql::EvalError;

type Cell = Arc<tokio::sync::OnceCell<Result<Value, String>>>;

/// How far before the newest evaluation time a shared leaf is kept (nanoseconds): evaluations
/// that run at the same time find each other, older ones are forgotten.
const KEEP_NS: i64 = 60 * 1_000_000_000;

/// Leaves computed once per key, kept for a minute of evaluation time.
#[derive(Default)]
pub struct SharedLeaves {
    entries: Mutex<HashMap<String, (i64, Cell)>>,
    newest: std::sync::atomic::AtomicI64,
}

impl SharedLeaves {
    /// An empty set: nothing shared yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The leaf's value: computed by `compute` unless an evaluation at the same steps computed
    /// it already (then `shared` is called). A failure is shared as its message.
    pub(super) async fn get_or_compute(
        &self,
        key: String,
        start: i64,
        compute: impl Future<Output = Result<Value, EngineError>>,
        shared: impl FnOnce(),
    ) -> Result<Value, EngineError> {
        use std::sync::atomic::Ordering;
        let newest = self.newest.fetch_max(start, Ordering::Relaxed).max(start);
        let (cell, found) = {
            let Ok(mut entries) = self.entries.lock() else {
                return compute.await;
            };
            entries.retain(|_, (t, _)| *t >= newest - KEEP_NS);
            match entries.get(&key) {
                Some((_, cell)) => (Arc::clone(cell), true),
                None => {
                    let cell: Cell = Arc::default();
                    entries.insert(key, (start, Arc::clone(&cell)));
                    (cell, false)
                }
            }
        };
        let mut computed = false;
        let value = cell
            .get_or_init(|| async {
                computed = true;
                compute.await.map_err(|e| e.to_string())
            })
            .await;
        if found && !computed {
            shared();
        }
        value
            .clone()
            .map_err(|e| EngineError::from(EvalError::Execution(e)))
    }

    /// Leaves held.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or(0)
    }

    /// Whether no leaf is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
