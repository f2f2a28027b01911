//! A rule's expression: read as `/api/v1/query` reads a query (PromQL, LetheQL log metrics,
//! mixes), or, when that fails, as the Loki API reads one (a LogQL metric query moved over from
//! a Loki ruler). Parsed once when the file is loaded; evaluated by the engine at every
//! evaluation.

use std::sync::Arc;

use crate::engine::{prepare, Expression, Prepared};
use crate::logql::lexer::{self, Dialect};

/// A parsed rule expression and its text.
#[derive(Clone)]
pub struct RuleExpr {
    pub text: String,
    pub expression: Arc<Expression>,
    pub dialect: Dialect,
}

impl std::fmt::Debug for RuleExpr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RuleExpr({:?}, {:?})", self.text, self.dialect)
    }
}

impl RuleExpr {
    /// Parses `text`; the error is worded as the query APIs word it.
    pub fn compile(text: &str) -> Result<RuleExpr, String> {
        let first = parse(text, Dialect::Prometheus);
        let (expression, dialect) = match first {
            Ok(e) => (e, Dialect::Prometheus),
            Err(prometheus_error) => match parse(text, Dialect::Loki) {
                Ok(e) => (e, Dialect::Loki),
                Err(_) => return Err(prometheus_error),
            },
        };
        Ok(RuleExpr {
            text: text.to_string(),
            expression: Arc::new(expression),
            dialect,
        })
    }
}

fn parse(text: &str, dialect: Dialect) -> Result<Expression, String> {
    let tokens = lexer::tokenize(text);
    match prepare::parse(text, tokens, dialect) {
        Ok(Prepared::Expression(e)) => Ok(e),
        Ok(Prepared::Empty) => Err("empty expression".into()),
        Ok(Prepared::Lines(Ok(_))) => Err(
            "a log selector gives lines, not numbers: count them, e.g. count_over_time(<selector> [1m]) > 0"
                .into(),
        ),
        Ok(Prepared::Lines(Err(e))) => Err(plain(e.to_string())),
        Err(e) => Err(plain(e.to_string())),
    }
}

/// The query APIs name the parameter; a rule has none.
fn plain(message: String) -> String {
    message
        .strip_prefix("invalid parameter \"query\": ")
        .map(str::to_string)
        .unwrap_or(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_expression_is_read() {
        for (text, dialect) in [
            ("up == 0", Dialect::Prometheus),
            (
                r#"sum(rate(pod{namespace="shop"} |= "ERROR" [1m])) > 5"#,
                Dialect::Prometheus,
            ),
            (
                r#"sum by (namespace) (count_over_time({namespace="shop"} |= "ERROR" [5m])) / on() group_left sum(up)"#,
                Dialect::Prometheus,
            ),
            (
                r#"sum(count_over_time({namespace="shop"} | json | status >= 500 [5m])) > 0"#,
                Dialect::Prometheus,
            ),
        ] {
            let e = RuleExpr::compile(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(e.dialect, dialect, "{text}");
        }
        assert!(RuleExpr::compile(r#"pod{namespace="x"} |= "e""#)
            .unwrap_err()
            .contains("lines, not numbers"));
        assert!(RuleExpr::compile("rate(x[5m]").is_err());
    }
}

#[cfg(test)]
mod confinement_tests {
    use super::*;

    #[test]
    fn only_expressions_pinned_to_the_namespaces_are_confined() {
        let shop = |ns: &str| ns == "shop";
        for (text, confined) in [
            (
                r#"sum(count_over_time(pod{namespace="shop"} |= "x" [1m])) > 0"#,
                true,
            ),
            (r#"up{namespace="shop"}"#, true),
            (
                r#"sum(count_over_time(pod{namespace=~".+"} |= "x" [1m])) > 0"#,
                false,
            ),
            (
                r#"up{namespace="shop"} and on() up{namespace="bank"}"#,
                false,
            ),
            ("vector(1)", true),
            (r#"count_over_time(node{node="n1"} [1m])"#, false),
        ] {
            let e = RuleExpr::compile(text).unwrap();
            assert_eq!(e.expression.confined_to(&shop), confined, "{text}");
        }
    }
}
