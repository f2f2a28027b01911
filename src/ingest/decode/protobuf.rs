//! The protobuf push body (Loki's `push.proto`, snappy-compressed), with its messages written by
//! hand (prost-build needs protoc) and its entries counted on the wire before decoding.

use std::collections::BTreeMap;

use prost::Message;

use super::{describe, duplicate_label, lossy_line, DecodeError, Decoded, Limits, PushStream};

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

pub(super) fn decode_protobuf(body: &[u8], limits: Limits) -> Result<Decoded, DecodeError> {
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
