//! Rule files: Prometheus's `groups:` format (what Loki's ruler reads too) and Venti's
//! `kind: AlertRuleFile` (the same groups, with `commonLabels` added to every rule). Reading a
//! file checks everything that can be checked without evaluating: names, durations, label
//! names, templates and expressions, and reports every problem with the file, group, rule and
//! line, as `promtool check rules` does.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::expr::RuleExpr;
use super::template::RuleTemplate;

/// The largest rule file read (a file is held whole while it is checked).
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// One problem in a rule file, located as precisely as the file allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    /// 1-based line of the rule (or of a YAML error); 0 when unknown.
    pub line: usize,
    pub group: Option<String>,
    /// 1-based index of the rule in its group, and its name.
    pub rule: Option<(usize, String)>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        write!(f, ":")?;
        if let Some(group) = &self.group {
            write!(f, " group {group:?},")?;
        }
        if let Some((index, name)) = &self.rule {
            write!(f, " rule {index}, {name:?}:")?;
        }
        write!(f, " {}", self.message)
    }
}

/// A rule file as written, before checks.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    /// Venti's marker: `AlertRuleFile`.
    kind: Option<String>,
    #[serde(rename = "commonLabels")]
    common_labels: Option<BTreeMap<String, String>>,
    /// Venti's datasource choice: Janus is both datasources, so it is read and not needed.
    #[serde(rename = "datasourceSelector")]
    #[allow(dead_code)]
    datasource_selector: Option<serde_norway::Value>,
    #[serde(default)]
    groups: Vec<RawGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: String,
    interval: Option<String>,
    query_offset: Option<String>,
    #[serde(default)]
    limit: i64,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    record: Option<String>,
    alert: Option<String>,
    expr: Option<String>,
    #[serde(rename = "for")]
    for_: Option<String>,
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Whether a rule alerts or records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleKind {
    Alert,
    Record,
}

/// A checked rule, ready to evaluate.
#[derive(Debug, Clone)]
pub struct RuleSpec {
    pub kind: RuleKind,
    pub name: String,
    pub expr: RuleExpr,
    pub for_: Duration,
    pub keep_firing_for: Duration,
    /// Rule labels with the group's and the file's common labels under them.
    pub labels: BTreeMap<String, String>,
    pub label_templates: Vec<(String, RuleTemplate)>,
    pub annotations: BTreeMap<String, String>,
    pub annotation_templates: Vec<(String, RuleTemplate)>,
    pub line: usize,
}

/// A checked group.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    pub name: String,
    pub file: String,
    /// `None`: the global evaluation interval.
    pub interval: Option<Duration>,
    pub query_offset: Duration,
    /// Most alerts (or series) a rule may make; 0: no limit.
    pub limit: usize,
    pub rules: Vec<RuleSpec>,
}

/// A checked file.
#[derive(Debug, Clone)]
pub struct RuleFile {
    pub path: String,
    pub groups: Vec<GroupSpec>,
    /// Venti's `kind: AlertRuleFile`.
    pub venti: bool,
}

/// Reads and checks one file: every problem, or the file.
pub fn load(path: &Path) -> Result<RuleFile, Vec<Problem>> {
    let name = path.display().to_string();
    let problem = |message: String| Problem {
        file: name.clone(),
        line: 0,
        group: None,
        rule: None,
        message,
    };
    let text = match read_bounded(path) {
        Ok(text) => text,
        Err(e) => return Err(vec![problem(e)]),
    };
    parse(&name, &text)
}

fn read_bounded(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read: {e}"))?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    Ok(text)
}

/// Checks a file's text (`name` is how problems name it).
pub fn parse(name: &str, text: &str) -> Result<RuleFile, Vec<Problem>> {
    let raw: RawFile = match serde_norway::from_str(text) {
        Ok(raw) => raw,
        // An empty file holds no groups, as in Prometheus.
        Err(_) if text.trim().is_empty() => RawFile {
            kind: None,
            common_labels: None,
            datasource_selector: None,
            groups: Vec::new(),
        },
        Err(e) => {
            return Err(vec![Problem {
                file: name.to_string(),
                line: e.location().map_or(0, |l| l.line()),
                group: None,
                rule: None,
                message: one_line(&e.to_string()),
            }])
        }
    };
    let mut problems = Vec::new();
    let venti = match raw.kind.as_deref() {
        None => false,
        Some("AlertRuleFile") => true,
        Some(other) => {
            problems.push(Problem {
                file: name.to_string(),
                line: 0,
                group: None,
                rule: None,
                message: format!("kind {other:?} is not a rule file (Venti's is AlertRuleFile)"),
            });
            false
        }
    };
    let common = raw.common_labels.unwrap_or_default();
    let mut lines = rule_lines(text).into_iter();
    let mut seen_groups = HashSet::new();
    let mut groups = Vec::new();
    for g in raw.groups {
        let group_problem = |message: String| Problem {
            file: name.to_string(),
            line: 0,
            group: Some(g.name.clone()),
            rule: None,
            message,
        };
        if g.name.is_empty() {
            problems.push(group_problem("group name must not be empty".into()));
        }
        if !seen_groups.insert(g.name.clone()) {
            problems.push(group_problem("repeated in the same file".into()));
        }
        let interval = match g.interval.as_deref().map(parse_duration) {
            Some(Ok(d)) if d.is_zero() => {
                problems.push(group_problem("interval must be greater than 0".into()));
                None
            }
            Some(Ok(d)) => Some(d),
            Some(Err(e)) => {
                problems.push(group_problem(format!("interval: {e}")));
                None
            }
            None => None,
        };
        let query_offset = match g.query_offset.as_deref().map(parse_duration) {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                problems.push(group_problem(format!("query_offset: {e}")));
                Duration::ZERO
            }
            None => Duration::ZERO,
        };
        if g.limit < 0 {
            problems.push(group_problem("limit must not be negative".into()));
        }
        for key in g.labels.keys() {
            if !valid_label_name(key) {
                problems.push(group_problem(format!("invalid label name: {key}")));
            }
        }
        if g.rules.is_empty() {
            // Allowed (Prometheus keeps such a group), nothing to check.
        }
        let mut rules = Vec::new();
        for (i, r) in g.rules.into_iter().enumerate() {
            let line = lines.next().unwrap_or(0);
            let mut base = common.clone();
            base.extend(g.labels.clone());
            match check_rule(r, base, line) {
                Ok(rule) => rules.push(rule),
                Err((rule_name, messages)) => {
                    problems.extend(messages.into_iter().map(|message| Problem {
                        file: name.to_string(),
                        line,
                        group: Some(g.name.clone()),
                        rule: Some((i + 1, rule_name.clone())),
                        message,
                    }))
                }
            }
        }
        groups.push(GroupSpec {
            name: g.name,
            file: name.to_string(),
            interval,
            query_offset,
            limit: usize::try_from(g.limit.max(0)).unwrap_or(usize::MAX),
            rules,
        });
    }
    if problems.is_empty() {
        Ok(RuleFile {
            path: name.to_string(),
            groups,
            venti,
        })
    } else {
        Err(problems)
    }
}

fn check_rule(
    r: RawRule,
    mut labels: BTreeMap<String, String>,
    line: usize,
) -> Result<RuleSpec, (String, Vec<String>)> {
    let mut problems = Vec::new();
    let (kind, name) = match (r.alert, r.record) {
        (Some(a), None) => (RuleKind::Alert, a),
        (None, Some(r)) => (RuleKind::Record, r),
        (Some(a), Some(_)) => {
            problems.push("only one of 'record' and 'alert' must be set".into());
            (RuleKind::Alert, a)
        }
        (None, None) => {
            problems.push("one of 'record' or 'alert' must be set".into());
            (RuleKind::Alert, String::new())
        }
    };
    if name.is_empty() && problems.is_empty() {
        problems.push(format!(
            "{} name must not be empty",
            if kind == RuleKind::Alert {
                "alert"
            } else {
                "record"
            }
        ));
    }
    if kind == RuleKind::Record {
        if !valid_metric_name(&name) {
            problems.push(format!("invalid recording rule name: {name}"));
        }
        if r.for_.is_some() {
            problems.push("invalid field 'for' in recording rule".into());
        }
        if r.keep_firing_for.is_some() {
            problems.push("invalid field 'keep_firing_for' in recording rule".into());
        }
        if !r.annotations.is_empty() {
            problems.push("invalid field 'annotations' in recording rule".into());
        }
    }
    let duration = |field: &str, text: Option<String>, problems: &mut Vec<String>| match text
        .as_deref()
        .map(parse_duration)
    {
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            problems.push(format!("{field}: {e}"));
            Duration::ZERO
        }
        None => Duration::ZERO,
    };
    let for_ = duration("for", r.for_, &mut problems);
    let keep_firing_for = duration("keep_firing_for", r.keep_firing_for, &mut problems);
    let expr = match r.expr.as_deref().map(str::trim) {
        None | Some("") => {
            problems.push("field 'expr' must be set in rule".into());
            None
        }
        Some(text) => match RuleExpr::compile(text) {
            Ok(e) => Some(e),
            Err(e) => {
                problems.push(format!("could not parse expression: {e}"));
                None
            }
        },
    };
    for key in r.labels.keys().chain(r.annotations.keys()) {
        if !valid_label_name(key) {
            problems.push(format!("invalid label name: {key}"));
        }
    }
    if kind == RuleKind::Alert && r.labels.contains_key("alertname") {
        // Prometheus lets a rule label override alertname; it is worth no error.
    }
    labels.extend(r.labels);
    let mut templates = |map: &BTreeMap<String, String>, what: &str| {
        let mut out = Vec::new();
        for (key, text) in map {
            if !text.contains("{{") {
                continue;
            }
            match RuleTemplate::parse(text) {
                Ok(t) => out.push((key.clone(), t)),
                Err(e) => problems.push(format!("{what} {key:?}: template: {e}")),
            }
        }
        out
    };
    let label_templates = templates(&labels, "label");
    let annotation_templates = templates(&r.annotations, "annotation");
    match expr {
        Some(expr) if problems.is_empty() => Ok(RuleSpec {
            kind,
            name,
            expr,
            for_,
            keep_firing_for,
            labels,
            label_templates,
            annotations: r.annotations,
            annotation_templates,
            line,
        }),
        _ => Err((name, problems)),
    }
}

/// The line of each `alert:`/`record:` key, in file order: a rule's position for its problems
/// (the parsed YAML keeps no positions).
fn rule_lines(text: &str) -> Vec<usize> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| {
            let t = l.trim_start().trim_start_matches("- ").trim_start();
            t.starts_with("alert:") || t.starts_with("record:")
        })
        .map(|(i, _)| i + 1)
        .collect()
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::time::duration::parse(text).map_err(|e| e.to_string())
}

fn one_line(text: &str) -> String {
    text.lines().next().unwrap_or("").to_string()
}

/// Prometheus's label name rule.
pub fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Prometheus's metric name rule (colons allowed).
pub fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let text = "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: rate(x[5m]\n  - record: 'bad name'\n    expr: up\n  - alert: B\n    expr: up\n    for: 5 minutes\n";
        let problems = parse("f.yml", text).unwrap_err();
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 3, "{shown:#?}");
        assert!(
            shown[0].starts_with("f.yml:4: group \"g\", rule 1, \"A\": could not parse expression"),
            "{shown:#?}"
        );
        assert!(
            shown[1].starts_with(
                "f.yml:6: group \"g\", rule 2, \"bad name\": invalid recording rule name"
            ),
            "{shown:#?}"
        );
        assert!(
            shown[2].starts_with("f.yml:8: group \"g\", rule 3, \"B\": for:"),
            "{shown:#?}"
        );
    }

    #[test]
    fn venti_files_add_their_common_labels() {
        let text = "kind: AlertRuleFile\ncommonLabels:\n  rulefile: sample\n  severity: silence\ndatasourceSelector:\n  type: prometheus\ngroups:\n- name: sample\n  rules:\n  - alert: AlwaysOn\n    expr: vector(1234)\n    for: 0m\n    labels:\n      severity: page\n    annotations:\n      summary: \"value={{ $value }}\"\n";
        let file = parse("venti.yml", text).unwrap();
        assert!(file.venti);
        let rule = &file.groups[0].rules[0];
        assert_eq!(rule.labels["rulefile"], "sample");
        // The rule's own label wins over the common one.
        assert_eq!(rule.labels["severity"], "page");
        assert_eq!(rule.annotation_templates.len(), 1);
    }

    #[test]
    fn unknown_fields_and_bad_yaml_are_located() {
        let problems = parse("f.yml", "groups:\n- name: g\n  rulez: []\n").unwrap_err();
        assert_eq!(problems[0].line, 3, "{problems:?}");
        assert!(problems[0].message.contains("rulez"), "{problems:?}");
        let problems = parse("f.yml", "groups: [\n").unwrap_err();
        assert!(problems[0].line > 0, "{problems:?}");
    }
}
