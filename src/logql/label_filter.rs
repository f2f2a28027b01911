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
    /// `__error__` set, as Loki does (so that `| __error__=""` can drop such lines), and a line
    /// without the label a numeric filter reads is dropped.
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
            // Loki's numeric, duration and bytes filters (pkg/logql/log/label_filter.go): a
            // line without the label is dropped; a value that cannot be read keeps the line,
            // marked, unless an earlier stage already marked it.
            LabelFilter::Number {
                name,
                compare,
                value,
                unit,
            } => {
                let Some(text) = out.lookup(name, stream) else {
                    return false;
                };
                match read_number(text, *unit) {
                    Some(v) => compare.holds(v, *value),
                    None => {
                        out.set_error(LABEL_FILTER_ERROR);
                        true
                    }
                }
            }
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

/// A value read as `unit`: `None` when it is not one. As Go reads them: no space around a
/// number or a duration, and `NaN`/`Inf` are numbers (`strconv.ParseFloat`).
pub fn read_number(text: &str, unit: Unit) -> Option<f64> {
    match unit {
        Unit::Number => text.parse::<f64>().ok(),
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

/// A size as go-humanize's `ParseBytes` reads it (what Loki uses): digits, `.` and `,` (commas
/// dropped), then an optional unit after optional spaces, case-insensitive (`20MB` = 20·10⁶,
/// `1.5KiB` = 1536, `300 b`, `42`); no sign. The bytes are whole, as its `uint64` is.
pub fn read_bytes(text: &str) -> Option<f64> {
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .unwrap_or(text.len());
    let number: f64 = text[..number_end].replace(',', "").parse().ok()?;
    let unit = text[number_end..].trim().to_ascii_lowercase();
    let scale = match unit.as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        "pb" | "p" => 1e15,
        "eb" | "e" => 1e18,
        "kib" | "ki" => 1024.0,
        "mib" | "mi" => 1024.0 * 1024.0,
        "gib" | "gi" => 1024.0 * 1024.0 * 1024.0,
        "tib" | "ti" => 1024.0f64.powi(4),
        "pib" | "pi" => 1024.0f64.powi(5),
        "eib" | "ei" => 1024.0f64.powi(6),
        _ => return None,
    };
    let bytes = number * scale;
    (bytes < 18_446_744_073_709_551_616.0).then(|| bytes.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(name: &str, compare: Compare, value: f64, unit: Unit) -> LabelFilter {
        LabelFilter::Number {
            name: name.into(),
            compare,
            value,
            unit,
        }
    }

    fn text(op: MatchOp, name: &str, value: &str) -> LabelFilter {
        LabelFilter::Text(Matcher::new(op, name, value))
    }

    fn and(a: LabelFilter, b: LabelFilter) -> LabelFilter {
        LabelFilter::And(Box::new(a), Box::new(b))
    }

    fn or(a: LabelFilter, b: LabelFilter) -> LabelFilter {
        LabelFilter::Or(Box::new(a), Box::new(b))
    }

    /// Whether `f` keeps a line with `labels`, and the `__error__` it set.
    fn run(f: &LabelFilter, labels: &[(&str, &str)]) -> (bool, Option<String>) {
        let mut out = Outcome::default();
        let kept = f.keeps(labels, &mut out);
        (kept, out.labels.get("__error__").cloned())
    }

    /// Loki's label filter cases (pkg/logql/log/label_filter_test.go): same labels, same
    /// verdict, same `__error__`.
    #[test]
    fn filters_as_loki() {
        let dur = |s: f64| s;
        let eq = Compare::Eq;
        for (f, labels, want) in [
            (
                and(
                    num("foo", eq, 5.0, Unit::Number),
                    num("bar", eq, dur(1.0), Unit::Duration),
                ),
                vec![("foo", "5"), ("bar", "1s")],
                true,
            ),
            (
                and(
                    num("foo", eq, 5.0, Unit::Number),
                    num("bar", eq, 42000.0, Unit::Bytes),
                ),
                vec![("foo", "5"), ("bar", "42kB")],
                true,
            ),
            (
                and(
                    num("foo", eq, 5.0, Unit::Number),
                    num("bar", eq, 1.0, Unit::Duration),
                ),
                vec![("foo", "6"), ("bar", "1s")],
                false,
            ),
            (
                and(
                    num("foo", eq, 5.0, Unit::Number),
                    num("bar", eq, 1.0, Unit::Duration),
                ),
                vec![("foo", "5"), ("bar", "2s")],
                false,
            ),
            (
                and(
                    text(MatchOp::Equal, "foo", "5"),
                    num("bar", eq, 1.0, Unit::Duration),
                ),
                vec![("foo", "5"), ("bar", "1s")],
                true,
            ),
            (
                and(
                    text(MatchOp::Equal, "foo", "5"),
                    num("bar", eq, 1.0, Unit::Duration),
                ),
                vec![("foo", "6"), ("bar", "1s")],
                false,
            ),
        ] {
            assert_eq!(run(&f, &labels), (want, None), "{f:?} {labels:?}");
        }
        let slow_or_failed = |limit: f64| {
            and(
                or(
                    num("duration", Compare::Gt, limit, Unit::Duration),
                    num("status", Compare::Ne, 200.0, Unit::Number),
                ),
                text(MatchOp::NotEqual, "method", "POST"),
            )
        };
        for (f, labels, want) in [
            (
                slow_or_failed(1.0),
                [("duration", "2s"), ("status", "200"), ("method", "GET")],
                true,
            ),
            (
                slow_or_failed(1.0),
                [("duration", "2s"), ("status", "200"), ("method", "POST")],
                false,
            ),
            (
                slow_or_failed(1.0),
                [("duration", "2s"), ("status", "500"), ("method", "POST")],
                false,
            ),
            (
                slow_or_failed(3.0),
                [("duration", "2s"), ("status", "200"), ("method", "POST")],
                false,
            ),
        ] {
            assert_eq!(run(&f, &labels).0, want, "{labels:?}");
        }
        // A value that is no duration, size or number keeps the line, marked.
        for (f, labels) in [
            (
                num("duration", Compare::Gt, 3.0, Unit::Duration),
                [("duration", "2weeeeee")],
            ),
            (
                num("bytes", Compare::Gt, 100.0, Unit::Bytes),
                [("bytes", "2qb")],
            ),
            (
                num("number", Compare::Gt, 100.0, Unit::Number),
                [("number", "not_a_number")],
            ),
        ] {
            assert_eq!(run(&f, &labels), (true, Some(LABEL_FILTER_ERROR.into())));
        }
        // A line without the label a numeric, duration or bytes filter reads is dropped, not
        // kept marked (label_filter.go: "we have not found this label"); one whose label was
        // dropped by `| drop` has none either.
        for unit in [Unit::Number, Unit::Duration, Unit::Bytes] {
            let f = num("status", Compare::Ge, 500.0, unit);
            assert_eq!(run(&f, &[("msg", "hello")]), (false, None), "{unit:?}");
            let mut out = Outcome::default();
            out.hidden.push("status".into());
            assert!(!f.keeps(&[("status", "503")], &mut out));
        }
        // An earlier error is never overwritten by the filter's own.
        let mut out = Outcome::default();
        out.labels
            .insert("__error__".into(), "JSONParserErr".into());
        assert!(num("n", Compare::Gt, 1.0, Unit::Number).keeps(&[("n", "x")], &mut out));
        assert_eq!(
            out.labels.get("__error__").map(String::as_str),
            Some("JSONParserErr")
        );
        // Go's strconv.ParseFloat: NaN and Inf are numbers (NaN compares false, except !=);
        // spaces are not allowed around a number or a duration.
        assert_eq!(
            run(&num("n", Compare::Ne, 1.0, Unit::Number), &[("n", "NaN")]),
            (true, None)
        );
        assert_eq!(
            run(&num("n", Compare::Eq, 1.0, Unit::Number), &[("n", "NaN")]),
            (false, None)
        );
        assert_eq!(
            run(&num("n", Compare::Gt, 1.0, Unit::Number), &[("n", "+Inf")]),
            (true, None)
        );
        for (unit, text) in [(Unit::Number, " 5"), (Unit::Duration, "1s ")] {
            assert_eq!(
                run(&num("n", Compare::Gt, 0.0, unit), &[("n", text)]),
                (true, Some(LABEL_FILTER_ERROR.into())),
                "{text:?}"
            );
        }
        // humanize.ParseBytes: commas in the number, spaces before the unit, exabytes, no
        // sign, whole bytes.
        for (text, bytes) in [
            ("1,000 kB", Some(1e6)),
            ("2 EiB", Some(2.0 * 1024f64.powi(6))),
            ("1.5B", Some(1.0)),
            ("-5", None),
            (" 5", None),
        ] {
            assert_eq!(read_bytes(text), bytes, "{text:?}");
        }
        // Sizes as humanize reads them.
        for (bytes, label) in [
            (42.0, "42B"),
            (42e3, "42kB"),
            (42e6, "42MB"),
            (42e9, "42GB"),
            (42e12, "42TB"),
            (42e15, "42PB"),
            (42.0 * 1024.0, "42KiB"),
            (42.0 * 1024f64.powi(2), "42MiB"),
            (42.0 * 1024f64.powi(3), "42GiB"),
            (42.0 * 1024f64.powi(4), "42TiB"),
            (42.0 * 1024f64.powi(5), "42PiB"),
        ] {
            assert!(
                run(&num("bar", eq, bytes, Unit::Bytes), &[("bar", label)]).0,
                "{label}"
            );
        }
        // A label the line lacks reads as empty (Loki's issue 6713).
        let msg = [("msg", "hello")];
        assert!(run(&text(MatchOp::NotEqual, "subqueries", "0"), &msg).0);
        assert!(run(&text(MatchOp::Equal, "subqueries", ""), &msg).0);
        let re = |op: fn(regex::Regex) -> MatchOp, v: &str| {
            LabelFilter::Text(Matcher::new(
                op(regex::Regex::new(&format!("^(?:{v})$")).unwrap()),
                "subqueries",
                v,
            ))
        };
        assert!(run(&re(MatchOp::NotRe, "0"), &msg).0);
        assert!(run(&re(MatchOp::Re, ""), &msg).0);
        assert!(!run(&re(MatchOp::Re, ".+"), &msg).0);
        assert!(
            run(
                &re(MatchOp::NotRe, ".+"),
                &[("msg", "hello"), ("subqueries", "")]
            )
            .0
        );
    }
}
