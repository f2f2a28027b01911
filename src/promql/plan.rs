//! Planning an expression: find its leaves — log range functions (answered from the store in
//! one pass each), subqueries (their inner expression evaluated at their own steps) and the parts
//! for the upstream (pushed down as queries of their own, with the same time or
//! start/end/step) — for the engine to compute before the evaluator (`eval.rs`) does the rest.
//! Whether a function can be evaluated here is the function table's answer (`functions.rs`).

use std::time::Duration;

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{AtModifier, Call, Expr, Offset};

use super::functions::{self, Evaluation, Function};
use super::operators::{Aggregation, BinaryOp};
use super::subquery::SubqueryCall;
use super::EvalError;
use crate::logql::rewrite::placeholder_index;

/// A log range function call to answer from the store.
#[derive(Debug, Clone)]
pub struct LogCall {
    pub function: Function,
    pub log: usize,
    pub range: Duration,
    pub offset_ns: i64,
    pub at: Option<AtModifier>,
    /// The labels a `sum by`/`sum without` directly above keeps: the store counts per group.
    pub grouping: Option<crate::logql::pipeline::Grouping>,
    /// The call's number arguments besides the range (`quantile_over_time`'s φ).
    pub params: Vec<f64>,
}

/// Which node of the parsed tree a computed leaf stands for: its address. The planner and the
/// evaluator walk the same borrowed tree, so no node is printed to be looked up (printing every
/// node made evaluation quadratic in the depth).
pub type NodeId = usize;

pub fn node_id(expr: &Expr) -> NodeId {
    expr as *const Expr as usize
}

#[derive(Debug, Default)]
pub struct Plan<'e> {
    pub logs: Vec<(NodeId, LogCall)>,
    pub subqueries: Vec<(NodeId, SubqueryCall<'e>)>,
    /// Sub-expressions for the upstream: node, text and whether the answer is a scalar.
    pub upstream: Vec<(NodeId, String, bool)>,
}

fn placeholder_of(expr: &Expr) -> Option<usize> {
    match expr {
        Expr::VectorSelector(vs) => vs.name.as_deref().and_then(placeholder_index),
        Expr::MatrixSelector(ms) => ms.vs.name.as_deref().and_then(placeholder_index),
        _ => None,
    }
}

fn involves_logs(expr: &Expr) -> bool {
    if placeholder_of(expr).is_some() {
        return true;
    }
    match expr {
        Expr::Aggregate(a) => {
            involves_logs(&a.expr) || a.param.as_ref().is_some_and(|p| involves_logs(p))
        }
        Expr::Unary(u) => involves_logs(&u.expr),
        Expr::Binary(b) => involves_logs(&b.lhs) || involves_logs(&b.rhs),
        Expr::Paren(p) => involves_logs(&p.expr),
        Expr::Subquery(s) => involves_logs(&s.expr),
        Expr::Call(c) => c.args.args.iter().any(|a| involves_logs(a)),
        _ => false,
    }
}

/// Whether evaluating `expr` asks the upstream: it has a selector that is not a log selector.
pub fn reads_upstream(expr: &Expr) -> bool {
    fn walk(expr: &Expr) -> bool {
        match expr {
            Expr::VectorSelector(_) | Expr::MatrixSelector(_) => placeholder_of(expr).is_none(),
            Expr::Aggregate(a) => walk(&a.expr) || a.param.as_ref().is_some_and(|p| walk(p)),
            Expr::Unary(u) => walk(&u.expr),
            Expr::Binary(b) => walk(&b.lhs) || walk(&b.rhs),
            Expr::Paren(p) => walk(&p.expr),
            Expr::Subquery(s) => walk(&s.expr),
            Expr::Call(c) => c.args.args.iter().any(|a| walk(a)),
            _ => false,
        }
    }
    deep_stack(|| walk(expr))
}

fn offset_ns(offset: &Option<Offset>) -> i64 {
    match offset {
        Some(Offset::Pos(d)) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Some(Offset::Neg(d)) => -i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        None => 0,
    }
}

fn unparen(mut expr: &Expr) -> &Expr {
    while let Expr::Paren(p) = expr {
        expr = &p.expr;
    }
    expr
}

/// Whether Janus can evaluate this node itself, given its children.
fn evaluable_here(expr: &Expr) -> bool {
    match expr {
        Expr::Aggregate(a) => Aggregation::from_token(a.op).is_some(),
        Expr::Binary(b) => BinaryOp::from_token(b.op).is_some(),
        Expr::Unary(_) | Expr::Paren(_) | Expr::NumberLiteral(_) | Expr::StringLiteral(_) => true,
        Expr::Call(c) => match Function::from_name(c.func.name) {
            Some(f) if subquery_argument(c).is_some() => f.applies_over_subquery(),
            // Of a selector, `timestamp` is the samples' own times, which only the upstream
            // has; of anything evaluated, it is the evaluation time (Prometheus's rule too).
            Some(Function::Timestamp) => !c
                .args
                .args
                .iter()
                .any(|a| matches!(unparen(a), Expr::VectorSelector(_))),
            // Range functions over selectors read raw samples: the upstream's.
            Some(f) => matches!(f.evaluation(), Evaluation::Map(_) | Evaluation::Instant),
            None => false,
        },
        _ => false,
    }
}

/// `evaluate_all` (the testing switch): push down only what Janus cannot evaluate (selectors, range functions over
/// them, functions it does not have) — the testing switch; otherwise every largest
/// sub-expression without log selectors goes to the upstream.
pub fn plan(expr: &Expr, evaluate_all: bool) -> Result<Plan<'_>, EvalError> {
    let mut plan = Plan::default();
    deep_stack(|| collect(expr, &mut plan, evaluate_all))?;
    Ok(plan)
}

/// Runs `f` on a fresh stack segment large enough for any expression the rewriter lets through
/// (`MAX_DEPTH` levels, even in a debug build), whatever thread it is called on.
pub fn deep_stack<R>(f: impl FnOnce() -> R) -> R {
    const STACK: usize = 64 << 20; // reserved address space; only touched pages are memory
    stacker::grow(STACK, f)
}

/// A parsed expression that is parsed and dropped on a deep stack: promql-parser's tree is
/// built, printed and freed recursively.
pub struct Parsed(Expr);

impl Parsed {
    pub fn parse(text: &str) -> Result<Self, String> {
        super::functions::register_with_parser();
        deep_stack(|| promql_parser::parser::parse(text)).map(Parsed)
    }
}

impl Parsed {
    /// Confines every metric selector to a tenant's scope (see [`super::confine`]).
    pub fn confine(&mut self, scope: &super::confine::Confinement<'_>) {
        deep_stack(|| super::confine::confine(&mut self.0, scope));
    }
}

impl std::ops::Deref for Parsed {
    type Target = Expr;
    fn deref(&self) -> &Expr {
        &self.0
    }
}

impl Drop for Parsed {
    fn drop(&mut self) {
        let placeholder = Expr::NumberLiteral(promql_parser::parser::NumberLiteral { val: 0.0 });
        let tree = std::mem::replace(&mut self.0, placeholder);
        deep_stack(move || drop(tree));
    }
}

/// The subquery among a call's arguments, if any.
fn subquery_argument(c: &Call) -> Option<&promql_parser::parser::SubqueryExpr> {
    c.args.args.iter().find_map(|a| match a.as_ref() {
        Expr::Subquery(sq) => Some(sq),
        _ => None,
    })
}

/// Plans a range function over a subquery: its inner expression is evaluated (planned in turn)
/// at the subquery's own steps, then the function runs over each outer window.
fn push_subquery_call<'e>(
    expr: &'e Expr,
    c: &'e Call,
    function: Function,
    plan: &mut Plan<'e>,
) -> Result<(), EvalError> {
    let Some(sq) = subquery_argument(c) else {
        return Ok(());
    };
    // The other arguments, in order: numbers (a scalar expression there is not supported yet).
    let mut params = Vec::new();
    for a in &c.args.args {
        match unparen(a) {
            Expr::Subquery(_) => {}
            Expr::NumberLiteral(n) => params.push(n.val),
            _ => {
                return Err(EvalError::BadData(format!(
                    "{} over a subquery needs numbers as its other arguments",
                    c.func.name
                )))
            }
        }
    }
    plan.subqueries.push((
        node_id(expr),
        SubqueryCall {
            function,
            params,
            inner: &sq.expr,
            range: sq.range,
            step: sq.step,
            offset_ns: offset_ns(&sq.offset),
            at: sq.at.clone(),
        },
    ));
    Ok(())
}

/// Walks `expr` top-down, adding its leaves to `plan`.
fn collect<'e>(expr: &'e Expr, plan: &mut Plan<'e>, evaluate_all: bool) -> Result<(), EvalError> {
    let logs = involves_logs(expr);
    // Janus evaluates what involves logs, and under the testing switch all it can.
    if !(logs || evaluate_all && evaluable_here(expr)) {
        push_upstream(expr, plan);
        return Ok(());
    }
    match expr {
        Expr::Call(c) => collect_call(expr, c, plan, evaluate_all),
        Expr::Aggregate(a) if summed_log_call(a).is_some() => {
            let (node, c, f) = summed_log_call(a).ok_or_else(|| EvalError::BadData("a summed log function".into()))?;
            let grouping = match &a.modifier {
                Some(promql_parser::parser::LabelModifier::Include(by)) => {
                    crate::logql::pipeline::Grouping::By(by.labels.clone())
                }
                Some(promql_parser::parser::LabelModifier::Exclude(without)) => {
                    crate::logql::pipeline::Grouping::Without(without.labels.clone())
                }
                None => crate::logql::pipeline::Grouping::By(Vec::new()),
            };
            push_log_call(node, c, f, plan, Some(grouping))?;
            a.param
                .as_ref()
                .map_or(Ok(()), |p| collect(p, plan, evaluate_all))
        }
        Expr::Aggregate(a) => {
            collect(&a.expr, plan, evaluate_all)?;
            a.param
                .as_ref()
                .map_or(Ok(()), |p| collect(p, plan, evaluate_all))
        }
        Expr::Binary(b) => {
            collect(&b.lhs, plan, evaluate_all)?;
            collect(&b.rhs, plan, evaluate_all)
        }
        Expr::Unary(u) => collect(&u.expr, plan, evaluate_all),
        Expr::Paren(p) => collect(&p.expr, plan, evaluate_all),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::Subquery(_) => Err(EvalError::BadData(format!(
            "a subquery over log metrics needs a range function around it: one of {}",
            functions::names(Function::applies_over_subquery)
        ))),
        _ => Err(EvalError::BadData(
            "a log selector inside an expression needs a log range function around it, e.g. rate(pod{namespace=\"…\"} |= \"error\" [5m])".into(),
        )),
    }
}

/// A sub-expression without log selectors, for the upstream (literals need no one).
fn push_upstream(expr: &Expr, plan: &mut Plan<'_>) {
    if !matches!(expr, Expr::NumberLiteral(_) | Expr::StringLiteral(_)) {
        plan.upstream.push((
            node_id(expr),
            expr.to_string(),
            expr.value_type() == ValueType::Scalar,
        ));
    }
}

/// A call that Janus evaluates (or that reads logs): a subquery call, a log range function, or
/// an instant function whose arguments are planned in turn.
fn collect_call<'e>(
    expr: &'e Expr,
    c: &'e Call,
    plan: &mut Plan<'e>,
    evaluate_all: bool,
) -> Result<(), EvalError> {
    let function = Function::from_name(c.func.name);
    match function {
        Some(f) if subquery_argument(c).is_some() && f.applies_over_subquery() => {
            return push_subquery_call(expr, c, f, plan)
        }
        Some(f) if f.reads_logs() => return push_log_call(expr, c, f, plan, None),
        // Over a log selector, these read the values its `| unwrap` takes from the lines.
        Some(f) if f.reads_unwrapped() && over_log_selector(c, f) => {
            return push_log_call(expr, c, f, plan, None)
        }
        _ => {}
    }
    let reads_range = |a: &Expr| matches!(a, Expr::MatrixSelector(_) | Expr::Subquery(_));
    if c.args
        .args
        .iter()
        .any(|a| reads_range(a) && involves_logs(a))
    {
        return Err(EvalError::BadData(format!(
            "{} cannot read log lines: use one of {} over a log selector",
            c.func.name,
            functions::names(Function::reads_logs)
        )));
    }
    if function.is_none() {
        return Err(EvalError::BadData(format!(
            "function {} is not supported in expressions that involve log selectors",
            c.func.name
        )));
    }
    c.args
        .args
        .iter()
        .try_for_each(|a| collect(a, plan, evaluate_all))
}

/// A log range function over a log selector: answered from the store.
fn push_log_call(
    expr: &Expr,
    c: &Call,
    function: Function,
    plan: &mut Plan<'_>,
    grouping: Option<crate::logql::pipeline::Grouping>,
) -> Result<(), EvalError> {
    let arg = c
        .args
        .args
        .get(function.range_argument().unwrap_or(0))
        .map(|a| a.as_ref());
    let mut params = Vec::new();
    for (i, a) in c.args.args.iter().enumerate() {
        if Some(i) == function.range_argument() {
            continue;
        }
        match unparen(a) {
            Expr::NumberLiteral(n) => params.push(n.val),
            _ => {
                return Err(EvalError::BadData(format!(
                    "{} over logs takes a number literal besides its range",
                    c.func.name
                )))
            }
        }
    }
    if let Some(Expr::Subquery(_)) = arg {
        return Err(EvalError::BadData(format!(
            "{} over a subquery of log metrics is not supported; use one of {}",
            c.func.name,
            functions::names(Function::applies_over_subquery)
        )));
    }
    let Some(Expr::MatrixSelector(ms)) = arg else {
        return Err(EvalError::BadData(format!(
            "{} needs a log range selector such as pod{{namespace=\"…\"}}[5m]",
            c.func.name
        )));
    };
    let log = ms
        .vs
        .name
        .as_deref()
        .and_then(placeholder_index)
        .ok_or_else(|| {
            EvalError::BadData(format!("{} over logs needs a log selector", c.func.name))
        })?;
    plan.logs.push((
        node_id(expr),
        LogCall {
            function,
            log,
            range: ms.range,
            offset_ns: offset_ns(&ms.vs.offset),
            at: ms.vs.at.clone(),
            grouping,
            params,
        },
    ));
    Ok(())
}

/// Whether the call's range argument is a log selector's range.
fn over_log_selector(c: &Call, f: Function) -> bool {
    matches!(
        c.args.args.get(f.range_argument().unwrap_or(0)).map(|a| a.as_ref()),
        Some(Expr::MatrixSelector(ms)) if ms.vs.name.as_deref().and_then(placeholder_index).is_some()
    )
}

/// `sum [by|without (…)] (f(<log selector>[d]))` where `f` counts lines or bytes: the sum over
/// streams is the count over the group's lines, so the store may count per group directly.
fn summed_log_call(a: &promql_parser::parser::AggregateExpr) -> Option<(&Expr, &Call, Function)> {
    if Aggregation::from_token(a.op) != Some(Aggregation::Sum) {
        return None;
    }
    let inner = unparen(&a.expr);
    let Expr::Call(c) = inner else { return None };
    let f = Function::from_name(c.func.name)?;
    let counts = matches!(
        f,
        Function::CountOverTime | Function::Rate | Function::BytesOverTime | Function::BytesRate
    );
    let over_log_selector = matches!(
        c.args.args.first().map(|a| a.as_ref()),
        Some(Expr::MatrixSelector(ms)) if ms.vs.name.as_deref().and_then(placeholder_index).is_some()
    );
    (counts && over_log_selector).then_some((inner, c, f))
}
