//! LogQL pipeline stages after the line filters: parsers that extract labels from a line
//! (`| json`, `| logfmt`) and label filters that keep or drop it (`| level="error"`,
//! `| status >= 500`, `| duration > 1s`, `| size > 20MB`, combined with `and`/`or`/`,`).
//!
//! A stage runs on each line the block scan and the line filters let through; it never runs on
//! the others. Label filters that imply a literal in the line (`level="error"`) also hand that
//! literal to the scan as a prefilter, so most lines are skipped before any parsing.

use std::collections::BTreeMap;

use promql_parser::label::{MatchOp, Matcher};

/// Labels extracted from one line, by name.
pub type Extracted = BTreeMap<String, String>;

/// What `__error__` says when a stage could not read a line (Loki's words).
pub const JSON_ERROR: &str = "JSONParserErr";
pub const LOGFMT_ERROR: &str = "LogfmtParserErr";
pub const LABEL_FILTER_ERROR: &str = "LabelFilterErr";

/// One stage.
#[derive(Debug, Clone)]
pub enum Stage {
    Json,
    Logfmt,
    Filter(LabelFilter),
}

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

/// A label's value during the pipeline: extracted ones first, then the stream's.
fn value_of<'a>(name: &str, stream: &'a [(&'a str, &'a str)], extracted: &'a Extracted) -> &'a str {
    extracted
        .get(name)
        .map(String::as_str)
        .or_else(|| stream.iter().find(|(k, _)| *k == name).map(|(_, v)| *v))
        .unwrap_or("")
}

impl LabelFilter {
    /// Whether the line is kept; a value a numeric filter cannot read keeps the line with
    /// `__error__` set, as Loki does (so that `| __error__=""` can drop such lines).
    fn keeps(&self, stream: &[(&str, &str)], extracted: &mut Extracted) -> bool {
        match self {
            LabelFilter::Text(m) => m.is_match(value_of(&m.name, stream, extracted)),
            LabelFilter::Number {
                name,
                compare,
                value,
                unit,
            } => match read_number(value_of(name, stream, extracted), *unit) {
                Some(v) => compare.holds(v, *value),
                None => {
                    extracted
                        .entry("__error__".into())
                        .or_insert_with(|| LABEL_FILTER_ERROR.into());
                    true
                }
            },
            LabelFilter::And(a, b) => a.keeps(stream, extracted) && b.keeps(stream, extracted),
            LabelFilter::Or(a, b) => a.keeps(stream, extracted) || b.keeps(stream, extracted),
        }
    }

    /// A literal every kept line contains: the value of a `name="value"` filter made of plain
    /// characters (which JSON and logfmt write as they are).
    fn required_literal(&self) -> Option<String> {
        match self {
            LabelFilter::Text(m)
                if matches!(m.op, MatchOp::Equal)
                    && m.name != "__error__"
                    && m.value.len() >= 3
                    && m.value.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/' | b':')
                    }) =>
            {
                Some(m.value.clone())
            }
            LabelFilter::And(a, b) => a.required_literal().or_else(|| b.required_literal()),
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

/// The stages after a selector's line filters.
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    pub stages: Vec<Stage>,
}

impl Pipeline {
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Runs the stages on one line: `None` when a label filter drops it, else the labels the
    /// parsers extracted (and `__error__` when one could not read the line).
    pub fn run(&self, stream: &[(&str, &str)], message: &[u8]) -> Option<Extracted> {
        let mut extracted = Extracted::new();
        for stage in &self.stages {
            match stage {
                Stage::Json => json(message, stream, &mut extracted),
                Stage::Logfmt => logfmt(message, stream, &mut extracted),
                Stage::Filter(f) => {
                    if !f.keeps(stream, &mut extracted) {
                        return None;
                    }
                }
            }
        }
        Some(extracted)
    }

    /// A literal every line the pipeline keeps contains (see [`LabelFilter::required_literal`]).
    pub fn required_literal(&self) -> Option<String> {
        self.stages.iter().find_map(|s| match s {
            Stage::Filter(f) => f.required_literal(),
            _ => None,
        })
    }
}

/// Loki's label name for an extracted key: characters other than letters, digits and `_` become
/// `_`; a leading digit gets a `_` before it.
fn sanitize(key: &str) -> String {
    let mut out: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// Adds an extracted label; a name a stream label already has gets `_extracted` (Loki's rule),
/// and the first value of a name wins.
fn add(extracted: &mut Extracted, stream: &[(&str, &str)], key: &str, value: String) {
    let mut name = sanitize(key);
    if name.is_empty() {
        return;
    }
    if stream.iter().any(|(k, _)| *k == name) {
        name.push_str("_extracted");
    }
    extracted.entry(name).or_insert(value);
}

fn set_error(extracted: &mut Extracted, error: &str) {
    extracted
        .entry("__error__".into())
        .or_insert_with(|| error.into());
}

/// `| json`: every field of a JSON object line, nested objects flattened with `_`; arrays are
/// left out, as Loki leaves them.
fn json(message: &[u8], stream: &[(&str, &str)], extracted: &mut Extracted) {
    let Ok(serde_json::Value::Object(object)) =
        serde_json::from_slice::<serde_json::Value>(message)
    else {
        set_error(extracted, JSON_ERROR);
        return;
    };
    fn walk(
        prefix: &str,
        value: &serde_json::Value,
        stream: &[(&str, &str)],
        extracted: &mut Extracted,
    ) {
        match value {
            serde_json::Value::Object(fields) => {
                for (k, v) in fields {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}_{k}")
                    };
                    walk(&key, v, stream, extracted);
                }
            }
            serde_json::Value::Array(_) => {}
            serde_json::Value::String(s) => add(extracted, stream, prefix, s.clone()),
            serde_json::Value::Null => add(extracted, stream, prefix, String::new()),
            other => add(extracted, stream, prefix, other.to_string()),
        }
    }
    walk("", &serde_json::Value::Object(object), stream, extracted);
}

/// `| logfmt`: `key=value` pairs, values bare or double-quoted with escapes; a key without `=`
/// is an empty value.
fn logfmt(message: &[u8], stream: &[(&str, &str)], extracted: &mut Extracted) {
    let text = String::from_utf8_lossy(message);
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        // A key: up to `=` or a space.
        let mut end = start;
        while let Some(&(i, c)) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            end = i + c.len_utf8();
            chars.next();
        }
        let key = &text[start..end];
        if key.is_empty() {
            // A stray `=`: not logfmt.
            set_error(extracted, LOGFMT_ERROR);
            return;
        }
        if chars.peek().map(|&(_, c)| c) != Some('=') {
            add(extracted, stream, key, String::new());
            continue;
        }
        chars.next(); // '='
        let mut value = String::new();
        if chars.peek().map(|&(_, c)| c) == Some('"') {
            chars.next();
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, 't')) => value.push('\t'),
                        Some((_, 'r')) => value.push('\r'),
                        Some((_, other)) => value.push(other),
                        None => break,
                    },
                    other => value.push(other),
                }
            }
            if !closed {
                set_error(extracted, LOGFMT_ERROR);
                return;
            }
        } else {
            while let Some(&(_, c)) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        add(extracted, stream, key, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &[(&str, &str)] = &[
        ("namespace", "shop"),
        ("pod", "web-1"),
        ("container", "app"),
    ];

    fn labels(pairs: &[(&str, &str)]) -> Extracted {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn json_as_loki_extracts_it() {
        let p = Pipeline {
            stages: vec![Stage::Json],
        };
        assert_eq!(
            p.run(
                STREAM,
                br#"{"level":"error","status":502,"ok":false,"took":null,"req":{"method":"GET","path":"/a"},"tags":["x"],"pod":"p2","a-b.c":1}"#
            ),
            Some(labels(&[
                ("a_b_c", "1"),
                ("level", "error"),
                ("ok", "false"),
                ("pod_extracted", "p2"),
                ("req_method", "GET"),
                ("req_path", "/a"),
                ("status", "502"),
                ("took", ""),
            ]))
        );
        assert_eq!(
            p.run(STREAM, b"not json"),
            Some(labels(&[("__error__", JSON_ERROR)]))
        );
    }

    #[test]
    fn logfmt_as_loki_extracts_it() {
        let p = Pipeline {
            stages: vec![Stage::Logfmt],
        };
        assert_eq!(
            p.run(
                STREAM,
                br#"level=info msg="hello \"you\"" took=1.5s flag status=200"#
            ),
            Some(labels(&[
                ("flag", ""),
                ("level", "info"),
                ("msg", "hello \"you\""),
                ("status", "200"),
                ("took", "1.5s"),
            ]))
        );
        assert_eq!(
            p.run(STREAM, br#"msg="unterminated"#),
            Some(labels(&[("__error__", LOGFMT_ERROR)]))
        );
    }

    #[test]
    fn label_filters_compare_strings_numbers_durations_and_bytes() {
        let filter = |f: LabelFilter| Pipeline {
            stages: vec![Stage::Logfmt, Stage::Filter(f)],
        };
        let num = |name: &str, compare, value, unit| LabelFilter::Number {
            name: name.into(),
            compare,
            value,
            unit,
        };
        let line = b"level=error status=503 took=1.5s size=2MB";
        assert!(filter(num("status", Compare::Ge, 500.0, Unit::Number))
            .run(STREAM, line)
            .is_some());
        assert!(filter(num("status", Compare::Lt, 500.0, Unit::Number))
            .run(STREAM, line)
            .is_none());
        assert!(filter(num("took", Compare::Gt, 1.0, Unit::Duration))
            .run(STREAM, line)
            .is_some());
        assert!(filter(num("size", Compare::Gt, 1e6, Unit::Bytes))
            .run(STREAM, line)
            .is_some());
        let text = LabelFilter::Text(Matcher::new(MatchOp::Equal, "level", "error"));
        assert_eq!(
            filter(text.clone()).required_literal().as_deref(),
            Some("error")
        );
        assert!(filter(text).run(STREAM, line).is_some());
        // A number that is none keeps the line, marked.
        let kept = filter(num("level", Compare::Gt, 1.0, Unit::Number)).run(STREAM, line);
        assert_eq!(
            kept.and_then(|l| l.get("__error__").cloned()).as_deref(),
            Some(LABEL_FILTER_ERROR)
        );
        assert_eq!(read_duration_seconds("1h2m3.5s"), Some(3723.5));
        assert_eq!(read_bytes("1.5KiB"), Some(1536.0));
    }
}
