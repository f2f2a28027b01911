//! Prometheus duration syntax (`1h30m`, `15s`, `2w`, `500ms`), shared by flags, the config
//! file and query parameters so that every place accepts exactly what Prometheus accepts.

use std::time::Duration;

/// Units in the only order Prometheus allows them, with their length in milliseconds.
const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
];

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration string")]
    Empty,
    #[error("not a valid duration string: {0:?}")]
    Invalid(String),
    #[error("duration out of range")]
    Overflow,
}

/// Parses a Prometheus duration: a sequence of `<integer><unit>` with units in decreasing
/// order, each at most once, or the bare `0`.
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let invalid = || DurationError::Invalid(s.to_string());
    let bytes = s.as_bytes();
    let mut pos = 0;
    let mut next_unit = 0;
    let mut total_ms: u64 = 0;
    while pos < bytes.len() {
        let digits_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        if pos == digits_start {
            return Err(invalid());
        }
        let number: u64 = s[digits_start..pos]
            .parse()
            .map_err(|_| DurationError::Overflow)?;
        let unit_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_alphabetic() {
            pos += 1;
        }
        let unit = &s[unit_start..pos];
        let index = UNITS[next_unit..]
            .iter()
            .position(|(name, _)| *name == unit)
            .map(|i| i + next_unit)
            .ok_or_else(invalid)?;
        next_unit = index + 1;
        let part = number
            .checked_mul(UNITS[index].1)
            .ok_or(DurationError::Overflow)?;
        total_ms = total_ms.checked_add(part).ok_or(DurationError::Overflow)?;
    }
    if total_ms > i64::MAX as u64 / 1_000_000 {
        return Err(DurationError::Overflow);
    }
    Ok(Duration::from_millis(total_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_durations() {
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("2w1d"), Ok(Duration::from_secs(15 * 86400)));
        assert_eq!(parse("1y"), Ok(Duration::from_secs(365 * 86400)));
        assert_eq!(parse("1m500ms"), Ok(Duration::from_millis(60_500)));
    }

    #[test]
    fn refuses_what_prometheus_refuses() {
        for bad in [
            "", "1", "1.5s", "-1s", "1m1h", "1s1s", "s", "1x", "1 s", "1sm",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(parse("99999999999999999999y"), Err(DurationError::Overflow));
    }

    #[test]
    fn formats_round_trip() {
        for s in ["1h30m", "2m", "15d", "2w", "1y", "1s500ms"] {
            // promql-parser prints durations as Prometheus does: what Janus parses prints back.
            let printed = promql_parser::util::display_duration(&parse(s).unwrap());
            assert_eq!(printed, s);
        }
    }
}
