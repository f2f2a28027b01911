//! Encoding log answers while they are sent: Lethe's `logs` shape (what Venti reads) and Loki's
//! `streams` shape. The answer holds its lines by position; each chunk of the body reads the next
//! lines back and encodes them, so an answer of 100,000 long lines never sits in memory whole,
//! and a slow reader holds one chunk. Key order is fixed by the structs; invalid UTF-8 in stored
//! lines is replaced, never dropped.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::LogAnswerFormat;
use crate::logql::LogKind;
use crate::logstore::line::Line;
use crate::logstore::Found;

#[derive(Serialize)]
struct PodLine<'a> {
    time: Cow<'a, str>,
    namespace: Cow<'a, str>,
    pod: Cow<'a, str>,
    container: Cow<'a, str>,
    log: Cow<'a, str>,
}

#[derive(Serialize)]
struct NodeLine<'a> {
    time: Cow<'a, str>,
    node: Cow<'a, str>,
    process: Cow<'a, str>,
    log: Cow<'a, str>,
}

fn text(b: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(b)
}

/// Loki's streams of an answer: each label set with its lines' positions.
type Streams = Vec<(BTreeMap<String, String>, Vec<u32>)>;

/// The order lines are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Ascending,
    Descending,
}

/// Where the encoder is in the answer.
enum Stage {
    Head,
    /// `logs`: the next position in answer order.
    Lines {
        next: usize,
    },
    /// `streams`: groups sorted by labels, each with its lines in answer order.
    Groups {
        groups: Streams,
        group: usize,
        next: usize,
    },
    Tail,
    Done,
}

/// A log answer being encoded.
pub struct LogAnswer {
    found: Found,
    kind: LogKind,
    order: Order,
    format: LogAnswerFormat,
    warnings: Vec<String>,
    stage: Stage,
    /// Whether the current list already has an element (a comma goes before the next).
    wrote_element: bool,
    buf: Vec<u8>,
    /// More members of the data object after the result (Loki's `stats`): name and JSON.
    data_fields: Vec<(&'static str, String)>,
    /// The query's parsers and label filters: a stream's labels include what they extract.
    pipeline: crate::logql::pipeline::Pipeline,
    /// Streams grouped ahead by [`LogAnswer::prepare`].
    grouped: Option<Streams>,
    /// Where [`LogAnswer::next_entry`] is: group, and position in it.
    entry_at: (usize, usize),
}

/// One line of a grouped answer, for writers that cut their own messages (the tail).
pub struct StreamEntry {
    /// The group (stream) the line belongs to: see [`LogAnswer::stream_labels`].
    pub group: usize,
    /// The line's time, nanoseconds.
    pub ts: i64,
    /// The line as the pipeline left it, invalid UTF-8 replaced.
    pub text: String,
}

impl LogAnswer {
    pub fn new(
        found: Found,
        kind: LogKind,
        order: Order,
        format: LogAnswerFormat,
        warnings: Vec<String>,
    ) -> Self {
        LogAnswer {
            found,
            kind,
            order,
            format,
            warnings,
            stage: Stage::Head,
            wrote_element: false,
            buf: Vec::new(),
            data_fields: Vec::new(),
            pipeline: crate::logql::pipeline::Pipeline::default(),
            grouped: None,
            entry_at: (0, 0),
        }
    }

    /// Streams get the labels `pipeline` extracts from their lines (LogQL parsers).
    pub fn with_pipeline(mut self, pipeline: crate::logql::pipeline::Pipeline) -> Self {
        self.pipeline = pipeline;
        self
    }

    /// Adds a member to the data object, after the result (`json` is written as is).
    pub fn with_data_field(mut self, name: &'static str, json: String) -> Self {
        self.data_fields.push((name, json));
        self
    }

    /// What the answer holds in memory besides the chunk being written.
    pub fn held_bytes(&self) -> usize {
        self.found.held_bytes()
    }

    /// The line at position `p` of the answer order.
    fn index(&self, p: usize) -> usize {
        match self.order {
            Order::Ascending => p,
            Order::Descending => self.found.lines.len() - 1 - p,
        }
    }

    /// Appends the next part of the answer to `out`, stopping once `out` holds `chunk` bytes;
    /// returns false when the answer is complete. Blocking (reads lines back from disk).
    pub fn fill(&mut self, out: &mut Vec<u8>, chunk: usize) -> serde_json::Result<bool> {
        loop {
            if out.len() >= chunk {
                return Ok(true);
            }
            match &mut self.stage {
                Stage::Head => {
                    let result_type = match self.format {
                        LogAnswerFormat::Lethe => "logs",
                        LogAnswerFormat::Streams => "streams",
                    };
                    out.extend_from_slice(super::envelope::HEAD);
                    out.extend_from_slice(b"{\"resultType\":\"");
                    out.extend_from_slice(result_type.as_bytes());
                    out.extend_from_slice(b"\",\"result\":[");
                    self.stage = match self.format {
                        LogAnswerFormat::Lethe => Stage::Lines { next: 0 },
                        LogAnswerFormat::Streams => Stage::Groups {
                            groups: match self.grouped.take() {
                                Some(groups) => groups,
                                None => self.group_by_labels().map_err(|e| {
                                    serde_json::Error::io(std::io::Error::other(e.to_string()))
                                })?,
                            },
                            group: 0,
                            next: 0,
                        },
                    };
                }
                Stage::Lines { next } => {
                    let p = *next;
                    if p >= self.found.lines.len() {
                        self.stage = Stage::Tail;
                        continue;
                    }
                    *next += 1;
                    let i = self.index(p);
                    let mut buf = std::mem::take(&mut self.buf);
                    if let Some(line) = self.found.read_line(i, &mut buf) {
                        if self.wrote_element {
                            out.push(b',');
                        }
                        self.wrote_element = true;
                        let rewritten = self.rewritten_line(&line);
                        write_lethe_line(out, self.kind, &line, rewritten.as_deref())?;
                    }
                    self.buf = buf;
                }
                Stage::Groups {
                    groups,
                    group,
                    next,
                } => {
                    let Some((labels, members)) = groups.get(*group) else {
                        self.stage = Stage::Tail;
                        continue;
                    };
                    if *next == 0 {
                        if *group > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(b"{\"stream\":");
                        serde_json::to_writer(&mut *out, labels)?;
                        out.extend_from_slice(b",\"values\":[");
                        self.wrote_element = false;
                    }
                    match members.get(*next) {
                        Some(&i) => {
                            *next += 1;
                            let mut buf = std::mem::take(&mut self.buf);
                            if let Some(line) = self.found.read_line(i as usize, &mut buf) {
                                if self.wrote_element {
                                    out.push(b',');
                                }
                                self.wrote_element = true;
                                let rewritten = self.rewritten_line(&line);
                                let message = rewritten.as_deref().unwrap_or(line.message);
                                let value = [Cow::Owned(line.ts.to_string()), text(message)];
                                serde_json::to_writer(&mut *out, &value)?;
                            }
                            self.buf = buf;
                        }
                        None => {
                            out.extend_from_slice(b"]}");
                            *group += 1;
                            *next = 0;
                        }
                    }
                }
                Stage::Tail => {
                    out.push(b']');
                    for (name, json) in &self.data_fields {
                        out.extend_from_slice(b",\"");
                        out.extend_from_slice(name.as_bytes());
                        out.extend_from_slice(b"\":");
                        out.extend_from_slice(json.as_bytes());
                    }
                    out.push(b'}');
                    super::envelope::write_tail(out, &self.warnings)?;
                    self.stage = Stage::Done;
                }
                Stage::Done => return Ok(false),
            }
        }
    }

    /// The line's text after a pipeline stage that rewrites it (`line_format`, `unpack`,
    /// `decolorize`), made again as the line is written: rewritten lines are never held.
    fn rewritten_line(&self, line: &Line<'_>) -> Option<Vec<u8>> {
        if !self.pipeline.rewrites_line() {
            return None;
        }
        let stream = crate::logstore::line::stream_labels(self.kind, line);
        let pairs: Vec<(&str, &str)> = stream.iter().map(|(k, v)| (*k, v.as_ref())).collect();
        self.pipeline.run(&pairs, line.message, line.ts)?.line
    }

    /// Groups the lines into Loki's streams before anything is sent, so that an answer whose
    /// stream labels are too large is refused with a status rather than cut off. Blocking.
    pub fn prepare(&mut self) -> Result<(), crate::logstore::ScanStop> {
        if self.format == LogAnswerFormat::Streams && self.grouped.is_none() {
            self.grouped = Some(self.group_by_labels()?);
        }
        Ok(())
    }

    /// The labels of stream `group` of a prepared answer.
    pub fn stream_labels(&self, group: usize) -> Option<&BTreeMap<String, String>> {
        self.grouped.as_ref()?.get(group).map(|(labels, _)| labels)
    }

    /// The next line of a prepared answer, stream by stream, each stream's lines in the answer's
    /// order: one line read back at a time, so a writer can cut its messages at any size.
    /// `None` once every line was given (or the answer was not prepared). Blocking.
    pub fn next_entry(&mut self) -> Option<StreamEntry> {
        loop {
            let (group, next) = self.entry_at;
            let members = &self.grouped.as_ref()?.get(group)?.1;
            let Some(&i) = members.get(next) else {
                self.entry_at = (group + 1, 0);
                continue;
            };
            self.entry_at = (group, next + 1);
            let mut buf = std::mem::take(&mut self.buf);
            let entry = self.found.read_line(i as usize, &mut buf).map(|line| {
                let rewritten = self.rewritten_line(&line);
                let message = rewritten.as_deref().unwrap_or(line.message);
                StreamEntry {
                    group,
                    ts: line.ts,
                    text: text(message).into_owned(),
                }
            });
            self.buf = buf;
            if entry.is_some() {
                return entry;
            }
        }
    }

    /// Loki's shape: one stream per label set (sorted by labels), values in the answer's order.
    /// Reads every line once for its labels; only the positions are kept per group, and the
    /// distinct label sets at most [`crate::logstore::MAX_LABEL_BYTES`].
    fn group_by_labels(&mut self) -> Result<Streams, crate::logstore::ScanStop> {
        let mut groups: BTreeMap<BTreeMap<String, String>, Vec<u32>> = BTreeMap::new();
        let mut label_bytes = 0usize;
        let mut buf = std::mem::take(&mut self.buf);
        for p in 0..self.found.lines.len() {
            let i = self.index(p);
            if let Some(line) = self.found.read_line(i, &mut buf) {
                let stream = crate::logstore::line::stream_labels(self.kind, &line);
                let mut labels: BTreeMap<String, String> = BTreeMap::new();
                let outcome = if self.pipeline.is_empty() {
                    None
                } else {
                    let pairs: Vec<(&str, &str)> =
                        stream.iter().map(|(k, v)| (*k, v.as_ref())).collect();
                    // The scan kept the line, so the pipeline keeps it again.
                    let Some(outcome) = self.pipeline.run(&pairs, line.message, line.ts) else {
                        continue;
                    };
                    Some(outcome)
                };
                for (k, v) in &stream {
                    if outcome.as_ref().is_none_or(|o| o.shows_stream_label(k)) {
                        labels.insert(k.to_string(), v.to_string());
                    }
                }
                if let Some(outcome) = outcome {
                    labels.extend(outcome.labels);
                }
                match groups.get_mut(&labels) {
                    Some(members) => members.push(i as u32),
                    None => {
                        label_bytes += labels.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
                        if label_bytes > crate::logstore::MAX_LABEL_BYTES {
                            self.buf = buf;
                            return Err(crate::logstore::ScanStop::LabelsTooLarge(
                                crate::logstore::MAX_LABEL_BYTES,
                            ));
                        }
                        groups.insert(labels, vec![i as u32]);
                    }
                }
            }
        }
        self.buf = buf;
        Ok(groups.into_iter().collect())
    }
}

fn write_lethe_line(
    out: &mut Vec<u8>,
    kind: LogKind,
    l: &Line<'_>,
    rewritten: Option<&[u8]>,
) -> serde_json::Result<()> {
    let message = rewritten.unwrap_or(l.message);
    match kind {
        LogKind::Pod => serde_json::to_writer(
            out,
            &PodLine {
                time: text(l.time_text),
                namespace: text(l.fields[0]),
                pod: text(l.fields[1]),
                container: text(l.fields[2]),
                log: text(message),
            },
        ),
        LogKind::Node => serde_json::to_writer(
            out,
            &NodeLine {
                time: text(l.time_text),
                node: text(l.fields[0]),
                process: text(l.fields[1]),
                log: text(message),
            },
        ),
    }
}
