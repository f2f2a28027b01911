//! The one routing decision: does the upstream answer this query verbatim, or Janus — with
//! lines (a log selector and its pipeline) or with numbers (an expression)? The query text is
//! tokenized once for the decision and handed on; an expression is parsed once.

use std::sync::Arc;

use promql_parser::parser::Expr;

use super::EngineError;
use crate::logql::lexer::{self, Dialect, Token};
use crate::logql::rewrite::{self, Rewritten};
use crate::logql::{self, LogQuery, SyntaxError};
use crate::promql::plan::{self, Parsed};

/// A query ready to run.
pub enum Prepared {
    /// An empty query, refused by the caller in Prometheus's words after the parameters.
    Empty,
    /// A log selector with its pipeline: lines. A parse error is kept until the parameters
    /// before it have been checked, so that errors come in Prometheus's order.
    Lines(Result<LogQuery, SyntaxError>),
    /// Log metrics, aggregations, mixed expressions: numbers.
    Expression(Expression),
}

/// A parsed expression with its log selectors replaced by placeholders.
pub struct Expression {
    pub(super) expr: Parsed,
    pub(super) logs: Arc<Vec<LogQuery>>,
    /// The user spelled Prometheus 2.x's `holt_winters`: pushed-down text says so too.
    pub(super) holt_winters: bool,
    /// Evaluate everything here (LogQL has no metrics to push anywhere: `vector(1)+vector(1)`,
    /// Grafana's health check, is Janus's to answer).
    pub(super) evaluate_all: bool,
}

impl Expression {
    /// Whether evaluating it asks the metric source (it has a selector that is not a log
    /// selector) — the caller picks its concurrency slot by this.
    pub fn reads_metrics(&self) -> bool {
        plan::reads_upstream(&self.expr)
    }
}

/// Routes `text`: `None` when the upstream answers it untouched (metric-only, even a query
/// Janus's parser would refuse), else the tokens for [`parse`]. Cheap enough for the async
/// threads (at most [`lexer::MAX_TOKENS`]); parsing is a blocking thread's work. A query the
/// lexer stopped reading counts as involving logs (one may follow), so [`parse`] refuses it.
pub fn route(text: &str, evaluate_metric_queries: bool) -> Option<Vec<Token>> {
    // (The Loki API has no upstream: its queries go straight to [`parse`].)
    let tokens = lexer::tokenize(text);
    (evaluate_metric_queries || lexer::tokens_involve_logs(text, &tokens)).then_some(tokens)
}

/// Parses a query Janus answers (compiles regexes, builds a deep tree: a blocking thread's
/// work).
pub fn parse(text: &str, tokens: Vec<Token>, dialect: Dialect) -> Result<Prepared, EngineError> {
    if text.trim().is_empty() {
        return Ok(Prepared::Empty);
    }
    let Rewritten {
        promql,
        mut logs,
        holt_winters,
    } = plan::deep_stack(|| rewrite::rewrite_tokens(text, tokens, dialect))?;
    match Parsed::parse(&promql) {
        Ok(expr) if logs.len() == 1 => match &*expr {
            // The selector as the rewriter parsed it, with the range the parser read.
            Expr::VectorSelector(vs) if vs.offset.is_none() && vs.at.is_none() => {
                Ok(Prepared::Lines(Ok(logs.remove(0))))
            }
            Expr::MatrixSelector(ms) if ms.vs.offset.is_none() && ms.vs.at.is_none() => {
                let mut query = logs.remove(0);
                query.range = Some(ms.range);
                Ok(Prepared::Lines(Ok(query)))
            }
            // Lines have no offset or `@`: the lines parser says so in its words.
            Expr::VectorSelector(_) | Expr::MatrixSelector(_) => {
                Ok(Prepared::Lines(logql::parse_log_query(text)))
            }
            _ => Ok(expression(expr, logs, holt_winters, dialect)),
        },
        Ok(expr) => Ok(expression(expr, logs, holt_winters, dialect)),
        // A query that starts with a log selector is worded best by the lines parser, with
        // positions in the query as written.
        Err(e) => {
            let starts_with_selector = lexer::LOG_SELECTORS
                .iter()
                .any(|name| text.trim_start().starts_with(name));
            match logql::parse_log_query(text) {
                Err(ours) if starts_with_selector => Ok(Prepared::Lines(Err(ours))),
                _ => Err(SyntaxError(format!(
                    "invalid parameter \"query\": {}",
                    with_position(text, e.trim())
                ))
                .into()),
            }
        }
    }
}

/// promql-parser words an unclosed bracket or a cut-off expression without a place;
/// Prometheus puts those at the end of the input (`1:17: parse error: unclosed left
/// parenthesis`), and so does Janus (the query as written ends where the rewritten one does).
fn with_position(text: &str, message: &str) -> String {
    if !(message.starts_with("unclosed left") || message.starts_with("unexpected end of input")) {
        return message.to_string();
    }
    let line = text.matches('\n').count() + 1;
    let col = text.len() - text.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("{line}:{col}: parse error: {message}")
}

impl Prepared {
    /// The same query with every log selector passed through `narrow` (a tenant's scope adds
    /// its namespace matcher) and, when `metrics` is given, that matcher added to every metric
    /// selector: whatever the expression, no selector escapes the scope.
    pub fn narrowed(
        self,
        narrow: impl Fn(&mut LogQuery),
        metrics: Option<&crate::promql::confine::Confinement<'_>>,
    ) -> Prepared {
        match self {
            Prepared::Lines(Ok(mut query)) => {
                narrow(&mut query);
                Prepared::Lines(Ok(query))
            }
            Prepared::Expression(mut expression) => {
                for query in Arc::make_mut(&mut expression.logs) {
                    narrow(query);
                }
                if let Some(scope) = metrics {
                    expression.expr.confine(scope);
                }
                Prepared::Expression(expression)
            }
            other => other,
        }
    }
}

fn expression(expr: Parsed, logs: Vec<LogQuery>, holt_winters: bool, dialect: Dialect) -> Prepared {
    Prepared::Expression(Expression {
        expr,
        logs: Arc::new(logs),
        holt_winters,
        evaluate_all: dialect == Dialect::Loki,
    })
}

impl Expression {
    /// Whether every selector of the expression, log and metric, is pinned to namespaces that
    /// `contains` accepts by an equality matcher (`namespace="shop"`): what a restricted tenant
    /// may see of a rule. Anything else (a regex, no matcher, node logs) is not, failing closed.
    pub fn confined_to(&self, contains: &dyn Fn(&str) -> bool) -> bool {
        use promql_parser::label::MatchOp;
        let pinned = |matchers: &[promql_parser::label::Matcher], name: &str| {
            matchers
                .iter()
                .any(|m| m.name == name && matches!(m.op, MatchOp::Equal) && contains(&m.value))
        };
        let logs_confined = self
            .logs
            .iter()
            .all(|q| q.kind == crate::logql::LogKind::Pod && pinned(&q.targets, "namespace"));
        fn metrics(expr: &Expr, ok: &dyn Fn(&[promql_parser::label::Matcher]) -> bool) -> bool {
            match expr {
                Expr::VectorSelector(vs) => {
                    vs.name
                        .as_deref()
                        .is_some_and(|n| crate::logql::rewrite::placeholder_index(n).is_some())
                        || (vs.matchers.or_matchers.is_empty() && ok(&vs.matchers.matchers))
                }
                Expr::MatrixSelector(ms) => metrics(&Expr::VectorSelector(ms.vs.clone()), ok),
                Expr::Aggregate(a) => {
                    metrics(&a.expr, ok) && a.param.as_ref().is_none_or(|p| metrics(p, ok))
                }
                Expr::Unary(u) => metrics(&u.expr, ok),
                Expr::Binary(b) => metrics(&b.lhs, ok) && metrics(&b.rhs, ok),
                Expr::Paren(p) => metrics(&p.expr, ok),
                Expr::Subquery(s) => metrics(&s.expr, ok),
                Expr::Call(c) => c.args.args.iter().all(|a| metrics(a, ok)),
                _ => true,
            }
        }
        logs_confined && plan::deep_stack(|| metrics(&self.expr, &|m| pinned(m, "namespace")))
    }

    /// Whether the expression reads the log store.
    pub fn reads_logs(&self) -> bool {
        !self.logs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::with_position;

    #[test]
    fn an_unfinished_expression_is_placed_at_its_end_as_prometheus_places_it() {
        assert_eq!(
            with_position("sum(up", "unclosed left parenthesis"),
            "1:7: parse error: unclosed left parenthesis"
        );
        assert_eq!(
            with_position("sum(\n up", "unclosed left parenthesis"),
            "2:4: parse error: unclosed left parenthesis"
        );
        assert_eq!(
            with_position("up{a=\"b\"", "unexpected end of input inside braces"),
            "1:9: parse error: unexpected end of input inside braces"
        );
        assert_eq!(
            with_position("up +", "unexpected end of input"),
            "1:5: parse error: unexpected end of input"
        );
        // Other words have no place to give.
        assert_eq!(
            with_position("a b", "unexpected identifier"),
            "unexpected identifier"
        );
    }
}
