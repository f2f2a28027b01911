//! The value types of time every layer shares: instants (nanoseconds since the epoch) and
//! Prometheus's durations. The lowest module: it names nothing else of Janus.

pub mod duration;
pub mod timestamp;
