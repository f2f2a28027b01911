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
    /// `| regexp "(?P<name>…)"`: the named groups of the first match become labels.
    Regexp(regex::bytes::Regex),
    Filter(LabelFilter),
    /// `| drop a, b`: those labels go.
    Drop(Vec<String>),
    /// `| keep a, b`: only those labels stay.
    Keep(Vec<String>),
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

    /// The label names the filter reads.
    fn names(&self, out: &mut std::collections::BTreeSet<String>) {
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

/// Which labels a log metric's streams keep when a `sum by`/`sum without` above it only needs
/// those: lines are counted per group directly (the sum of the streams' counts is the group's
/// count), so a parser that extracts a label per request does not make a stream per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grouping {
    By(Vec<String>),
    Without(Vec<String>),
}

impl Grouping {
    pub fn keeps(&self, name: &str) -> bool {
        match self {
            Grouping::By(names) => names.iter().any(|n| n == name),
            Grouping::Without(names) => !names.iter().any(|n| n == name),
        }
    }
}

/// The stages after a selector's line filters.
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    pub stages: Vec<Stage>,
    /// The extracted labels anything downstream reads (label filters, a `sum by`): parsers
    /// extract only these. `None`: every label (a stream's labels are all shown).
    pub wanted: Option<std::collections::BTreeSet<String>>,
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
                Stage::Json => json(message, stream, self.wanted.as_ref(), &mut extracted),
                Stage::Logfmt => logfmt(message, stream, self.wanted.as_ref(), &mut extracted),
                Stage::Regexp(re) => {
                    if let Some(captures) = re.captures(message) {
                        for name in re.capture_names().flatten() {
                            if let Some(m) = captures.name(name) {
                                add(&mut extracted, stream, self.wanted.as_ref(), name, || {
                                    String::from_utf8_lossy(m.as_bytes()).into_owned()
                                });
                            }
                        }
                    }
                }
                Stage::Filter(f) => {
                    if !f.keeps(stream, &mut extracted) {
                        return None;
                    }
                }
                Stage::Drop(names) => extracted.retain(|k, _| !names.contains(k)),
                Stage::Keep(names) => extracted.retain(|k, _| names.contains(k)),
            }
        }
        Some(extracted)
    }

    /// Whether the stream label `name` is still shown after the `drop`/`keep` stages.
    pub fn shows_stream_label(&self, name: &str) -> bool {
        self.stages.iter().all(|stage| match stage {
            Stage::Drop(names) => !names.iter().any(|n| n == name),
            Stage::Keep(names) => names.iter().any(|n| n == name),
            _ => true,
        })
    }

    /// Extract only what label filters and `labels` read (`labels` from a grouping such as
    /// `sum by (level)`): the rest of a line is skipped, not copied.
    pub fn want_only(&mut self, labels: &[String]) {
        let mut wanted: std::collections::BTreeSet<String> = labels.iter().cloned().collect();
        wanted.insert("__error__".into());
        for stage in &self.stages {
            if let Stage::Filter(f) = stage {
                f.names(&mut wanted);
            }
        }
        self.wanted = Some(wanted);
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

/// The label name an extracted key becomes: sanitized, with `_extracted` when a stream label
/// already has the name (Loki's rule).
fn label_name<'k>(stream: &[(&str, &str)], key: &'k str) -> std::borrow::Cow<'k, str> {
    let clean = key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    let mut name = if clean {
        std::borrow::Cow::Borrowed(key)
    } else {
        std::borrow::Cow::Owned(sanitize(key))
    };
    if stream.iter().any(|(k, _)| *k == name) {
        name.to_mut().push_str("_extracted");
    }
    name
}

/// Adds an extracted label (the first value of a name wins), unless nothing downstream reads it.
fn add(
    extracted: &mut Extracted,
    stream: &[(&str, &str)],
    wanted: Option<&std::collections::BTreeSet<String>>,
    key: &str,
    value: impl FnOnce() -> String,
) {
    // Most keys of a line are not wanted: turn them away by the first character their label
    // name would have (the key's own letter or `_`, else `_`), before any name is made.
    if let Some(w) = wanted {
        let first = match key.as_bytes().first() {
            Some(&b) if b.is_ascii_alphabetic() || b == b'_' => b,
            _ => b'_',
        };
        if !w.iter().any(|n| n.as_bytes().first() == Some(&first)) {
            return;
        }
    }
    let name = label_name(stream, key);
    if name.is_empty() || wanted.is_some_and(|w| !w.contains(name.as_ref())) {
        return;
    }
    if !extracted.contains_key(name.as_ref()) {
        extracted.insert(name.into_owned(), value());
    }
}

fn set_error(extracted: &mut Extracted, error: &str) {
    extracted
        .entry("__error__".into())
        .or_insert_with(|| error.into());
}

/// `| json`: every field of a JSON object line, nested objects flattened with `_`; arrays are
/// left out, as Loki leaves them. Members are visited as they are read, their values kept raw
/// and decoded only for the labels wanted; an object is entered only when a wanted label can
/// come from it.
fn json(
    message: &[u8],
    stream: &[(&str, &str)],
    wanted: Option<&std::collections::BTreeSet<String>>,
    extracted: &mut Extracted,
) {
    if walk_object("", message, stream, wanted, extracted).is_err() {
        set_error(extracted, JSON_ERROR);
    }
}

/// Visits the members of the JSON object `object`, adding what they hold under `prefix`.
fn walk_object(
    prefix: &str,
    object: &[u8],
    stream: &[(&str, &str)],
    wanted: Option<&std::collections::BTreeSet<String>>,
    extracted: &mut Extracted,
) -> serde_json::Result<()> {
    use serde::de::{DeserializeSeed, MapAccess, Visitor};
    use serde_json::value::RawValue;
    struct Members<'p, 's, 'w, 'e> {
        prefix: &'p str,
        stream: &'s [(&'s str, &'s str)],
        wanted: Option<&'w std::collections::BTreeSet<String>>,
        extracted: &'e mut Extracted,
    }
    impl<'de> Visitor<'de> for Members<'_, '_, '_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                let raw = map.next_value::<&'de RawValue>()?;
                let key: std::borrow::Cow<'_, str> = if self.prefix.is_empty() {
                    key
                } else {
                    std::borrow::Cow::Owned(format!("{}_{key}", self.prefix))
                };
                let text = raw.get();
                match text.as_bytes().first() {
                    Some(b'{') => {
                        let name = label_name(self.stream, &key);
                        let wanted_below = self
                            .wanted
                            .is_none_or(|w| w.iter().any(|n| n.starts_with(name.as_ref())));
                        if wanted_below {
                            walk_object(
                                &key,
                                text.as_bytes(),
                                self.stream,
                                self.wanted,
                                self.extracted,
                            )
                            .map_err(serde::de::Error::custom)?;
                        }
                    }
                    Some(b'[') => {}
                    Some(b'"') => add(self.extracted, self.stream, self.wanted, &key, || {
                        serde_json::from_str::<String>(text).unwrap_or_default()
                    }),
                    Some(b'n') => add(self.extracted, self.stream, self.wanted, &key, String::new),
                    _ => add(self.extracted, self.stream, self.wanted, &key, || {
                        text.to_string()
                    }),
                }
            }
            Ok(())
        }
    }
    impl<'de> DeserializeSeed<'de> for Members<'_, '_, '_, '_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(object);
    Members {
        prefix,
        stream,
        wanted,
        extracted,
    }
    .deserialize(&mut de)?;
    de.end()
}

/// `| logfmt`: `key=value` pairs, values bare or double-quoted with escapes; a key without `=`
/// is an empty value. Read on bytes: a value is copied (and unescaped) only when it is wanted.
fn logfmt(
    message: &[u8],
    stream: &[(&str, &str)],
    wanted: Option<&std::collections::BTreeSet<String>>,
    extracted: &mut Extracted,
) {
    let mut i = 0;
    let n = message.len();
    while i < n {
        if message[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let key_start = i;
        while i < n && message[i] != b'=' && !message[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = match std::str::from_utf8(&message[key_start..i]) {
            Ok(key) => std::borrow::Cow::Borrowed(key),
            Err(_) => String::from_utf8_lossy(&message[key_start..i]),
        };
        if key.is_empty() {
            // A stray `=`: not logfmt.
            set_error(extracted, LOGFMT_ERROR);
            return;
        }
        if i >= n || message[i] != b'=' {
            add(extracted, stream, wanted, &key, String::new);
            continue;
        }
        i += 1; // '='
        if i < n && message[i] == b'"' {
            i += 1;
            let value_start = i;
            let mut escaped = false;
            while i < n && message[i] != b'"' {
                if message[i] == b'\\' {
                    escaped = true;
                    i += 1;
                }
                i += 1;
            }
            if i >= n {
                set_error(extracted, LOGFMT_ERROR);
                return;
            }
            let raw = &message[value_start..i];
            i += 1; // closing quote
            add(extracted, stream, wanted, &key, || {
                if escaped {
                    unescape(raw)
                } else {
                    String::from_utf8_lossy(raw).into_owned()
                }
            });
        } else {
            let value_start = i;
            while i < n && !message[i].is_ascii_whitespace() {
                i += 1;
            }
            let raw = &message[value_start..i];
            add(extracted, stream, wanted, &key, || {
                String::from_utf8_lossy(raw).into_owned()
            });
        }
    }
}

/// A quoted logfmt value's escapes: `\n`, `\t`, `\r`, and any other character as itself.
fn unescape(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
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
            wanted: None,
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
            wanted: None,
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
            wanted: None,
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
