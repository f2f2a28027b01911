//! Query parameters as Prometheus reads them: one layer shared by every handler Janus answers
//! itself, with Prometheus's exact wording for every refusal (checked against a real Prometheus in
//! `tests/compat.rs`), so a client cannot tell which face rejected its request.

use std::time::Duration;

use crate::api::error::ApiError;
use crate::time::duration;

/// Prometheus's cap on points per series in a range query.
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;

pub use crate::time::timestamp::Timestamp;

/// Prometheus formats its smallest and largest representable times with these strings and
/// accepts them back (client libraries send them for "unbounded").
const MIN_TIME_TEXT: &str = "-292273086-05-16T16:47:06Z";
const MAX_TIME_TEXT: &str = "292277025-08-18T07:12:54.999999999Z";
/// Where Prometheus evaluates `time=NaN` or `time=Inf`: its smallest millisecond timestamp.
pub const NON_FINITE_TIME: i64 = i64::MIN / 1_000_000 * 1_000_000;

/// The form values of a request: the URL query string and, for a form POST, the body. Body values
/// come first, as Go's `Request.Form` orders them, so `get` picks what Prometheus would pick.
#[derive(Debug, Default, Clone)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn parse(query: Option<&str>, form_body: Option<&[u8]>) -> Self {
        let mut pairs: Vec<(String, String)> = Vec::new();
        if let Some(body) = form_body {
            pairs.extend(form_urlencoded::parse(body).into_owned());
        }
        if let Some(query) = query {
            pairs.extend(form_urlencoded::parse(query.as_bytes()).into_owned());
        }
        Params { pairs }
    }

    /// Every name/value pair, body first, in request order.
    /// Parameters from name–value pairs (tests, and requests built by Janus itself).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Params { pairs }
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The first value of `name`, or `""` when absent (Go's `FormValue`).
    pub fn get(&self, name: &str) -> &str {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `query` parameter, refused when empty with the parser's wording.
    pub fn query(&self) -> Result<&str, ApiError> {
        let query = self.get("query");
        if query.trim().is_empty() {
            return Err(invalid(
                "query",
                "1:1: parse error: no expression found in input",
            ));
        }
        Ok(query)
    }

    /// `time`-like parameter with a default, worded as Prometheus's `parseTimeParam`.
    pub fn time_or(&self, name: &str, default: Timestamp) -> Result<Timestamp, ApiError> {
        let value = self.get(name);
        if value.is_empty() {
            return Ok(default);
        }
        parse_time(value)
            .map_err(|e| invalid(name, &format!("Invalid time value for '{name}': {e}")))
    }

    /// `timeout`, when given: a duration, never negative.
    pub fn timeout(&self) -> Result<Option<Duration>, ApiError> {
        let value = self.get("timeout");
        if value.is_empty() {
            return Ok(None);
        }
        let nanos = parse_duration_nanos(value).map_err(|e| invalid("timeout", &e))?;
        Ok(Some(Duration::from_nanos(nanos.max(0) as u64)))
    }

    /// `start`, `end` and `step` of a range query, validated in Prometheus's order and words.
    pub fn range(&self) -> Result<RangeParams, ApiError> {
        let (start, end) = self.start_end()?;
        let step = self.step()?;
        let span = (end.0 as i128) - (start.0 as i128);
        if span / (step as i128) > MAX_POINTS_PER_SERIES as i128 {
            return Err(ApiError::BadData(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
            ));
        }
        Ok(RangeParams {
            start,
            end,
            step_nanos: step,
        })
    }
}

impl Params {
    /// `start` and `end` of a raw log range query: as Prometheus's, but `step` is optional
    /// (Lethe clients send none) and, when given, only needs to be valid: lines are not sampled.
    pub fn log_range(&self) -> Result<(Timestamp, Timestamp), ApiError> {
        let (start, end) = self.start_end()?;
        if !self.get("step").is_empty() {
            self.step()?;
        }
        Ok((start, end))
    }

    /// Required `start` and `end`, `end` not before `start`.
    fn start_end(&self) -> Result<(Timestamp, Timestamp), ApiError> {
        let start = parse_time(self.get("start")).map_err(|e| invalid("start", &e))?;
        let end = parse_time(self.get("end")).map_err(|e| invalid("end", &e))?;
        if end < start {
            return Err(invalid(
                "end",
                "end timestamp must not be before start time",
            ));
        }
        Ok((start, end))
    }

    /// A required, positive `step` in nanoseconds.
    fn step(&self) -> Result<i64, ApiError> {
        let step = parse_duration_nanos(self.get("step")).map_err(|e| invalid("step", &e))?;
        if step <= 0 {
            return Err(invalid(
                "step",
                "zero or negative query resolution step widths are not accepted. Try a positive integer",
            ));
        }
        Ok(step)
    }

    /// `limit`: absent or 0 means "the default"; otherwise a whole number up to `max`.
    pub fn limit(&self, default: usize, max: usize) -> Result<usize, ApiError> {
        let text = self.get("limit");
        if text.is_empty() {
            return Ok(default);
        }
        match text.parse::<i64>() {
            Err(_) => Err(invalid(
                "limit",
                &format!("cannot parse {text:?} to a valid limit"),
            )),
            Ok(n) if n < 0 => Err(invalid("limit", "limit must be non-negative")),
            Ok(0) => Ok(default),
            Ok(n) if n as u64 > max as u64 => Err(invalid(
                "limit",
                &format!("limit must be at most {max} for log queries"),
            )),
            Ok(n) => Ok(n as usize),
        }
    }

    /// A parameter that must be one of `allowed` when present.
    pub fn choice(&self, name: &str, allowed: &[&str]) -> Result<Option<&str>, ApiError> {
        let value = self.get(name);
        if value.is_empty() {
            return Ok(None);
        }
        if allowed.contains(&value) {
            Ok(Some(value))
        } else {
            Err(invalid(
                name,
                &format!("{value:?} is not one of {}", allowed.join(", ")),
            ))
        }
    }
}

/// A validated range: `start <= end`, `step > 0`, at most 11,000 steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeParams {
    pub start: Timestamp,
    pub end: Timestamp,
    pub step_nanos: i64,
}

impl RangeParams {
    /// Evaluation steps from `start` to `end` (at most 11,001, checked by `range`); computed
    /// wide, since `end - start` can pass i64 (`start=-Inf&end=1e300`).
    pub fn steps(&self) -> usize {
        let span = i128::from(self.end.0) - i128::from(self.start.0);
        usize::try_from(span / i128::from(self.step_nanos)).unwrap_or(0) + 1
    }
}

/// Instant or range: which time parameters a query reads and which result type it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryKind {
    Instant,
    Range,
}

impl Params {
    /// The evaluation steps of an expression: `time` (default now) for an instant query,
    /// `start`/`end`/`step` for a range query.
    pub fn steps(&self, kind: QueryKind) -> Result<crate::promql::value::Steps, ApiError> {
        Ok(match kind {
            QueryKind::Instant => crate::promql::value::Steps {
                start: self.time_or("time", Timestamp::now())?.0,
                step: 1,
                count: 1,
            },
            QueryKind::Range => {
                let r = self.range()?;
                crate::promql::value::Steps {
                    start: r.start.0,
                    step: r.step_nanos,
                    count: r.steps(),
                }
            }
        })
    }
}

fn invalid(parameter: &str, message: &str) -> ApiError {
    ApiError::BadData(format!("invalid parameter {parameter:?}: {message}"))
}

/// Unix seconds with fraction (rounded to the millisecond, as Prometheus does) or RFC 3339.
pub fn parse_time(s: &str) -> Result<Timestamp, String> {
    if let Some(seconds) = parse_go_float(s) {
        // Go converts NaN and ±Inf seconds to its smallest int64, so Prometheus evaluates such a
        // time at its smallest millisecond timestamp (-9223372036.854): do the same.
        if !seconds.is_finite() {
            return Ok(Timestamp(NON_FINITE_TIME));
        }
        let whole = seconds.trunc();
        let frac = ((seconds - whole) * 1000.0).round() / 1000.0;
        let nanos = whole * 1e9 + frac * 1e9;
        return Ok(Timestamp(saturating_i64(nanos)));
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        if s.contains('T') {
            return Ok(Timestamp(t.timestamp_nanos_opt().unwrap_or(
                if t.timestamp() < 0 {
                    i64::MIN
                } else {
                    i64::MAX
                },
            )));
        }
    }
    match s {
        MIN_TIME_TEXT => Ok(Timestamp(i64::MIN)),
        MAX_TIME_TEXT => Ok(Timestamp(i64::MAX)),
        _ => Err(format!("cannot parse {s:?} to a valid timestamp")),
    }
}

/// Float seconds or a Prometheus duration, in (signed) nanoseconds.
pub fn parse_duration_nanos(s: &str) -> Result<i64, String> {
    if let Some(seconds) = parse_go_float(s) {
        let nanos = seconds * 1e9;
        if !(i64::MIN as f64..=i64::MAX as f64).contains(&nanos) {
            return Err(format!(
                "cannot parse {s:?} to a valid duration. It overflows int64"
            ));
        }
        return Ok(nanos as i64);
    }
    duration::parse(s)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .ok_or_else(|| format!("cannot parse {s:?} to a valid duration"))
}

/// Go's `strconv.ParseFloat` accepts decimal and exponent forms plus `Inf`/`NaN` spellings;
/// Rust's parser accepts nearly the same set, minus a leading `+` on `inf`/`nan` and `_`s.
fn parse_go_float(s: &str) -> Option<f64> {
    if s.is_empty() || s.contains('_') {
        return None;
    }
    s.parse::<f64>().ok()
}

fn saturating_i64(x: f64) -> i64 {
    if x.is_nan() {
        0
    } else {
        x as i64 // `as` saturates at the i64 bounds.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Params {
        Params::parse(Some(q), None)
    }

    fn message(e: ApiError) -> String {
        assert_eq!(e.error_type(), "bad_data");
        e.to_string()
    }

    #[test]
    fn body_values_come_before_query_string() {
        let p = Params::parse(Some("query=a&x=1"), Some(b"query=b"));
        assert_eq!(p.get("query"), "b");
        assert_eq!(p.get_all("query").collect::<Vec<_>>(), ["b", "a"]);
        assert_eq!(p.get("missing"), "");
    }

    #[test]
    fn times_parse_like_prometheus() {
        assert_eq!(parse_time("1.5"), Ok(Timestamp(1_500_000_000)));
        assert_eq!(parse_time("1.0004"), Ok(Timestamp(1_000_000_000)));
        assert_eq!(
            parse_time("2024-01-01T00:00:00.5Z"),
            Ok(Timestamp(1_704_067_200_500_000_000))
        );
        assert_eq!(
            parse_time("2024-01-01T01:00:00+01:00"),
            Ok(Timestamp(1_704_067_200_000_000_000))
        );
        assert_eq!(parse_time("1e300"), Ok(Timestamp(i64::MAX)));
        for non_finite in ["NaN", "nan", "Inf", "-Inf", "inf", "-infinity"] {
            assert_eq!(parse_time(non_finite), Ok(Timestamp(NON_FINITE_TIME)));
        }
        assert_eq!(parse_time(MIN_TIME_TEXT), Ok(Timestamp(i64::MIN)));
        assert_eq!(
            parse_time("abc"),
            Err("cannot parse \"abc\" to a valid timestamp".into())
        );
        assert!(parse_time("2024-01-01 00:00:00Z").is_err());
    }

    #[test]
    fn instant_time_errors_match_prometheus() {
        let e = params("time=abc")
            .time_or("time", Timestamp(0))
            .unwrap_err();
        assert_eq!(
            message(e),
            "invalid parameter \"time\": Invalid time value for 'time': cannot parse \"abc\" to a valid timestamp"
        );
    }

    #[test]
    fn missing_query_is_the_parser_error() {
        assert_eq!(
            message(params("time=1").query().unwrap_err()),
            "invalid parameter \"query\": 1:1: parse error: no expression found in input"
        );
    }

    #[test]
    fn range_errors_match_prometheus() {
        let cases = [
            ("start=1&end=0&step=1", "invalid parameter \"end\": end timestamp must not be before start time"),
            ("start=0&end=1&step=0", "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer"),
            ("start=0&end=100000&step=1", "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"),
            ("start=0&end=100&step=abc", "invalid parameter \"step\": cannot parse \"abc\" to a valid duration"),
            ("start=x&end=100&step=1", "invalid parameter \"start\": cannot parse \"x\" to a valid timestamp"),
            ("end=100&step=1", "invalid parameter \"start\": cannot parse \"\" to a valid timestamp"),
            ("start=0&end=100", "invalid parameter \"step\": cannot parse \"\" to a valid duration"),
            ("start=0&end=1&step=1e300", "invalid parameter \"step\": cannot parse \"1e300\" to a valid duration. It overflows int64"),
        ];
        for (query, expected) in cases {
            assert_eq!(
                message(params(query).range().unwrap_err()),
                expected,
                "{query}"
            );
        }
    }

    #[test]
    fn valid_ranges() {
        let r = params("start=0&end=11000&step=1").range().unwrap();
        assert_eq!(r.step_nanos, 1_000_000_000);
        let r = params("start=0&end=100&step=1m30s").range().unwrap();
        assert_eq!(r.step_nanos, 90_000_000_000);
        assert!(params("start=0&end=100&step=-1").range().is_err());
    }

    #[test]
    fn timeouts() {
        assert_eq!(
            params("timeout=30s").timeout().unwrap(),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            params("timeout=0.5").timeout().unwrap(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(params("").timeout().unwrap(), None);
        assert_eq!(
            message(params("timeout=-1s").timeout().unwrap_err()),
            "invalid parameter \"timeout\": cannot parse \"-1s\" to a valid duration"
        );
    }
}
