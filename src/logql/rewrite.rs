//! Log selectors inside PromQL: `promql-parser` cannot read `pod{…} |= "x"`, so each log
//! selector with its pipeline is parsed here and replaced by a placeholder metric name
//! (`__janus_log_0__`) that the parser accepts wherever a selector may stand. The evaluator maps
//! placeholders back to the parsed log queries.

use super::lexer::{starts_log_selector, starts_stream_selector, tokenize, Dialect, Kind, Token};
use super::parse::{parse_embedded, LogQuery};
use super::SyntaxError;

pub const PLACEHOLDER_PREFIX: &str = "__janus_log_";

pub fn placeholder(i: usize) -> String {
    format!("{PLACEHOLDER_PREFIX}{i}__")
}

/// The index of the log query a placeholder name stands for.
pub fn placeholder_index(name: &str) -> Option<usize> {
    name.strip_prefix(PLACEHOLDER_PREFIX)?
        .strip_suffix("__")?
        .parse()
        .ok()
}

/// A query with its log selectors replaced.
#[derive(Debug)]
pub struct Rewritten {
    pub promql: String,
    pub logs: Vec<LogQuery>,
    /// The query spelled Prometheus 2.x's `holt_winters`, which promql-parser knows only by its
    /// 3.x name: parts pushed to the upstream are printed back with the user's spelling.
    pub holt_winters: bool,
}

/// Prometheus 2.x's name of double exponential smoothing, and the 3.x name promql-parser knows.
pub const HOLT_WINTERS: (&str, &str) = ("holt_winters", "double_exponential_smoothing");

/// The deepest expression Janus parses and evaluates. Parsing, planning, evaluating, printing
/// and dropping an expression all recurse once per level, so the depth is refused before the
/// parser sees the query. Prometheus itself has no limit; real queries stay far below this.
pub const MAX_DEPTH: usize = 1000;

/// Words that are binary operators in PromQL.
const WORD_OPERATORS: [&str; 4] = ["and", "or", "unless", "atan2"];

/// An upper bound of the parsed expression's depth, read from the tokens: each bracket opens a
/// level, and each operator adds one within its bracket (a chain `a + b + c` nests left).
struct DepthBound {
    /// Operators seen so far at each open bracket level.
    levels: Vec<usize>,
    current: usize,
    deepest: usize,
}

impl DepthBound {
    fn new() -> Self {
        DepthBound {
            levels: vec![0],
            current: 1,
            deepest: 1,
        }
    }

    fn open(&mut self) {
        self.levels.push(0);
        self.bump(1);
    }

    fn close(&mut self) {
        if self.levels.len() > 1 {
            let operators = self.levels.pop().unwrap_or(0);
            self.current -= operators + 1;
        }
    }

    fn operator(&mut self) {
        if let Some(top) = self.levels.last_mut() {
            *top += 1;
        }
        self.bump(1);
    }

    fn bump(&mut self, n: usize) {
        self.current += n;
        self.deepest = self.deepest.max(self.current);
    }
}

pub fn rewrite(query: &str) -> Result<Rewritten, SyntaxError> {
    rewrite_tokens(query, tokenize(query), Dialect::Prometheus)
}

/// As [`rewrite`], over the query's tokens already made, with `{…}` read as `dialect` reads it.
pub fn rewrite_tokens(
    query: &str,
    tokens: Vec<Token>,
    dialect: Dialect,
) -> Result<Rewritten, SyntaxError> {
    if let Some(t) = tokens.iter().find(|t| t.kind == Kind::Unterminated) {
        return Err(SyntaxError(format!(
            "{}: parse error: unterminated quoted string",
            super::lexer::position(query, t.start)
        )));
    }
    super::lexer::refuse_too_many(query, &tokens)?;
    super::regex_budget::check(query, &tokens)?;
    let mut bound = DepthBound::new();
    let mut in_brackets = 0usize;
    let mut after_offset = false;
    let mut holt_winters = false;
    let mut promql = String::with_capacity(query.len());
    let mut logs = Vec::new();
    let mut copied = 0;
    let mut depth = 0usize;
    // Open brackets: the name called before each, and how many log queries came before it.
    let mut calls: Vec<(Option<&str>, usize)> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        match t.kind {
            _ if depth == 0
                && (starts_log_selector(query, &tokens, i)
                    || starts_stream_selector(query, &tokens, i, dialect)) =>
            {
                let (log, next) = parse_embedded(query, &tokens, i)?;
                promql.push_str(&query[copied..t.start]);
                promql.push_str(&placeholder(logs.len()));
                logs.push(log);
                copied = tokens[next - 1].end;
                i = next;
                continue;
            }
            Kind::LBrace => depth += 1,
            Kind::RBrace => depth = depth.saturating_sub(1),
            Kind::Op if matches!(&query[t.start..t.end], "|=" | "|~") => {
                return Err(SyntaxError(format!(
                    "{}: parse error: line filter {} must follow a log selector: pod{{namespace=\"…\"}} or node{{node=\"…\"}}",
                    super::lexer::position(query, t.start),
                    &query[t.start..t.end]
                )));
            }
            Kind::LParen if depth == 0 => {
                let callee = i
                    .checked_sub(1)
                    .map(|p| &tokens[p])
                    .filter(|p| p.kind == Kind::Ident)
                    .map(|p| &query[p.start..p.end]);
                calls.push((callee, logs.len()));
                bound.open()
            }
            Kind::RParen if depth == 0 => {
                bound.close();
                // `f({…} | unwrap x [5m]) by (a, b)`: Loki's grouping of an unwrapped range
                // aggregation, which PromQL cannot write; it goes with the log query.
                if let Some((Some(callee), first_log)) = calls.pop() {
                    let unwrapped = super::UNWRAPPED_RANGE_AGGREGATIONS.contains(&callee);
                    if let (true, Some(log)) = (unwrapped, logs.get_mut(first_log)) {
                        if let Some((grouping, next)) = grouping_after(query, &tokens, i + 1)? {
                            log.sample_grouping = Some(grouping);
                            promql.push_str(&query[copied..t.end]);
                            copied = tokens[next - 1].end;
                            i = next;
                            continue;
                        }
                    }
                }
            }
            Kind::LBracket if depth == 0 => {
                in_brackets += 1;
                bound.open()
            }
            Kind::RBracket if depth == 0 => {
                in_brackets = in_brackets.saturating_sub(1);
                bound.close()
            }
            Kind::Op if depth == 0 => bound.operator(),
            Kind::Ident if depth == 0 && WORD_OPERATORS.contains(&&query[t.start..t.end]) => {
                bound.operator()
            }
            Kind::Ident
                if depth == 0
                    && &query[t.start..t.end] == HOLT_WINTERS.0
                    && tokens.get(i + 1).is_some_and(|n| n.kind == Kind::LParen) =>
            {
                promql.push_str(&query[copied..t.start]);
                promql.push_str(HOLT_WINTERS.1);
                copied = t.end;
                holt_winters = true;
            }
            _ => {}
        }
        // Ranges, subquery steps and offsets longer than Prometheus can hold (about 292 years of
        // nanoseconds) are refused here as Prometheus refuses them, in metric and log parts
        // alike; promql-parser would accept them.
        if depth == 0
            && (in_brackets > 0 || after_offset)
            && matches!(t.kind, Kind::Number | Kind::Ident)
        {
            let text = query[t.start..t.end].trim_start_matches(':');
            if crate::time::duration::parse(text)
                == Err(crate::time::duration::DurationError::Overflow)
            {
                return Err(SyntaxError(format!(
                    "{}: parse error: duration out of range",
                    super::lexer::position(query, t.start),
                )));
            }
        }
        after_offset = t.kind == Kind::Ident && &query[t.start..t.end] == "offset";
        if bound.deepest > MAX_DEPTH {
            return Err(SyntaxError(format!(
                "{}: parse error: expression nested more than {MAX_DEPTH} levels deep (brackets, calls and chained operators each count one)",
                super::lexer::position(query, t.start),
            )));
        }
        i += 1;
    }
    promql.push_str(&query[copied..]);
    Ok(Rewritten {
        promql,
        logs,
        holt_winters,
    })
}

/// `by (a, b)` or `without (a)` at token `i`: the grouping and the index after it.
fn grouping_after(
    query: &str,
    tokens: &[Token],
    i: usize,
) -> Result<Option<(crate::logql::pipeline::Grouping, usize)>, SyntaxError> {
    let text = |t: &Token| &query[t.start..t.end];
    let Some(word) = tokens.get(i).filter(|t| t.kind == Kind::Ident) else {
        return Ok(None);
    };
    let by = match text(word) {
        "by" => true,
        "without" => false,
        _ => return Ok(None),
    };
    if tokens.get(i + 1).is_none_or(|t| t.kind != Kind::LParen) {
        return Ok(None);
    }
    let mut labels = Vec::new();
    let mut j = i + 2;
    loop {
        match tokens.get(j) {
            Some(t) if t.kind == Kind::RParen => break,
            Some(t) if t.kind == Kind::Ident => labels.push(text(t).to_string()),
            Some(t) if t.kind == Kind::Comma => {}
            other => {
                return Err(SyntaxError(format!(
                    "{}: parse error: unexpected {:?} in the grouping of a range aggregation",
                    super::lexer::position(query, other.map_or(query.len(), |t| t.start)),
                    other.map_or("end of input", |t| text(t)),
                )))
            }
        }
        j += 1;
    }
    let grouping = if by {
        crate::logql::pipeline::Grouping::By(labels)
    } else {
        crate::logql::pipeline::Grouping::Without(labels)
    };
    Ok(Some((grouping, j + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_selectors_and_pipelines() {
        let r = rewrite(r#"sum by (namespace) (rate(pod{namespace=~"prod-.*"} |= "ERROR" != "retry" [5m])) / 2"#).unwrap();
        assert_eq!(
            r.promql,
            "sum by (namespace) (rate(__janus_log_0__ [5m])) / 2"
        );
        assert_eq!(r.logs.len(), 1);
        assert_eq!(r.logs[0].filters.len(), 2);
        let r = rewrite(r#"count_over_time(node{node="n"}[1m]) > bool 3 or absent_over_time(pod{namespace="a"}[1m])"#).unwrap();
        assert_eq!(r.promql, "count_over_time(__janus_log_0__[1m]) > bool 3 or absent_over_time(__janus_log_1__[1m])");
        assert_eq!(placeholder_index("__janus_log_12__"), Some(12));
        assert!(rewrite(r#"rate(pod{nmspace="a"}[5m])"#)
            .unwrap_err()
            .to_string()
            .starts_with("1:10: parse error: unknown label"));
        assert!(rewrite(r#"rate(up[5m]) |= "x""#).is_err());
    }

    #[test]
    fn logql_stream_selectors_by_dialect() {
        use super::super::parse::LogKind;
        let loki = |q: &str| rewrite_tokens(q, tokenize(q), Dialect::Loki);
        // On the Prometheus API, `{…}` is a log selector only with a pipeline stage or a job.
        let r = rewrite(r#"{namespace="shop", pod=~"web-.*"} |= "x""#).unwrap();
        assert_eq!(
            (r.promql.as_str(), r.logs[0].kind),
            ("__janus_log_0__", LogKind::Pod)
        );
        assert_eq!(r.logs[0].fields.len(), 1);
        let r = rewrite(r#"{job="pod", namespace="shop"}"#).unwrap();
        assert_eq!(r.logs.len(), 1);
        assert!(rewrite(r#"{namespace="shop"}"#).unwrap().logs.is_empty());
        assert!(rewrite(r#"sum(up{job="node"})"#).unwrap().logs.is_empty());
        // On the Loki API every `{…}` is one, its kind told by its labels.
        let r = loki(r#"sum by (process) (count_over_time({node="n1", process="kubelet"}[5m]))"#)
            .unwrap();
        assert_eq!(r.logs[0].kind, LogKind::Node);
        assert_eq!(
            r.promql,
            "sum by (process) (count_over_time(__janus_log_0__[5m]))"
        );
        for (q, words) in [
            (r#"{job="pod"}"#, "not found label 'namespace'"),
            (r#"{pod="x"}"#, "not found label 'namespace'"),
            (r#"{app="x"}"#, "must name a target"),
            (r#"{namespace="a", node="b"}"#, "not both"),
            (r#"{job="syslog", node="b"}"#, "names no log kind"),
        ] {
            let e = loki(q).unwrap_err().to_string();
            assert!(e.contains(words), "{q}: {e}");
        }
    }

    #[test]
    fn holt_winters_is_read_by_its_3x_name_and_remembered() {
        let r = rewrite(r#"holt_winters(rate(pod{namespace="a"}[5m])[1h:1m], 0.5, 0.5)"#).unwrap();
        assert_eq!(
            r.promql,
            "double_exponential_smoothing(rate(__janus_log_0__[5m])[1h:1m], 0.5, 0.5)"
        );
        assert!(r.holt_winters);
        let r = rewrite(r#"rate(pod{namespace="a"}[5m]) + holt_winters_total"#).unwrap();
        assert!(!r.holt_winters);
    }
}
