//! Planning and running an expression that involves log selectors: find its leaves — log range
//! functions (answered from the store in one pass each) and every largest sub-expression without
//! log selectors (pushed down to the upstream as its own query, with the same time or
//! start/end/step) — compute them concurrently, then evaluate the rest (`eval.rs`).

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use promql_parser::parser::value::ValueType;
use promql_parser::parser::{AtModifier, Expr, Offset};

use super::eval::Evaluator;
use super::value::{Labels, Series, Steps, Value};
use crate::error::ApiError;
use crate::logql::rewrite::placeholder_index;
use crate::logql::LogQuery;
use crate::store::Store;

pub const LOG_FUNCTIONS: [&str; 5] = [
    "count_over_time",
    "rate",
    "bytes_over_time",
    "bytes_rate",
    "absent_over_time",
];

/// A log range function call to answer from the store.
#[derive(Debug, Clone)]
pub struct LogCall {
    pub function: &'static str,
    pub log: usize,
    pub range: Duration,
    pub offset_ns: i64,
    pub at: Option<AtModifier>,
}

/// A range function over a subquery of log metrics, e.g.
/// `max_over_time(rate(pod{…}[5m])[1h:1m])`: the inner expression is evaluated at the subquery's
/// own steps, then the function runs over each outer step's window.
#[derive(Debug, Clone)]
pub struct SubqueryCall<'e> {
    pub function: &'static str,
    /// The function's number arguments besides the subquery: `quantile_over_time`'s φ,
    /// `predict_linear`'s seconds, `holt_winters`' smoothing and trend factors.
    pub params: Vec<f64>,
    pub inner: &'e Expr,
    pub range: Duration,
    pub step: Option<Duration>,
    pub offset_ns: i64,
    pub at: Option<AtModifier>,
}

/// Range functions that can run over a subquery of log metrics.
pub const OVER_TIME: [&str; 20] = [
    "rate",
    "increase",
    "delta",
    "irate",
    "idelta",
    "deriv",
    "predict_linear",
    "changes",
    "resets",
    "double_exponential_smoothing",
    "avg_over_time",
    "min_over_time",
    "max_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
    "present_over_time",
    "stddev_over_time",
    "stdvar_over_time",
    "quantile_over_time",
];

/// Prometheus's default subquery resolution (its default evaluation interval).
const DEFAULT_SUBQUERY_STEP: Duration = Duration::from_secs(60);

fn at_time(at: &AtModifier, outer: &Steps) -> i64 {
    match at {
        AtModifier::Start => outer.start,
        AtModifier::End => outer.time(outer.count.saturating_sub(1)),
        AtModifier::At(t) => match t.duration_since(std::time::UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
        },
    }
}

impl SubqueryCall<'_> {
    fn eval_time(&self, outer: &Steps, k: usize) -> i64 {
        let t = self
            .at
            .as_ref()
            .map_or(outer.time(k), |at| at_time(at, outer));
        t.saturating_sub(self.offset_ns)
    }

    /// The inner steps: aligned to multiples of the subquery step, covering every outer window
    /// (as Prometheus aligns them). Every inner step holds a sample of each inner series, so a
    /// grid of more than `max_points` steps is refused before anything is allocated for it.
    pub fn inner_steps(&self, outer: &Steps, max_points: usize) -> Result<Steps, ApiError> {
        let step = i128::try_from(self.step.unwrap_or(DEFAULT_SUBQUERY_STEP).as_nanos())
            .unwrap_or(i128::MAX)
            .max(1);
        let range = i128::try_from(self.range.as_nanos()).unwrap_or(i128::MAX);
        let first = i128::from(self.eval_time(outer, 0)) - range;
        let last = i128::from(self.eval_time(outer, outer.count.saturating_sub(1)));
        let mut start = first - first.rem_euclid(step);
        if start < first {
            start += step;
        }
        let count = if last < start {
            1
        } else {
            (last - start) / step + 1
        };
        if count > max_points as i128 {
            return Err(too_many_samples());
        }
        let (Ok(start), Ok(step)) = (i64::try_from(start), i64::try_from(step)) else {
            return Err(ApiError::BadData(
                "subquery range or step is out of the range of timestamps".into(),
            ));
        };
        Ok(Steps {
            start,
            step,
            count: count as usize,
        })
    }

    /// Applies the range function over each outer window `[t − range, t]` of the inner values.
    /// The inner steps are sorted, so each window is found by arithmetic, not by a search.
    pub fn apply(
        &self,
        inner: &Value,
        inner_steps: &Steps,
        outer: &Steps,
        deadline: std::time::Instant,
    ) -> Result<Value, ApiError> {
        let series = match inner {
            Value::Vector(v) => v.clone(),
            Value::Scalar(points) => vec![Series {
                labels: Labels::new(),
                points: points.iter().map(|p| Some(*p)).collect(),
            }],
            Value::String(_) => {
                return Err(ApiError::BadData(format!(
                    "expected type range vector in call to function {:?}, got string",
                    self.function
                )))
            }
        };
        let range = i64::try_from(self.range.as_nanos()).unwrap_or(i64::MAX);
        // Inner step indexes inside [begin, end], as a half-open range.
        let window = |begin: i64, end: i64| -> std::ops::Range<usize> {
            let index_at_or_after = |t: i64| -> usize {
                let offset = i128::from(t) - i128::from(inner_steps.start);
                if offset <= 0 {
                    return 0;
                }
                let step = i128::from(inner_steps.step);
                usize::try_from((offset + step - 1) / step)
                    .unwrap_or(usize::MAX)
                    .min(inner_steps.count)
            };
            let lo = index_at_or_after(begin);
            let hi = index_at_or_after(end.saturating_add(1));
            lo..hi.max(lo)
        };
        // Prometheus refuses factors outside (0, 1) once it has samples to smooth.
        if self.function == "double_exponential_smoothing"
            && series.iter().any(|s| s.points.iter().any(Option::is_some))
        {
            for (i, (what, short)) in [("smoothing", "sf"), ("trend", "tf")]
                .into_iter()
                .enumerate()
            {
                let f = self.params.get(i).copied().unwrap_or(f64::NAN);
                if !(f > 0.0 && f < 1.0) {
                    return Err(ApiError::Execution(format!(
                        "invalid {what} factor. Expected: 0 < {short} < 1, got: {f:.6}"
                    )));
                }
            }
        }
        let mut out = Vec::new();
        let mut samples: Vec<(i64, f64)> = Vec::new();
        for s in series {
            let mut labels = s.labels.clone();
            // Prometheus keeps the metric name for last_over_time only.
            if self.function != "last_over_time" {
                labels.remove("__name__");
            }
            let mut points = Vec::with_capacity(outer.count);
            for k in 0..outer.count {
                if k % 1024 == 0 && std::time::Instant::now() >= deadline {
                    return Err(ApiError::Timeout(
                        "query timed out in query execution".into(),
                    ));
                }
                let end = self.eval_time(outer, k);
                let begin = end.saturating_sub(range);
                samples.clear();
                let span = window(begin, end);
                samples.extend(span.filter_map(|j| {
                    s.points
                        .get(j)
                        .copied()
                        .flatten()
                        .map(|v| (inner_steps.time(j), v))
                }));
                let window = Window {
                    begin,
                    end,
                    at: outer.time(k),
                    range_seconds: self.range.as_secs_f64(),
                };
                points.push(if samples.is_empty() {
                    None
                } else {
                    over_time(self.function, &self.params, &samples, &window)
                });
            }
            out.push(Series { labels, points });
        }
        Ok(Value::Vector(out))
    }
}

/// The window a range function reads, in nanoseconds, and the evaluation time.
struct Window {
    begin: i64,
    end: i64,
    at: i64,
    range_seconds: f64,
}

/// Prometheus's words when a query would hold more samples than `--query.max-samples`.
pub fn too_many_samples() -> ApiError {
    ApiError::Execution(
        "query processing would load too many samples into memory in query execution".into(),
    )
}

/// A range function over one window's samples `(time ns, value)`, with Prometheus's semantics;
/// `None` where Prometheus answers nothing (fewer than two samples for rates and slopes).
fn over_time(function: &str, params: &[f64], samples: &[(i64, f64)], w: &Window) -> Option<f64> {
    let values = || samples.iter().map(|s| s.1).collect::<Vec<f64>>();
    let param = |i: usize| params.get(i).copied().unwrap_or(f64::NAN);
    Some(match function {
        "last_over_time" => samples[samples.len() - 1].1,
        "present_over_time" => 1.0,
        "quantile_over_time" => super::eval::quantile(param(0), &mut values()),
        "rate" | "increase" | "delta" => return extrapolated_rate(function, samples, w),
        "irate" | "idelta" => {
            let [.., (t0, v0), (t1, v1)] = samples else {
                return None;
            };
            let value = if function == "irate" && v1 < v0 {
                *v1
            } else {
                v1 - v0
            };
            let interval = (t1 - t0) as f64 / 1e9;
            if interval == 0.0 {
                return None;
            }
            if function == "irate" {
                value / interval
            } else {
                value
            }
        }
        "deriv" => {
            if samples.len() < 2 {
                return None;
            }
            linear_regression(samples, samples[0].0).0
        }
        "predict_linear" => {
            if samples.len() < 2 {
                return None;
            }
            let (slope, intercept) = linear_regression(samples, w.at);
            intercept + slope * param(0)
        }
        "double_exponential_smoothing" => return holt_winters(&values(), param(0), param(1)),
        "changes" | "resets" => {
            let mut n = 0.0;
            for pair in samples.windows(2) {
                let (prev, cur) = (pair[0].1, pair[1].1);
                let counted = if function == "changes" {
                    cur != prev && !(cur.is_nan() && prev.is_nan())
                } else {
                    cur < prev
                };
                if counted {
                    n += 1.0;
                }
            }
            n
        }
        // avg, min, max, sum, count, stddev, stdvar: the aggregation of the same name.
        other => {
            super::eval::reduce(other.trim_end_matches("_over_time"), &values()).unwrap_or(f64::NAN)
        }
    })
}

/// `rate`, `increase` and `delta`: the change over the window, counter resets corrected for the
/// first two, extrapolated towards the window's edges as Prometheus does.
fn extrapolated_rate(function: &str, samples: &[(i64, f64)], w: &Window) -> Option<f64> {
    let is_counter = function != "delta";
    let (first, last) = (samples.first()?, samples.last()?);
    if samples.len() < 2 {
        return None;
    }
    let mut result = last.1 - first.1;
    if is_counter {
        let mut previous = 0.0;
        for s in samples {
            if s.1 < previous {
                result += previous;
            }
            previous = s.1;
        }
    }
    let mut to_start = (first.0 - w.begin) as f64 / 1e9;
    let to_end = (w.end - last.0) as f64 / 1e9;
    let sampled = (last.0 - first.0) as f64 / 1e9;
    let average = sampled / (samples.len() - 1) as f64;
    if is_counter && result > 0.0 && first.1 >= 0.0 {
        to_start = to_start.min(sampled * (first.1 / result));
    }
    let threshold = average * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        average / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        average / 2.0
    };
    result *= interval / sampled;
    if function == "rate" {
        result /= w.range_seconds;
    }
    Some(result)
}

/// Adds `inc` to a compensated sum `(sum, compensation)`.
fn kahan_add(acc: &mut (f64, f64), inc: f64) {
    let (sum, c) = *acc;
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    *acc = (t, c);
}

/// Least-squares slope and intercept of the samples, times in seconds from `intercept_time`.
fn linear_regression(samples: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let first = samples[0].1;
    if samples.iter().all(|s| s.1 == first) {
        return if first.is_infinite() {
            (f64::NAN, f64::NAN)
        } else {
            (0.0, first)
        };
    }
    // Compensated (Kahan–Neumaier) sums, as Prometheus computes them.
    let mut n = 0.0;
    let (mut x, mut y, mut xy, mut x2) = ((0.0, 0.0), (0.0, 0.0), (0.0, 0.0), (0.0, 0.0));
    for &(t, v) in samples {
        let dx = (t - intercept_time) as f64 / 1e9;
        n += 1.0;
        kahan_add(&mut x, dx);
        kahan_add(&mut y, v);
        kahan_add(&mut xy, dx * v);
        kahan_add(&mut x2, dx * dx);
    }
    let (sum_x, sum_y, sum_xy, sum_x2) = (x.0 + x.1, y.0 + y.1, xy.0 + xy.1, x2.0 + x2.1);
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    (slope, sum_y / n - slope * sum_x / n)
}

/// Double exponential smoothing (Prometheus 2.x's `holt_winters`); the factors are checked
/// before (`SubqueryCall::apply`).
fn holt_winters(values: &[f64], sf: f64, tf: f64) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let (mut s0, mut s1, mut b) = (0.0, values[0], values[1] - values[0]);
    for (i, &v) in values.iter().enumerate().skip(1) {
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let next = sf * v + (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, next);
    }
    Some(s1)
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

/// Instant-vector functions the evaluator computes itself.
pub const LOCAL_FUNCTIONS: [&str; 46] = [
    "abs",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "cos",
    "cosh",
    "sin",
    "sinh",
    "tan",
    "tanh",
    "deg",
    "rad",
    "pi",
    "ceil",
    "floor",
    "sqrt",
    "exp",
    "ln",
    "log2",
    "log10",
    "sgn",
    "round",
    "clamp",
    "clamp_min",
    "clamp_max",
    "scalar",
    "vector",
    "time",
    "sort",
    "sort_desc",
    "count_values",
    "label_replace",
    "label_join",
    "histogram_quantile",
    "hour",
    "minute",
    "month",
    "year",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "absent",
];

/// Whether Janus can evaluate this node itself (given its children).
fn unparen(mut expr: &Expr) -> &Expr {
    while let Expr::Paren(p) = expr {
        expr = &p.expr;
    }
    expr
}

fn evaluable_here(expr: &Expr) -> bool {
    match expr {
        Expr::Aggregate(a) => matches!(
            a.op.to_string().as_str(),
            "sum"
                | "avg"
                | "min"
                | "max"
                | "count"
                | "group"
                | "stddev"
                | "stdvar"
                | "topk"
                | "bottomk"
                | "quantile"
                | "count_values"
        ),
        Expr::Binary(_)
        | Expr::Unary(_)
        | Expr::Paren(_)
        | Expr::NumberLiteral(_)
        | Expr::StringLiteral(_) => true,
        Expr::Call(c) if is_subquery_call(c) => true,
        // Of a selector, `timestamp` is the samples' own times, which only the upstream has; of
        // anything evaluated, it is the evaluation time (Prometheus's rule too).
        Expr::Call(c) if c.func.name == "timestamp" => !c
            .args
            .args
            .iter()
            .any(|a| matches!(unparen(a), Expr::VectorSelector(_))),
        Expr::Call(c) => {
            LOCAL_FUNCTIONS.contains(&c.func.name)
                && !c
                    .args
                    .args
                    .iter()
                    .any(|a| matches!(a.as_ref(), Expr::MatrixSelector(_) | Expr::Subquery(_)))
        }
        _ => false,
    }
}

/// `smallest`: push down only what Janus cannot evaluate (selectors, range functions over
/// them, functions it does not have) — the testing switch; otherwise every largest
/// sub-expression without log selectors goes to the upstream.
pub fn plan(expr: &Expr, smallest: bool) -> Result<Plan<'_>, ApiError> {
    let mut plan = Plan::default();
    deep_stack(|| collect(expr, &mut plan, smallest))?;
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
        deep_stack(|| promql_parser::parser::parse(text)).map(Parsed)
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

/// A range function Janus applies itself over a subquery: `max_over_time(expr[1h:1m])`.
fn is_subquery_call(c: &promql_parser::parser::Call) -> bool {
    OVER_TIME.contains(&c.func.name)
        && c.args
            .args
            .iter()
            .any(|a| matches!(a.as_ref(), Expr::Subquery(_)))
}

/// Plans a range function over a subquery: its inner expression is evaluated (planned in turn)
/// at the subquery's own steps, then the function runs over each outer window.
fn push_subquery_call<'e>(
    expr: &'e Expr,
    c: &'e promql_parser::parser::Call,
    plan: &mut Plan<'e>,
) -> Result<(), ApiError> {
    let mut subquery = None;
    // The other arguments, in order: numbers (a scalar expression there is not supported yet).
    let mut params = Vec::new();
    for a in &c.args.args {
        match a.as_ref() {
            Expr::Subquery(sq) => subquery = Some(sq),
            Expr::NumberLiteral(n) => params.push(n.val),
            _ => {
                return Err(ApiError::BadData(format!(
                    "{} over a subquery needs numbers as its other arguments",
                    c.func.name
                )))
            }
        }
    }
    let Some(sq) = subquery else {
        return Ok(());
    };
    plan.subqueries.push((
        node_id(expr),
        SubqueryCall {
            function: c.func.name,
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

fn collect<'e>(expr: &'e Expr, plan: &mut Plan<'e>, smallest: bool) -> Result<(), ApiError> {
    if smallest && !involves_logs(expr) && evaluable_here(expr) {
        return match expr {
            Expr::Aggregate(a) => {
                collect(&a.expr, plan, smallest)?;
                a.param
                    .as_ref()
                    .map_or(Ok(()), |p| collect(p, plan, smallest))
            }
            Expr::Binary(b) => {
                collect(&b.lhs, plan, smallest)?;
                collect(&b.rhs, plan, smallest)
            }
            Expr::Unary(u) => collect(&u.expr, plan, smallest),
            Expr::Paren(p) => collect(&p.expr, plan, smallest),
            Expr::Call(c) if is_subquery_call(c) => push_subquery_call(expr, c, plan),
            Expr::Call(c) => c
                .args
                .args
                .iter()
                .try_for_each(|a| collect(a, plan, smallest)),
            _ => Ok(()),
        };
    }
    if !involves_logs(expr) {
        if !matches!(expr, Expr::NumberLiteral(_) | Expr::StringLiteral(_)) {
            plan.upstream.push((
                node_id(expr),
                expr.to_string(),
                expr.value_type() == ValueType::Scalar,
            ));
        }
        return Ok(());
    }
    match expr {
        Expr::Call(c) if is_subquery_call(c) => push_subquery_call(expr, c, plan),
        Expr::Call(c) if LOG_FUNCTIONS.contains(&c.func.name) => {
            let arg = c.args.args.first().map(|a| a.as_ref());
            if let Some(Expr::Subquery(_)) = arg {
                return Err(ApiError::BadData(format!(
                    "{} over a subquery of log metrics is not supported; use one of {}",
                    c.func.name,
                    OVER_TIME.join(", ")
                )));
            }
            let Some(Expr::MatrixSelector(ms)) = arg else {
                return Err(ApiError::BadData(format!(
                    "{} needs a log range selector such as pod{{namespace=\"…\"}}[5m]",
                    c.func.name
                )));
            };
            let log = ms.vs.name.as_deref().and_then(placeholder_index).ok_or_else(|| {
                ApiError::BadData(format!("{} over logs needs a log selector", c.func.name))
            })?;
            plan.logs.push((
                node_id(expr),
                LogCall {
                    function: c.func.name,
                    log,
                    range: ms.range,
                    offset_ns: offset_ns(&ms.vs.offset),
                    at: ms.vs.at.clone(),
                },
            ));
            Ok(())
        }
        Expr::Call(c) => {
            if c.args.args.iter().any(|a| matches!(a.as_ref(), Expr::MatrixSelector(_) | Expr::Subquery(_)) && involves_logs(a)) {
                return Err(ApiError::BadData(format!(
                    "{} cannot read log lines: use one of {} over a log selector",
                    c.func.name,
                    LOG_FUNCTIONS.join(", ")
                )));
            }
            c.args.args.iter().try_for_each(|a| collect(a, plan, smallest))
        }
        Expr::Aggregate(a) => {
            collect(&a.expr, plan, smallest)?;
            if let Some(p) = &a.param {
                collect(p, plan, smallest)?;
            }
            Ok(())
        }
        Expr::Binary(b) => {
            collect(&b.lhs, plan, smallest)?;
            collect(&b.rhs, plan, smallest)
        }
        Expr::Unary(u) => collect(&u.expr, plan, smallest),
        Expr::Paren(p) => collect(&p.expr, plan, smallest),
        Expr::Subquery(_) => Err(ApiError::BadData(format!(
            "a subquery over log metrics needs a range function around it: one of {}",
            OVER_TIME.join(", ")
        ))),
        _ => Err(ApiError::BadData(
            "a log selector inside an expression needs a log range function around it, e.g. rate(pod{namespace=\"…\"} |= \"error\" [5m])".into(),
        )),
    }
}

/// Answers one log range function at every step, reading the window's lines once.
pub fn log_call(
    store: &Store,
    query: &LogQuery,
    call: &LogCall,
    steps: &Steps,
    deadline: std::time::Instant,
    cancelled: &AtomicBool,
    max_streams: usize,
) -> Result<Value, crate::store::scan::ScanStop> {
    let range = i64::try_from(call.range.as_nanos()).unwrap_or(i64::MAX);
    let eval_time = |k: usize| -> i64 {
        let t = match &call.at {
            Some(AtModifier::Start) => steps.start,
            Some(AtModifier::End) => steps.time(steps.count.saturating_sub(1)),
            Some(AtModifier::At(t)) => match t.duration_since(std::time::UNIX_EPOCH) {
                Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
                Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
            },
            None => steps.time(k),
        };
        t.saturating_sub(call.offset_ns)
    };
    let mut bounds: Vec<i64> = (0..steps.count)
        .flat_map(|k| {
            let end = eval_time(k);
            [end.saturating_sub(range), end]
        })
        .collect();
    bounds.sort_unstable();
    bounds.dedup();
    let buckets = store.buckets(query, &bounds, deadline, cancelled, max_streams)?;
    let index = |t: i64| bounds.partition_point(|&b| b < t);
    let labels_of = |values: &[String]| -> Labels {
        query
            .kind
            .labels()
            .iter()
            .map(|l| l.to_string())
            .zip(values.iter().cloned())
            .collect()
    };
    let seconds = call.range.as_secs_f64();
    if call.function == "absent_over_time" {
        let mut totals = vec![0u64; bounds.len()];
        for b in buckets.values() {
            for (t, (count, _)) in totals.iter_mut().zip(b) {
                *t += count;
            }
        }
        let prefix = prefix_sums(&totals);
        let points = (0..steps.count)
            .map(|k| {
                let end = eval_time(k);
                let n = prefix[index(end)] - prefix[index(end.saturating_sub(range))];
                (n == 0).then_some(1.0)
            })
            .collect();
        let mut labels = Labels::new();
        for m in &query.targets {
            if let promql_parser::label::MatchOp::Equal = m.op {
                labels.insert(query.kind.target_label().to_string(), m.value.clone());
            }
        }
        for f in &query.fields {
            if let Some(v) = f.equal_value() {
                labels.insert(query.kind.labels()[f.field].to_string(), v.to_string());
            }
        }
        return Ok(Value::Vector(vec![Series { labels, points }]));
    }
    let mut out = Vec::with_capacity(buckets.len());
    for (values, b) in buckets {
        let counts: Vec<u64> = b.iter().map(|x| x.0).collect();
        let bytes: Vec<u64> = b.iter().map(|x| x.1).collect();
        let (pc, pb) = (prefix_sums(&counts), prefix_sums(&bytes));
        let points = (0..steps.count)
            .map(|k| {
                let end = eval_time(k);
                let (hi, lo) = (index(end), index(end.saturating_sub(range)));
                let n = pc[hi] - pc[lo];
                if n == 0 {
                    return None;
                }
                let bytes = (pb[hi] - pb[lo]) as f64;
                Some(match call.function {
                    "count_over_time" => n as f64,
                    "rate" => n as f64 / seconds,
                    "bytes_over_time" => bytes,
                    _ => bytes / seconds,
                })
            })
            .collect();
        out.push(Series {
            labels: labels_of(&values),
            points,
        });
    }
    Ok(Value::Vector(out))
}

/// `p[j]` = sum of `v[1..=j]` (bucket 0 is never used).
fn prefix_sums(v: &[u64]) -> Vec<u64> {
    let mut p = Vec::with_capacity(v.len());
    let mut sum = 0;
    for (j, x) in v.iter().enumerate() {
        if j > 0 {
            sum += x;
        }
        p.push(sum);
    }
    p
}

/// Evaluates `expr` with its leaves already computed.
pub fn evaluate(
    expr: &Expr,
    steps: Steps,
    inputs: &HashMap<NodeId, Value>,
) -> Result<Value, ApiError> {
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

/// How many calls of `function` the expression holds (run on a deep stack).
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
