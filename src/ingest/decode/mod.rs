//! Decoding a Loki push request: JSON (optionally gzip) or snappy-compressed protobuf, into one
//! neutral shape. Nothing is written until the whole request has decoded and validated.

use std::collections::BTreeMap;
use std::io::Read;

mod json;
mod protobuf;

use json::decode_json;
use protobuf::decode_protobuf;
pub use protobuf::{
    parse_label_string, EntryAdapter, LabelPairAdapter, ProtoTimestamp, PushRequest, StreamAdapter,
};

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

/// Loki's words for a stream that names a label twice.
fn duplicate_label(labels: &BTreeMap<String, String>, name: &str) -> String {
    format!(
        "stream '{}' has duplicate label name: '{name}'",
        describe(labels)
    )
}

pub fn describe(labels: &BTreeMap<String, String>) -> String {
    let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

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
