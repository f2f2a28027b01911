//! Confining a PromQL expression to a tenant's namespaces, as prom-label-proxy confines one to
//! a label value: every vector selector — in range vectors, subqueries, function arguments,
//! aggregation parameters, both arms of every binary and set operator, `absent()`,
//! `label_replace()` sources, with `offset` and `@` alike — gets the scope's matcher added to
//! its own. Matchers are ANDed, so a selector naming another namespace selects nothing, and
//! nothing in the expression can read a series outside the scope; what it then computes from
//! those series (`label_replace` writing `namespace`, `vector(1)`) exposes no other series.

use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{Expr, VectorSelector};

use crate::logql::rewrite::placeholder_index;

/// A tenant's scope as the walk needs it: the matcher to add (`namespace=~"…"`), and whether a
/// value of its label is in the scope.
pub struct Confinement<'a> {
    pub matcher: Matcher,
    pub contains: Box<dyn Fn(&str) -> bool + 'a>,
}

/// Parses `text`, confines it and prints it, all on one deep stack segment (parsing, walking,
/// printing and freeing the tree are each recursive; one segment instead of one per step is
/// most of the cost on a short query). `selector_only` refuses anything but a series selector
/// (`match[]`). The bounds every query Janus parses is held to (nesting depth, durations, the
/// regex budget) are checked first, by the rewriter, so a crafted text is refused before the
/// parser's recursion or its regex compiler can be driven past them. Blocking: regexes compile
/// here.
pub fn confine_text(
    text: &str,
    scope: &Confinement<'_>,
    selector_only: bool,
) -> Result<String, String> {
    super::functions::register_with_parser();
    let work = || {
        crate::logql::rewrite::rewrite(text).map_err(|e| e.to_string())?;
        let mut expr = promql_parser::parser::parse(text)?;
        if selector_only && !matches!(expr, Expr::VectorSelector(_)) {
            return Err(format!("{text:?} is not a series selector"));
        }
        confine(&mut expr, scope);
        Ok(expr.to_string())
    };
    // A tree is never deeper than its text is long: a short query fits the thread's own stack
    // (with room to spare at 4 KiB a level), and mapping a fresh segment would cost more than
    // the rest of the work.
    let needed = (256 << 10) + text.len().saturating_mul(4 << 10);
    if stacker::remaining_stack().is_some_and(|left| left > needed) {
        work()
    } else {
        super::plan::deep_stack(work)
    }
}

/// A label no series has: a selector asking for a value of it selects nothing. It stands in for
/// the scope's matcher where the selector already names a namespace outside the scope, so that
/// the selector keeps one matcher on `namespace` and `absent()` labels its answer as it would
/// over the tenant's series alone.
const NO_SERIES_LABEL: &str = "__janus_outside_tenant__";

/// Confines every metric selector of `expr` (log-selector placeholders are left to the log
/// side's own narrowing). Recursion follows the expression's depth, which the rewriter bounds;
/// callers run it on a large stack as other walks of the tree.
pub fn confine(expr: &mut Expr, matcher: &Confinement<'_>) {
    match expr {
        Expr::Aggregate(a) => {
            confine(&mut a.expr, matcher);
            if let Some(param) = a.param.as_deref_mut() {
                confine(param, matcher);
            }
        }
        Expr::Unary(u) => confine(&mut u.expr, matcher),
        Expr::Binary(b) => {
            confine(&mut b.lhs, matcher);
            confine(&mut b.rhs, matcher);
        }
        Expr::Paren(p) => confine(&mut p.expr, matcher),
        Expr::Subquery(s) => confine(&mut s.expr, matcher),
        Expr::VectorSelector(vs) => confine_selector(vs, matcher),
        Expr::MatrixSelector(ms) => confine_selector(&mut ms.vs, matcher),
        Expr::Call(c) => {
            for arg in c.args.args.iter_mut() {
                confine(arg, matcher);
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
}

fn confine_selector(vs: &mut VectorSelector, scope: &Confinement<'_>) {
    if vs.name.as_deref().and_then(placeholder_index).is_some() {
        return;
    }
    // `{a="1" or b="2"}`: every alternative is confined.
    if vs.matchers.or_matchers.is_empty() {
        confine_matchers(&mut vs.matchers.matchers, scope);
    } else {
        for group in vs.matchers.or_matchers.iter_mut() {
            confine_matchers(group, scope);
        }
    }
}

/// One conjunction of matchers: already inside the scope when it pins the label to a value in
/// it; selecting nothing when it pins it outside; else given the scope's matcher.
fn confine_matchers(matchers: &mut Vec<Matcher>, scope: &Confinement<'_>) {
    let name = scope.matcher.name.as_str();
    let pinned = matchers
        .iter()
        .filter(|m| m.name == name && matches!(m.op, MatchOp::Equal));
    let mut inside = false;
    let mut outside = false;
    for m in pinned {
        if (scope.contains)(&m.value) {
            inside = true;
        } else {
            outside = true;
        }
    }
    if outside {
        // A regex, not an equality: `absent()` labels its answer with equality matchers only.
        let any = regex::Regex::new("^(?:.+)$").ok();
        if let Some(any) = any {
            matchers.push(Matcher::new(MatchOp::Re(any), NO_SERIES_LABEL, ".+"));
        } else {
            matchers.push(scope.matcher.clone());
        }
    } else if !inside {
        matchers.push(scope.matcher.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use promql_parser::label::MatchOp;

    fn confined(text: &str) -> String {
        let mut expr = promql_parser::parser::parse(text).expect("parses");
        let scope = Confinement {
            matcher: Matcher::new(
                MatchOp::Re(regex::Regex::new("^(?:(?:a))$").expect("regex")),
                "namespace",
                "(?:a)",
            ),
            contains: Box::new(|v| v == "a"),
        };
        confine(&mut expr, &scope);
        let printed = expr.to_string();
        // What is printed parses again, and to the same text.
        let again = promql_parser::parser::parse(&printed)
            .unwrap_or_else(|e| panic!("{printed}: {e}"))
            .to_string();
        assert_eq!(again, printed);
        printed
    }

    #[test]
    fn every_selector_is_confined() {
        let m = r#"namespace=~"(?:a)""#;
        for (query, selectors) in [
            ("up", 1),
            (r#"{__name__=~".+"}"#, 1),
            ("up or on () vector(1)", 1),
            ("a unless b", 2),
            (
                r#"sum by (namespace) (rate(http_total{namespace!="a"}[5m] offset 1h))"#,
                1,
            ),
            ("max_over_time(rate(x[1m])[1h:5m] @ 1700000000)", 1),
            (r#"absent(x{namespace="b"} or y)"#, 1),
            (r#"label_replace(up, "namespace", "b", "", "")"#, 1),
            ("topk(scalar(count(k)), v)", 2),
            (r#"count_values("v", x) / on (v) group_left y"#, 2),
            (r#"{a="1" or b="2"}"#, 2),
            ("-x + 1", 1),
        ] {
            let printed = confined(query);
            assert_eq!(printed.matches(m).count(), selectors, "{query} → {printed}");
        }
    }

    #[test]
    fn a_namespace_pinned_by_the_selector_decides() {
        // Pinned inside: already confined, left as written.
        assert_eq!(confined(r#"x{namespace="a"}"#), r#"x{namespace="a"}"#);
        // Pinned outside: selects nothing, and keeps its one matcher on `namespace` (absent()
        // labels its answer from it, as it would over the tenant's series alone).
        let printed = confined(r#"absent(x{namespace="b"})"#);
        assert!(printed.contains(r#"namespace="b""#), "{printed}");
        assert!(
            printed.contains(r#"__janus_outside_tenant__=~".+""#),
            "{printed}"
        );
        assert!(!printed.contains("namespace=~"), "{printed}");
    }

    #[test]
    fn log_placeholders_are_left_to_the_log_side() {
        let printed = confined("count_over_time(__janus_log_0__[5m]) / on () up");
        assert_eq!(printed.matches("namespace=~").count(), 1, "{printed}");
        assert!(printed.contains("__janus_log_0__[5m]"), "{printed}");
    }
}
