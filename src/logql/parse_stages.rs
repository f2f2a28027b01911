//! Parsing the LogQL pipeline stages after a selector: parsers (`| json`, `| logfmt`,
//! `| regexp`, `| pattern`, `| unpack`), label filters, `| line_format`, `| label_format`,
//! `| drop`, `| keep` and `| decolorize`. Each stage is checked whole when the query is parsed
//! (templates, patterns, paths, regexes within the request's budget), so a line never meets a
//! stage that cannot run.

use promql_parser::label::{MatchOp, Matcher};

use super::lexer::{unquote, Kind, Token};
use super::parse::parse_error;
use super::parsers::{json_path, LogfmtOptions};
use super::pattern::Pattern;
use super::pipeline::{LabelChoice, LabelSource, Pipeline, Stage};
use super::template::Template;
use super::SyntaxError;

/// Words that end a stage's parameter list: what may follow a pipeline in an expression.
const NOT_PARAMETERS: [&str; 11] = [
    "or",
    "and",
    "unless",
    "by",
    "without",
    "offset",
    "bool",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// A stage at token `i` (a `|` followed by a stage), added to `pipeline`; the index after it,
/// or `None` when no stage starts there.
pub(super) fn stage_at(
    query: &str,
    tokens: &[Token],
    i: usize,
    pipeline: &mut Pipeline,
    regex_limit: usize,
) -> Result<Option<usize>, SyntaxError> {
    let text = |t: &Token| &query[t.start..t.end];
    let (Some(bar), Some(name)) = (tokens.get(i), tokens.get(i + 1)) else {
        return Ok(None);
    };
    if bar.kind != Kind::Op || text(bar) != "|" {
        return Ok(None);
    }
    // A label filter expression may open with a bracket: `| (a="x" or b="y") and c="z"`.
    if name.kind == Kind::LParen {
        let (filter, next) = label_filter_or(query, tokens, i + 1, regex_limit, 0)?;
        pipeline.stages.push(Stage::Filter(filter));
        return Ok(Some(next));
    }
    if name.kind != Kind::Ident {
        return Ok(None);
    }
    let stage_name = text(name);
    let at = i + 2;
    // A label filter: `name op value`.
    if pipeline.unwrap().is_some()
        && !tokens.get(at).is_some_and(|t| t.kind == Kind::Op)
        && stage_name != "__error__"
    {
        // After `| unwrap`, only label filters may follow (Loki's grammar).
        return Err(parse_error(
            query,
            name.start,
            format!("| {stage_name} cannot follow | unwrap: only label filters may"),
        ));
    }
    if tokens.get(at).is_some_and(|t| {
        t.kind == Kind::Op
            && (super::label_filter::Compare::from_op(text(t)).is_some()
                || matches!(text(t), "=~" | "!~"))
    }) && !matches!(
        stage_name,
        "json" | "logfmt" | "label_format" | "drop" | "keep"
    ) {
        let (filter, next) = label_filter_or(query, tokens, i + 1, regex_limit, 0)?;
        pipeline.stages.push(Stage::Filter(filter));
        return Ok(Some(next));
    }
    let string_at = |j: usize, what: &str| -> Result<(String, usize), SyntaxError> {
        match tokens.get(j) {
            Some(t) if t.kind == Kind::Str => {
                let v = unquote(text(t)).map_err(|e| parse_error(query, t.start, e))?;
                Ok((v, t.start))
            }
            Some(t) => Err(parse_error(
                query,
                t.start,
                format!("| {stage_name} needs {what}, found {:?}", text(t)),
            )),
            None => Err(parse_error(
                query,
                query.len(),
                format!("| {stage_name} needs {what}, found end of input"),
            )),
        }
    };
    let (stage, next) = match stage_name {
        "json" => {
            let (params, next) = parameters(query, tokens, at, stage_name)?;
            let fields = params
                .into_iter()
                .map(|(label, source, offset)| {
                    json_path(&source)
                        .map(|path| (label, path))
                        .map_err(|e| parse_error(query, offset, e))
                })
                .collect::<Result<Vec<_>, _>>()?;
            (Stage::Json((!fields.is_empty()).then_some(fields)), next)
        }
        "logfmt" => {
            let mut options = LogfmtOptions::default();
            let mut j = at;
            while let (Some(a), Some(b), Some(flag)) =
                (tokens.get(j), tokens.get(j + 1), tokens.get(j + 2))
            {
                if !(text(a) == "-" && text(b) == "-" && flag.kind == Kind::Ident) {
                    break;
                }
                match text(flag) {
                    "strict" => options.strict = true,
                    "keep"
                        if tokens.get(j + 3).is_some_and(|t| text(t) == "-")
                            && tokens.get(j + 4).is_some_and(|t| text(t) == "empty") =>
                    {
                        options.keep_empty = true;
                        j += 2;
                    }
                    other => {
                        return Err(parse_error(
                            query,
                            a.start,
                            format!(
                                "unknown flag --{other} of | logfmt: --strict and --keep-empty are"
                            ),
                        ))
                    }
                }
                j += 3;
            }
            let (params, next) = parameters(query, tokens, j, stage_name)?;
            if !params.is_empty() {
                options.fields = Some(params.into_iter().map(|(l, s, _)| (l, s)).collect());
            }
            (Stage::Logfmt(options), next)
        }
        "regexp" => {
            let (value, offset) = string_at(
                at,
                "a regular expression with named groups, e.g. \"(?P<status>\\\\d+)\"",
            )?;
            (
                Stage::Regexp(regexp_stage(query, offset, &value, regex_limit)?),
                at + 1,
            )
        }
        "pattern" => {
            let (value, offset) = string_at(at, "a pattern, e.g. \"<ip> - <_>\"")?;
            let p = Pattern::for_parser(&value).map_err(|e| {
                parse_error(query, offset, format!("invalid pattern {value:?}: {e}"))
            })?;
            (Stage::Pattern(p), at + 1)
        }
        "unpack" => (Stage::Unpack, at),
        "unwrap" => unwrap_stage(query, tokens, at)?,
        "decolorize" => (Stage::Decolorize, at),
        "line_format" => {
            let (value, offset) = string_at(at, "a template, e.g. \"{{.level}} {{.msg}}\"")?;
            let t = Template::parse(&value).map_err(|e| {
                parse_error(query, offset, format!("invalid line_format template: {e}"))
            })?;
            (Stage::LineFormat(t), at + 1)
        }
        "label_format" => label_format(query, tokens, at)?,
        "drop" | "keep" => {
            let (choices, next) = label_choices(query, tokens, at, stage_name, regex_limit)?;
            (
                if stage_name == "drop" {
                    Stage::Drop(choices)
                } else {
                    Stage::Keep(choices)
                },
                next,
            )
        }
        _ => return Ok(None),
    };
    pipeline.stages.push(stage);
    Ok(Some(next))
}

/// `| unwrap label`, `| unwrap duration(label)` (or `duration_seconds`), `| unwrap bytes(label)`.
fn unwrap_stage(query: &str, tokens: &[Token], at: usize) -> Result<(Stage, usize), SyntaxError> {
    use super::label_filter::Unit;
    use super::pipeline::Unwrap;
    let text = |t: &Token| &query[t.start..t.end];
    let bad = |offset: usize| {
        parse_error(
            query,
            offset,
            "| unwrap needs a label: unwrap name, unwrap duration(name) or unwrap bytes(name)",
        )
    };
    let Some(first) = tokens.get(at).filter(|t| t.kind == Kind::Ident) else {
        return Err(bad(tokens.get(at).map_or(query.len(), |t| t.start)));
    };
    let conversion = match text(first) {
        "duration" | "duration_seconds" => Some(Unit::Duration),
        "bytes" => Some(Unit::Bytes),
        _ => None,
    };
    match (conversion, tokens.get(at + 1)) {
        (Some(unit), Some(open)) if open.kind == Kind::LParen => {
            match (tokens.get(at + 2), tokens.get(at + 3)) {
                (Some(name), Some(close))
                    if name.kind == Kind::Ident && close.kind == Kind::RParen =>
                {
                    Ok((
                        Stage::Unwrap(Unwrap {
                            label: text(name).to_string(),
                            unit,
                        }),
                        at + 4,
                    ))
                }
                _ => Err(bad(open.start)),
            }
        }
        _ => Ok((
            Stage::Unwrap(Unwrap {
                label: text(first).to_string(),
                unit: Unit::Number,
            }),
            at + 1,
        )),
    }
}

/// `| regexp "…"`: Loki's rules — at least one named group, each a valid label name.
fn regexp_stage(
    query: &str,
    offset: usize,
    value: &str,
    regex_limit: usize,
) -> Result<regex::bytes::Regex, SyntaxError> {
    let re = super::regex_budget::compile(value, regex_limit).map_err(|e| {
        parse_error(
            query,
            offset,
            format!(
                "invalid regex {value:?} in | regexp: {}",
                e.to_string().lines().last().unwrap_or("invalid").trim()
            ),
        )
    })?;
    let names: Vec<&str> = re.capture_names().flatten().collect();
    if names.is_empty() {
        return Err(parse_error(
            query,
            offset,
            "| regexp needs at least one named group, e.g. (?P<status>\\d+)",
        ));
    }
    if let Some(bad) = names.iter().find(|n| !is_label_name(n)) {
        return Err(parse_error(
            query,
            offset,
            format!("group {bad:?} of | regexp is not a valid label name"),
        ));
    }
    Ok(re)
}

fn is_label_name(n: &str) -> bool {
    !n.is_empty()
        && !n.starts_with(|c: char| c.is_ascii_digit())
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// A stage parameter: the label, the key or path it reads, and where that is written.
type Parameter = (String, String, usize);

/// `a, b="c.d", …` after `| json`/`| logfmt`: each label with the key or path it reads (a bare
/// name reads itself), and the offset of its source for errors.
fn parameters(
    query: &str,
    tokens: &[Token],
    mut j: usize,
    stage: &str,
) -> Result<(Vec<Parameter>, usize), SyntaxError> {
    let text = |t: &Token| &query[t.start..t.end];
    let mut params = Vec::new();
    while let Some(t) = tokens
        .get(j)
        .filter(|t| t.kind == Kind::Ident && !NOT_PARAMETERS.contains(&text(t)))
    {
        let label = text(t).to_string();
        if tokens.get(j + 1).is_some_and(|e| text(e) == "=") {
            match tokens.get(j + 2) {
                Some(v) if v.kind == Kind::Str => {
                    let source = unquote(text(v)).map_err(|e| parse_error(query, v.start, e))?;
                    params.push((label, source, v.start));
                    j += 3;
                }
                _ => {
                    return Err(parse_error(
                        query,
                        t.start,
                        format!("| {stage} {label}= needs a quoted key or path"),
                    ))
                }
            }
        } else {
            params.push((label.clone(), label, t.start));
            j += 1;
        }
        match tokens.get(j) {
            Some(c) if c.kind == Kind::Comma => j += 1,
            _ => break,
        }
    }
    Ok((params, j))
}

/// `| label_format dst=src, dst="{{…}}"`.
fn label_format(
    query: &str,
    tokens: &[Token],
    mut j: usize,
) -> Result<(Stage, usize), SyntaxError> {
    let text = |t: &Token| &query[t.start..t.end];
    let mut rules: Vec<(String, LabelSource)> = Vec::new();
    loop {
        let (Some(dst), Some(eq), Some(src)) =
            (tokens.get(j), tokens.get(j + 1), tokens.get(j + 2))
        else {
            return Err(parse_error(
                query,
                tokens.get(j).map_or(query.len(), |t| t.start),
                "| label_format needs dst=src or dst=\"{{template}}\"",
            ));
        };
        if dst.kind != Kind::Ident
            || text(eq) != "="
            || !matches!(src.kind, Kind::Ident | Kind::Str)
        {
            return Err(parse_error(
                query,
                dst.start,
                "| label_format needs dst=src or dst=\"{{template}}\"",
            ));
        }
        if rules.iter().any(|(d, _)| d == text(dst)) {
            return Err(parse_error(
                query,
                dst.start,
                format!(
                    "multiple label name '{}' not allowed in a single format operation",
                    text(dst)
                ),
            ));
        }
        let source = if src.kind == Kind::Ident {
            LabelSource::Rename(text(src).to_string())
        } else {
            let v = unquote(text(src)).map_err(|e| parse_error(query, src.start, e))?;
            LabelSource::Template(Template::parse(&v).map_err(|e| {
                parse_error(
                    query,
                    src.start,
                    format!("invalid label_format template: {e}"),
                )
            })?)
        };
        rules.push((text(dst).to_string(), source));
        j += 3;
        match tokens.get(j) {
            Some(c) if c.kind == Kind::Comma => j += 1,
            _ => return Ok((Stage::LabelFormat(rules), j)),
        }
    }
}

/// `a, b="v", c=~"re"` after `| drop`/`| keep`.
fn label_choices(
    query: &str,
    tokens: &[Token],
    mut j: usize,
    stage: &str,
    regex_limit: usize,
) -> Result<(Vec<LabelChoice>, usize), SyntaxError> {
    let text = |t: &Token| &query[t.start..t.end];
    let mut choices = Vec::new();
    loop {
        let name = match tokens.get(j) {
            Some(t) if t.kind == Kind::Ident => text(t),
            Some(t) => {
                return Err(parse_error(
                    query,
                    t.start,
                    format!(
                        "| {stage} takes label names or matchers, found {:?}",
                        text(t)
                    ),
                ))
            }
            None => {
                return Err(parse_error(
                    query,
                    query.len(),
                    format!("| {stage} takes label names or matchers"),
                ))
            }
        };
        j += 1;
        let mut matcher = None;
        if let (Some(op), Some(value)) = (tokens.get(j), tokens.get(j + 1)) {
            if matches!(text(op), "=" | "!=" | "=~" | "!~") {
                if value.kind != Kind::Str {
                    return Err(parse_error(
                        query,
                        value.start,
                        format!("| {stage} {name}{} needs a quoted value", text(op)),
                    ));
                }
                matcher = Some(label_matcher(query, name, op, value, regex_limit)?);
                j += 2;
            }
        }
        choices.push(LabelChoice {
            name: name.to_string(),
            matcher,
        });
        match tokens.get(j) {
            Some(c) if c.kind == Kind::Comma => j += 1,
            _ => return Ok((choices, j)),
        }
    }
}

/// `name op "value"` as a matcher; regexes are anchored and within the request's budget.
fn label_matcher(
    query: &str,
    name: &str,
    op: &Token,
    value: &Token,
    regex_limit: usize,
) -> Result<Matcher, SyntaxError> {
    let v =
        unquote(&query[value.start..value.end]).map_err(|e| parse_error(query, value.start, e))?;
    let regex = |v: &str| {
        regex::RegexBuilder::new(&format!("^(?:{v})$"))
            .size_limit(regex_limit)
            .dfa_size_limit(regex_limit)
            .build()
            .map_err(|e| {
                parse_error(
                    query,
                    value.start,
                    format!(
                        "invalid regex {v:?} for label {name}: {}",
                        e.to_string().lines().last().unwrap_or("invalid").trim()
                    ),
                )
            })
    };
    Ok(match &query[op.start..op.end] {
        "=" => Matcher::new(MatchOp::Equal, name, &v),
        "!=" => Matcher::new(MatchOp::NotEqual, name, &v),
        "=~" => Matcher::new(MatchOp::Re(regex(&v)?), name, &v),
        _ => Matcher::new(MatchOp::NotRe(regex(&v)?), name, &v),
    })
}

/// `a or b or …` of label filter terms (`and` binds tighter).
pub(super) fn label_filter_or(
    query: &str,
    tokens: &[Token],
    i: usize,
    regex_limit: usize,
    depth: usize,
) -> Result<(super::label_filter::LabelFilter, usize), SyntaxError> {
    // Brackets nest as deep as any expression may, no deeper (each level is a frame).
    if depth > super::rewrite::MAX_DEPTH {
        return Err(parse_error(
            query,
            tokens.get(i).map_or(query.len(), |t| t.start),
            format!(
                "label filter nested more than {} levels deep",
                super::rewrite::MAX_DEPTH
            ),
        ));
    }
    let text = |t: &Token| &query[t.start..t.end];
    let or = |at: usize| {
        tokens
            .get(at)
            .and_then(|t| (t.kind == Kind::Ident && text(t) == "or").then_some(1))
    };
    // `a and b`, `a, b` and `a b` (another predicate right after) are all and, as in Loki.
    let and = |at: usize| {
        let t = tokens.get(at)?;
        if t.kind == Kind::Comma || (t.kind == Kind::Ident && text(t) == "and") {
            return Some(1);
        }
        let op = tokens.get(at + 1)?;
        let predicate = t.kind == Kind::Ident
            && !matches!(text(t), "or" | "and")
            && op.kind == Kind::Op
            && (super::label_filter::Compare::from_op(text(op)).is_some()
                || matches!(text(op), "=~" | "!~"));
        predicate.then_some(0)
    };
    label_filter_chain(i, &or, super::label_filter::LabelFilter::Or, |at| {
        label_filter_chain(at, &and, super::label_filter::LabelFilter::And, |at| {
            label_filter_factor(query, tokens, at, regex_limit, depth)
        })
    })
}

/// Terms `term` reads, joined where `separator` finds one (the tokens it takes: 1 for a word or
/// a comma, 0 for a term right after the last), combined left to right.
fn label_filter_chain(
    i: usize,
    separator: &dyn Fn(usize) -> Option<usize>,
    combine: fn(
        Box<super::label_filter::LabelFilter>,
        Box<super::label_filter::LabelFilter>,
    ) -> super::label_filter::LabelFilter,
    term: impl Fn(usize) -> Result<(super::label_filter::LabelFilter, usize), SyntaxError>,
) -> Result<(super::label_filter::LabelFilter, usize), SyntaxError> {
    let (mut filter, mut i) = term(i)?;
    while let Some(skip) = separator(i) {
        let (next, after) = term(i + skip)?;
        filter = combine(Box::new(filter), Box::new(next));
        i = after;
    }
    Ok((filter, i))
}

/// `(expr)` or `name op value`.
fn label_filter_factor(
    query: &str,
    tokens: &[Token],
    i: usize,
    regex_limit: usize,
    depth: usize,
) -> Result<(super::label_filter::LabelFilter, usize), SyntaxError> {
    use super::label_filter::{read_bytes, read_duration_seconds, Compare, LabelFilter, Unit};
    let text = |t: &Token| &query[t.start..t.end];
    let Some(first) = tokens.get(i) else {
        return Err(parse_error(
            query,
            query.len(),
            "a label filter needs a label, an operator and a value",
        ));
    };
    if first.kind == Kind::LParen {
        let (filter, next) = label_filter_or(query, tokens, i + 1, regex_limit, depth + 1)?;
        return match tokens.get(next) {
            Some(t) if t.kind == Kind::RParen => Ok((filter, next + 1)),
            _ => Err(parse_error(
                query,
                first.start,
                "unclosed ( in a label filter",
            )),
        };
    }
    let (Some(op), Some(value)) = (tokens.get(i + 1), tokens.get(i + 2)) else {
        return Err(parse_error(
            query,
            first.start,
            "a label filter needs a label, an operator and a value",
        ));
    };
    if first.kind != Kind::Ident {
        return Err(parse_error(
            query,
            first.start,
            format!(
                "expected a label name in a label filter, found {:?}",
                text(first)
            ),
        ));
    }
    let name = text(first);
    match (text(op), value.kind.clone()) {
        ("=" | "!=" | "=~" | "!~", Kind::Str) => Ok((
            LabelFilter::Text(label_matcher(query, name, op, value, regex_limit)?),
            i + 3,
        )),
        (op_text, Kind::Number | Kind::Ident) => {
            let compare = Compare::from_op(op_text).ok_or_else(|| {
                parse_error(query, op.start, format!("{op_text} cannot compare a label with a number"))
            })?;
            let literal = text(value);
            let (number, unit) = if let Ok(n) = literal.parse::<f64>() {
                (n, Unit::Number)
            } else if let Some(d) = read_duration_seconds(literal) {
                (d, Unit::Duration)
            } else if let Some(b) = read_bytes(literal) {
                (b, Unit::Bytes)
            } else {
                return Err(parse_error(query, value.start, format!("{literal:?} is not a number, a duration or a size")));
            };
            Ok((
                LabelFilter::Number {
                    name: name.to_string(),
                    compare,
                    value: number,
                    unit,
                },
                i + 3,
            ))
        }
        (op_text, _) => Err(parse_error(
            query,
            value.start,
            format!("label filter {name} {op_text} needs a string (=, !=, =~, !~) or a number, duration or size (==, !=, >, >=, <, <=)"),
        )),
    }
}

/// A `| name` that is no stage Janus knows, refused by name rather than with a puzzling parse
/// error further on.
pub(super) fn unknown_stage(query: &str, tokens: &[Token], i: usize) -> Result<(), SyntaxError> {
    let text = |t: &Token| &query[t.start..t.end];
    let t = &tokens[i];
    match tokens.get(i + 1) {
        Some(n) if t.kind == Kind::Op && text(t) == "|" && n.kind == Kind::Ident => Err(parse_error(
            query,
            n.start,
            format!(
                "unknown pipeline stage | {}: Janus runs json, logfmt, regexp, pattern, unpack, line_format, label_format, drop, keep, decolorize, label filters and line filters (|= != |~ !~ |> !>)",
                text(n)
            ),
        )),
        _ => Ok(()),
    }
}
