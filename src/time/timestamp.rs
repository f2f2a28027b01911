//! The instant every layer shares: nanoseconds since the Unix epoch. It lives below the store
//! (which asks for "now" to tell settled files from growing ones) and the HTTP layer reads it
//! from parameters (`params`).

/// Nanoseconds since the Unix epoch. Prometheus keeps `time.Time` (nanoseconds), so range
/// arithmetic done here rounds exactly where Prometheus's does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timestamp(pub i64);

impl Timestamp {
    pub fn now() -> Self {
        let now = chrono::Utc::now();
        Timestamp(now.timestamp_nanos_opt().unwrap_or(i64::MAX))
    }

    pub fn as_millis(self) -> i64 {
        self.0.div_euclid(1_000_000)
    }
}
