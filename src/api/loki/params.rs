//! Loki's request parameters, with Loki's rules and words: times as nanosecond or second
//! integers, float seconds or RFC 3339; `start` defaulting to `end` (or now) minus `since`
//! (default 1h); `limit` default 100; `direction` `backward` by default; `step` default
//! `max(⌊(end − start) / 250⌋, 1)` seconds, as a duration or float seconds.

use crate::api::params::{parse_duration_nanos, Params, Timestamp};
use crate::config::MAX_LOG_LIMIT;
use crate::logstore::Keep;

use crate::api::log_encode::Order;

/// A refusal of a parameter, in Loki's words (answered as plain text, 400).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadParameter(pub String);

/// Lines a query may ask for when it says nothing.
pub const DEFAULT_LIMIT: usize = 100;
const DEFAULT_SINCE_NANOS: i64 = 3_600_000_000_000;

/// A Loki time: an integer of up to 10 digits is seconds, a longer one nanoseconds; a number
/// with a fraction is seconds (to the millisecond); anything else RFC 3339.
pub fn parse_time(value: &str) -> Result<i64, String> {
    if value.contains('.') {
        if let Ok(seconds) = value.parse::<f64>() {
            if seconds.is_finite() {
                let whole = seconds.trunc();
                let millis = ((seconds - whole) * 1000.0).round();
                return Ok((whole as i64)
                    .saturating_mul(1_000_000_000)
                    .saturating_add(millis as i64 * 1_000_000));
            }
        }
    }
    if let Ok(n) = value.parse::<i64>() {
        let digits = value.trim_start_matches('-').len();
        return Ok(if digits <= 10 {
            n.saturating_mul(1_000_000_000)
        } else {
            n
        });
    }
    chrono::DateTime::parse_from_rfc3339(value)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| {
            format!("cannot parse {value:?} as a time (nanoseconds, seconds or RFC3339)")
        })
}

fn time_or(params: &Params, name: &str, default: i64) -> Result<i64, BadParameter> {
    let value = params.get(name);
    if value.is_empty() {
        return Ok(default);
    }
    parse_time(value).map_err(|e| BadParameter(format!("could not parse '{name}' parameter: {e}")))
}

/// `start` and `end` of a range request (`end` defaults to now, `start` to `end` − `since`).
pub fn bounds(params: &Params) -> Result<(i64, i64), BadParameter> {
    let now = Timestamp::now().0;
    let since = match params.get("since") {
        "" => DEFAULT_SINCE_NANOS,
        text => crate::time::duration::parse(text)
            .ok()
            .and_then(|d| i64::try_from(d.as_nanos()).ok())
            .ok_or_else(|| {
                BadParameter(format!(
                    "could not parse 'since' parameter: not a valid duration string: {text:?}"
                ))
            })?,
    };
    let end = time_or(params, "end", now)?;
    let start = time_or(params, "start", end.min(now).saturating_sub(since))?;
    Ok((start, end))
}

/// `limit`: positive, at most what an answer may hold.
pub fn limit(params: &Params) -> Result<usize, BadParameter> {
    let value = params.get("limit");
    if value.is_empty() {
        return Ok(DEFAULT_LIMIT);
    }
    let n: i64 = value.parse().map_err(|_| {
        BadParameter(format!(
            "could not parse 'limit' parameter: {value:?} is not a number"
        ))
    })?;
    if n <= 0 {
        return Err(BadParameter("limit must be a positive value".into()));
    }
    let n = usize::try_from(n).unwrap_or(usize::MAX);
    if n > MAX_LOG_LIMIT {
        return Err(BadParameter(format!(
            "max entries limit per query exceeded, limit > max_entries_limit ({n} > {MAX_LOG_LIMIT})"
        )));
    }
    Ok(n)
}

/// `direction`: which lines a limit keeps and the order they come in.
pub fn direction(params: &Params) -> Result<(Keep, Order), BadParameter> {
    match params.get("direction").to_ascii_lowercase().as_str() {
        "" | "backward" => Ok((Keep::Newest, Order::Descending)),
        "forward" => Ok((Keep::Oldest, Order::Ascending)),
        _ => Err(BadParameter(format!(
            "invalid direction '{}'",
            params.get("direction")
        ))),
    }
}

/// `step` of a metric range query, in nanoseconds; checked as Loki checks it.
pub fn step(params: &Params, start: i64, end: i64) -> Result<i64, BadParameter> {
    let value = params.get("step");
    let step = if value.is_empty() {
        let seconds = ((i128::from(end) - i128::from(start)) / 1_000_000_000 / 250).max(1);
        i64::try_from(seconds * 1_000_000_000).unwrap_or(i64::MAX)
    } else {
        parse_duration_nanos(value).map_err(BadParameter)?
    };
    if step <= 0 {
        return Err(BadParameter(
            "zero or negative query resolution step widths are not accepted. Try a positive integer"
                .into(),
        ));
    }
    if (i128::from(end) - i128::from(start)) / i128::from(step) > 11_000 {
        return Err(BadParameter(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
        ));
    }
    Ok(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_loki_reads_them() {
        assert_eq!(parse_time("1704067200"), Ok(1_704_067_200_000_000_000));
        assert_eq!(
            parse_time("1704067200000000000"),
            Ok(1_704_067_200_000_000_000)
        );
        assert_eq!(parse_time("1704067200.5"), Ok(1_704_067_200_500_000_000));
        assert_eq!(
            parse_time("2024-01-01T00:00:00.000000001Z"),
            Ok(1_704_067_200_000_000_001)
        );
        assert!(parse_time("yesterday").is_err());
    }

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn defaults_and_refusals() {
        let p = params(&[("start", "1704067200"), ("end", "1704070800")]);
        assert_eq!(
            step(&p, 1_704_067_200_000_000_000, 1_704_070_800_000_000_000),
            Ok(14_000_000_000)
        );
        assert_eq!(limit(&p), Ok(100));
        assert_eq!(direction(&p).map(|d| d.0), Ok(Keep::Newest));
        let (start, end) = bounds(&params(&[("end", "1704070800"), ("since", "30m")])).unwrap();
        assert_eq!(end - start, 1_800_000_000_000);
        assert_eq!(
            limit(&params(&[("limit", "0")])).unwrap_err().0,
            "limit must be a positive value"
        );
        assert_eq!(
            direction(&params(&[("direction", "sideways")]))
                .unwrap_err()
                .0,
            "invalid direction 'sideways'"
        );
        assert!(step(&params(&[("step", "0")]), 0, 1).is_err());
        assert!(step(&params(&[("step", "1ms")]), 0, 3_600_000_000_000).is_err());
    }
}
