//! LogQL pipeline stages after a selector's first line filters: parsers that extract labels
//! (`| json`, `| logfmt`, `| regexp`, `| pattern`, `| unpack`), label filters (`| level="error"`),
//! stages that rewrite the line or its labels (`| line_format`, `| label_format`, `| drop`,
//! `| keep`, `| decolorize`) and line filters that come after such a stage.
//!
//! A stage runs on each line the block scan and the first line filters let through; it never
//! runs on the others. Label filters that imply a literal in the line (`level="error"`) also hand
//! that literal to the scan as a prefilter, so most lines are skipped before any parsing.

use promql_parser::label::Matcher;

use crate::logql::short_eq::short_eq;

pub use super::label_filter::{
    read_bytes, read_duration_seconds, read_number, Compare, LabelFilter, Unit,
};
use super::parsers::{self, LogfmtOptions, PathStep};
use super::pattern::Pattern;
use super::template::{Scope, Template, TEMPLATE_ERROR};
use super::{LineFilter, LogKind};

pub use super::extracted::Extracted;

/// What `__error__` says when a stage could not read a line (Loki's words).
pub const JSON_ERROR: &str = "JSONParserErr";
pub const LOGFMT_ERROR: &str = "LogfmtParserErr";
pub const LABEL_FILTER_ERROR: &str = "LabelFilterErr";

/// One stage.
#[derive(Debug, Clone)]
pub enum Stage {
    /// `| json`, or `| json a="b.c", …` (the paths given).
    Json(Option<Vec<(String, Vec<PathStep>)>>),
    Logfmt(LogfmtOptions),
    /// `| regexp "(?P<name>…)"`: the named groups of the first match become labels.
    Regexp(regex::bytes::Regex),
    /// `| pattern "<ip> - <_>"`.
    Pattern(Pattern),
    Unpack,
    Filter(LabelFilter),
    /// A line filter after a stage that rewrites the line: it reads the rewritten line.
    Line(Box<LineFilter>),
    LineFormat(Template),
    /// `| label_format a=b, c="{{.d}}"`, applied together on the labels before the stage.
    LabelFormat(Vec<(String, LabelSource)>),
    /// `| drop a, b="v"`: those labels go (a matcher drops only a matching value).
    Drop(Vec<LabelChoice>),
    /// `| keep a, b="v"`: only those labels stay.
    Keep(Vec<LabelChoice>),
    Decolorize,
    /// `| unwrap status`, `| unwrap duration(took)`, `| unwrap bytes(size)`: the line's value
    /// for an unwrapped range aggregation; the label itself goes from the series.
    Unwrap(Unwrap),
}

/// What `| unwrap` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unwrap {
    pub label: String,
    /// How the value is read: a number, a duration (in seconds) or a size (in bytes).
    pub unit: Unit,
}

/// What `__error__` says when `| unwrap` cannot read a line's value (Loki's words).
pub const SAMPLE_ERROR: &str = "SampleExtractionErr";

/// Where `label_format` takes a label's new value from.
#[derive(Debug, Clone)]
pub enum LabelSource {
    /// `dst=src`: the value of `src`, which goes.
    Rename(String),
    /// `dst="{{…}}"`.
    Template(Template),
}

/// A label named by `drop`/`keep`, with an optional matcher on its value.
#[derive(Debug, Clone)]
pub struct LabelChoice {
    pub name: String,
    pub matcher: Option<Matcher>,
}

impl LabelChoice {
    fn picks(&self, name: &str, value: &str) -> bool {
        self.name == name && self.matcher.as_ref().is_none_or(|m| m.is_match(value))
    }
}

/// What the stages made of one line: labels they set (over the stream's of the same name),
/// stream labels they removed, and the line when a stage rewrote it.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub labels: Extracted,
    pub hidden: Vec<String>,
    pub line: Option<Vec<u8>>,
    /// The value `| unwrap` read.
    pub sample: Option<f64>,
    /// How many wanted labels the parsers extracted (they stop once they have them all).
    pub(super) found: usize,
    /// Where a parser that found every wanted label stopped: the bytes of the line up to here
    /// (one more than it read) decided everything it extracted. 0: it read the whole line.
    pub(super) stopped_at: usize,
    /// The start of the previous line, as far as its parser read, when the pipeline's outcome
    /// is decided by that start alone (see [`Pipeline::run_into`]); empty otherwise.
    memo: Vec<u8>,
    /// Whether the pipeline kept the line that `memo` starts.
    memo_kept: bool,
    /// A buffer `| json` builds flattened names in.
    pub(super) path: String,
}

/// Two outcomes are equal when the line has the same labels, text and value in both (the
/// buffers kept for the next line do not count).
impl PartialEq for Outcome {
    fn eq(&self, other: &Self) -> bool {
        self.labels == other.labels
            && self.hidden == other.hidden
            && self.line == other.line
            && self.sample.map(f64::to_bits) == other.sample.map(f64::to_bits)
    }
}

impl Outcome {
    /// A label's value: set by a stage, else the stream's (unless removed), else `""`.
    pub fn value<'a>(&'a self, name: &str, stream: &'a [(&'a str, &'a str)]) -> &'a str {
        self.lookup(name, stream).unwrap_or("")
    }

    /// The label `name` of the line, when it has one (extracted, or of the stream and not
    /// dropped): Loki's `LabelsBuilder.Get`.
    pub fn lookup<'a>(&'a self, name: &str, stream: &'a [(&'a str, &'a str)]) -> Option<&'a str> {
        if let Some(v) = self.labels.get(name) {
            return Some(v);
        }
        if self.hidden.iter().any(|h| h == name) {
            return None;
        }
        stream.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }

    /// Whether the stream label `name` is part of the line's labels as the stream has it.
    pub fn shows_stream_label(&self, name: &str) -> bool {
        !self.labels.contains_key(name) && !self.hidden.iter().any(|h| h == name)
    }

    /// The line as the stages left it.
    pub fn message<'a>(&'a self, original: &'a [u8]) -> &'a [u8] {
        self.line.as_deref().unwrap_or(original)
    }

    pub(super) fn set_error(&mut self, error: &str) {
        self.labels.insert_if_absent("__error__", error);
    }

    fn remove(&mut self, name: &str, stream: &[(&str, &str)]) {
        self.labels.remove(name);
        if stream.iter().any(|(k, _)| *k == name) && !self.hidden.iter().any(|h| h == name) {
            self.hidden.push(name.to_string());
        }
    }

    /// Every label name the line has now, with its value.
    fn all<'a>(&'a self, stream: &'a [(&'a str, &'a str)]) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = stream
            .iter()
            .filter(|(k, _)| self.shows_stream_label(k))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        out.extend(self.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        out
    }

    fn set(&mut self, name: String, value: String) {
        self.hidden.retain(|h| *h != name);
        self.labels.insert(name, value);
    }

    /// Makes the outcome ready for the next line, keeping its buffers.
    fn reset(&mut self) {
        self.labels.clear();
        self.hidden.clear();
        self.line = None;
        self.sample = None;
        self.found = 0;
        self.stopped_at = 0;
    }

    /// Whether `message` starts as the line the outcome was made from, as far as the parser
    /// read it.
    fn decided_by_memo(&self, message: &[u8]) -> bool {
        !self.memo.is_empty()
            && message
                .get(..self.memo.len())
                .is_some_and(|start| crate::logql::short_eq::short_eq(start, &self.memo))
    }

    /// Keeps the start of `message` that decided this outcome, if the parser stopped early.
    fn remember(&mut self, message: &[u8], kept: bool) {
        self.memo.clear();
        if let Some(start) = message.get(..self.stopped_at).filter(|s| !s.is_empty()) {
            self.memo.extend_from_slice(start);
            self.memo_kept = kept;
        }
    }
}

/// Which labels a log metric's streams keep when a `sum by`/`sum without` above it only needs
/// those: lines are counted per group directly (the sum of the streams' counts is the group's
/// count), so a parser that extracts a label per request does not make a stream per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grouping {
    By(Vec<String>),
    Without(Vec<String>),
}

impl Grouping {
    pub fn keeps(&self, name: &str) -> bool {
        match self {
            Grouping::By(names) => names
                .iter()
                .any(|n| short_eq(n.as_bytes(), name.as_bytes())),
            Grouping::Without(names) => !names
                .iter()
                .any(|n| short_eq(n.as_bytes(), name.as_bytes())),
        }
    }
}

/// The stages after a selector's line filters.
#[derive(Debug, Clone, Default)]
pub struct Pipeline {
    pub stages: Vec<Stage>,
    /// The extracted labels anything downstream reads (label filters, a `sum by`): parsers
    /// extract only these. `None`: every label (a stream's labels are all shown).
    pub wanted: Option<Box<parsers::WantedSet>>,
}

impl Pipeline {
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty()
    }

    /// Whether a stage may give a line other text than it has on disk.
    pub fn rewrites_line(&self) -> bool {
        self.stages
            .iter()
            .any(|s| matches!(s, Stage::LineFormat(_) | Stage::Decolorize | Stage::Unpack))
    }

    /// Runs the stages on one line (at `ts` nanoseconds): `None` when a filter drops it, else
    /// what the stages made of it.
    pub fn run(&self, stream: &[(&str, &str)], message: &[u8], ts: i64) -> Option<Outcome> {
        let mut out = Outcome::default();
        self.run_into(stream, message, ts, &mut out).then_some(out)
    }

    /// As [`Pipeline::run`], into `out` (reused line after line, its buffers kept): whether the
    /// line is kept.
    ///
    /// Lines of a stream often start alike (`{"level":"info","status":200,…`). When the first
    /// stage is a parser that stops once it has every wanted label and the later stages read
    /// only those labels, the outcome is decided by the start of the line the parser read: a
    /// line that starts the same way as the previous one gets the previous outcome unchanged.
    pub fn run_into(
        &self,
        stream: &[(&str, &str)],
        message: &[u8],
        ts: i64,
        out: &mut Outcome,
    ) -> bool {
        let memo = self.wanted.as_deref().is_some_and(|w| w.decided_by_start);
        if memo && out.decided_by_memo(message) {
            return out.memo_kept;
        }
        let kept = self.run_stages(stream, message, ts, out);
        if memo {
            out.remember(message, kept);
        }
        kept
    }

    fn run_stages(
        &self,
        stream: &[(&str, &str)],
        message: &[u8],
        ts: i64,
        out: &mut Outcome,
    ) -> bool {
        out.reset();
        let out = &mut *out;
        let wanted = self.wanted.as_deref();
        for stage in &self.stages {
            // The line as the previous stages left it (moved out while a stage reads it).
            let line = out.line.take();
            let current = line.as_deref().unwrap_or(message);
            match stage {
                Stage::Json(None) => parsers::json(current, stream, wanted, out),
                Stage::Json(Some(fields)) => parsers::json_fields(current, stream, fields, out),
                Stage::Logfmt(options) => parsers::logfmt(current, stream, wanted, options, out),
                Stage::Unpack => parsers::unpack(current, stream, wanted, out),
                Stage::Regexp(re) => {
                    if let Some(captures) = re.captures(current) {
                        for name in re.capture_names().flatten() {
                            if let Some(m) = captures.name(name) {
                                parsers::add(out, stream, wanted, name, |v| {
                                    parsers::push_lossy(v, m.as_bytes())
                                });
                            }
                        }
                    }
                }
                Stage::Pattern(p) => {
                    let mut found = Vec::new();
                    p.captures(current, |name, value| found.push((name, value)));
                    for (name, value) in found {
                        parsers::add(out, stream, wanted, name, |v| parsers::push_lossy(v, value));
                    }
                }
                Stage::Filter(f) => {
                    if !f.keeps(stream, out) {
                        return false;
                    }
                }
                Stage::Line(f) => {
                    if !f.matches(current) {
                        return false;
                    }
                }
                Stage::LineFormat(t) => {
                    let rendered = render(t, out, stream, current, ts);
                    match rendered {
                        Ok(text) => out.line = Some(text.into_bytes()),
                        Err(_) => out.set_error(TEMPLATE_ERROR),
                    }
                }
                Stage::LabelFormat(rules) => label_format(rules, out, stream, current, ts),
                Stage::Drop(choices) => {
                    for (name, value) in out.all(stream) {
                        if choices.iter().any(|c| c.picks(&name, &value)) {
                            out.remove(&name, stream);
                        }
                    }
                }
                Stage::Keep(choices) => {
                    for (name, value) in out.all(stream) {
                        if !choices.iter().any(|c| c.picks(&name, &value)) {
                            out.remove(&name, stream);
                        }
                    }
                }
                Stage::Decolorize => out.line = Some(parsers::decolorize(current)),
                Stage::Unwrap(u) => {
                    let text = out.value(&u.label, stream).trim().to_string();
                    let value = match u.unit {
                        Unit::Number => text.parse::<f64>().ok(),
                        unit => read_number(&text, unit),
                    };
                    match value {
                        Some(v) => out.sample = Some(v),
                        None => out.set_error(SAMPLE_ERROR),
                    }
                    out.remove(&u.label, stream);
                }
            }
            if out.line.is_none() {
                out.line = line;
            }
        }
        true
    }

    /// Whether a stage reads the values of the stream labels `stream_labels` (filters on them,
    /// templates, renames, drop/keep, unwrap); parsers read only their names. When none does,
    /// the scan need not turn each line's stream fields into text.
    pub fn reads_stream_values(&self, stream_labels: &[&str]) -> bool {
        self.stages.iter().any(|stage| match stage {
            Stage::Filter(f) => {
                let mut names = std::collections::BTreeSet::new();
                f.names(&mut names);
                names.iter().any(|n| stream_labels.contains(&n.as_str()))
            }
            Stage::Json(_)
            | Stage::Logfmt(_)
            | Stage::Regexp(_)
            | Stage::Pattern(_)
            | Stage::Unpack
            | Stage::Line(_)
            | Stage::Decolorize => false,
            _ => true,
        })
    }

    /// The pipeline's `| unwrap`, if it has one.
    pub fn unwrap(&self) -> Option<&Unwrap> {
        self.stages.iter().find_map(|s| match s {
            Stage::Unwrap(u) => Some(u),
            _ => None,
        })
    }

    /// Whether the stream label `name` may be shown: no `drop`/`keep` stage takes it away by
    /// name alone (used where no line is at hand, e.g. listing streams).
    pub fn shows_stream_label(&self, name: &str) -> bool {
        self.stages.iter().all(|stage| match stage {
            Stage::Drop(choices) => !choices
                .iter()
                .any(|c| c.name == name && c.matcher.is_none()),
            Stage::Keep(choices) => choices.iter().any(|c| c.name == name),
            Stage::LabelFormat(rules) => !rules
                .iter()
                .any(|(_, source)| matches!(source, LabelSource::Rename(src) if src == name)),
            _ => true,
        })
    }

    /// Extract only what label filters and `labels` read (`labels` from a grouping such as
    /// `sum by (level)`): the rest of a line is skipped, not copied. Stages that read labels by
    /// template or rename them keep every label.
    pub fn want_only(&mut self, labels: &[String]) {
        let reads_any = self.stages.iter().any(|s| {
            matches!(
                s,
                Stage::LineFormat(_) | Stage::LabelFormat(_) | Stage::Keep(_) | Stage::Drop(_)
            )
        });
        if reads_any {
            self.wanted = None;
            return;
        }
        let mut wanted: std::collections::BTreeSet<String> = labels.iter().cloned().collect();
        wanted.insert("__error__".into());
        for stage in &self.stages {
            match stage {
                Stage::Filter(f) => f.names(&mut wanted),
                Stage::Unwrap(u) => {
                    wanted.insert(u.label.clone());
                }
                _ => {}
            }
        }
        let mut wanted = parsers::WantedSet::new(wanted);
        wanted.decided_by_start = self.decided_by_start();
        self.wanted = Some(Box::new(wanted));
    }

    /// Whether what the stages make of a line is decided by the part of it the first stage's
    /// parser reads: that parser is the only stage reading the line, and the later stages read
    /// only extracted labels (no stream label's value, no time).
    fn decided_by_start(&self) -> bool {
        let stream_names = [LogKind::Pod, LogKind::Node].map(|k| k.labels()).concat();
        let parser_first = match self.stages.first() {
            Some(Stage::Json(None)) => true,
            Some(Stage::Logfmt(options)) => options.fields.is_none(),
            _ => false,
        };
        let reads_labels_only = |stage: &Stage| match stage {
            Stage::Filter(f) => {
                let mut names = std::collections::BTreeSet::new();
                f.names(&mut names);
                names.iter().all(|n| !stream_names.contains(&n.as_str()))
            }
            Stage::Unwrap(u) => !stream_names.contains(&u.label.as_str()),
            _ => false,
        };
        parser_first && self.stages[1..].iter().all(reads_labels_only)
    }

    /// A literal every line the pipeline keeps contains (see [`LabelFilter::required_literal`]),
    /// from the filters before any stage that rewrites the line or its labels.
    pub fn required_literal(&self, stream_labels: &[&str]) -> Option<String> {
        for stage in &self.stages {
            match stage {
                Stage::Filter(f) => {
                    if let Some(literal) = f.required_literal(stream_labels) {
                        return Some(literal);
                    }
                }
                Stage::Json(_)
                | Stage::Logfmt(_)
                | Stage::Regexp(_)
                | Stage::Pattern(_)
                | Stage::Line(_) => {}
                _ => return None,
            }
        }
        None
    }
}

fn render(
    t: &Template,
    out: &Outcome,
    stream: &[(&str, &str)],
    line: &[u8],
    ts: i64,
) -> Result<String, String> {
    let label = |name: &str| out.value(name, stream).to_string();
    t.render(&Scope {
        label: &label,
        line,
        timestamp: ts,
    })
}

/// `label_format`: every rule reads the labels as they were before the stage.
fn label_format(
    rules: &[(String, LabelSource)],
    out: &mut Outcome,
    stream: &[(&str, &str)],
    line: &[u8],
    ts: i64,
) {
    let mut results = Vec::with_capacity(rules.len());
    for (_, source) in rules {
        let value = match source {
            LabelSource::Rename(src) => Ok(out.value(src, stream).to_string()),
            LabelSource::Template(t) => render(t, out, stream, line, ts),
        };
        results.push(value);
    }
    for ((dst, source), value) in rules.iter().zip(results) {
        match value {
            Ok(v) => {
                if let LabelSource::Rename(src) = source {
                    if src != dst {
                        out.remove(src, stream);
                    }
                }
                out.set(dst.clone(), v);
            }
            Err(_) => out.set_error(TEMPLATE_ERROR),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql_parser::label::MatchOp;

    const STREAM: &[(&str, &str)] = &[
        ("namespace", "shop"),
        ("pod", "web-1"),
        ("container", "app"),
    ];

    fn labels(pairs: &[(&str, &str)]) -> Extracted {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn run(stages: Vec<Stage>, line: &str) -> Option<Outcome> {
        Pipeline {
            stages,
            wanted: None,
        }
        .run(STREAM, line.as_bytes(), 0)
    }

    fn extracted(stages: Vec<Stage>, line: &str) -> Extracted {
        run(stages, line).map(|o| o.labels).unwrap_or_default()
    }

    /// Loki's json parser cases (pkg/logql/log/parser_test.go): same line, same labels.
    #[test]
    fn json_as_loki_extracts_it() {
        let json = || vec![Stage::Json(None)];
        assert_eq!(
            extracted(
                json(),
                r#"{"app":"foo","namespace":"prod","pod":{"uid":"1","deployment":{"ref":"foobar"}}}"#
            ),
            labels(&[
                ("app", "foo"),
                ("namespace_extracted", "prod"),
                ("pod_deployment_ref", "foobar"),
                ("pod_uid", "1"),
            ])
        );
        assert_eq!(
            extracted(json(), r#"{"counter":1, "price": {"_net_":5.56909}}"#),
            labels(&[("counter", "1"), ("price__net_", "5.56909")])
        );
        assert_eq!(
            extracted(
                json(),
                r#"{"counter":1,"foo":"foo\"bar", "price": {"_net_":5.56909}}"#
            ),
            labels(&[
                ("counter", "1"),
                ("foo", "foo\"bar"),
                ("price__net_", "5.56909")
            ])
        );
        assert_eq!(
            extracted(json(), r#"{"counter":1, "price": {"net_":["10","20"]}}"#),
            labels(&[("counter", "1")])
        );
        assert_eq!(
            extracted(json(), r#"{"cou-nter":1}"#),
            labels(&[("cou_nter", "1")])
        );
        assert_eq!(
            extracted(json(), "{n}"),
            labels(&[("__error__", JSON_ERROR)])
        );
        assert_eq!(
            extracted(
                json(),
                r#"{"level":"error","status":502,"ok":false,"took":null,"req":{"method":"GET","path":"/a"},"tags":["x"],"pod":"p2","a-b.c":1}"#
            ),
            labels(&[
                ("a_b_c", "1"),
                ("level", "error"),
                ("ok", "false"),
                ("pod_extracted", "p2"),
                ("req_method", "GET"),
                ("req_path", "/a"),
                ("status", "502"),
                ("took", ""),
            ])
        );
    }

    /// The byte skimmer agrees with a reference flattening made by serde_json on tricky lines,
    /// and refuses what is not one JSON object.
    #[test]
    fn json_skimmer_agrees_with_serde_json() {
        fn flatten(prefix: &str, v: &serde_json::Value, out: &mut Extracted) {
            if let serde_json::Value::Object(m) = v {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}_{k}")
                    };
                    let name = parsers::label_name(STREAM, &key).into_owned();
                    match v {
                        serde_json::Value::Object(_) => flatten(&key, v, out),
                        serde_json::Value::Array(_) => {}
                        serde_json::Value::String(s) => {
                            out.insert_if_absent(&name, s);
                        }
                        serde_json::Value::Null => {
                            out.insert_if_absent(&name, "");
                        }
                        other => {
                            out.insert_if_absent(&name, &other.to_string());
                        }
                    }
                }
            }
        }
        for line in [
            r#"{"a":"x\"}","b":{"c":[1,{"d":"]"}],"e":{"f":-15.25}},"g":true,"h":null}"#,
            r#"  {"k\u00e9y" : "v\n" , "n" : {"" : 1}}  "#,
            r#"{"arr":[[[]]],"s":"{[\"]}","t":false}"#,
            r#"{}"#,
        ]
        .into_iter()
        .map(str::to_string)
        // Thousands of keys, each an object: the labels' map past 64 of them.
        .chain([format!(
            "{{{}}}",
            (0..5000)
                .map(|i| format!(r#""k{i}":{{"n{}":{i},"s":"v{i}"}}"#, i % 70))
                .collect::<Vec<_>>()
                .join(",")
        )]) {
            let line = line.as_str();
            let mut want = Extracted::new();
            flatten("", &serde_json::from_str(line).unwrap(), &mut want);
            assert_eq!(extracted(vec![Stage::Json(None)], line), want, "{line}");
        }
        for bad in [
            r#"{"a":1"#,
            r#"{"a":1}x"#,
            r#"{"a" 1}"#,
            r#"["a"]"#,
            r#"{"a":"x}"#,
            r#"{"a":}"#,
            "",
        ] {
            assert_eq!(
                extracted(vec![Stage::Json(None)], bad)
                    .get("__error__")
                    .map(String::as_str),
                Some(JSON_ERROR),
                "{bad}"
            );
        }
        // Objects nest at most 128 deep where a label may come from them.
        let deep = format!("{}1{}", r#"{"a":"#.repeat(200), "}".repeat(200));
        assert_eq!(
            extracted(vec![Stage::Json(None)], &deep)
                .get("__error__")
                .map(String::as_str),
            Some(JSON_ERROR)
        );
    }

    /// `| json name="path"` (Loki's JSON expression parser cases).
    #[test]
    fn json_expressions_pick_paths() {
        let fields = |pairs: &[(&str, &str)]| {
            vec![Stage::Json(Some(
                pairs
                    .iter()
                    .map(|(n, p)| (n.to_string(), parsers::json_path(p).unwrap()))
                    .collect(),
            ))]
        };
        let line = r#"{"app":"foo","pod":{"uuid":"foo","deployment":{"ref":"foobar"}},"arr":[{"a":1},{"b":"two"}],"weird key":{"x.y":"z"}}"#;
        assert_eq!(
            extracted(
                fields(&[
                    ("app", "app"),
                    ("ref", "pod.deployment.ref"),
                    ("second", "arr[1].b"),
                    ("first", "arr[0]"),
                    ("odd", r#"["weird key"]["x.y"]"#),
                    ("missing", "nope.nothing"),
                ]),
                line
            ),
            labels(&[
                ("app", "foo"),
                ("first", r#"{"a":1}"#),
                ("missing", ""),
                ("odd", "z"),
                ("ref", "foobar"),
                ("second", "two"),
            ])
        );
        assert_eq!(
            extracted(fields(&[("pod", "pod.uuid")]), line),
            labels(&[("pod_extracted", "foo")])
        );
        assert_eq!(
            extracted(fields(&[("a", "a")]), "not json"),
            labels(&[("__error__", JSON_ERROR)])
        );
        assert!(parsers::json_path("a..b[").is_err());
    }

    /// Loki's logfmt parser cases.
    #[test]
    fn logfmt_as_loki_extracts_it() {
        let logfmt = |options: LogfmtOptions| vec![Stage::Logfmt(options)];
        let plain = || logfmt(LogfmtOptions::default());
        assert_eq!(
            extracted(plain(), "buzz=foo bar=buzz"),
            labels(&[("bar", "buzz"), ("buzz", "foo")])
        );
        assert_eq!(
            extracted(plain(), r#"foo="foo bar" foo.bar=buzz"#),
            labels(&[("foo", "foo bar"), ("foo_bar", "buzz")])
        );
        assert_eq!(
            extracted(plain(), r#"foo="foo\"bar""#),
            labels(&[("foo", "foo\"bar")])
        );
        assert_eq!(
            extracted(plain(), "pod=p2"),
            labels(&[("pod_extracted", "p2")])
        );
        assert_eq!(
            extracted(plain(), r#"foo="foo bar buzz=bar"#),
            labels(&[("__error__", LOGFMT_ERROR)])
        );
        assert_eq!(
            extracted(
                plain(),
                r#"level=info msg="hello \"you\"" took=1.5s flag status=200"#
            ),
            labels(&[
                ("level", "info"),
                ("msg", "hello \"you\""),
                ("status", "200"),
                ("took", "1.5s")
            ])
        );
        // --keep-empty keeps a key without a value; --strict stops at a stray `=`.
        let keep = logfmt(LogfmtOptions {
            keep_empty: true,
            ..Default::default()
        });
        assert_eq!(
            extracted(keep, "a=1 flag"),
            labels(&[("a", "1"), ("flag", "")])
        );
        assert_eq!(
            extracted(plain(), "a=1 =x b=2"),
            labels(&[("a", "1"), ("b", "2")])
        );
        let strict = logfmt(LogfmtOptions {
            strict: true,
            ..Default::default()
        });
        assert_eq!(
            extracted(strict, "a=1 =x b=2"),
            labels(&[("__error__", LOGFMT_ERROR), ("a", "1")])
        );
        let picked = logfmt(LogfmtOptions {
            fields: Some(vec![
                ("lvl".into(), "level".into()),
                ("gone".into(), "gone".into()),
            ]),
            ..Default::default()
        });
        assert_eq!(
            extracted(picked, "level=warn status=200"),
            labels(&[("gone", ""), ("lvl", "warn")])
        );
    }

    #[test]
    fn pattern_unpack_and_decolorize() {
        let pattern =
            Pattern::for_parser(r#"<ip> - - [<_>] "<method> <path> <_>" <status>"#).unwrap();
        assert_eq!(
            extracted(
                vec![Stage::Pattern(pattern)],
                r#"10.0.0.1 - - [19/May/2021:07:21:49 +0000] "GET /api HTTP/1.1" 200"#
            ),
            labels(&[
                ("ip", "10.0.0.1"),
                ("method", "GET"),
                ("path", "/api"),
                ("status", "200")
            ])
        );
        let packed = run(
            vec![Stage::Unpack],
            r#"{"_entry":"the line","app":"web","n":1,"pod":"p"}"#,
        )
        .unwrap();
        assert_eq!(
            packed.labels,
            labels(&[("app", "web"), ("pod_extracted", "p")])
        );
        assert_eq!(packed.line.as_deref(), Some(&b"the line"[..]));
        let unpacked = run(vec![Stage::Unpack], r#"{"app":"web"}"#).unwrap();
        assert_eq!((unpacked.labels.len(), unpacked.line), (0, None));
        let plain = run(
            vec![Stage::Decolorize],
            "\x1b[31mred\x1b[0m and \x1b[1;32mbold\x1b[m",
        )
        .unwrap();
        assert_eq!(plain.line.as_deref(), Some(&b"red and bold"[..]));
    }

    #[test]
    fn formats_rewrite_lines_and_labels() {
        let t = |s: &str| Template::parse(s).unwrap();
        let out = run(
            vec![
                Stage::Logfmt(LogfmtOptions::default()),
                Stage::LineFormat(t("{{.level | upper}} {{.pod}}: {{.msg}}")),
                Stage::Line(Box::new(LineFilter::Contains(
                    memchr::memmem::Finder::new("WARN").into_owned(),
                ))),
                Stage::LabelFormat(vec![
                    ("lvl".into(), LabelSource::Rename("level".into())),
                    (
                        "where".into(),
                        LabelSource::Template(t("{{.namespace}}/{{.pod}}")),
                    ),
                ]),
                Stage::Drop(vec![LabelChoice {
                    name: "msg".into(),
                    matcher: None,
                }]),
            ],
            "level=warn msg=slow",
        )
        .unwrap();
        assert_eq!(out.line.as_deref(), Some(&b"WARN web-1: slow"[..]));
        assert_eq!(
            out.labels,
            labels(&[("lvl", "warn"), ("where", "shop/web-1")])
        );
        // The filter after line_format reads the new line.
        assert!(run(
            vec![
                Stage::LineFormat(t("{{.pod}}")),
                Stage::Line(Box::new(LineFilter::Contains(
                    memchr::memmem::Finder::new("level").into_owned()
                ))),
            ],
            "level=warn",
        )
        .is_none());
        // drop/keep with matchers, on stream labels too.
        let out = run(
            vec![
                Stage::Logfmt(LogfmtOptions::default()),
                Stage::Keep(vec![
                    LabelChoice {
                        name: "namespace".into(),
                        matcher: None,
                    },
                    LabelChoice {
                        name: "level".into(),
                        matcher: Some(Matcher::new(MatchOp::Equal, "level", "error")),
                    },
                ]),
            ],
            "level=warn a=1",
        )
        .unwrap();
        assert!(out.labels.is_empty());
        assert_eq!(out.hidden, ["pod", "container"]);
        // A template that fails marks the line and keeps its text.
        let out = run(vec![Stage::LineFormat(t("{{ div 1 0 }}"))], "x").unwrap();
        assert_eq!(out.labels, labels(&[("__error__", TEMPLATE_ERROR)]));
        assert_eq!(out.line, None);
    }

    #[test]
    fn label_filters_compare_strings_numbers_durations_and_bytes() {
        let filter = |f: LabelFilter| Pipeline {
            stages: vec![Stage::Logfmt(LogfmtOptions::default()), Stage::Filter(f)],
            wanted: None,
        };
        let num = |name: &str, compare, value, unit| LabelFilter::Number {
            name: name.into(),
            compare,
            value,
            unit,
        };
        let line = b"level=error status=503 took=1.5s size=2MB";
        assert!(filter(num("status", Compare::Ge, 500.0, Unit::Number))
            .run(STREAM, line, 0)
            .is_some());
        assert!(filter(num("status", Compare::Lt, 500.0, Unit::Number))
            .run(STREAM, line, 0)
            .is_none());
        assert!(filter(num("took", Compare::Gt, 1.0, Unit::Duration))
            .run(STREAM, line, 0)
            .is_some());
        assert!(filter(num("size", Compare::Gt, 1e6, Unit::Bytes))
            .run(STREAM, line, 0)
            .is_some());
        let text = LabelFilter::Text(Matcher::new(MatchOp::Equal, "level", "error"));
        assert_eq!(
            filter(text.clone()).required_literal(&[]).as_deref(),
            Some("error")
        );
        // A filter on a stream label implies nothing about the line.
        let on_stream = LabelFilter::Text(Matcher::new(MatchOp::Equal, "pod", "web-1"));
        assert_eq!(filter(on_stream).required_literal(&["pod"]), None);
        assert!(filter(text).run(STREAM, line, 0).is_some());
        // A number that is none keeps the line, marked.
        let kept = filter(num("level", Compare::Gt, 1.0, Unit::Number)).run(STREAM, line, 0);
        assert_eq!(
            kept.and_then(|l| l.labels.get("__error__").cloned())
                .as_deref(),
            Some(LABEL_FILTER_ERROR)
        );
        assert_eq!(read_duration_seconds("1h2m3.5s"), Some(3723.5));
        assert_eq!(read_bytes("1.5KiB"), Some(1536.0));
    }

    /// A line that starts as the previous one, as far as the parser read, gets its outcome
    /// without being parsed: every outcome must be the one a fresh run gives.
    #[test]
    fn lines_starting_alike_get_the_outcome_a_fresh_run_gives() {
        let lines: &[&[u8]] = &[
            br#"{"level":"info","status":200,"msg":"a"}"#,
            br#"{"level":"info","status":200,"msg":"b"}"#,
            br#"{"level":"info","status":2000,"msg":"c"}"#,
            br#"{"level":"info","status":200}"#,
            br#"{"level":"info","status":200"#,
            br#"{"level":"info","status":200,"msg":"d"}"#,
            br#"{"level":"info","status":"200"}"#,
            br#"{"level":"info","status":503,"msg":"e"}"#,
            br#"{"level":"info","status":503,"msg":"e"}"#,
            br#"{"level":"info"}"#,
            br#"{"level":"info""#,
            b"level=info status=200 msg=a",
            b"level=info status=200 msg=b",
            b"level=info status=2000 msg=c",
            b"level=info status=200",
            b"level=info status=2000",
            b"level=info status=200 msg=d",
            b"level=info status=\"503\" msg=e",
            b"level=info status=\"503\"x msg=e",
            b"level=info status=503 msg=f",
            b"level=info status=503 msg=f",
            b"level=info",
            b"level=info took=2s",
        ];
        let status_at_least = |parser: Stage, unwrap: bool| {
            let mut stages = vec![
                parser,
                Stage::Filter(LabelFilter::Number {
                    name: "status".into(),
                    compare: Compare::Ge,
                    value: 500.0,
                    unit: Unit::Number,
                }),
            ];
            if unwrap {
                stages.push(Stage::Unwrap(Unwrap {
                    label: "status".into(),
                    unit: Unit::Number,
                }));
            }
            stages
        };
        let pipelines = [
            (vec![Stage::Json(None)], vec!["level"]),
            (vec![Stage::Json(None)], vec!["level", "status"]),
            (status_at_least(Stage::Json(None), false), vec!["level"]),
            (status_at_least(Stage::Json(None), true), vec![]),
            (vec![Stage::Logfmt(LogfmtOptions::default())], vec!["level"]),
            (
                status_at_least(Stage::Logfmt(LogfmtOptions::default()), false),
                vec![],
            ),
            (
                status_at_least(Stage::Logfmt(LogfmtOptions::default()), true),
                vec!["level"],
            ),
            (
                vec![Stage::Logfmt(LogfmtOptions {
                    strict: true,
                    keep_empty: true,
                    fields: None,
                })],
                vec!["level", "status"],
            ),
        ];
        for (stages, grouping) in pipelines {
            let mut pipeline = Pipeline {
                stages,
                wanted: None,
            };
            let grouping: Vec<String> = grouping.into_iter().map(String::from).collect();
            pipeline.want_only(&grouping);
            assert!(pipeline.decided_by_start(), "{:?}", pipeline.stages);
            let mut reused = Outcome::default();
            // Twice over, so that every line also follows every other one.
            for line in lines.iter().chain(lines.iter().rev()) {
                let kept = pipeline.run_into(STREAM, line, 0, &mut reused);
                let fresh = pipeline.run(STREAM, line, 0);
                let text = String::from_utf8_lossy(line);
                assert_eq!(kept, fresh.is_some(), "{text} {:?}", pipeline.stages);
                if let Some(fresh) = fresh {
                    assert_eq!(reused.labels, fresh.labels, "{text}");
                    assert_eq!(
                        reused.sample.map(f64::to_bits),
                        fresh.sample.map(f64::to_bits),
                        "{text}"
                    );
                    assert_eq!(reused.hidden, fresh.hidden, "{text}");
                }
            }
        }
        // A stage that reads more than the extracted labels turns it off.
        let mut reads_stream = Pipeline {
            stages: vec![
                Stage::Json(None),
                Stage::Filter(LabelFilter::Text(Matcher::new(MatchOp::Equal, "pod", "x"))),
            ],
            wanted: None,
        };
        reads_stream.want_only(&[]);
        assert!(!reads_stream.decided_by_start());
    }
}
