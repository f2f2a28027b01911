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
pub type Wanted<'w> = Option<&'w WantedSet>;

/// The extracted labels a query reads (filters, a grouping, an unwrap), shaped so that a parser
/// turns an unwanted key away in a few instructions: most keys of a line are not wanted.
#[derive(Debug, Clone)]
pub struct WantedSet {
    names: BTreeSet<String>,
    /// The same names as bytes, for keys read straight from the line.
    raw: Vec<Box<[u8]>>,
    /// The first bytes wanted names start with.
    first: [bool; 256],
    /// Whether a wanted name is a renamed key (`pod_extracted`), which a key's own spelling
    /// does not show.
    renamed: bool,
    /// How many wanted labels a parser can extract (all but `__error__`): once a line gave
    /// them all, the rest of it need not be read (Loki stops there too).
    needed: usize,
    /// Set by the pipeline: its outcome for a line is decided by the part the parser reads,
    /// so a line starting as the previous one did gets the same outcome.
    pub decided_by_start: bool,
    /// The wanted names a key spelled the same way becomes as is (clean, so only a stream
    /// label of the same name changes it): such a key skips the naming rule's other checks.
    exact: Vec<String>,
    /// When every wanted label is such a name (and there are few): each key to search for, so
    /// that `| logfmt` reads only their values (`logfmt_seek`).
    seeks: Option<Vec<super::logfmt_seek::Seek>>,
}

impl WantedSet {
    pub fn new(names: BTreeSet<String>) -> Self {
        let mut first = [false; 256];
        for n in &names {
            if let Some(&b) = n.as_bytes().first() {
                first[b as usize] = true;
            }
        }
        let renamed = names.iter().any(|n| n.ends_with("_extracted"));
        let raw = names.iter().map(|n| n.as_bytes().into()).collect();
        let needed = names.iter().filter(|n| *n != "__error__").count();
        let exact: Vec<String> = names
            .iter()
            .filter(|n| {
                n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                    && !n.starts_with(|c: char| c.is_ascii_digit())
                    && !n.is_empty()
            })
            .cloned()
            .collect();
        let wanted: Vec<&String> = names.iter().filter(|n| *n != "__error__").collect();
        let seeks = (!renamed
            && (1..=4).contains(&wanted.len())
            && wanted.iter().all(|n| exact.contains(n)))
        .then(|| {
            wanted
                .iter()
                .map(|n| super::logfmt_seek::Seek::new(n))
                .collect()
        });
        WantedSet {
            names,
            raw,
            first,
            renamed,
            needed,
            decided_by_start: false,
            exact,
            seeks,
        }
    }

    /// The wanted label a key read straight from a line (unescaped) makes, when the key is
    /// spelled as a wanted name that no stream label of the line shadows.
    fn exact_name(&self, key: &[u8], stream: &[(&str, &str)]) -> Option<&str> {
        let name = self
            .exact
            .iter()
            .find(|n| crate::logql::short_eq::short_eq(n.as_bytes(), key))?;
        let shadowed = stream
            .iter()
            .any(|(k, _)| crate::logql::short_eq::short_eq(k.as_bytes(), name.as_bytes()));
        (!shadowed).then_some(name.as_str())
    }

    /// Sets the label `name` (an [`WantedSet::exact_name`]) unless the line already has it.
    fn set_exact(&self, out: &mut Outcome, name: &str, value: impl FnOnce(&mut String)) {
        if !out.labels.contains_key(name) {
            out.labels.set_with(name, value);
            out.found += 1;
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        // A handful of names: comparing bytes beats searching the tree.
        if self.raw.len() <= 8 {
            return self
                .raw
                .iter()
                .any(|n| crate::logql::short_eq::short_eq(n, name.as_bytes()));
        }
        self.names.contains(name)
    }

    /// Whether the line's wanted labels have all been extracted.
    fn all_found(&self, out: &Outcome) -> bool {
        self.needed > 0 && out.found >= self.needed
    }

    /// Whether a label under the object `name` can be wanted.
    fn below(&self, name: &str) -> bool {
        name.as_bytes()
            .first()
            .is_none_or(|&b| self.first[b as usize])
            && self.names.iter().any(|n| n.starts_with(name))
    }

    /// As [`WantedSet::may_want`], on a key's bytes as the line has them (no escapes).
    fn may_want_raw(&self, key: &[u8]) -> bool {
        let first = match key.first() {
            Some(&b) if b.is_ascii_alphabetic() || b == b'_' => b,
            _ => b'_',
        };
        if !self.first[first as usize] {
            return false;
        }
        let clean = key.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_');
        !clean
            || self.renamed
            || self
                .raw
                .iter()
                .any(|n| crate::logql::short_eq::short_eq(n, key))
    }

    /// Whether `key`'s label can be wanted, told from the key's spelling alone.
    fn may_want(&self, key: &str) -> bool {
        let first = match key.as_bytes().first() {
            Some(&b) if b.is_ascii_alphabetic() || b == b'_' => b,
            _ => b'_',
        };
        if !self.first[first as usize] {
            return false;
        }
        let clean = key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        !clean || self.renamed || self.contains(key)
    }
}

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
    if stream
        .iter()
        .any(|(k, _)| crate::logql::short_eq::short_eq(k.as_bytes(), name.as_bytes()))
    {
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
    value: impl FnOnce(&mut String),
) {
    // Most keys of a line are not wanted: turn them away before any name is made.
    if wanted.is_some_and(|w| !w.may_want(key)) {
        return;
    }
    add_checked(out, stream, wanted, key, value);
}

/// As [`add`], for a key whose spelling `may_want` (or `may_want_raw`) already let through.
fn add_checked(
    out: &mut Outcome,
    stream: &[(&str, &str)],
    wanted: Wanted<'_>,
    key: &str,
    value: impl FnOnce(&mut String),
) {
    let name = label_name(stream, key);
    // A clean key that is its own label name was found wanted by `may_want` already.
    let known = matches!(name, Cow::Borrowed(_)) && wanted.is_some_and(|w| !w.renamed);
    if name.is_empty() || (!known && wanted.is_some_and(|w| !w.contains(name.as_ref()))) {
        return;
    }
    if !out.labels.contains_key(name.as_ref()) {
        out.labels.set_with(&name, value);
        if wanted.is_some() {
            out.found += 1;
        }
    }
}

/// `| json`: every field of a JSON object line, nested objects flattened with `_`; arrays are
/// left out, as Loki leaves them. The line is skimmed once on bytes: a member's value is
/// decoded only when its label is wanted, an object is entered only when a wanted label can
/// come from it, and everything else is stepped over (strings, brackets) without being read
/// into values — so `| json | status >= 500` reads one field of each line, not all of them.
/// Like Loki's parser it checks the line's structure, not every scalar's spelling.
pub fn json(message: &[u8], stream: &[(&str, &str)], wanted: Wanted<'_>, out: &mut Outcome) {
    let mut r = Skim {
        b: message,
        i: 0,
        done: false,
    };
    r.ws();
    // The members' flattened names are built in one buffer, kept from line to line.
    let mut path = std::mem::take(&mut out.path);
    path.clear();
    let whole = walk(&mut r, &mut path, 0, stream, wanted, out).and_then(|()| {
        r.ws();
        if r.i == r.b.len() {
            Ok(())
        } else {
            Err(())
        }
    });
    out.path = path;
    if whole.is_err() && !r.done {
        out.set_error(JSON_ERROR);
    }
    if r.done && r.i < r.b.len() {
        // What it extracted came from the bytes before `r.i` and the one it peeked there.
        out.stopped_at = r.i + 1;
    }
}

/// Appends `raw` as text, invalid UTF-8 replaced.
pub fn push_lossy(v: &mut String, raw: &[u8]) {
    match std::str::from_utf8(raw) {
        Ok(text) => v.push_str(text),
        Err(_) => v.push_str(&String::from_utf8_lossy(raw)),
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

/// The deepest object `| json` enters (serde_json's own recursion limit).
const MAX_JSON_DEPTH: usize = 128;

/// A cursor over a JSON line.
struct Skim<'a> {
    b: &'a [u8],
    i: usize,
    /// Every wanted label was found: the walk stopped early, and that is no error.
    done: bool,
}

impl<'a> Skim<'a> {
    fn ws(&mut self) {
        while self
            .b
            .get(self.i)
            .is_some_and(|c| matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn take(&mut self, c: u8) -> Result<(), ()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(())
        }
    }

    /// A string at the cursor, quotes included, and whether it holds an escape.
    fn string(&mut self) -> Result<(&'a [u8], bool), ()> {
        let start = self.i;
        self.take(b'"')?;
        let mut escaped = false;
        loop {
            let rest = self.b.get(self.i..).ok_or(())?;
            // Keys and most values are short: a plain loop finds their end before a vector
            // search would have set up; longer strings go to memchr.
            let at = match rest.iter().take(32).position(|&c| c == b'"' || c == b'\\') {
                Some(at) => at,
                None => 32 + memchr::memchr2(b'"', b'\\', rest.get(32..).ok_or(())?).ok_or(())?,
            };
            self.i += at;
            if self.b[self.i] == b'"' {
                self.i += 1;
                return Ok((&self.b[start..self.i], escaped));
            }
            escaped = true;
            self.i += 2;
        }
    }

    /// A number, `true`, `false` or `null` at the cursor.
    fn scalar(&mut self) -> Result<&'a [u8], ()> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|c| !matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.i += 1;
        }
        let raw = &self.b[start..self.i];
        match raw.first() {
            Some(b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => Ok(raw),
            _ => Err(()),
        }
    }

    /// Steps over the value at the cursor.
    fn skip_value(&mut self) -> Result<(), ()> {
        match self.peek() {
            Some(b'"') => self.string().map(|_| ()),
            Some(b'{' | b'[') => {
                let mut depth = 0usize;
                loop {
                    match self.peek().ok_or(())? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Ok(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            _ => self.scalar().map(|_| ()),
        }
    }
}

/// A string's text: its escapes decoded (serde_json's rules) when it has any.
fn decoded(quoted: &[u8], escaped: bool) -> String {
    let inner = &quoted[1..quoted.len() - 1];
    if escaped {
        serde_json::from_slice::<String>(quoted)
            .unwrap_or_else(|_| String::from_utf8_lossy(inner).into_owned())
    } else {
        String::from_utf8_lossy(inner).into_owned()
    }
}

/// Reads the object at the cursor, adding the labels its members make under `path` (the
/// flattened name of the object, empty at the top; a buffer the members' names are built in).
fn walk(
    r: &mut Skim<'_>,
    path: &mut String,
    depth: usize,
    stream: &[(&str, &str)],
    wanted: Wanted<'_>,
    out: &mut Outcome,
) -> Result<(), ()> {
    r.take(b'{')?;
    r.ws();
    if r.take(b'}').is_ok() {
        return Ok(());
    }
    loop {
        r.ws();
        let (quoted, escaped) = r.string()?;
        r.ws();
        r.take(b':')?;
        r.ws();
        let top = path.is_empty();
        let plain = !escaped && !matches!(r.peek(), Some(b'{' | b'['));
        let inner = &quoted[1..quoted.len() - 1];
        // Most members of a line are not wanted: step over them before the key is even text.
        if top && plain && wanted.is_some_and(|w| !w.may_want_raw(inner)) {
            r.skip_value()?;
        } else {
            let mark = path.len();
            if !top {
                path.push('_');
            }
            if escaped {
                path.push_str(&decoded(quoted, true));
            } else {
                push_lossy(path, inner);
            }
            let read = member(r, path, plain, depth, stream, wanted, out);
            path.truncate(mark);
            read?;
            if wanted.is_some_and(|w| w.all_found(out)) {
                r.done = true;
                return Err(());
            }
        }
        r.ws();
        match r.peek() {
            Some(b',') => r.i += 1,
            Some(b'}') => {
                r.i += 1;
                return Ok(());
            }
            _ => return Err(()),
        }
    }
}

/// One member's value at the cursor, under the flattened key `path`; `plain`: an unescaped
/// key and a value that is no object or array.
fn member(
    r: &mut Skim<'_>,
    path: &mut String,
    plain: bool,
    depth: usize,
    stream: &[(&str, &str)],
    wanted: Wanted<'_>,
    out: &mut Outcome,
) -> Result<(), ()> {
    if let Some(w) = wanted.filter(|_| plain) {
        if let Some(name) = w.exact_name(path.as_bytes(), stream) {
            // A wanted key as the label's own name: its value straight into the label.
            return if r.peek() == Some(b'"') {
                let (value, escaped) = r.string()?;
                w.set_exact(out, name, |v| string_value(v, value, escaped));
                Ok(())
            } else {
                let raw = r.scalar()?;
                w.set_exact(out, name, |v| scalar_value(v, raw));
                Ok(())
            };
        }
        if !w.may_want(path) {
            return r.skip_value();
        }
    }
    match r.peek() {
        Some(b'{') => {
            let below = wanted.is_none_or(|w| w.below(&label_name(stream, path)));
            if below && depth < MAX_JSON_DEPTH {
                walk(r, path, depth + 1, stream, wanted, out)
            } else if below {
                Err(())
            } else {
                r.skip_value()
            }
        }
        Some(b'[') => r.skip_value(),
        Some(b'"') => {
            let (value, escaped) = r.string()?;
            add(out, stream, wanted, path, |v| {
                string_value(v, value, escaped)
            });
            Ok(())
        }
        Some(_) => {
            let raw = r.scalar()?;
            add(out, stream, wanted, path, |v| scalar_value(v, raw));
            Ok(())
        }
        None => Err(()),
    }
}

/// A JSON string (quotes included) as a label value.
fn string_value(v: &mut String, quoted: &[u8], escaped: bool) {
    if escaped {
        v.push_str(&decoded(quoted, true))
    } else {
        push_lossy(v, &quoted[1..quoted.len() - 1])
    }
}

/// A JSON number, `true` or `false` as a label value; `null` is empty.
fn scalar_value(v: &mut String, raw: &[u8]) {
    if raw != b"null" {
        push_lossy(v, raw)
    }
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
        out.labels.insert_if_absent(&name, &value);
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
            add(out, stream, wanted, &key, |v| v.push_str(&json_value(&raw)));
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
            out.labels.insert_if_absent(&name, "");
        }
    } else if !options.strict && !options.keep_empty {
        if let Some(w) = wanted {
            if logfmt_by_seeking(message, stream, w, out) {
                return;
            }
        }
    }
    let put = |out: &mut Outcome, key: &str, value: &dyn Fn(&mut String)| match &options.fields {
        Some(fields) => {
            if let Some((name, _)) = fields.iter().find(|(_, k)| k == key) {
                out.labels.set_with(&label_name(stream, name), value);
            }
        }
        // `may_want_raw` already let the key through.
        None => add_checked(out, stream, wanted, key, value),
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
        let raw_key = &message[key_start..i];
        // A key nothing reads is stepped over before it is even text.
        let skip = options.fields.is_none() && wanted.is_some_and(|w| !w.may_want_raw(raw_key));
        // A wanted key that is its label's own name is set without the naming rule.
        let exact = match wanted {
            Some(w) if options.fields.is_none() && !skip => {
                w.exact_name(raw_key, stream).map(|name| (w, name))
            }
            _ => None,
        };
        let put = |out: &mut Outcome, key: &str, value: &dyn Fn(&mut String)| match exact {
            Some((w, name)) => w.set_exact(out, name, value),
            None => put(out, key, value),
        };
        let key = if skip || exact.is_some() {
            Cow::Borrowed("")
        } else {
            match std::str::from_utf8(raw_key) {
                Ok(k) => Cow::Borrowed(k),
                Err(_) => String::from_utf8_lossy(raw_key),
            }
        };
        if raw_key.is_empty() {
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
            if options.keep_empty && !skip {
                put(out, &key, &|_| {});
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
            if !skip {
                put(out, &key, &|v| {
                    if escaped {
                        v.push_str(&unescape(raw))
                    } else {
                        push_lossy(v, raw)
                    }
                });
                if wanted.is_some_and(|w| w.all_found(out)) {
                    // Everything it extracted came from the bytes before `i`.
                    out.stopped_at = i;
                    return;
                }
            }
        } else {
            let value_start = i;
            while i < n && !message[i].is_ascii_whitespace() {
                i += 1;
            }
            let raw = &message[value_start..i];
            if !skip {
                put(out, &key, &|v| push_lossy(v, raw));
                if wanted.is_some_and(|w| w.all_found(out)) {
                    if i < n {
                        // …and the space it peeked at `i`, which ended the value.
                        out.stopped_at = i + 1;
                    }
                    return;
                }
            }
        }
    }
}

/// `| logfmt` reading only the wanted keys' values, found by searching for them; `false` (and
/// nothing set) when the tokenizer must read the line.
fn logfmt_by_seeking(
    message: &[u8],
    stream: &[(&str, &str)],
    wanted: &WantedSet,
    out: &mut Outcome,
) -> bool {
    use super::logfmt_seek;
    let Some(seeks) = &wanted.seeks else {
        return false;
    };
    // One wanted key (a label filter on one field): no bookkeeping beyond it.
    if let [seek] = seeks.as_slice() {
        if wanted.exact_name(seek.name.as_bytes(), stream).is_none() {
            return false;
        }
        let Some(f) = logfmt_seek::find(message, seek) else {
            return false;
        };
        wanted.set_exact(out, &seek.name, |v| {
            logfmt_seek::copy(&f, unescape_bytes, v)
        });
        if let Some(at) = f.stop {
            out.stopped_at = at;
        }
        return true;
    }
    // Up to four wanted keys: found on the stack, set only once all are.
    let mut found: [Option<logfmt_seek::Found<'_>>; 4] = [None, None, None, None];
    for (slot, seek) in found.iter_mut().zip(seeks) {
        if wanted.exact_name(seek.name.as_bytes(), stream).is_none() {
            return false;
        }
        match logfmt_seek::find(message, seek) {
            Some(f) => *slot = Some(f),
            None => return false,
        }
    }
    let mut stop = Some(0);
    for (f, seek) in found.iter().zip(seeks) {
        let Some(f) = f else { continue };
        wanted.set_exact(out, &seek.name, |v| logfmt_seek::copy(f, unescape_bytes, v));
        stop = match (stop, f.stop) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
    if let Some(at) = stop {
        out.stopped_at = at;
    }
    true
}

fn unescape_bytes(raw: &[u8]) -> String {
    unescape(raw)
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

#[cfg(test)]
mod seek_tests {
    use super::*;
    use proptest::prelude::*;

    fn run(line: &[u8], wanted: &WantedSet) -> (Outcome, usize, usize) {
        let mut out = Outcome::default();
        logfmt(line, &[], Some(wanted), &LogfmtOptions::default(), &mut out);
        let (found, stop) = (out.found, out.stopped_at);
        (out, found, stop)
    }

    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(" ".to_string()),
            Just("\t".to_string()),
            Just("status=".to_string()),
            Just(" status=5".to_string()),
            Just("level=".to_string()),
            Just(" level=error".to_string()),
            Just("x=".to_string()),
            Just("\"".to_string()),
            Just("\\".to_string()),
            Just("=".to_string()),
            Just("msg=\"a status=1 b\"".to_string()),
            "[a-z0-9]{1,4}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]
        /// Seeking the wanted keys reads exactly what tokenizing the line does: the same
        /// labels (`__error__` too), the same count found, the same stopping point.
        #[test]
        fn seeking_reads_what_the_tokenizer_reads(
            parts in prop::collection::vec(piece(), 0..14),
            both in any::<bool>(),
        ) {
            let line = parts.concat();
            let mut names: BTreeSet<String> = ["status".to_string(), "__error__".to_string()].into();
            if both {
                names.insert("level".into());
            }
            let seeking = WantedSet::new(names);
            prop_assert!(seeking.seeks.is_some());
            let mut tokenizing = seeking.clone();
            tokenizing.seeks = None;
            let (a, fa, sa) = run(line.as_bytes(), &seeking);
            let (b, fb, sb) = run(line.as_bytes(), &tokenizing);
            prop_assert_eq!(&a, &b, "{:?}", line);
            prop_assert_eq!(fa, fb, "{:?}", line);
            prop_assert_eq!(sa, sb, "{:?}", line);
        }
    }
}
