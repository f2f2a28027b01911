//! Lines: a log selector with its pipeline, searched over a window of the store.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::{CancelOnDrop, Engine, EngineError};
use crate::logql::LogQuery;
use crate::store::scan::Keep;
use crate::store::{Found, Search};

/// What to search: the query, an inclusive window in nanoseconds, how many lines and which
/// end of the window to keep when more match.
pub struct LineSearch {
    /// The parsed selector and pipeline.
    pub query: LogQuery,
    /// Oldest line time wanted, nanoseconds (inclusive).
    pub lo: i64,
    /// Newest line time wanted, nanoseconds (inclusive).
    pub hi: i64,
    /// Lines to keep at most; more matching lines make the answer truncated.
    pub limit: usize,
    /// Which end of the window wins when more lines match than `limit`.
    pub keep: Keep,
}

impl Engine {
    /// Searches the store on a blocking thread, by the deadline; dropping the future (a client
    /// that went away) stops the scan at its next block.
    pub async fn search_lines(
        &self,
        search: LineSearch,
        deadline: tokio::time::Instant,
    ) -> Result<Found, EngineError> {
        let cancelled = Arc::new(AtomicBool::new(false));
        let _guard = CancelOnDrop(Arc::clone(&cancelled));
        let store = Arc::clone(&self.store);
        let deadline = deadline.into_std();
        let found = tokio::task::spawn_blocking(move || {
            store.search(&Search {
                query: &search.query,
                lo: search.lo,
                hi: search.hi,
                limit: search.limit,
                keep: search.keep,
                deadline,
                cancelled: &cancelled,
            })
        })
        .await
        .map_err(|e| EngineError::Internal(format!("log search failed: {e}")))??;
        Ok(found)
    }
}
