//! Prometheus's JSON for query results: numbers as strings (`NaN`, `+Inf`), timestamps as
//! seconds with millisecond precision, `vector` for instant queries and `matrix` for range ones.

use std::fmt::Write as _;

use super::value::{Labels, Series, Steps, Value};

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)` with Prometheus's spellings of the specials.
pub fn float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

/// Seconds with up to three decimals, trailing zeros dropped (`1704078000`, `1704078000.5`).
pub fn time(ns: i64) -> String {
    let ms = ns.div_euclid(1_000_000);
    // Prometheus prints the float of milliseconds / 1000: a sign, then the magnitude.
    let sign = if ms < 0 { "-" } else { "" };
    let magnitude = ms.unsigned_abs();
    let (secs, frac) = (magnitude / 1000, magnitude % 1000);
    if frac == 0 {
        format!("{sign}{secs}")
    } else {
        format!("{sign}{secs}.{frac:03}")
            .trim_end_matches('0')
            .to_string()
    }
}

fn labels_json(labels: &Labels) -> String {
    serde_json::to_string(labels).unwrap_or_else(|_| "{}".into())
}

fn push_point(out: &mut String, t: i64, v: f64) {
    let _ = write!(out, "[{},\"{}\"]", time(t), float(v));
}

/// The `data` object of an instant (`range == false`) or range query answer.
pub fn data(value: &Value, steps: &Steps, range: bool) -> String {
    let mut out = String::new();
    match (value, range) {
        (Value::Scalar(points), false) => {
            out.push_str("{\"resultType\":\"scalar\",\"result\":");
            push_point(
                &mut out,
                steps.time(0),
                points.first().copied().unwrap_or(f64::NAN),
            );
            out.push('}');
        }
        (Value::String(s), _) => {
            let _ = write!(
                out,
                "{{\"resultType\":\"string\",\"result\":[{},{}]}}",
                time(steps.time(0)),
                serde_json::to_string(s).unwrap_or_default()
            );
        }
        (Value::Vector(series), false) => {
            out.push_str("{\"resultType\":\"vector\",\"result\":[");
            let mut first = true;
            for s in series {
                let Some(Some(v)) = s.points.first() else {
                    continue;
                };
                if !first {
                    out.push(',');
                }
                first = false;
                let _ = write!(out, "{{\"metric\":{},\"value\":", labels_json(&s.labels));
                push_point(&mut out, steps.time(0), *v);
                out.push('}');
            }
            out.push_str("]}");
        }
        (Value::Scalar(points), true) => {
            let series = Series {
                labels: Labels::new(),
                points: points.iter().map(|v| Some(*v)).collect(),
            };
            return matrix(&[series], steps);
        }
        (Value::Vector(series), true) => return matrix(series, steps),
    }
    out
}

fn matrix(series: &[Series], steps: &Steps) -> String {
    let mut sorted: Vec<&Series> = series
        .iter()
        .filter(|s| s.points.iter().any(Option::is_some))
        .collect();
    sorted.sort_by(|a, b| a.labels.iter().cmp(b.labels.iter()));
    let mut out = String::from("{\"resultType\":\"matrix\",\"result\":[");
    for (i, s) in sorted.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{{\"metric\":{},\"values\":[", labels_json(&s.labels));
        let mut first = true;
        for (k, v) in s.points.iter().enumerate() {
            let Some(v) = v else { continue };
            if !first {
                out.push(',');
            }
            first = false;
            push_point(&mut out, steps.time(k), *v);
        }
        out.push_str("]}");
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_times_as_prometheus_writes_them() {
        assert_eq!(float(1.0), "1");
        assert_eq!(float(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(float(f64::NAN), "NaN");
        assert_eq!(float(f64::NEG_INFINITY), "-Inf");
        assert_eq!(float(1e21), "1000000000000000000000");
        assert_eq!(time(1_704_078_000_000_000_000), "1704078000");
        assert_eq!(time(1_704_078_000_500_000_000), "1704078000.5");
        assert_eq!(time(1_704_078_000_123_456_789), "1704078000.123");
        assert_eq!(time(-1_500_000_000), "-1.5");
        assert_eq!(time(i64::MIN / 1_000_000 * 1_000_000), "-9223372036.854");
    }
}
