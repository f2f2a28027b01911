//! What may be cached, and how a range query is cut into pieces.
//!
//! A range query is evaluated at each step on its own, so the steps can be asked in groups
//! and the answers joined. Pieces are cut at multiples of the split interval (in absolute time,
//! so refreshes of a sliding window share them) and keep the query's own step grid: every point
//! is where Prometheus puts it for the whole query. What would answer differently when cut —
//! `@` (including `@ start()`/`@ end()`, which name the query's own range) — is never cut or
//! cached, nor is an expression Janus cannot parse (an upstream's own dialect).

use promql_parser::parser::Expr;

/// More pieces than this and the query is passed through whole (a year at 1h steps is 365).
pub const MAX_PIECES: i64 = 400;

/// One piece: the grid points of the query within `[index × split, (index + 1) × split)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    pub index: i64,
    /// First and last grid point in it (milliseconds).
    pub from: i64,
    pub to: i64,
}

/// A range query's grid and pieces (milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangePlan {
    pub from: i64,
    pub to: i64,
    pub step: i64,
    pub pieces: Vec<Piece>,
}

impl RangePlan {
    /// The grid of `start`, `end`, `step` (nanoseconds, as parsed), cut every `split`
    /// milliseconds; `None` when it cannot be cut exactly (times before 1970, steps or starts
    /// finer than a millisecond, too many pieces).
    pub fn new(start_ns: i64, end_ns: i64, step_ns: i64, split: i64) -> Option<RangePlan> {
        if start_ns < 0 || end_ns < start_ns || step_ns <= 0 || split <= 0 {
            return None;
        }
        if start_ns % 1_000_000 != 0 || step_ns % 1_000_000 != 0 {
            return None;
        }
        let (from, step) = (start_ns / 1_000_000, step_ns / 1_000_000);
        // Prometheus evaluates at start + k·step up to end, in milliseconds.
        let end = end_ns.div_euclid(1_000_000);
        let to = from + (end - from) / step * step;
        let (first, last) = (from.div_euclid(split), to.div_euclid(split));
        if last - first + 1 > MAX_PIECES {
            return None;
        }
        let pieces = (first..=last)
            .filter_map(|index| {
                let lo = (index * split).max(from);
                let a = from + (lo - from + step - 1) / step * step;
                let b = to.min(from + ((index + 1) * split - 1 - from) / step * step);
                (a <= b).then_some(Piece {
                    index,
                    from: a,
                    to: b,
                })
            })
            .collect();
        Some(RangePlan {
            from,
            to,
            step,
            pieces,
        })
    }

    /// The last grid point at or before `t` (milliseconds), if any.
    pub fn last_point_at_or_before(&self, t: i64) -> Option<i64> {
        (t >= self.from).then(|| self.from + (t - self.from) / self.step * self.step)
    }
}

/// Whether a metric-only query can be cut and cached: it parses within Janus's bounds (checked
/// first, so the parser's recursion stays bounded), uses no `@` and no aggregation that breaks
/// ties by evaluation order. Blocking for long texts
/// (regexes compile): call it from a blocking thread then.
pub fn cacheable_expression(text: &str) -> bool {
    crate::promql::functions::register_with_parser();
    let Ok(rewritten) = crate::logql::rewrite::rewrite(text) else {
        return false;
    };
    if !rewritten.logs.is_empty() {
        return false;
    }
    let work = || {
        promql_parser::parser::parse(&rewritten.promql)
            .ok()
            .is_some_and(|expr| !not_cuttable(&expr))
    };
    let needed = (256 << 10) + text.len().saturating_mul(4 << 10);
    if stacker::remaining_stack().is_some_and(|left| left > needed) {
        work()
    } else {
        crate::promql::plan::deep_stack(work)
    }
}

/// Aggregations that choose among equal values by the order the range evaluation happens to
/// hold series in: Prometheus answers `topk(2, …)` over ties differently at the same step when
/// the query's range differs (seen against Prometheus 2.42), so a cut query would not be the
/// whole query's answer.
const ORDER_DEPENDENT: [&str; 4] = ["topk", "bottomk", "limitk", "limit_ratio"];

/// Functions that order a result: Prometheus ignores them in a range query (a matrix is sorted
/// by labels), other upstreams (VictoriaMetrics) order the whole range's series by them, which
/// pieces cannot reproduce.
fn sorts(name: &str) -> bool {
    name.starts_with("sort")
}

/// Aggregations whose answer depends on the order of their input: those that add floats up
/// (the last bits), and `min`, `max` and `quantile`, which treat a NaN by where it comes. Over a
/// selector (or functions of one) that order is the storage's, the same for any range; over a
/// vector made by `or`, another aggregation, `sort` or an operator between vectors it is the
/// order in which series first appeared in the range evaluated, so a query cut at another
/// start can differ in the last digit (Prometheus 2.42 gave `27.571316666666668` for
/// `sum by (namespace) (vector(1) or rate(…))` over one range and `27.57131666666667` over
/// another, at the same step).
const ORDER_SENSITIVE: [&str; 7] = ["sum", "avg", "stddev", "stdvar", "min", "max", "quantile"];

/// Whether `expr` has an `@` modifier or an aggregation whose answer at a step depends on the
/// range evaluated: what a cut query would answer differently.
fn not_cuttable(expr: &Expr) -> bool {
    match expr {
        Expr::Aggregate(a) => {
            let op = a.op.to_string().to_ascii_lowercase();
            ORDER_DEPENDENT.contains(&op.as_str())
                || (ORDER_SENSITIVE.contains(&op.as_str()) && !order_stable(&a.expr))
                || not_cuttable(&a.expr)
                || a.param.as_deref().is_some_and(not_cuttable)
        }
        Expr::Unary(u) => not_cuttable(&u.expr),
        Expr::Binary(b) => not_cuttable(&b.lhs) || not_cuttable(&b.rhs),
        Expr::Paren(p) => not_cuttable(&p.expr),
        Expr::Subquery(s) => s.at.is_some() || not_cuttable(&s.expr),
        Expr::VectorSelector(vs) => vs.at.is_some(),
        Expr::MatrixSelector(ms) => ms.vs.at.is_some(),
        Expr::Call(c) => sorts(c.func.name) || c.args.args.iter().any(|a| not_cuttable(a)),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => false,
    }
}

/// Whether the series of `expr`, step by step, come in the same order whatever range is
/// evaluated: selectors and literals, and what maps them series by series in that order.
fn order_stable(expr: &Expr) -> bool {
    use promql_parser::parser::value::ValueType;
    match expr {
        Expr::VectorSelector(_)
        | Expr::MatrixSelector(_)
        | Expr::NumberLiteral(_)
        | Expr::StringLiteral(_) => true,
        Expr::Paren(p) => order_stable(&p.expr),
        Expr::Unary(u) => order_stable(&u.expr),
        Expr::Subquery(s) => order_stable(&s.expr),
        // `sort` orders each step by value: a first appearance that depends on the range.
        Expr::Call(c) => !sorts(c.func.name) && c.args.args.iter().all(|a| order_stable(a)),
        // A vector with a scalar keeps the vector's order; two vectors make a new one.
        Expr::Binary(b) => match (b.lhs.value_type(), b.rhs.value_type()) {
            (ValueType::Scalar, _) => order_stable(&b.rhs),
            (_, ValueType::Scalar) => order_stable(&b.lhs),
            _ => false,
        },
        Expr::Aggregate(_) | Expr::Extension(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_keep_the_querys_grid_and_cut_at_the_split() {
        // 00:00:30 to 02:10:00 by 1m, cut every hour.
        let plan = RangePlan::new(30_000_000_000, 7_800_000_000_000, 60_000_000_000, 3_600_000)
            .expect("plan");
        assert_eq!(plan.to, 7_770_000);
        assert_eq!(
            plan.pieces,
            [
                Piece {
                    index: 0,
                    from: 30_000,
                    to: 3_570_000
                },
                Piece {
                    index: 1,
                    from: 3_630_000,
                    to: 7_170_000
                },
                Piece {
                    index: 2,
                    from: 7_230_000,
                    to: 7_770_000
                },
            ]
        );
        // A step longer than the split leaves some pieces without a point.
        let plan =
            RangePlan::new(0, 7_200_000_000_000, 5_400_000_000_000, 3_600_000).expect("plan");
        let points: Vec<(i64, i64)> = plan.pieces.iter().map(|p| (p.from, p.to)).collect();
        assert_eq!(points, [(0, 0), (5_400_000, 5_400_000)]);
        assert_eq!(plan.last_point_at_or_before(5_399_999), Some(0));
        assert!(RangePlan::new(1, 10, 1_000_000, 3_600_000).is_none());
        assert!(RangePlan::new(-60_000_000_000, 0, 60_000_000_000, 3_600_000).is_none());
    }

    #[test]
    fn at_modifiers_and_other_dialects_are_not_cached() {
        for cached in [
            "up",
            "sum by (job) (rate(x[5m] offset 1h))",
            "max_over_time(up[1h:5m])",
            "histogram_quantile(0.9, sum by (le) (rate(b[5m])))",
            "sum(rate(a[5m])) / sum(rate(b[5m]))",
            "avg(abs(x) * 2)",
            "count(a / b)",
        ] {
            assert!(cacheable_expression(cached), "{cached}");
        }
        for not in [
            "up @ 1700000000",
            "rate(x[5m] @ end())",
            "max_over_time(up[1h:5m] @ start())",
            "sum(up) + on() group_left vector(time() @ 5)",
            "topk(2, up)",
            "sum by (namespace) (vector(1) or rate(x[1m]))",
            "avg(a / b)",
            "sum(sum by (job) (x))",
            "stddev(sort(x))",
            "max(a or b)",
            "sort_desc(sum by (namespace) (x))",
            "sum(bottomk(1, rate(x[5m])))",
            "rate(x)",
            "pod{namespace=\"x\"}",
        ] {
            assert!(!cacheable_expression(not), "{not}");
        }
    }
}
