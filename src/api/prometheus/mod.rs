//! Prometheus's HTTP query API as Janus serves it: queries routed to the log face, the upstream
//! or both (`query`, with the results cache in `cached_query`), what is forwarded untouched
//! (`proxy`), the endpoints both faces answer and Janus merges (`merged`: labels, label values,
//! series), metadata, targets, and the two answer shapes of Janus's own queries (`lines`:
//! Lethe's log answer; `numbers`: vectors and matrices). The pieces both APIs use (request
//! reading, envelope, parameters, errors, the log encoder) sit in `api/` above it.

pub(super) mod cached_query;
pub(super) mod lines;
pub(super) mod merged;
pub(super) mod metadata;
pub(super) mod numbers;
pub(super) mod proxy;
pub(super) mod query;
pub(super) mod targets;
