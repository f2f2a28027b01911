//! Ingestion over the Loki push API: decode, map and validate the whole request, render it into
//! one buffer per hour file, then append. All or nothing: a refused request writes no byte.

pub mod decode;
pub mod mapping;

use std::collections::BTreeMap;
use std::path::PathBuf;

use decode::PushStream;
use mapping::LabelMapping;

use crate::logstore::files::layout::HOUR_NANOS;

/// A request made ready to write: per relative file path, the bytes to append.
#[derive(Debug, Default)]
pub struct Prepared {
    pub files: Vec<(PathBuf, Vec<u8>)>,
    pub entries: u64,
    pub lines: u64,
}

/// Maps every stream, validates every value, renders every line; refuses the whole request at
/// the first problem, naming the stream.
///
/// Timestamps must lie from the Unix epoch (hour files are named by date from 1970) to
/// `newest` (now plus the creation grace period): Loki refuses entries too far in the future
/// (`pkg/validation/validate.go`, too_far_in_future) and Janus those before 1970, which no
/// query could ask for.
pub fn prepare(
    streams: &[PushStream],
    mapping: &LabelMapping,
    newest: i64,
) -> Result<Prepared, String> {
    let mut files: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
    let mut clock = Clock::default();
    let mut prepared = Prepared::default();
    for stream in streams {
        let target = mapping.target(&stream.labels)?;
        let fields = target.values.join("|");
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
        for &(ts, ref line) in &stream.entries {
            let (time, hour) = clock.format(ts);
            let relative = PathBuf::from(target.kind.name())
                .join(&target.values[0])
                .join(hour);
            let buf = files.entry(relative).or_default();
            prepared.entries += 1;
            for message in split_message(line.as_str()) {
                buf.extend_from_slice(time.as_bytes());
                buf.push(b'[');
                buf.extend_from_slice(fields.as_bytes());
                buf.extend_from_slice(b"] ");
                buf.extend_from_slice(message.as_bytes());
                buf.push(b'\n');
                prepared.lines += 1;
            }
        }
    }
    prepared.files = files.into_iter().collect();
    Ok(prepared)
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

/// Formats timestamps (RFC 3339, UTC, nanoseconds) and hour file names, reusing the text of the
/// current second and hour: consecutive lines share them.
#[derive(Default)]
struct Clock {
    second: Option<i64>,
    second_text: String,
    hour: Option<i64>,
    hour_name: String,
}

impl Clock {
    fn format(&mut self, ts: i64) -> (String, String) {
        let second = ts.div_euclid(1_000_000_000);
        let nanos = ts.rem_euclid(1_000_000_000);
        if self.second != Some(second) {
            let t = chrono::DateTime::<chrono::Utc>::from_timestamp(second, 0).unwrap_or_default();
            self.second_text = t.format("%Y-%m-%dT%H:%M:%S").to_string();
            self.second = Some(second);
        }
        let hour = ts.div_euclid(HOUR_NANOS);
        if self.hour != Some(hour) {
            self.hour_name = crate::logstore::files::layout::name_of_hour(ts);
            self.hour = Some(hour);
        }
        (
            format!("{}.{nanos:09}Z", self.second_text),
            self.hour_name.clone(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_lethe_lines_into_hour_files() {
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
        let p = prepare(&streams, &LabelMapping::default(), i64::MAX).unwrap();
        assert_eq!((p.entries, p.lines), (2, 3));
        assert_eq!(p.files.len(), 2);
        assert_eq!(p.files[0].0, PathBuf::from("pod/shop/2024-01-01_00.log"));
        assert_eq!(
            String::from_utf8(p.files[0].1.clone()).unwrap(),
            "2024-01-01T00:00:00.000000001Z[shop|web-1|app] one\n2024-01-01T00:00:00.000000001Z[shop|web-1|app] two\n"
        );
        assert_eq!(
            String::from_utf8(p.files[1].1.clone()).unwrap(),
            "2024-01-01T01:00:00.500000000Z[shop|web-1|app] next hour\tkeeps tabs\x07\n"
        );
        // Every rendered line reads back.
        for (_, bytes) in &p.files {
            for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                assert!(crate::logstore::files::line::parse(line).is_some());
            }
        }
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
