//! Ingestion over the Loki push API: decode, map and validate the whole request, then hand it
//! to the log store as one batch ([`crate::logstore::write::Batch`]), which writes it all or
//! nothing: a refused request writes no byte.

pub mod decode;
pub mod mapping;

use decode::PushStream;
use mapping::LabelMapping;

use crate::logstore::write::{Batch, BatchStream};

/// Maps every stream, validates every value and splits every message into lines; refuses the
/// whole request at the first problem, naming the stream.
///
/// Timestamps must lie from the Unix epoch (hour files are named by date from 1970) to
/// `newest` (now plus the creation grace period): Loki refuses entries too far in the future
/// (`pkg/validation/validate.go`, too_far_in_future) and Janus those before 1970, which no
/// query could ask for.
pub fn prepare<'a>(
    streams: &'a [PushStream],
    mapping: &LabelMapping,
    newest: i64,
) -> Result<Batch<'a>, String> {
    let mut batch = Batch::default();
    for stream in streams {
        let target = mapping.target(&stream.labels)?;
        for (j, &(ts, _)) in stream.entries.iter().enumerate() {
            let bound = if ts < 0 {
                "too old: {ts}, oldest acceptable timestamp is: 1970-01-01T00:00:00Z"
            } else if ts > newest {
                "too new: {ts}, newest acceptable timestamp is: {newest} (--ingest.creation-grace-period)"
            } else {
                continue;
            };
            let why = bound
                .replace("{ts}", &rfc3339(ts))
                .replace("{newest}", &rfc3339(newest));
            return Err(format!(
                "entry {j} for stream '{}' has timestamp {why}",
                decode::describe(&stream.labels)
            ));
        }
        let mut lines = Vec::with_capacity(stream.entries.len());
        for (ts, line) in &stream.entries {
            batch.entries += 1;
            lines.extend(split_message(line.as_str()).map(|message| (*ts, message)));
        }
        batch.lines += lines.len() as u64;
        batch.streams.push(BatchStream {
            kind: target.kind,
            values: target.values,
            lines,
            time_texts: Vec::new(),
        });
    }
    Ok(batch)
}

/// A timestamp in nanoseconds as RFC 3339 text, for messages.
fn rfc3339(ts: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(
        ts.div_euclid(1_000_000_000),
        ts.rem_euclid(1_000_000_000) as u32,
    )
    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
    .unwrap_or_else(|| ts.to_string())
}

/// A message with newlines becomes several lines with the same time and labels; a `\r` before a
/// newline (CRLF) and one trailing newline are dropped; other bytes are kept as they are, since
/// only `\n` can break the line format.
fn split_message(message: &str) -> impl Iterator<Item = &str> {
    let trimmed = message.strip_suffix('\n').unwrap_or(message);
    let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
    trimmed
        .split('\n')
        .map(|part| part.strip_suffix('\r').unwrap_or(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_messages_into_lines_of_their_stream() {
        let streams = vec![PushStream {
            labels: [
                ("namespace", "shop"),
                ("pod", "web-1"),
                ("container", "app"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            entries: vec![
                (1_704_067_200_000_000_001, "one\r\ntwo\n".into()),
                (
                    1_704_070_800_500_000_000,
                    "next hour\tkeeps tabs\x07".into(),
                ),
            ],
        }];
        let b = prepare(&streams, &LabelMapping::default(), i64::MAX).unwrap();
        assert_eq!((b.entries, b.lines), (2, 3));
        assert_eq!(b.streams.len(), 1);
        assert_eq!(b.streams[0].kind, crate::logql::LogKind::Pod);
        assert_eq!(b.streams[0].values, ["shop", "web-1", "app"]);
        assert_eq!(
            b.streams[0].lines,
            [
                (1_704_067_200_000_000_001, "one"),
                (1_704_067_200_000_000_001, "two"),
                (1_704_070_800_500_000_000, "next hour\tkeeps tabs\x07"),
            ]
        );
    }

    /// Timestamps before 1970 (an `i64::MIN` would name the file `1677-09-21_00.log`, which no
    /// query reaches) and past the creation grace period are refused, naming the entry, as Loki
    /// refuses them (`pkg/validation/validate.go`: too_far_in_future).
    #[test]
    fn timestamps_out_of_bounds_are_refused() {
        let stream = |ts: i64| PushStream {
            labels: [("namespace", "shop"), ("pod", "p"), ("container", "c")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            entries: vec![(1_000, "fine".into()), (ts, "x".into())],
        };
        let newest = 1_704_067_200_000_000_000;
        let e = prepare(&[stream(i64::MIN)], &LabelMapping::default(), newest).unwrap_err();
        assert!(e.starts_with("entry 1 for stream '{container=\"c\", namespace=\"shop\", pod=\"p\"}' has timestamp too old"), "{e}");
        let e = prepare(&[stream(newest + 1)], &LabelMapping::default(), newest).unwrap_err();
        assert!(e.contains("has timestamp too new: 2024-01-01T00:00:00.000000001Z, newest acceptable timestamp is: 2024-01-01T00:00:00Z"), "{e}");
        assert!(prepare(&[stream(newest)], &LabelMapping::default(), newest).is_ok());
    }
}
