//! Lines: a log selector with its pipeline, searched over a window of the store.

use std::sync::Arc;

use super::{Engine, EngineError};
use crate::logql::LogQuery;
use crate::logstore::Keep;
use crate::logstore::{Found, Search};

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
    /// that went away) stops the scan at its next block. `slot` (the query's place under the
    /// limiter) is held until the scan has really stopped, and given back with the answer for
    /// the caller to hold while it encodes.
    pub async fn search_lines<H: Send + 'static>(
        &self,
        search: LineSearch,
        deadline: tokio::time::Instant,
        slot: H,
    ) -> Result<(Found, H), EngineError> {
        super::runs_it(self.store.as_ref(), &search.query, false)?;
        let store = Arc::clone(&self.store);
        let deadline = deadline.into_std();
        let (found, slot) = super::blocking((), move |cancelled| {
            let found = store.search(&Search {
                query: &search.query,
                lo: search.lo,
                hi: search.hi,
                limit: search.limit,
                keep: search.keep,
                deadline,
                cancelled,
            });
            (found, slot)
        })
        .await?;
        Ok((found?, slot))
    }
}
