//! Renders a push batch into Lethe's lines, one buffer per hour file
//! (`<kind>/<target>/YYYY-MM-DD_HH.log`, lines `time[fields] message`), for the writer to append.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::layout::{self, HOUR_NANOS};
use crate::logstore::write::Batch;

/// Per relative file path, the bytes to append, in path order; each file's lines in request
/// order.
pub fn hour_files(batch: &Batch<'_>) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
    let mut clock = Clock::default();
    for stream in &batch.streams {
        let fields = stream.values.join("|");
        let Some(target) = stream.values.first() else {
            continue;
        };
        for (n, &(ts, message)) in stream.lines.iter().enumerate() {
            let (mut time, hour) = clock.format(ts);
            if let Some(written) = stream.time_texts.get(n) {
                time = (*written).to_string();
            }
            let relative = PathBuf::from(stream.kind.name()).join(target).join(hour);
            let buf = files.entry(relative).or_default();
            buf.extend_from_slice(time.as_bytes());
            buf.push(b'[');
            buf.extend_from_slice(fields.as_bytes());
            buf.extend_from_slice(b"] ");
            buf.extend_from_slice(message.as_bytes());
            buf.push(b'\n');
        }
    }
    files.into_iter().collect()
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
            self.hour_name = layout::name_of_hour(ts);
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
    use crate::logql::LogKind;
    use crate::logstore::write::BatchStream;

    #[test]
    fn renders_lethe_lines_into_hour_files() {
        let batch = Batch {
            streams: vec![BatchStream {
                kind: LogKind::Pod,
                values: vec!["shop".into(), "web-1".into(), "app".into()],
                lines: vec![
                    (1_704_067_200_000_000_001, "one"),
                    (1_704_067_200_000_000_001, "two"),
                    (1_704_070_800_500_000_000, "next hour\tkeeps tabs\x07"),
                ],
                time_texts: Vec::new(),
            }],
            entries: 2,
            lines: 3,
        };
        let files = hour_files(&batch);
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].0, PathBuf::from("pod/shop/2024-01-01_00.log"));
        assert_eq!(
            String::from_utf8(files[0].1.clone()).unwrap(),
            "2024-01-01T00:00:00.000000001Z[shop|web-1|app] one\n2024-01-01T00:00:00.000000001Z[shop|web-1|app] two\n"
        );
        assert_eq!(
            String::from_utf8(files[1].1.clone()).unwrap(),
            "2024-01-01T01:00:00.500000000Z[shop|web-1|app] next hour\tkeeps tabs\x07\n"
        );
        // Every rendered line reads back.
        for (_, bytes) in &files {
            for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                assert!(crate::logstore::line::parse(line).is_some());
            }
        }
    }
}
