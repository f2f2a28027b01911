//! LetheQL: a `pod{…}` / `node{…}` selector, an optional `[range]`, and a line-filter pipeline.
//!
//! `promql-parser` cannot lex `|=`, and reads `pod{…} != "x"` as a comparison, so the pipeline is
//! split off with our own tokenizer and only the selector goes through `promql-parser`. Every
//! refusal names a `line:column` and says what would be right.

use std::time::Duration;

use memchr::memmem;
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::Expr;

use super::lexer::{first_log_selector, position, tokenize, unquote, Kind, Token, LOG_SELECTORS};
use super::SyntaxError;
use crate::time::duration;

/// Which log tree a selector reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LogKind {
    Pod,
    Node,
}

impl LogKind {
    pub fn name(self) -> &'static str {
        match self {
            LogKind::Pod => "pod",
            LogKind::Node => "node",
        }
    }

    /// Label names in the order of the line's bracket fields; the first is the target.
    pub fn labels(self) -> &'static [&'static str] {
        match self {
            LogKind::Pod => &["namespace", "pod", "container"],
            LogKind::Node => &["node", "process"],
        }
    }

    pub fn target_label(self) -> &'static str {
        self.labels()[0]
    }

    fn from_name(name: &str) -> Option<Self> {
        match name {
            "pod" => Some(LogKind::Pod),
            "node" => Some(LogKind::Node),
            _ => None,
        }
    }
}

/// A label matcher on one bracket field (`field` indexes [`LogKind::labels`]).
#[derive(Debug, Clone)]
pub struct FieldMatcher {
    pub field: usize,
    pub matcher: Matcher,
}

impl FieldMatcher {
    pub fn matches(&self, value: &str) -> bool {
        self.matcher.is_match(value)
    }

    /// The label value when the matcher is an equality (used to label `absent` answers).
    pub fn equal_value(&self) -> Option<&str> {
        matches!(self.matcher.op, MatchOp::Equal).then_some(self.matcher.value.as_str())
    }
}

/// One stage of the pipeline.
#[derive(Debug, Clone)]
pub enum LineFilter {
    Contains(memmem::Finder<'static>),
    NotContains(memmem::Finder<'static>),
    /// `|= "a" or "b"`: any of them.
    ContainsAny(Vec<memmem::Finder<'static>>),
    /// `!= "a" or "b"`: none of them.
    ContainsNone(Vec<memmem::Finder<'static>>),
    Matches(regex::bytes::Regex),
    NotMatches(regex::bytes::Regex),
    /// `|> "<_> error <_>"` (or several `or`-ed): the line matches one of the patterns.
    Pattern(Vec<super::pattern::Pattern>),
    /// `!> "…"`: the line matches none.
    NotPattern(Vec<super::pattern::Pattern>),
}

impl LineFilter {
    pub fn matches(&self, message: &[u8]) -> bool {
        match self {
            LineFilter::Contains(f) => f.find(message).is_some(),
            LineFilter::NotContains(f) => f.find(message).is_none(),
            LineFilter::ContainsAny(fs) => fs.iter().any(|f| f.find(message).is_some()),
            LineFilter::ContainsNone(fs) => fs.iter().all(|f| f.find(message).is_none()),
            LineFilter::Matches(re) => re.is_match(message),
            LineFilter::NotMatches(re) => !re.is_match(message),
            LineFilter::Pattern(ps) => ps.iter().any(|p| p.test(message)),
            LineFilter::NotPattern(ps) => !ps.iter().any(|p| p.test(message)),
        }
    }

    /// Rough cost rank: all filters must pass, so running cheap ones first keeps the meaning.
    fn cost(&self) -> u8 {
        match self {
            LineFilter::Contains(_) => 0,
            LineFilter::NotContains(_)
            | LineFilter::ContainsAny(_)
            | LineFilter::ContainsNone(_) => 1,
            LineFilter::Matches(_)
            | LineFilter::NotMatches(_)
            | LineFilter::Pattern(_)
            | LineFilter::NotPattern(_) => 2,
        }
    }
}

/// A parsed log selector with its pipeline.
#[derive(Debug, Clone)]
pub struct LogQuery {
    pub kind: LogKind,
    /// Matchers on the target label (the directory name); at least one.
    pub targets: Vec<Matcher>,
    /// Matchers on the other bracket fields.
    pub fields: Vec<FieldMatcher>,
    /// In the order written.
    pub filters: Vec<LineFilter>,
    /// LogQL stages after the line filters: parsers and label filters.
    pub pipeline: super::pipeline::Pipeline,
    pub range: Option<Duration>,
    /// `by (…)`/`without (…)` written after an unwrapped range aggregation
    /// (`avg_over_time({…} | unwrap took [5m]) by (path)`): the samples of a group's series are
    /// aggregated together.
    pub sample_grouping: Option<super::pipeline::Grouping>,
}

impl LogQuery {
    /// Filters in the order the scanner runs them: cheapest first.
    pub fn filters_by_cost(&self) -> Vec<LineFilter> {
        let mut filters = self.filters.clone();
        filters.sort_by_key(LineFilter::cost);
        filters
    }

    pub fn target_matches(&self, name: &str) -> bool {
        self.targets.iter().all(|m| m.is_match(name))
    }
}

pub(super) fn parse_error(query: &str, offset: usize, message: impl AsRef<str>) -> SyntaxError {
    SyntaxError(format!(
        "{}: parse error: {}",
        position(query, offset),
        message.as_ref()
    ))
}

/// Parses a whole query as LetheQL. Callers route here only queries that involve logs.
pub fn parse_log_query(query: &str) -> Result<LogQuery, SyntaxError> {
    parse_log_query_within(query, super::regex_budget::MAX_REGEX_BYTES)
}

/// As [`parse_log_query`], its regexes within `regex_budget` bytes: a request with several log
/// queries (`match[]`) gives each its part of one budget.
pub fn parse_log_query_within(query: &str, regex_budget: usize) -> Result<LogQuery, SyntaxError> {
    let tokens = tokenize(query);
    if let Some(t) = tokens.iter().find(|t| t.kind == Kind::Unterminated) {
        return Err(parse_error(query, t.start, "unterminated quoted string"));
    }
    super::lexer::refuse_too_many(query, &tokens)?;
    super::regex_budget::check_within(query, &tokens, regex_budget)?;
    let regex_limit = super::regex_budget::share_of(regex_budget, query, &tokens);
    let text = |t: &Token| &query[t.start..t.end];
    let Some(first) = tokens.first() else {
        return Err(parse_error(query, 0, "no expression found in input"));
    };
    let starts_selector = first.kind == Kind::Ident
        && LOG_SELECTORS.contains(&text(first))
        && tokens.get(1).is_some_and(|t| t.kind == Kind::LBrace);
    if !starts_selector {
        return Err(not_a_log_query(query, &tokens));
    }
    let kind = LogKind::from_name(text(first)).unwrap_or(LogKind::Pod);

    // The selector: up to the brace that closes the first one.
    let Some(close) = closing_brace(&tokens, 1) else {
        return Err(parse_error(
            query,
            tokens[1].start,
            "unclosed left brace in log selector",
        ));
    };
    let selector_text = &query[first.start..tokens[close].end];
    let (kind, targets, fields) = selector_matchers(
        query,
        first.start,
        selector_text,
        Some(kind),
        &tokens[..=close],
    )?;

    // After the selector: filters, and one optional range before or after them.
    let mut filters = Vec::new();
    let mut range = None;
    let mut i = close + 1;
    while i < tokens.len() {
        let t = &tokens[i];
        match (t.kind.clone(), text(t)) {
            (Kind::Op, op @ ("|=" | "!=" | "|~" | "!~")) => {
                let operand = tokens.get(i + 1);
                let literal = match operand {
                    Some(o) if o.kind == Kind::Str => text(o),
                    Some(o) => {
                        return Err(parse_error(
                            query,
                            o.start,
                            format!("line filter {op} needs a string literal, found {:?}", text(o)),
                        ))
                    }
                    None => {
                        return Err(parse_error(
                            query,
                            t.end,
                            format!("line filter {op} needs a string literal, found end of input"),
                        ))
                    }
                };
                let value = unquote(literal)
                    .map_err(|e| parse_error(query, tokens[i + 1].start, e))?;
                let (values, next) = alternatives(query, &tokens, i + 2, value)?;
                filters.push(line_filter(query, tokens[i + 1].start, op, &values, regex_limit)?);
                i = next;
            }
            (Kind::LBracket, _) if range.is_none() => {
                let (d, next) = range_at(query, &tokens, i)?;
                range = Some(d);
                i = next;
                // A range closes the log selector expression: nothing may follow it.
                if let Some(t) = tokens.get(i) {
                    return Err(parse_error(
                        query,
                        t.start,
                        format!("unexpected {:?} after the range; the range ends a log query", text(t)),
                    ));
                }
            }
            _ => {
                return Err(parse_error(
                    query,
                    t.start,
                    format!(
                        "unexpected {:?} after the log selector; expected a line filter (|=, !=, |~, !~ followed by a string) or a range like [5m]. Functions and operators over logs are not supported yet",
                        text(t)
                    ),
                ))
            }
        }
    }
    Ok(LogQuery {
        kind,
        targets,
        fields,
        filters,
        pipeline: super::pipeline::Pipeline::default(),
        range,
        sample_grouping: None,
    })
}

/// The index of the `}` closing the `{` at `open`.
fn closing_brace(tokens: &[Token], open: usize) -> Option<usize> {
    let mut depth = 0;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        match t.kind {
            Kind::LBrace => depth += 1,
            Kind::RBrace => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

/// A log selector with its pipeline inside a larger expression (`rate(pod{…} |= "x" [5m])`):
/// parses from the selector name at token `at` through the last line filter, and returns the
/// index of the first token after them. The range stays with the surrounding PromQL.
pub fn parse_embedded(
    query: &str,
    tokens: &[Token],
    at: usize,
) -> Result<(LogQuery, usize), SyntaxError> {
    use super::parse_stages::{stage_at, unknown_stage};
    let text = |t: &Token| &query[t.start..t.end];
    let first = &tokens[at];
    // `pod{…}`/`node{…}` (LetheQL) name their kind; a LogQL `{…}` is read from its labels.
    let (named, open) = if first.kind == Kind::LBrace {
        (None, at)
    } else {
        (
            Some(LogKind::from_name(text(first)).unwrap_or(LogKind::Pod)),
            at + 1,
        )
    };
    let Some(close) = closing_brace(tokens, open) else {
        return Err(parse_error(
            query,
            first.start,
            "unclosed left brace in log selector",
        ));
    };
    let selector_text = &query[first.start..tokens[close].end];
    let (kind, targets, fields) = selector_matchers(
        query,
        first.start,
        selector_text,
        named,
        &tokens[at..=close],
    )?;
    let mut filters = Vec::new();
    let regex_limit = super::regex_budget::share(query, tokens);
    let mut pipeline = super::pipeline::Pipeline::default();
    let mut i = close + 1;
    while let Some(t) = tokens.get(i) {
        if let Some(next) = stage_at(query, tokens, i, &mut pipeline, regex_limit)? {
            i = next;
            continue;
        }
        unknown_stage(query, tokens, i)?;
        // `|>` and `!>` come as two tokens, written together.
        let pattern_filter = matches!(text(t), "|" | "!")
            && tokens
                .get(i + 1)
                .is_some_and(|n| text(n) == ">" && n.start == t.end);
        let (op, operand_at) = if pattern_filter {
            (&query[t.start..t.end + 1], i + 2)
        } else {
            (text(t), i + 1)
        };
        if t.kind != Kind::Op || !matches!(op, "|=" | "!=" | "|~" | "!~" | "|>" | "!>") {
            break;
        }
        let Some(operand) = tokens.get(operand_at) else {
            return Err(parse_error(
                query,
                t.end,
                format!("line filter {op} needs a string literal, found end of input"),
            ));
        };
        if operand.kind != Kind::Str {
            // `!=` before something else is PromQL's comparison, not a line filter.
            if op == "!=" {
                break;
            }
            return Err(parse_error(
                query,
                operand.start,
                format!(
                    "line filter {op} needs a string literal, found {:?}",
                    text(operand)
                ),
            ));
        }
        let value = unquote(text(operand)).map_err(|e| parse_error(query, operand.start, e))?;
        let (values, next) = alternatives(query, tokens, operand_at + 1, value)?;
        let filter = line_filter(query, operand.start, op, &values, regex_limit)?;
        // After a stage that rewrites the line, a filter reads the rewritten line.
        if pipeline.rewrites_line() {
            pipeline
                .stages
                .push(super::pipeline::Stage::Line(Box::new(filter)));
        } else {
            filters.push(filter);
        }
        i = next;
    }
    Ok((
        LogQuery {
            kind,
            targets,
            fields,
            // A label filter's required literal is a line filter too: the scan skips the
            // lines without it before anything is parsed.
            filters: {
                let mut filters = filters;
                if let Some(literal) = pipeline.required_literal(kind.labels()) {
                    filters.push(LineFilter::Contains(
                        memmem::Finder::new(literal.as_bytes()).into_owned(),
                    ));
                }
                filters
            },
            pipeline,
            range: None,
            sample_grouping: None,
        },
        i,
    ))
}

/// The error for a query that involves logs but does not start with a log selector.
fn not_a_log_query(query: &str, tokens: &[Token]) -> SyntaxError {
    let text = |t: &Token| &query[t.start..t.end];
    if let Some(t) = first_log_selector(query, tokens) {
        return parse_error(
            query,
            t.start,
            format!(
                "{}{{…}} must be the whole query: functions and operators over log selectors are not supported yet",
                text(t)
            ),
        );
    }
    let filter = tokens
        .iter()
        .find(|t| t.kind == Kind::Op && matches!(text(t), "|=" | "|~"));
    let (offset, op) = filter.map_or((0, "|="), |t| (t.start, text(t)));
    parse_error(
        query,
        offset,
        format!("line filter {op} must follow a log selector: pod{{namespace=\"…\"}} or node{{node=\"…\"}}"),
    )
}

/// The kind a LogQL stream selector reads: named by `job="pod"`/`job="node"` (as Lethe accepts),
/// else told by its labels (`namespace`, `pod`, `container` → pod logs; `node`, `process` → node
/// logs).
fn stream_kind(query: &str, offset: usize, matchers: &[Matcher]) -> Result<LogKind, SyntaxError> {
    let job = matchers.iter().find(|m| m.name == "job");
    if let Some(job) = job {
        return match (&job.op, job.value.as_str()) {
            (MatchOp::Equal, "pod") => Ok(LogKind::Pod),
            (MatchOp::Equal, "node") => Ok(LogKind::Node),
            _ => Err(parse_error(
                query,
                offset,
                format!(
                    "job {:?} names no log kind: use job=\"pod\" or job=\"node\", or leave job out",
                    job.value
                ),
            )),
        };
    }
    let names = |kind: LogKind| {
        matchers
            .iter()
            .any(|m| kind.labels().contains(&m.name.as_str()))
    };
    match (names(LogKind::Pod), names(LogKind::Node)) {
        (true, false) => Ok(LogKind::Pod),
        (false, true) => Ok(LogKind::Node),
        (true, true) => Err(parse_error(
            query,
            offset,
            "a stream selector reads pod logs (namespace, pod, container) or node logs (node, process), not both",
        )),
        (false, false) => Err(parse_error(
            query,
            offset,
            "a stream selector must name a target: namespace (pod logs, e.g. {namespace=\"shop\"}) or node (node logs, e.g. {node=\"n1\"})",
        )),
    }
}

/// The selector's kind, target matchers and field matchers; `named` is the kind a LetheQL
/// selector names, `None` for a LogQL `{…}`.
fn selector_matchers(
    query: &str,
    offset: usize,
    selector: &str,
    named: Option<LogKind>,
    tokens: &[Token],
) -> Result<(LogKind, Vec<Matcher>, Vec<FieldMatcher>), SyntaxError> {
    let expr =
        promql_parser::parser::parse(selector).map_err(|e| parse_error(query, offset, e.trim()))?;
    let Expr::VectorSelector(vs) = expr else {
        return Err(parse_error(query, offset, "expected a log selector"));
    };
    let kind = match named {
        Some(kind) => kind,
        None => stream_kind(query, offset, &vs.matchers.matchers)?,
    };
    if !vs.matchers.or_matchers.is_empty() {
        return Err(parse_error(
            query,
            offset,
            "\"or\" between matchers is not supported in log selectors",
        ));
    }
    // Where a label name stands in the query, for messages that point at it.
    let label_offset = |name: &str| {
        tokens
            .windows(2)
            .find(|w| {
                w[0].kind == Kind::Ident
                    && &query[w[0].start..w[0].end] == name
                    && w[1].kind == Kind::Op
            })
            .map_or(offset, |w| w[0].start)
    };
    let labels = kind.labels();
    let mut targets = Vec::new();
    let mut fields = Vec::new();
    for m in vs.matchers.matchers {
        // `job` named the kind of a LogQL selector (checked above).
        if named.is_none() && m.name == "job" {
            continue;
        }
        if m.name == "__name__" {
            if matches!(m.op, MatchOp::Equal) && m.value == kind.name() {
                continue;
            }
            return Err(parse_error(
                query,
                label_offset("__name__"),
                "__name__ cannot be matched in a log selector",
            ));
        }
        match labels.iter().position(|l| *l == m.name) {
            Some(0) => targets.push(m),
            Some(field) => fields.push(FieldMatcher { field, matcher: m }),
            None => {
                let expected = match kind {
                    LogKind::Pod => "namespace, pod or container",
                    LogKind::Node => "node or process",
                };
                return Err(parse_error(
                    query,
                    label_offset(&m.name),
                    format!(
                        "unknown label {:?} for {} logs (expected {expected})",
                        m.name,
                        kind.name()
                    ),
                ));
            }
        }
    }
    if targets.is_empty() {
        let target = kind.target_label();
        return Err(parse_error(
            query,
            offset,
            format!(
                "not found label '{target}' for logType '{}': a {} log selector needs a {target} matcher, e.g. {}{{{target}=\"…\"}}",
                kind.name(),
                kind.name(),
                kind.name()
            ),
        ));
    }
    Ok((kind, targets, fields))
}

/// The first literal of a line filter and any `or "…"` alternatives after it (LogQL), with
/// the index of the token after them.
fn alternatives(
    query: &str,
    tokens: &[Token],
    mut i: usize,
    first: String,
) -> Result<(Vec<String>, usize), SyntaxError> {
    let mut values = vec![first];
    while let (Some(or), Some(operand)) = (tokens.get(i), tokens.get(i + 1)) {
        if or.kind != Kind::Ident || &query[or.start..or.end] != "or" || operand.kind != Kind::Str {
            break;
        }
        let value = unquote(&query[operand.start..operand.end])
            .map_err(|e| parse_error(query, operand.start, e))?;
        values.push(value);
        i += 2;
    }
    Ok((values, i))
}

/// A line filter of one literal or several `or`-ed ones: `|= "a" or "b"` keeps lines with
/// either, `!= "a" or "b"` lines with neither (Loki's meaning); regexes are alternated.
fn line_filter(
    query: &str,
    offset: usize,
    op: &str,
    values: &[String],
    regex_limit: usize,
) -> Result<LineFilter, SyntaxError> {
    let pattern = if values.len() == 1 {
        values[0].clone()
    } else {
        values
            .iter()
            .map(|v| format!("(?:{v})"))
            .collect::<Vec<_>>()
            .join("|")
    };
    let regex = || {
        super::regex_budget::compile(&pattern, regex_limit).map_err(|e| {
            let detail = e.to_string();
            let last = detail
                .lines()
                .last()
                .unwrap_or("invalid")
                .trim()
                .to_string();
            parse_error(
                query,
                offset,
                format!("invalid regex {pattern:?} in line filter {op}: {last}"),
            )
        })
    };
    let finders = || -> Vec<memmem::Finder<'static>> {
        values
            .iter()
            .map(|v| memmem::Finder::new(v.as_bytes()).into_owned())
            .collect()
    };
    if matches!(op, "|>" | "!>") {
        let patterns = values
            .iter()
            .map(|v| {
                super::pattern::Pattern::for_filter(v).map_err(|e| {
                    parse_error(
                        query,
                        offset,
                        format!("invalid pattern {v:?} in line filter {op}: {e}"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(if op == "|>" {
            LineFilter::Pattern(patterns)
        } else {
            LineFilter::NotPattern(patterns)
        });
    }
    Ok(match (op, values.len()) {
        ("|=", 1) => LineFilter::Contains(memmem::Finder::new(values[0].as_bytes()).into_owned()),
        ("!=", 1) => {
            LineFilter::NotContains(memmem::Finder::new(values[0].as_bytes()).into_owned())
        }
        ("|=", _) => LineFilter::ContainsAny(finders()),
        ("!=", _) => LineFilter::ContainsNone(finders()),
        ("|~", _) => LineFilter::Matches(regex()?),
        _ => LineFilter::NotMatches(regex()?),
    })
}

/// `[ <duration> ]` starting at token `i`; returns the duration and the next token index.
fn range_at(query: &str, tokens: &[Token], i: usize) -> Result<(Duration, usize), SyntaxError> {
    let open = &tokens[i];
    let (Some(value), Some(close)) = (tokens.get(i + 1), tokens.get(i + 2)) else {
        return Err(parse_error(
            query,
            open.start,
            "unclosed range: expected [<duration>]",
        ));
    };
    if close.kind != Kind::RBracket {
        return Err(parse_error(
            query,
            close.start,
            "expected ] after the range duration",
        ));
    }
    let text = &query[value.start..value.end];
    let d = duration::parse(text).map_err(|e| {
        let message = match e {
            // The same words wherever a duration is too long (ranges, subqueries, offsets).
            duration::DurationError::Overflow => "duration out of range".to_string(),
            _ => format!("bad duration {text:?} in range"),
        };
        parse_error(query, value.start, message)
    })?;
    if d.is_zero() {
        return Err(parse_error(
            query,
            value.start,
            "range must be greater than 0",
        ));
    }
    Ok((d, i + 3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(q: &str) -> String {
        match parse_log_query(q) {
            Ok(_) => panic!("{q} should be refused"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_lethe_examples() {
        let q = parse_log_query(r#"pod{namespace="default", pod=~"nginx-.*", container="nginx"}"#)
            .unwrap();
        assert_eq!(q.kind, LogKind::Pod);
        assert_eq!(q.targets.len(), 1);
        assert_eq!(q.fields.len(), 2);
        assert!(q.fields[0].matches("nginx-1") && !q.fields[0].matches("xnginx-1"));
        let q = parse_log_query(r#"pod{namespace="kube-system"} |= "hello" != "world""#).unwrap();
        assert_eq!(q.filters.len(), 2);
        assert!(q.filters[0].matches(b"say hello") && !q.filters[1].matches(b"hello world"));
        let q = parse_log_query(
            r#"pod{namespace=~"(kube-system|ingress-nginx)"} |~ "err|ERR" != "Liveness""#,
        )
        .unwrap();
        assert!(q.target_matches("kube-system") && !q.target_matches("kube-system2"));
        let q =
            parse_log_query(r#"node{node="node01", process="kubelet"} !~ "I[0-9]{4}""#).unwrap();
        assert_eq!(q.kind, LogKind::Node);
        assert!(q.filters[0].matches(b"E0525 x") && !q.filters[0].matches(b"I0525 x"));
    }

    #[test]
    fn ranges_and_quotes() {
        let q = parse_log_query(r#"pod{namespace="a"}[5m]"#).unwrap();
        assert_eq!(q.range, Some(Duration::from_secs(300)));
        let q = parse_log_query("pod{namespace='a'} |= `x\\y` [1h]").unwrap();
        assert_eq!(q.range, Some(Duration::from_secs(3600)));
        assert!(q.filters[0].matches(b"ax\\yb"));
    }

    #[test]
    fn refusals_point_at_the_problem() {
        assert_eq!(
            err(r#"pod{nmspace="x"}"#),
            "1:5: parse error: unknown label \"nmspace\" for pod logs (expected namespace, pod or container)"
        );
        assert!(err(r#"pod{pod="x"}"#)
            .starts_with("1:1: parse error: not found label 'namespace' for logType 'pod'"));
        assert!(err(r#"node{process="x"}"#).contains("not found label 'node' for logType 'node'"));
        assert_eq!(
            err(r#"pod{namespace="x"} |= 5"#),
            "1:23: parse error: line filter |= needs a string literal, found \"5\""
        );
        assert!(err(r#"pod{namespace="x"} |~ "(""#)
            .starts_with("1:23: parse error: invalid regex \"(\""));
        assert!(err(r#"up |= "x""#)
            .starts_with("1:4: parse error: line filter |= must follow a log selector"));
        assert!(err(r#"pod{namespace="x"} |= "abc"#)
            .starts_with("1:23: parse error: unterminated quoted string"));
        assert!(err(r#"count(pod{namespace="x"})"#)
            .starts_with("1:7: parse error: pod{…} must be the whole query"));
        assert!(err(r#"pod{namespace="x"} + 1"#).contains("unexpected \"+\""));
        assert!(err(r#"pod{namespace="x"}[5x]"#).contains("bad duration"));
        assert!(err(r#"pod{namespace="x"}[5m] |= "a""#).contains("after the range"));
        assert!(err(r#"pod{namespace="x""#).starts_with("1:4: parse error: unclosed left brace"));
        assert!(err(r#"pod{namespace=~"("}"#).starts_with("1:1: parse error:"));
        assert!(err(r#"pod{namespace="x" or namespace="y"}"#).starts_with("1:1: parse error"));
    }
}
