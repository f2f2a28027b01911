//! The JSON push body, walked with serde seeds instead of building `serde_json::Value`s: each
//! entry becomes `(i64, line)` directly, counted against the entry limit as it is read.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{
    describe, duplicate_label, replace_invalid_utf8, DecodeError, Decoded, LineText, PushStream,
};

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

pub(super) fn decode_json(body: bytes::Bytes, max_entries: usize) -> Result<Decoded, DecodeError> {
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
