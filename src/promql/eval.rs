//! PromQL evaluation over step-aligned values.
//!
//! Leaves are computed before (`plan.rs` says which; the engine computes them): log range
//! functions from the store, subqueries, and the parts the upstream answers. This module
//! evaluates what is above them — literals, unary minus, binary operators (`binary.rs`),
//! aggregations (`aggregate.rs`) and instant functions (`instant_functions.rs`) — with
//! Prometheus's semantics and error wording.

use std::collections::HashMap;

use promql_parser::parser::Expr;

use super::plan::{deep_stack, node_id, NodeId};
use super::value::{Labels, Series, Steps, Value};
use super::EvalError;

pub struct Evaluator<'a> {
    pub steps: Steps,
    /// Precomputed leaves, by the node they stand for.
    pub inputs: &'a HashMap<NodeId, Value>,
    /// Compiled size each `label_replace` regex may take: the query's regex budget shared by
    /// all of its `label_replace` calls.
    pub regex_limit: usize,
}

/// Evaluates `expr` with its leaves already computed, on a stack deep enough for any
/// expression the rewriter lets through.
pub fn evaluate(
    expr: &Expr,
    steps: Steps,
    inputs: &HashMap<NodeId, Value>,
) -> Result<Value, EvalError> {
    deep_stack(|| {
        let regexes = count_calls(expr, "label_replace").max(1);
        Evaluator {
            steps,
            inputs,
            regex_limit: crate::logql::regex_budget::MAX_REGEX_BYTES / regexes,
        }
        .eval(expr)
    })
}

/// How many calls of `function` the expression holds.
fn count_calls(expr: &Expr, function: &str) -> usize {
    let here = usize::from(matches!(expr, Expr::Call(c) if c.func.name == function));
    here + match expr {
        Expr::Aggregate(a) => {
            count_calls(&a.expr, function)
                + a.param.as_ref().map_or(0, |p| count_calls(p, function))
        }
        Expr::Unary(u) => count_calls(&u.expr, function),
        Expr::Binary(b) => count_calls(&b.lhs, function) + count_calls(&b.rhs, function),
        Expr::Paren(p) => count_calls(&p.expr, function),
        Expr::Subquery(s) => count_calls(&s.expr, function),
        Expr::Call(c) => c.args.args.iter().map(|a| count_calls(a, function)).sum(),
        _ => 0,
    }
}

pub(super) fn unsupported(what: &str) -> EvalError {
    EvalError::BadData(format!(
        "{what} is not supported yet in expressions that involve log selectors"
    ))
}

impl Evaluator<'_> {
    pub fn eval(&self, expr: &Expr) -> Result<Value, EvalError> {
        if let Some(v) = self.inputs.get(&node_id(expr)) {
            return Ok(v.clone());
        }
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(vec![n.val; self.steps.count])),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => negate(self.eval(&u.expr)?),
            Expr::Binary(b) => self.binary(b),
            Expr::Aggregate(a) => self.aggregate(a),
            Expr::Call(c) => self.call(c),
            Expr::Subquery(_) => Err(unsupported("a subquery outside a range function")),
            Expr::VectorSelector(_) | Expr::MatrixSelector(_) => Err(EvalError::BadData(
                "a log selector needs a log range function around it, e.g. count_over_time(pod{namespace=\"…\"}[5m])".into(),
            )),
            Expr::Extension(_) => Err(unsupported("this expression")),
        }
    }

    pub(super) fn vector(&self, expr: &Expr) -> Result<Vec<Series>, EvalError> {
        match self.eval(expr)? {
            Value::Vector(v) => Ok(v),
            other => Err(EvalError::BadData(format!(
                "expected type instant vector, got {}",
                other.type_name()
            ))),
        }
    }

    pub(super) fn scalar(&self, expr: &Expr) -> Result<Vec<f64>, EvalError> {
        match self.eval(expr)? {
            Value::Scalar(v) => Ok(v),
            other => Err(EvalError::BadData(format!(
                "expected type scalar, got {}",
                other.type_name()
            ))),
        }
    }

    pub(super) fn string(&self, expr: &Expr) -> Result<String, EvalError> {
        match self.eval(expr)? {
            Value::String(s) => Ok(s),
            other => Err(EvalError::BadData(format!(
                "expected string argument, got {}",
                other.type_name()
            ))),
        }
    }
}

/// Unary minus: of every value; a vector's series lose their metric name.
fn negate(value: Value) -> Result<Value, EvalError> {
    match value {
        Value::Scalar(v) => Ok(Value::Scalar(v.into_iter().map(|x| -x).collect())),
        Value::Vector(series) => Ok(Value::Vector(map_points(series, |_, x| -x))),
        other => Err(EvalError::BadData(format!(
            "unary expression only allowed on expressions of type scalar or instant vector, got {}",
            other.type_name()
        ))),
    }
}

/// Applies `f(step, value)` to every present point; the metric name goes, as in Prometheus's
/// instant-vector functions.
pub(super) fn map_points(series: Vec<Series>, f: impl Fn(usize, f64) -> f64) -> Vec<Series> {
    series
        .into_iter()
        .map(|s| Series {
            labels: without_name(&s.labels),
            points: s
                .points
                .into_iter()
                .enumerate()
                .map(|(k, p)| p.map(|x| f(k, x)))
                .collect(),
        })
        .collect()
}

pub(super) fn without_name(labels: &Labels) -> Labels {
    let mut l = labels.clone();
    l.remove("__name__");
    l
}

/// What to do when two series that now share a label set both have a value at one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Clash {
    /// Keep the first series' value (`or` keeps the left side's).
    KeepFirst,
    /// Refuse, as Prometheus does after relabelling.
    Refuse,
}

/// Series with the same labels become one.
pub(super) fn merge_series(series: Vec<Series>, clash: Clash) -> Result<Vec<Series>, EvalError> {
    let mut out: Vec<Series> = Vec::new();
    for s in series {
        let Some(o) = out.iter_mut().find(|o| o.labels == s.labels) else {
            out.push(s);
            continue;
        };
        for (p, q) in o.points.iter_mut().zip(s.points) {
            match (p.is_some(), q.is_some(), clash) {
                (true, true, Clash::Refuse) => {
                    return Err(EvalError::Execution(
                        "vector cannot contain metrics with the same labelset".into(),
                    ))
                }
                (false, true, _) => *p = q,
                _ => {}
            }
        }
    }
    Ok(out)
}

/// Prometheus's answer for a φ that is NaN or outside [0, 1] (both quantile functions).
pub(super) fn quantile_out_of_range(q: f64) -> Option<f64> {
    if q.is_nan() {
        Some(f64::NAN)
    } else if q < 0.0 {
        Some(f64::NEG_INFINITY)
    } else if q > 1.0 {
        Some(f64::INFINITY)
    } else {
        None
    }
}

/// Prometheus's `quantile`: linear interpolation between the closest ranks, NaN ranked below
/// every number (as Prometheus sorts them).
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if let Some(answer) = quantile_out_of_range(q) {
        return answer;
    }
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        _ => a.total_cmp(b),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}
