//! Decoding a Loki push request: JSON (optionally gzip) or snappy-compressed protobuf, into one
//! neutral shape. Nothing is written until the whole request has decoded and validated.

use std::collections::BTreeMap;
use std::io::Read;

use prost::Message;
use serde::Deserialize;

/// One stream of a push request, before label mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct PushStream {
    pub labels: BTreeMap<String, String>,
    /// (unix nanoseconds, line)
    pub entries: Vec<(i64, LineText)>,
}

/// A pushed line's text: where possible a slice of the request's own (decompressed) body, so
/// decoding copies no line content; a line that needed unescaping or U+FFFD owns its bytes.
/// Always valid UTF-8 (made only from `str`s).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineText(bytes::Bytes);

impl LineText {
    fn new(backing: &bytes::Bytes, text: std::borrow::Cow<'_, str>) -> Self {
        match text {
            std::borrow::Cow::Borrowed(s) if !s.is_empty() => {
                LineText(backing.slice_ref(s.as_bytes()))
            }
            other => LineText(bytes::Bytes::from(other.into_owned())),
        }
    }

    pub fn as_str(&self) -> &str {
        // Built from `str`s only: this check never fails (and costs a fast pass over the line).
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl From<&str> for LineText {
    fn from(text: &str) -> Self {
        LineText(bytes::Bytes::copy_from_slice(text.as_bytes()))
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("{0}")]
    Bad(String),
    #[error(
        "request body is over the {0}-byte limit (--ingest.max-body-size) after decompression"
    )]
    TooLarge(usize),
    #[error("unsupported Content-Type {0:?}: use application/json or application/x-protobuf")]
    ContentType(String),
    #[error(
        "the request holds more than {0} entries (--ingest.max-entries); send smaller batches"
    )]
    TooManyEntries(usize),
}

// logproto.PushRequest (Loki's push.proto), by field number.
#[derive(Clone, PartialEq, Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

#[derive(Clone, PartialEq, Message)]
pub struct StreamAdapter {
    #[prost(string, tag = "1")]
    pub labels: String,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

#[derive(Clone, PartialEq, Message)]
pub struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<ProtoTimestamp>,
    /// Bytes on the wire as `string` is: read as bytes so invalid UTF-8 can be replaced, not
    /// refused.
    #[prost(bytes = "bytes", tag = "2")]
    pub line: bytes::Bytes,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
}

#[derive(Clone, PartialEq, Message)]
pub struct LabelPairAdapter {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// google.protobuf.Timestamp
#[derive(Clone, PartialEq, Message)]
pub struct ProtoTimestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// Decodes a request body by its content type and encoding. A request may hold at most
/// `max_entries` entries: the decoded form costs memory per entry, which the byte limit alone does
/// not bound (a 64 MB body of tiny entries is millions of them).
pub fn decode(
    content_type: &str,
    content_encoding: Option<&str>,
    body: bytes::Bytes,
    limits: Limits,
) -> Result<Decoded, DecodeError> {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    // Only the two types Loki's clients send: a body without a type could come from a web
    // page's no-preflight `fetch`, which must not be able to write log lines.
    if media != "application/json" && media != "application/x-protobuf" {
        return Err(DecodeError::ContentType(content_type.to_string()));
    }
    let encoding = content_encoding.map(|e| e.trim().to_ascii_lowercase());
    let body = match encoding.as_deref() {
        None | Some("") | Some("identity") => body,
        Some("gzip") => bytes::Bytes::from(gunzip(&body, limits.max_size)?),
        Some("snappy") if media == "application/x-protobuf" => body,
        Some(other) => {
            return Err(DecodeError::Bad(format!(
                "unsupported Content-Encoding {other:?}: use gzip or none"
            )))
        }
    };
    if media == "application/json" {
        decode_json(body, limits.max_entries)
    } else {
        decode_protobuf(&body, limits)
    }
}

/// What one push may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Body bytes, also after decompression.
    pub max_size: usize,
    /// Entries over all streams.
    pub max_entries: usize,
}

/// A decoded request.
#[derive(Debug, Default, PartialEq)]
pub struct Decoded {
    pub streams: Vec<PushStream>,
    /// Invalid UTF-8 sequences replaced by U+FFFD (as Loki does) rather than refused.
    pub invalid_utf8: u64,
}

/// Inflates at most `max_size` bytes: a zip bomb stops at the limit.
fn gunzip(body: &[u8], max_size: usize) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    let mut reader = flate2::read::MultiGzDecoder::new(body).take(max_size as u64 + 1);
    reader
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Bad(format!("invalid gzip body: {e}")))?;
    if out.len() > max_size {
        return Err(DecodeError::TooLarge(max_size));
    }
    Ok(out)
}

/// A line as received, with each invalid UTF-8 sequence replaced by U+FFFD (as Loki does):
/// one bad byte must not refuse the whole request, since shippers drop a refused batch for good.
fn lossy_line(raw: bytes::Bytes, invalid: &mut u64) -> LineText {
    match std::str::from_utf8(&raw) {
        Ok(_) => LineText(raw),
        Err(_) => LineText(bytes::Bytes::from(replace_invalid_utf8(&raw, invalid))),
    }
}

/// `String::from_utf8_lossy`, counting the sequences replaced.
fn replace_invalid_utf8(bytes: &[u8], invalid: &mut u64) -> String {
    let mut out = String::with_capacity(bytes.len() + 16);
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        if !chunk.invalid().is_empty() {
            out.push(char::REPLACEMENT_CHARACTER);
            *invalid += 1;
        }
    }
    out
}

/// Walks the JSON push body with seeds instead of building `serde_json::Value`s: each entry
/// becomes `(i64, String)` directly, counted against the entry limit as it is read.
struct JsonState {
    /// The text being decoded, for slicing lines out of it without copying.
    backing: bytes::Bytes,
    max_entries: usize,
    entries: usize,
    invalid_utf8: u64,
    /// An entry's own problem, worded with its stream and position.
    entry_error: Option<String>,
}

fn decode_json(body: bytes::Bytes, max_entries: usize) -> Result<Decoded, DecodeError> {
    let mut invalid_utf8 = 0;
    // JSON's own syntax is ASCII, so replacing invalid sequences only touches string contents;
    // serde_json has no way to read a string without checking it.
    let backing = match std::str::from_utf8(&body) {
        Ok(_) => body,
        Err(_) => bytes::Bytes::from(replace_invalid_utf8(&body, &mut invalid_utf8)),
    };
    let mut state = JsonState {
        backing: backing.clone(),
        max_entries,
        entries: 0,
        invalid_utf8,
        entry_error: None,
    };
    let text = std::str::from_utf8(&backing)
        .map_err(|e| DecodeError::Bad(format!("invalid JSON push request: {e}")))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let streams = serde::de::DeserializeSeed::deserialize(PushSeed(&mut state), &mut de)
        .and_then(|s| de.end().map(|()| s))
        .map_err(|e| {
            if state.entries > state.max_entries {
                DecodeError::TooManyEntries(state.max_entries)
            } else if let Some(message) = state.entry_error.take() {
                DecodeError::Bad(message)
            } else {
                DecodeError::Bad(format!("invalid JSON push request: {e}"))
            }
        })?;
    Ok(Decoded {
        streams,
        invalid_utf8: state.invalid_utf8,
    })
}

struct PushSeed<'s>(&'s mut JsonState);

impl<'de> serde::de::DeserializeSeed<'de> for PushSeed<'_> {
    type Value = Vec<PushStream>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for PushSeed<'_> {
    type Value = Vec<PushStream>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object with \"streams\"")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error;
        let mut streams = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key != "streams" {
                return Err(A::Error::unknown_field(&key, &["streams"]));
            }
            if streams.is_some() {
                return Err(A::Error::duplicate_field("streams"));
            }
            streams = Some(map.next_value_seed(StreamsSeed(&mut *self.0))?);
        }
        streams.ok_or_else(|| A::Error::missing_field("streams"))
    }
}

struct StreamsSeed<'s>(&'s mut JsonState);

impl<'de> serde::de::DeserializeSeed<'de> for StreamsSeed<'_> {
    type Value = Vec<PushStream>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for StreamsSeed<'_> {
    type Value = Vec<PushStream>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of streams")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(stream) = seq.next_element_seed(StreamSeed {
            state: &mut *self.0,
            index: out.len(),
        })? {
            out.push(stream);
        }
        Ok(out)
    }
}

struct StreamSeed<'s> {
    state: &'s mut JsonState,
    index: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for StreamSeed<'_> {
    type Value = PushStream;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for StreamSeed<'_> {
    type Value = PushStream;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a stream: {\"stream\": {…}, \"values\": […]}")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error;
        let mut labels: Option<BTreeMap<String, String>> = None;
        let mut entries = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "stream" => labels = Some(map.next_value::<UniqueLabels>()?.0),
                "values" => {
                    // Labels usually come first; name the stream in errors when they did.
                    let described = labels.as_ref().map_or_else(
                        || format!("stream {}", self.index),
                        |l| format!("stream {} {}", self.index, describe(l)),
                    );
                    entries = Some(map.next_value_seed(EntriesSeed {
                        state: &mut *self.state,
                        stream: described,
                    })?);
                }
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(PushStream {
            labels: labels.ok_or_else(|| A::Error::missing_field("stream"))?,
            entries: entries.ok_or_else(|| A::Error::missing_field("values"))?,
        })
    }
}

/// A stream's labels, refused when a name comes twice (serde's map would keep the last one
/// silently; Loki refuses the stream: `pkg/validation/validate.go`, duplicate_label_names).
struct UniqueLabels(BTreeMap<String, String>);

impl<'de> serde::Deserialize<'de> for UniqueLabels {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = UniqueLabels;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("stream labels: an object of strings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut labels = BTreeMap::new();
                while let Some((name, value)) = map.next_entry::<String, String>()? {
                    if labels.contains_key(&name) {
                        return Err(serde::de::Error::custom(duplicate_label(&labels, &name)));
                    }
                    labels.insert(name, value);
                }
                Ok(UniqueLabels(labels))
            }
        }
        d.deserialize_map(Visit)
    }
}

/// Loki's words for a stream that names a label twice.
fn duplicate_label(labels: &BTreeMap<String, String>, name: &str) -> String {
    format!(
        "stream '{}' has duplicate label name: '{name}'",
        describe(labels)
    )
}

struct EntriesSeed<'s> {
    state: &'s mut JsonState,
    stream: String,
}

impl<'de> serde::de::DeserializeSeed<'de> for EntriesSeed<'_> {
    type Value = Vec<(i64, LineText)>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> serde::de::Visitor<'de> for EntriesSeed<'_> {
    type Value = Vec<(i64, LineText)>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of [\"<unix nanoseconds>\", \"<line>\"]")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        use serde::de::Error;
        let mut out = Vec::new();
        loop {
            if self.state.entries >= self.state.max_entries {
                // One more element would pass the limit: stop before decoding it.
                if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    self.state.entries += 1;
                    return Err(A::Error::custom("too many entries"));
                }
                break;
            }
            let Some(entry) = seq.next_element::<JsonEntry<'de>>()? else {
                break;
            };
            let entry = match entry.0 {
                Ok((ts, line)) => (ts, LineText::new(&self.state.backing, line)),
                Err(e) => {
                    let message = format!("{}: value {}: {e}", self.stream, out.len());
                    self.state.entry_error = Some(message.clone());
                    return Err(A::Error::custom(message));
                }
            };
            self.state.entries += 1;
            out.push(entry);
        }
        Ok(out)
    }
}

/// One `[ts, line, {metadata}?]`, or the reason it is not one (worded for the operator).
struct JsonEntry<'de>(Result<(i64, std::borrow::Cow<'de, str>), String>);

impl<'de> Deserialize<'de> for JsonEntry<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(JsonEntryVisitor)
    }
}

struct JsonEntryVisitor;

/// A JSON scalar or structure, kept only as far as an error message needs it. Strings without
/// escapes are borrowed from the body.
enum Field<'de> {
    Text(std::borrow::Cow<'de, str>),
    Other(&'static str),
}

impl<'de> Deserialize<'de> for Field<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Field<'de>, E> {
                Ok(Field::Text(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Field<'de>, E> {
                Ok(Field::Text(std::borrow::Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Field<'de>, E> {
                Ok(Field::Text(std::borrow::Cow::Owned(v)))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Field<'de>, E> {
                Ok(Field::Other("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Field<'de>, E> {
                Ok(Field::Other("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Field<'de>, E> {
                Ok(Field::Other("a number"))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Field<'de>, E> {
                Ok(Field::Other("a boolean"))
            }
            fn visit_unit<E>(self) -> Result<Field<'de>, E> {
                Ok(Field::Other("null"))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> Result<Field<'de>, A::Error> {
                while s.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Field::Other("a list"))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Field<'de>, A::Error> {
                while m
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Field::Other("an object"))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> serde::de::Visitor<'de> for JsonEntryVisitor {
    type Value = JsonEntry<'de>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("[\"<unix nanoseconds>\", \"<line>\"]")
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> Result<JsonEntry<'de>, A::Error> {
        let mut fields = Vec::with_capacity(3);
        while let Some(f) = seq.next_element::<Field>()? {
            fields.push(f);
        }
        Ok(JsonEntry(json_entry(fields)))
    }
}

fn json_entry(fields: Vec<Field<'_>>) -> Result<(i64, std::borrow::Cow<'_, str>), String> {
    if !(2..=3).contains(&fields.len()) {
        return Err(format!(
            "expected [\"<unix nanoseconds>\", \"<line>\"] (and optional structured metadata), found {} elements",
            fields.len()
        ));
    }
    let mut fields = fields.into_iter();
    let ts = match fields.next() {
        Some(Field::Text(text)) => text
            .parse::<i64>()
            .map_err(|_| format!("timestamp {text:?} is not an integer of nanoseconds"))?,
        Some(Field::Other(what)) => {
            return Err(format!(
                "timestamp must be a string of nanoseconds, found {what}"
            ))
        }
        None => return Err("missing timestamp".into()),
    };
    let line = match fields.next() {
        Some(Field::Text(s)) => s,
        Some(Field::Other(what)) => return Err(format!("line must be a string, found {what}")),
        None => return Err("missing line".into()),
    };
    if let Some(meta) = fields.next() {
        if !matches!(meta, Field::Other("an object")) {
            return Err("structured metadata must be an object".into());
        }
    }
    Ok((ts, line))
}

/// Counts the entries of a protobuf push by walking the wire format, before anything is
/// decoded: `PushRequest.streams` (1) → `StreamAdapter.entries` (2).
fn count_protobuf_entries(raw: &[u8]) -> Result<usize, DecodeError> {
    fn varint(buf: &mut &[u8]) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = buf.split_first()?;
            *buf = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    /// Calls `each` with the payload of every length-delimited field numbered `wanted`.
    fn fields(mut buf: &[u8], wanted: u64, each: &mut dyn FnMut(&[u8])) -> Option<()> {
        while !buf.is_empty() {
            let key = varint(&mut buf)?;
            match key & 7 {
                0 => {
                    varint(&mut buf)?;
                }
                1 => buf = buf.get(8..)?,
                5 => buf = buf.get(4..)?,
                2 => {
                    let len = usize::try_from(varint(&mut buf)?).ok()?;
                    let payload = buf.get(..len)?;
                    if key >> 3 == wanted {
                        each(payload);
                    }
                    buf = &buf[len..];
                }
                _ => return None,
            }
        }
        Some(())
    }
    let mut entries = 0usize;
    let mut ok = true;
    fields(raw, 1, &mut |stream| {
        ok &= fields(stream, 2, &mut |_| entries += 1).is_some();
    })
    .filter(|()| ok)
    .ok_or_else(|| DecodeError::Bad("invalid protobuf push request: malformed wire data".into()))?;
    Ok(entries)
}

fn decode_protobuf(body: &[u8], limits: Limits) -> Result<Decoded, DecodeError> {
    let length = snap::raw::decompress_len(body)
        .map_err(|e| DecodeError::Bad(format!("invalid snappy body: {e}")))?;
    if length > limits.max_size {
        return Err(DecodeError::TooLarge(limits.max_size));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| DecodeError::Bad(format!("invalid snappy body: {e}")))?;
    if count_protobuf_entries(&raw)? > limits.max_entries {
        return Err(DecodeError::TooManyEntries(limits.max_entries));
    }
    // Decoding from `Bytes` makes every line a slice of `raw`, not a copy.
    let push = PushRequest::decode(bytes::Bytes::from(raw))
        .map_err(|e| DecodeError::Bad(format!("invalid protobuf push request: {e}")))?;
    let mut invalid_utf8 = 0;
    let streams = push
        .streams
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let labels = parse_label_string(&s.labels)
                .map_err(|e| DecodeError::Bad(format!("stream {i} labels {:?}: {e}", s.labels)))?;
            let entries = s
                .entries
                .into_iter()
                .enumerate()
                .map(|(j, e)| {
                    let t = e.timestamp.ok_or_else(|| {
                        DecodeError::Bad(format!(
                            "stream {i} {}: entry {j} has no timestamp",
                            describe(&labels)
                        ))
                    })?;
                    let ns = t
                        .seconds
                        .checked_mul(1_000_000_000)
                        .and_then(|s| s.checked_add(i64::from(t.nanos)))
                        .filter(|_| (0..1_000_000_000).contains(&t.nanos))
                        .ok_or_else(|| {
                            DecodeError::Bad(format!(
                                "stream {i} {}: entry {j} has an invalid timestamp",
                                describe(&labels)
                            ))
                        })?;
                    Ok((ns, lossy_line(e.line, &mut invalid_utf8)))
                })
                .collect::<Result<Vec<_>, DecodeError>>()?;
            Ok(PushStream { labels, entries })
        })
        .collect::<Result<Vec<_>, DecodeError>>()?;
    Ok(Decoded {
        streams,
        invalid_utf8,
    })
}

/// Parses Loki's stream label string, `{name="value", …}` (Prometheus label syntax).
pub fn parse_label_string(text: &str) -> Result<BTreeMap<String, String>, String> {
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or("labels must look like {name=\"value\", …}")?;
    let mut out = BTreeMap::new();
    let mut rest = inner.trim_start();
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or("expected name=\"value\"")?;
        let name = rest[..eq].trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid label name {name:?}"));
        }
        let after = rest[eq + 1..].trim_start();
        if !after.starts_with('"') {
            return Err(format!("value of {name} must be a double-quoted string"));
        }
        // Find the closing quote, honouring backslash escapes.
        let bytes = after.as_bytes();
        let mut i = 1;
        while i < bytes.len() && bytes[i] != b'"' {
            i += if bytes[i] == b'\\' { 2 } else { 1 };
        }
        if i >= bytes.len() {
            return Err(format!("unterminated value of {name}"));
        }
        let value = crate::logql::lexer::unquote(&after[..=i])?;
        if out.contains_key(name) {
            return Err(duplicate_label(&out, name));
        }
        out.insert(name.to_string(), value);
        rest = after[i + 1..].trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return Err(format!("expected , after the value of {name}"));
        }
    }
    Ok(out)
}

pub fn describe(labels: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: Limits = Limits {
        max_size: 1 << 20,
        max_entries: 1000,
    };

    #[test]
    fn label_strings() {
        let l = parse_label_string(r#"{namespace="shop", pod="web-1",container="a\"b"}"#).unwrap();
        assert_eq!(l["namespace"], "shop");
        assert_eq!(l["container"], "a\"b");
        assert!(parse_label_string("{}").unwrap().is_empty());
        for bad in [
            "namespace=\"x\"",
            "{namespace=x}",
            "{namespace=\"x\"",
            "{a-b=\"x\"}",
            "{a=\"x\" b=\"y\"}",
        ] {
            assert!(parse_label_string(bad).is_err(), "{bad}");
        }
        // A name twice is refused, as Loki refuses it (pkg/validation/validate.go).
        assert_eq!(
            parse_label_string(r#"{namespace="a", pod="p", namespace="b"}"#).unwrap_err(),
            r#"stream '{namespace="a", pod="p"}' has duplicate label name: 'namespace'"#
        );
    }

    #[test]
    fn json_and_protobuf_decode_alike() {
        let json = br#"{"streams":[{"stream":{"namespace":"shop","pod":"p","container":"c"},"values":[["1700000000000000001","hello"],["1700000000000000002","world",{"trace_id":"x"}]]}]}"#;
        let from_json = decode(
            "application/json",
            None,
            bytes::Bytes::copy_from_slice(json),
            MB,
        )
        .unwrap()
        .streams;
        let request = PushRequest {
            streams: vec![StreamAdapter {
                labels: r#"{container="c", namespace="shop", pod="p"}"#.into(),
                entries: vec![
                    EntryAdapter {
                        timestamp: Some(ProtoTimestamp {
                            seconds: 1_700_000_000,
                            nanos: 1,
                        }),
                        line: bytes::Bytes::from_static(b"hello"),
                        structured_metadata: vec![],
                    },
                    EntryAdapter {
                        timestamp: Some(ProtoTimestamp {
                            seconds: 1_700_000_000,
                            nanos: 2,
                        }),
                        line: bytes::Bytes::from_static(b"world"),
                        structured_metadata: vec![LabelPairAdapter {
                            name: "trace_id".into(),
                            value: "x".into(),
                        }],
                    },
                ],
                hash: 0,
            }],
        };
        let compressed = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .unwrap();
        let from_proto = decode(
            "application/x-protobuf",
            None,
            bytes::Bytes::copy_from_slice(&compressed),
            MB,
        )
        .unwrap()
        .streams;
        assert_eq!(from_json, from_proto);
    }

    #[test]
    fn bombs_and_garbage() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b' '; 10 << 20]).unwrap();
        let bomb = gz.finish().unwrap();
        assert_eq!(
            decode(
                "application/json",
                Some("gzip"),
                bytes::Bytes::copy_from_slice(&bomb),
                MB
            ),
            Err(DecodeError::TooLarge(1 << 20))
        );
        assert!(matches!(
            decode(
                "application/json",
                Some("gzip"),
                bytes::Bytes::copy_from_slice(b"not gzip"),
                MB
            ),
            Err(DecodeError::Bad(_))
        ));
        // A snappy header announcing 4 GiB is refused before anything is inflated.
        assert_eq!(
            decode(
                "application/x-protobuf",
                None,
                bytes::Bytes::copy_from_slice(b"\xff\xff\xff\xff\x0f"),
                MB
            ),
            Err(DecodeError::TooLarge(1 << 20))
        );
        assert!(matches!(
            decode(
                "application/x-protobuf",
                None,
                bytes::Bytes::copy_from_slice(b"\x10garbage"),
                MB
            ),
            Err(DecodeError::Bad(_))
        ));
        let not_protobuf = snap::raw::Encoder::new()
            .compress_vec(b"\xff\xff\xff")
            .unwrap();
        assert!(matches!(
            decode(
                "application/x-protobuf",
                None,
                bytes::Bytes::copy_from_slice(&not_protobuf),
                MB
            ),
            Err(DecodeError::Bad(_))
        ));
        assert!(matches!(
            decode("text/plain", None, bytes::Bytes::copy_from_slice(b"{}"), MB),
            Err(DecodeError::ContentType(_))
        ));
        assert!(matches!(
            decode(
                "application/json",
                None,
                bytes::Bytes::from_static(br#"{"streams":[{"stream":{},"values":[[1,"x"]]}]}"#),
                MB
            ),
            Err(DecodeError::Bad(_))
        ));
    }

    #[test]
    fn a_body_without_a_loki_content_type_is_refused() {
        let json = br#"{"streams":[]}"#;
        for content_type in ["", "text/plain", "application/x-www-form-urlencoded"] {
            assert!(matches!(
                decode(content_type, None, bytes::Bytes::copy_from_slice(json), MB),
                Err(DecodeError::ContentType(_))
            ));
        }
        assert!(decode(
            "application/json; charset=utf-8",
            None,
            bytes::Bytes::copy_from_slice(json),
            MB
        )
        .is_ok());
    }

    #[test]
    fn invalid_utf8_is_replaced_and_counted() {
        let json = b"{\"streams\":[{\"stream\":{\"namespace\":\"a\"},\"values\":[[\"1\",\"ok \xff\xfe end\"],[\"2\",\"fine\"]]}]}";
        let decoded = decode(
            "application/json",
            None,
            bytes::Bytes::copy_from_slice(json),
            MB,
        )
        .unwrap();
        assert_eq!(decoded.invalid_utf8, 2);
        assert_eq!(
            decoded.streams[0].entries[0].1.as_str(),
            "ok \u{fffd}\u{fffd} end"
        );
        assert_eq!(decoded.streams[0].entries[1].1.as_str(), "fine");
        let request = PushRequest {
            streams: vec![StreamAdapter {
                labels: r#"{namespace="a"}"#.into(),
                entries: vec![EntryAdapter {
                    timestamp: Some(ProtoTimestamp {
                        seconds: 1,
                        nanos: 0,
                    }),
                    line: bytes::Bytes::from_static(b"bad \xc3"),
                    structured_metadata: vec![],
                }],
                hash: 0,
            }],
        };
        let compressed = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .unwrap();
        let decoded = decode(
            "application/x-protobuf",
            None,
            bytes::Bytes::copy_from_slice(&compressed),
            MB,
        )
        .unwrap();
        assert_eq!(decoded.invalid_utf8, 1);
        assert_eq!(decoded.streams[0].entries[0].1.as_str(), "bad \u{fffd}");
    }

    #[test]
    fn entries_are_counted_before_they_cost_memory() {
        let limits = Limits {
            max_size: 1 << 20,
            max_entries: 3,
        };
        let values = |n: usize| vec![r#"["1","x"]"#; n].join(",");
        let json = |n: usize| {
            format!(
                r#"{{"streams":[{{"stream":{{"namespace":"a"}},"values":[{}]}},{{"stream":{{"namespace":"b"}},"values":[{}]}}]}}"#,
                values(n),
                values(n)
            )
        };
        assert!(decode(
            "application/json",
            None,
            bytes::Bytes::copy_from_slice(json(1).as_bytes()),
            limits
        )
        .is_ok());
        assert_eq!(
            decode(
                "application/json",
                None,
                bytes::Bytes::copy_from_slice(json(2).as_bytes()),
                limits
            ),
            Err(DecodeError::TooManyEntries(3))
        );
        let entry = EntryAdapter {
            timestamp: Some(ProtoTimestamp {
                seconds: 1,
                nanos: 0,
            }),
            line: bytes::Bytes::from_static(b"x"),
            structured_metadata: vec![],
        };
        let request = PushRequest {
            streams: vec![StreamAdapter {
                labels: r#"{namespace="a"}"#.into(),
                entries: vec![entry; 4],
                hash: 0,
            }],
        };
        let compressed = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .unwrap();
        assert_eq!(
            decode(
                "application/x-protobuf",
                None,
                bytes::Bytes::copy_from_slice(&compressed),
                limits
            ),
            Err(DecodeError::TooManyEntries(3))
        );
    }

    #[test]
    fn entry_errors_name_the_stream_and_value() {
        let json = br#"{"streams":[{"stream":{"namespace":"a"},"values":[["1","x"],[1,"x"]]}]}"#;
        assert_eq!(
            decode("application/json", None, bytes::Bytes::copy_from_slice(json), MB),
            Err(DecodeError::Bad(
                "stream 0 {namespace=\"a\"}: value 1: timestamp must be a string of nanoseconds, found a number".into()
            ))
        );
    }
}
