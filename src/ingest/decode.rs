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
    pub entries: Vec<(i64, String)>,
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
    #[prost(string, tag = "2")]
    pub line: String,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonPush {
    streams: Vec<JsonStream>,
}

#[derive(Deserialize)]
struct JsonStream {
    stream: BTreeMap<String, String>,
    values: Vec<Vec<serde_json::Value>>,
}

/// Decodes a request body by its content type and encoding.
pub fn decode(
    content_type: &str,
    content_encoding: Option<&str>,
    body: &[u8],
    max_size: usize,
) -> Result<Vec<PushStream>, DecodeError> {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let encoding = content_encoding.map(|e| e.trim().to_ascii_lowercase());
    let body = match encoding.as_deref() {
        None | Some("") | Some("identity") => std::borrow::Cow::Borrowed(body),
        Some("gzip") => std::borrow::Cow::Owned(gunzip(body, max_size)?),
        Some("snappy") if media == "application/x-protobuf" => std::borrow::Cow::Borrowed(body),
        Some(other) => {
            return Err(DecodeError::Bad(format!(
                "unsupported Content-Encoding {other:?}: use gzip or none"
            )))
        }
    };
    match media.as_str() {
        "application/json" | "" => decode_json(&body),
        "application/x-protobuf" => decode_protobuf(&body, max_size),
        other => Err(DecodeError::ContentType(other.to_string())),
    }
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

fn decode_json(body: &[u8]) -> Result<Vec<PushStream>, DecodeError> {
    let push: JsonPush = serde_json::from_slice(body)
        .map_err(|e| DecodeError::Bad(format!("invalid JSON push request: {e}")))?;
    push.streams
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let entries = s
                .values
                .into_iter()
                .enumerate()
                .map(|(j, v)| {
                    json_entry(&v).map_err(|e| {
                        DecodeError::Bad(format!(
                            "stream {i} {}: value {j}: {e}",
                            describe(&s.stream)
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(PushStream {
                labels: s.stream,
                entries,
            })
        })
        .collect()
}

fn json_entry(value: &[serde_json::Value]) -> Result<(i64, String), String> {
    if !(2..=3).contains(&value.len()) {
        return Err(format!(
            "expected [\"<unix nanoseconds>\", \"<line>\"] (and optional structured metadata), found {} elements",
            value.len()
        ));
    }
    let ts = match &value[0] {
        serde_json::Value::String(s) => s
            .parse::<i64>()
            .map_err(|_| format!("timestamp {s:?} is not an integer of nanoseconds"))?,
        other => {
            return Err(format!(
                "timestamp must be a string of nanoseconds, found {other}"
            ))
        }
    };
    let line = match &value[1] {
        serde_json::Value::String(s) => s.clone(),
        other => return Err(format!("line must be a string, found {other}")),
    };
    if let Some(meta) = value.get(2) {
        if !meta.is_object() {
            return Err("structured metadata must be an object".into());
        }
    }
    Ok((ts, line))
}

fn decode_protobuf(body: &[u8], max_size: usize) -> Result<Vec<PushStream>, DecodeError> {
    let length = snap::raw::decompress_len(body)
        .map_err(|e| DecodeError::Bad(format!("invalid snappy body: {e}")))?;
    if length > max_size {
        return Err(DecodeError::TooLarge(max_size));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| DecodeError::Bad(format!("invalid snappy body: {e}")))?;
    let push = PushRequest::decode(&raw[..])
        .map_err(|e| DecodeError::Bad(format!("invalid protobuf push request: {e}")))?;
    push.streams
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
                    Ok((ns, e.line))
                })
                .collect::<Result<Vec<_>, DecodeError>>()?;
            Ok(PushStream { labels, entries })
        })
        .collect()
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
    }

    #[test]
    fn json_and_protobuf_decode_alike() {
        let json = br#"{"streams":[{"stream":{"namespace":"shop","pod":"p","container":"c"},"values":[["1700000000000000001","hello"],["1700000000000000002","world",{"trace_id":"x"}]]}]}"#;
        let from_json = decode("application/json", None, json, 1 << 20).unwrap();
        let request = PushRequest {
            streams: vec![StreamAdapter {
                labels: r#"{container="c", namespace="shop", pod="p"}"#.into(),
                entries: vec![
                    EntryAdapter {
                        timestamp: Some(ProtoTimestamp {
                            seconds: 1_700_000_000,
                            nanos: 1,
                        }),
                        line: "hello".into(),
                        structured_metadata: vec![],
                    },
                    EntryAdapter {
                        timestamp: Some(ProtoTimestamp {
                            seconds: 1_700_000_000,
                            nanos: 2,
                        }),
                        line: "world".into(),
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
        let from_proto = decode("application/x-protobuf", None, &compressed, 1 << 20).unwrap();
        assert_eq!(from_json, from_proto);
    }

    #[test]
    fn bombs_and_garbage() {
        use std::io::Write;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&vec![b' '; 10 << 20]).unwrap();
        let bomb = gz.finish().unwrap();
        assert_eq!(
            decode("application/json", Some("gzip"), &bomb, 1 << 20),
            Err(DecodeError::TooLarge(1 << 20))
        );
        assert!(matches!(
            decode("application/json", Some("gzip"), b"not gzip", 1 << 20),
            Err(DecodeError::Bad(_))
        ));
        // A snappy header announcing 4 GiB is refused before anything is inflated.
        assert_eq!(
            decode(
                "application/x-protobuf",
                None,
                b"\xff\xff\xff\xff\x0f",
                1 << 20
            ),
            Err(DecodeError::TooLarge(1 << 20))
        );
        assert!(matches!(
            decode("application/x-protobuf", None, b"\x10garbage", 1 << 20),
            Err(DecodeError::Bad(_))
        ));
        let not_protobuf = snap::raw::Encoder::new()
            .compress_vec(b"\xff\xff\xff")
            .unwrap();
        assert!(matches!(
            decode("application/x-protobuf", None, &not_protobuf, 1 << 20),
            Err(DecodeError::Bad(_))
        ));
        assert!(matches!(
            decode("text/plain", None, b"{}", 1 << 20),
            Err(DecodeError::ContentType(_))
        ));
        assert!(matches!(
            decode(
                "application/json",
                None,
                br#"{"streams":[{"stream":{},"values":[[1,"x"]]}]}"#,
                1 << 20
            ),
            Err(DecodeError::Bad(_))
        ));
    }
}
