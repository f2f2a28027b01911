//! The LogQL parsers that turn a line into labels: `| json` (all fields, or the paths given),
//! `| logfmt` (`--strict`, `--keep-empty`, or the keys given), `| unpack`, and the naming rule
//! they share (Loki's sanitizing and `_extracted` suffix).
//!
//! Parsers read the line as bytes and copy a value only when its label is wanted: under a
//! `sum by (level)` the other keys of a line are stepped over, not decoded.

use std::borrow::Cow;
use std::collections::BTreeSet;

use super::pipeline::{Outcome, JSON_ERROR, LOGFMT_ERROR};

/// What the parsers may skip: `None` extracts everything.
pub type Wanted<'w> = Option<&'w BTreeSet<String>>;

/// One step of a `| json name="a.b[0]"` path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathStep {
    Key(String),
    Index(usize),
}

/// Reads a JSON path as Loki writes it: `a.b`, `a[0]`, `a["key with.dots"]`, `["x"].y`.
pub fn json_path(text: &str) -> Result<Vec<PathStep>, String> {
    let mut steps = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    let bad = || format!("cannot parse JSON path {text:?}");
    while i < bytes.len() {
        match bytes[i] {
            b'.' if !steps.is_empty() => i += 1,
            b'[' => {
                let close = text[i..].find(']').ok_or_else(bad)? + i;
                let inside = text[i + 1..close].trim();
                if let Some(q) = inside.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                    steps.push(PathStep::Key(q.to_string()));
                } else {
                    steps.push(PathStep::Index(inside.parse().map_err(|_| bad())?));
                }
                i = close + 1;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' => {
                let start = i;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'-')
                {
                    i += 1;
                }
                steps.push(PathStep::Key(text[start..i].to_string()));
            }
            _ => return Err(bad()),
        }
    }
    if steps.is_empty() {
        return Err(bad());
    }
    Ok(steps)
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
pub fn label_name<'k>(stream: &[(&str, &str)], key: &'k str) -> Cow<'k, str> {
    let clean = key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    let mut name = if clean {
        Cow::Borrowed(key)
    } else {
        Cow::Owned(sanitize(key))
    };
    if stream.iter().any(|(k, _)| *k == name) {
        name.to_mut().push_str("_extracted");
    }
    name
}

/// Adds an extracted label (the first value of a name wins), unless nothing downstream reads it.
pub fn add(
    out: &mut Outcome,
    stream: &[(&str, &str)],
    wanted: Wanted<'_>,
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
    if !out.labels.contains_key(name.as_ref()) {
        out.labels.insert(name.into_owned(), value());
    }
}

/// `| json`: every field of a JSON object line, nested objects flattened with `_`; arrays are
/// left out, as Loki leaves them. Members are visited as they are read, their values kept raw
/// and decoded only for the labels wanted; an object is entered only when a wanted label can
/// come from it.
pub fn json(message: &[u8], stream: &[(&str, &str)], wanted: Wanted<'_>, out: &mut Outcome) {
    if walk_object("", message, stream, wanted, out).is_err() {
        out.set_error(JSON_ERROR);
    }
}

/// A raw JSON value as a label value: strings decoded, `null` empty, the rest as written.
fn json_value(raw: &str) -> String {
    match raw.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(raw).unwrap_or_default(),
        Some(b'n') => String::new(),
        _ => raw.to_string(),
    }
}

/// Visits the members of the JSON object `object`, adding what they hold under `prefix`.
fn walk_object(
    prefix: &str,
    object: &[u8],
    stream: &[(&str, &str)],
    wanted: Wanted<'_>,
    out: &mut Outcome,
) -> serde_json::Result<()> {
    let mut failed = None;
    each_member(object, |key, raw| {
        let key: Cow<'_, str> = if prefix.is_empty() {
            Cow::Borrowed(key)
        } else {
            Cow::Owned(format!("{prefix}_{key}"))
        };
        match raw.as_bytes().first() {
            Some(b'{') => {
                let name = label_name(stream, &key);
                let wanted_below =
                    wanted.is_none_or(|w| w.iter().any(|n| n.starts_with(name.as_ref())));
                if wanted_below {
                    if let Err(e) = walk_object(&key, raw.as_bytes(), stream, wanted, out) {
                        failed = Some(e);
                    }
                }
            }
            Some(b'[') => {}
            _ => add(out, stream, wanted, &key, || json_value(raw)),
        }
    })?;
    failed.map_or(Ok(()), Err)
}

/// Calls `member` with each key and raw value of a JSON object, in order; an error when the
/// text is not one object.
fn each_member(object: &[u8], mut member: impl FnMut(&str, &str)) -> serde_json::Result<()> {
    use serde::de::{DeserializeSeed, MapAccess, Visitor};
    use serde_json::value::RawValue;
    struct Members<'f, F>(&'f mut F);
    impl<'de, F: FnMut(&str, &str)> Visitor<'de> for Members<'_, F> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                let raw = map.next_value::<&'de RawValue>()?;
                (self.0)(&key, raw.get());
            }
            Ok(())
        }
    }
    impl<'de, F: FnMut(&str, &str)> DeserializeSeed<'de> for Members<'_, F> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(object);
    Members(&mut member).deserialize(&mut de)?;
    de.end()
}

/// The raw JSON value at `path` in `text`, if there is one.
fn value_at(text: &str, path: &[PathStep]) -> serde_json::Result<Option<String>> {
    let Some((step, rest)) = path.split_first() else {
        return Ok(Some(text.to_string()));
    };
    match step {
        PathStep::Key(k) => {
            if !text.starts_with('{') {
                return Ok(None);
            }
            let mut found = None;
            each_member(text.as_bytes(), |key, raw| {
                if found.is_none() && key == k {
                    found = Some(raw.to_string());
                }
            })?;
            match found {
                Some(raw) => value_at(&raw, rest),
                None => Ok(None),
            }
        }
        PathStep::Index(n) => {
            if !text.starts_with('[') {
                return Ok(None);
            }
            let items: Vec<&serde_json::value::RawValue> = serde_json::from_str(text)?;
            match items.get(*n) {
                Some(raw) => value_at(raw.get(), rest),
                None => Ok(None),
            }
        }
    }
}

/// `| json a="b.c", d="e[0]"`: each named path's value (objects and arrays as JSON text),
/// an empty value when the path is missing.
pub fn json_fields(
    message: &[u8],
    stream: &[(&str, &str)],
    fields: &[(String, Vec<PathStep>)],
    out: &mut Outcome,
) {
    let Ok(text) = std::str::from_utf8(message) else {
        out.set_error(JSON_ERROR);
        return;
    };
    if !matches!(
        text.trim_start().as_bytes().first(),
        Some(b'{' | b'[' | b'"')
    ) {
        out.set_error(JSON_ERROR);
        return;
    }
    for (name, path) in fields {
        let value = match value_at(text.trim(), path) {
            Ok(v) => v.map(|raw| json_value(&raw)).unwrap_or_default(),
            Err(_) => {
                out.set_error(JSON_ERROR);
                return;
            }
        };
        let name = label_name(stream, name);
        out.labels.entry(name.into_owned()).or_insert(value);
    }
}

/// `| unpack`: a line packed by Promtail's `pack` stage — its string fields become labels and
/// `_entry` becomes the line. Without `_entry`, the line and labels stay as they were.
pub fn unpack(message: &[u8], stream: &[(&str, &str)], wanted: Wanted<'_>, out: &mut Outcome) {
    if message.first() != Some(&b'{') {
        out.set_error(JSON_ERROR);
        return;
    }
    let mut entry = None;
    let mut fields = Vec::new();
    let read = each_member(message, |key, raw| {
        if !raw.starts_with('"') {
            return;
        }
        if key == "_entry" {
            entry = Some(json_value(raw));
        } else {
            fields.push((key.to_string(), raw.to_string()));
        }
    });
    if read.is_err() {
        out.set_error(JSON_ERROR);
        return;
    }
    if let Some(entry) = entry {
        for (key, raw) in fields {
            add(out, stream, wanted, &key, || json_value(&raw));
        }
        out.line = Some(entry.into_bytes());
    }
}

/// How `| logfmt` reads a line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogfmtOptions {
    /// `--strict`: the first malformed pair stops the parser and marks the line.
    pub strict: bool,
    /// `--keep-empty`: a key without `=` becomes a label with an empty value.
    pub keep_empty: bool,
    /// `| logfmt a, b="c"`: only these labels, each from its key.
    pub fields: Option<Vec<(String, String)>>,
}

/// `| logfmt`: `key=value` pairs, values bare or double-quoted with escapes. Read on bytes: a
/// value is copied (and unescaped) only when it is wanted.
pub fn logfmt(
    message: &[u8],
    stream: &[(&str, &str)],
    wanted: Wanted<'_>,
    options: &LogfmtOptions,
    out: &mut Outcome,
) {
    if let Some(fields) = &options.fields {
        for (name, _) in fields {
            let name = label_name(stream, name);
            out.labels.entry(name.into_owned()).or_default();
        }
    }
    let put = |out: &mut Outcome, key: &str, value: &dyn Fn() -> String| match &options.fields {
        Some(fields) => {
            if let Some((name, _)) = fields.iter().find(|(_, k)| k == key) {
                let name = label_name(stream, name).into_owned();
                out.labels.insert(name, value());
            }
        }
        None => add(out, stream, wanted, key, value),
    };
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
        let key = String::from_utf8_lossy(&message[key_start..i]);
        if key.is_empty() {
            // A stray `=`: malformed.
            if options.strict {
                out.set_error(LOGFMT_ERROR);
                return;
            }
            while i < n && !message[i].is_ascii_whitespace() {
                i += 1;
            }
            continue;
        }
        if i >= n || message[i] != b'=' {
            if options.keep_empty {
                put(out, &key, &String::new);
            }
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
                out.set_error(LOGFMT_ERROR);
                return;
            }
            let raw = &message[value_start..i];
            i += 1; // closing quote
            put(out, &key, &|| {
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
            put(out, &key, &|| String::from_utf8_lossy(raw).into_owned());
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

/// `| decolorize`: the line without ANSI colour escapes (`ESC [ … m` and other CSI sequences).
pub fn decolorize(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    let mut i = 0;
    while i < line.len() {
        if line[i] == 0x1b && line.get(i + 1) == Some(&b'[') {
            let mut j = i + 2;
            while j < line.len() && (0x30..=0x3f).contains(&line[j]) {
                j += 1;
            }
            while j < line.len() && (0x20..=0x2f).contains(&line[j]) {
                j += 1;
            }
            if j < line.len() && (0x40..=0x7e).contains(&line[j]) {
                i = j + 1;
                continue;
            }
        }
        out.push(line[i]);
        i += 1;
    }
    out
}
