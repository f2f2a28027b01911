//! Label filters: `| level="error"`, `| status >= 500`, `| duration > 1s`, `| size > 20MB`,
//! combined with `and`/`or`/`,`, and how their values are read (numbers, Go durations,
//! humanized sizes).

use promql_parser::label::{MatchOp, Matcher};

use super::pipeline::{Outcome, LABEL_FILTER_ERROR};

/// A comparison of a label with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Compare {
    pub fn from_op(op: &str) -> Option<Compare> {
        Some(match op {
            "==" | "=" => Compare::Eq,
            "!=" => Compare::Ne,
            ">" => Compare::Gt,
            ">=" => Compare::Ge,
            "<" => Compare::Lt,
            "<=" => Compare::Le,
            _ => return None,
        })
    }

    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Compare::Eq => a == b,
            Compare::Ne => a != b,
            Compare::Gt => a > b,
            Compare::Ge => a >= b,
            Compare::Lt => a < b,
            Compare::Le => a <= b,
        }
    }
}

/// How a label's value is read for a numeric comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A number.
    Number,
    /// A duration (`1.5s`, `250ms`, `1h2m`), in seconds.
    Duration,
    /// A size (`20MB`, `1.5KiB`, `300B`), in bytes.
    Bytes,
}

/// A label filter expression.
#[derive(Debug, Clone)]
pub enum LabelFilter {
    /// `name = "v"`, `!=`, `=~`, `!~`.
    Text(Matcher),
    /// `name > 5`, `name >= 1s`, `name < 20MB` …
    Number {
        name: String,
        compare: Compare,
        value: f64,
        unit: Unit,
    },
    And(Box<LabelFilter>, Box<LabelFilter>),
    Or(Box<LabelFilter>, Box<LabelFilter>),
}

impl LabelFilter {
    /// Whether the line is kept; a value a numeric filter cannot read keeps the line with
    /// `__error__` set, as Loki does (so that `| __error__=""` can drop such lines).
    pub(super) fn keeps(&self, stream: &[(&str, &str)], out: &mut Outcome) -> bool {
        match self {
            LabelFilter::Text(m) => {
                let value = out.value(&m.name, stream);
                match &m.op {
                    // Lengths first: an empty `String` compared through memcmp costs a
                    // fault-suppressed vector load of its dangling pointer.
                    MatchOp::Equal => {
                        value.len() == m.value.len() && (value.is_empty() || value == m.value)
                    }
                    MatchOp::NotEqual => {
                        !(value.len() == m.value.len() && (value.is_empty() || value == m.value))
                    }
                    _ => m.is_match(value),
                }
            }
            LabelFilter::Number {
                name,
                compare,
                value,
                unit,
            } => match read_number(out.value(name, stream), *unit) {
                Some(v) => compare.holds(v, *value),
                None => {
                    out.set_error(LABEL_FILTER_ERROR);
                    true
                }
            },
            LabelFilter::And(a, b) => a.keeps(stream, out) && b.keeps(stream, out),
            LabelFilter::Or(a, b) => a.keeps(stream, out) || b.keeps(stream, out),
        }
    }

    /// The label names the filter reads.
    pub(super) fn names(&self, out: &mut std::collections::BTreeSet<String>) {
        match self {
            LabelFilter::Text(m) => {
                out.insert(m.name.clone());
            }
            LabelFilter::Number { name, .. } => {
                out.insert(name.clone());
            }
            LabelFilter::And(a, b) | LabelFilter::Or(a, b) => {
                a.names(out);
                b.names(out);
            }
        }
    }

    /// A literal every kept line contains: the value of a `name="value"` filter made of plain
    /// characters (which JSON and logfmt write as they are), on a label the line's parsers
    /// extract (`stream_labels` come from the stream, not the line).
    pub(super) fn required_literal(&self, stream_labels: &[&str]) -> Option<String> {
        match self {
            LabelFilter::Text(m)
                if matches!(m.op, MatchOp::Equal)
                    && m.name != "__error__"
                    && !stream_labels.contains(&m.name.as_str())
                    && m.value.len() >= 3
                    && m.value.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/' | b':')
                    }) =>
            {
                Some(m.value.clone())
            }
            LabelFilter::And(a, b) => a
                .required_literal(stream_labels)
                .or_else(|| b.required_literal(stream_labels)),
            _ => None,
        }
    }
}

/// A value read as `unit`: `None` when it is not one.
pub fn read_number(text: &str, unit: Unit) -> Option<f64> {
    let text = text.trim();
    match unit {
        Unit::Number => text.parse::<f64>().ok().filter(|v| !v.is_nan()),
        Unit::Duration => read_duration_seconds(text),
        Unit::Bytes => read_bytes(text),
    }
}

/// Go's `time.ParseDuration` syntax (`1.5s`, `2h45m`, `300ms`, `-1.5h`), in seconds.
pub fn read_duration_seconds(text: &str) -> Option<f64> {
    let (sign, mut rest) = match text.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Some(0.0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_end..];
    }
    Some(sign * total)
}

/// A size as humanize reads it (`20MB` = 20·10⁶, `1.5KiB` = 1536, `300B`, `42`), in bytes.
pub fn read_bytes(text: &str) -> Option<f64> {
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(text.len());
    let number: f64 = text[..number_end].trim().parse().ok()?;
    let unit = text[number_end..].trim().to_ascii_lowercase();
    let scale = match unit.as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "pb" | "p" => 1e15,
        "kib" | "ki" => 1024.0,
        "mib" | "mi" => 1024.0 * 1024.0,
        "gib" | "gi" => 1024.0 * 1024.0 * 1024.0,
        "tib" | "ti" => 1024.0f64.powi(4),
        "pib" | "pi" => 1024.0f64.powi(5),
        _ => return None,
    };
    Some(number * scale)
}
