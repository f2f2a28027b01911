//! PromQL evaluation over step-aligned values, for expressions that involve log selectors.
//!
//! Leaves are precomputed by the planner (`plan.rs`): log range functions from the store, and
//! every largest sub-expression without log selectors from the upstream. This module evaluates
//! what is above them: literals, aggregations, binary operators with vector matching, and the
//! instant-vector functions, with Prometheus's semantics and error wording.

use std::collections::{BTreeMap, HashMap};

use promql_parser::parser::{
    AggregateExpr, BinaryExpr, Call, Expr, LabelModifier, VectorMatchCardinality,
};

use super::value::{Labels, Series, Steps, Value};
use crate::error::ApiError;

pub struct Evaluator<'a> {
    pub steps: Steps,
    /// Precomputed leaves, by the node they stand for.
    pub inputs: &'a HashMap<super::plan::NodeId, Value>,
    /// Compiled size each `label_replace` regex may take: the query's regex budget shared by
    /// all of its `label_replace` calls.
    pub regex_limit: usize,
}

fn execution(message: impl Into<String>) -> ApiError {
    ApiError::Execution(message.into())
}

fn unsupported(what: &str) -> ApiError {
    ApiError::BadData(format!(
        "{what} is not supported yet in expressions that involve log selectors"
    ))
}

impl Evaluator<'_> {
    pub fn eval(&self, expr: &Expr) -> Result<Value, ApiError> {
        if let Some(v) = self.inputs.get(&super::plan::node_id(expr)) {
            return Ok(v.clone());
        }
        match expr {
            Expr::NumberLiteral(n) => Ok(Value::Scalar(vec![n.val; self.steps.count])),
            Expr::StringLiteral(s) => Ok(Value::String(s.val.clone())),
            Expr::Paren(p) => self.eval(&p.expr),
            Expr::Unary(u) => match self.eval(&u.expr)? {
                Value::Scalar(v) => Ok(Value::Scalar(v.into_iter().map(|x| -x).collect())),
                Value::Vector(series) => Ok(Value::Vector(
                    series
                        .into_iter()
                        .map(|s| Series {
                            labels: without_name(&s.labels),
                            points: s.points.into_iter().map(|p| p.map(|x| -x)).collect(),
                        })
                        .collect(),
                )),
                other => Err(ApiError::BadData(format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                    other.type_name()
                ))),
            },
            Expr::Binary(b) => self.binary(b),
            Expr::Aggregate(a) => self.aggregate(a),
            Expr::Call(c) => self.call(c),
            Expr::Subquery(_) => Err(unsupported("a subquery over log metrics")),
            Expr::VectorSelector(_) | Expr::MatrixSelector(_) => Err(ApiError::BadData(
                "a log selector needs a log range function around it, e.g. count_over_time(pod{namespace=\"…\"}[5m])".into(),
            )),
            Expr::Extension(_) => Err(unsupported("this expression")),
        }
    }

    fn vector(&self, expr: &Expr) -> Result<Vec<Series>, ApiError> {
        match self.eval(expr)? {
            Value::Vector(v) => Ok(v),
            other => Err(ApiError::BadData(format!(
                "expected type instant vector, got {}",
                other.type_name()
            ))),
        }
    }

    fn scalar(&self, expr: &Expr) -> Result<Vec<f64>, ApiError> {
        match self.eval(expr)? {
            Value::Scalar(v) => Ok(v),
            other => Err(ApiError::BadData(format!(
                "expected type scalar, got {}",
                other.type_name()
            ))),
        }
    }

    fn binary(&self, b: &BinaryExpr) -> Result<Value, ApiError> {
        let op = b.op.to_string();
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let lhs = self.eval(&b.lhs)?;
        let rhs = self.eval(&b.rhs)?;
        match (lhs, rhs) {
            (Value::Scalar(l), Value::Scalar(r)) => Ok(Value::Scalar(
                l.iter()
                    .zip(&r)
                    .map(|(a, b)| {
                        let (v, keep) = apply(&op, *a, *b);
                        if is_comparison(&op) {
                            f64::from(u8::from(keep))
                        } else {
                            v
                        }
                    })
                    .collect(),
            )),
            (Value::Vector(v), Value::Scalar(s)) => Ok(Value::Vector(vector_scalar(&op, v, &s, false, return_bool))),
            (Value::Scalar(s), Value::Vector(v)) => Ok(Value::Vector(vector_scalar(&op, v, &s, true, return_bool))),
            (Value::Vector(l), Value::Vector(r)) => self.vector_vector(b, &op, l, r, return_bool),
            (l, r) => Err(ApiError::BadData(format!(
                "binary expression must contain only scalar and instant vector types, got {} and {}",
                l.type_name(),
                r.type_name()
            ))),
        }
    }

    fn vector_vector(
        &self,
        b: &BinaryExpr,
        op: &str,
        lhs: Vec<Series>,
        rhs: Vec<Series>,
        return_bool: bool,
    ) -> Result<Value, ApiError> {
        let matching = b.modifier.as_ref().and_then(|m| m.matching.clone());
        let card = b
            .modifier
            .as_ref()
            .map(|m| m.card.clone())
            .unwrap_or(VectorMatchCardinality::OneToOne);
        let sig = |labels: &Labels| signature(labels, matching.as_ref());
        let n = self.steps.count;
        if matches!(op, "and" | "or" | "unless") {
            let rsigs: Vec<String> = rhs.iter().map(|s| sig(&s.labels)).collect();
            let lsigs: Vec<String> = lhs.iter().map(|s| sig(&s.labels)).collect();
            let mut out = Vec::new();
            for (i, s) in lhs.iter().enumerate() {
                let mut points = s.points.clone();
                for (k, p) in points.iter_mut().enumerate() {
                    let on_right = rhs
                        .iter()
                        .zip(&rsigs)
                        .any(|(r, rs)| *rs == lsigs[i] && r.points[k].is_some());
                    let keep = match op {
                        "and" => on_right,
                        "unless" => !on_right,
                        _ => true,
                    };
                    if !keep {
                        *p = None;
                    }
                }
                out.push(Series {
                    labels: s.labels.clone(),
                    points,
                });
            }
            if op == "or" {
                for (j, r) in rhs.iter().enumerate() {
                    let mut points = r.points.clone();
                    for (k, p) in points.iter_mut().enumerate() {
                        let on_left = lhs
                            .iter()
                            .zip(&lsigs)
                            .any(|(l, ls)| *ls == rsigs[j] && l.points[k].is_some());
                        if on_left {
                            *p = None;
                        }
                    }
                    out.push(Series {
                        labels: r.labels.clone(),
                        points,
                    });
                }
            }
            return Ok(Value::Vector(merge_same_labels(out)));
        }
        // One side is "one": its signatures must be unique at every step.
        let (many, one, swapped, include) = match &card {
            VectorMatchCardinality::OneToMany(labels) => {
                (&rhs, &lhs, true, Some(labels.labels.clone()))
            }
            VectorMatchCardinality::ManyToOne(labels) => {
                (&lhs, &rhs, false, Some(labels.labels.clone()))
            }
            _ => (&lhs, &rhs, false, None),
        };
        let one_sigs: Vec<String> = one.iter().map(|s| sig(&s.labels)).collect();
        let many_sigs: Vec<String> = many.iter().map(|s| sig(&s.labels)).collect();
        let mut results: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
        for k in 0..n {
            let mut by_sig: HashMap<&str, usize> = HashMap::new();
            for (j, s) in one.iter().enumerate() {
                if s.points[k].is_none() {
                    continue;
                }
                if let Some(prev) = by_sig.insert(&one_sigs[j], j) {
                    let side = if swapped { "left" } else { "right" };
                    return Err(execution(format!(
                        "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                        format_labels(&sig_labels(&one[j].labels, matching.as_ref())),
                        format_labels(&one[prev].labels),
                        format_labels(&one[j].labels)
                    )));
                }
            }
            let mut seen_one_to_one: HashMap<&str, ()> = HashMap::new();
            for (i, s) in many.iter().enumerate() {
                let Some(mv) = s.points[k] else { continue };
                let Some(&j) = by_sig.get(many_sigs[i].as_str()) else {
                    continue;
                };
                let Some(ov) = one[j].points[k] else { continue };
                if include.is_none() && seen_one_to_one.insert(&many_sigs[i], ()).is_some() {
                    return Err(execution(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)",
                    ));
                }
                let (lv, rv) = if swapped { (ov, mv) } else { (mv, ov) };
                let (value, keep) = apply(op, lv, rv);
                let value = if is_comparison(op) && !return_bool {
                    lv
                } else {
                    value
                };
                if !keep && !return_bool {
                    continue;
                }
                let value = if return_bool {
                    f64::from(u8::from(keep))
                } else {
                    value
                };
                let labels = result_labels(
                    &s.labels,
                    &one[j].labels,
                    op,
                    return_bool,
                    matching.as_ref(),
                    include.as_deref(),
                );
                let slot = results.entry(labels).or_insert_with(|| vec![None; n]);
                if slot[k].is_some() {
                    return Err(execution(
                        "multiple matches for labels: grouping labels must ensure unique matches",
                    ));
                }
                slot[k] = Some(value);
            }
        }
        Ok(Value::Vector(
            results
                .into_iter()
                .map(|(labels, points)| Series { labels, points })
                .collect(),
        ))
    }

    fn aggregate(&self, a: &AggregateExpr) -> Result<Value, ApiError> {
        let op = a.op.to_string();
        let input = self.vector(&a.expr)?;
        let n = self.steps.count;
        let group_of = |labels: &Labels| -> Labels {
            match &a.modifier {
                None => Labels::new(),
                // `by` and `without` pick labels as `on` and `ignoring` do.
                modifier => sig_labels(labels, modifier.as_ref()),
            }
        };
        match op.as_str() {
            "topk" | "bottomk" | "quantile" => {
                let param = a
                    .param
                    .as_ref()
                    .ok_or_else(|| ApiError::BadData(format!("{op} needs a parameter")))?;
                let param = self.scalar(param)?;
                let mut groups: BTreeMap<Labels, Vec<usize>> = BTreeMap::new();
                for (i, s) in input.iter().enumerate() {
                    groups.entry(group_of(&s.labels)).or_default().push(i);
                }
                if op == "quantile" {
                    let mut out = Vec::new();
                    for (labels, members) in groups {
                        let points = (0..n)
                            .map(|k| {
                                let mut values: Vec<f64> =
                                    members.iter().filter_map(|&i| input[i].points[k]).collect();
                                (!values.is_empty()).then(|| quantile(param[k], &mut values))
                            })
                            .collect();
                        out.push(Series { labels, points });
                    }
                    return Ok(Value::Vector(out));
                }
                let mut points: Vec<Vec<Option<f64>>> =
                    input.iter().map(|_| vec![None; n]).collect();
                for members in groups.values() {
                    for k in 0..n {
                        let count = param[k];
                        if count.is_nan() || count < 1.0 {
                            continue;
                        }
                        let mut present: Vec<(usize, f64)> = members
                            .iter()
                            .filter_map(|&i| input[i].points[k].map(|v| (i, v)))
                            .collect();
                        present.sort_by(|x, y| {
                            let o = if op == "topk" {
                                y.1.total_cmp(&x.1)
                            } else {
                                x.1.total_cmp(&y.1)
                            };
                            // NaN always last, as Prometheus ranks it.
                            match (x.1.is_nan(), y.1.is_nan()) {
                                (true, false) => std::cmp::Ordering::Greater,
                                (false, true) => std::cmp::Ordering::Less,
                                _ => o,
                            }
                        });
                        for (i, v) in present.into_iter().take(count as usize) {
                            points[i][k] = Some(v);
                        }
                    }
                }
                Ok(Value::Vector(
                    input
                        .into_iter()
                        .zip(points)
                        .map(|(s, points)| Series {
                            labels: s.labels,
                            points,
                        })
                        .collect(),
                ))
            }
            "count_values" => {
                let param = a
                    .param
                    .as_ref()
                    .ok_or_else(|| ApiError::BadData("count_values needs a label name".into()))?;
                let Value::String(label) = self.eval(param)? else {
                    return Err(ApiError::BadData(
                        "count_values needs a string label name".into(),
                    ));
                };
                let mut out: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
                for s in &input {
                    for (k, p) in s.points.iter().enumerate() {
                        let Some(v) = p else { continue };
                        let mut labels = group_of(&s.labels);
                        labels.insert(label.clone(), super::encode::float(*v));
                        let slot = out.entry(labels).or_insert_with(|| vec![None; n]);
                        slot[k] = Some(slot[k].unwrap_or(0.0) + 1.0);
                    }
                }
                Ok(Value::Vector(
                    out.into_iter()
                        .map(|(labels, points)| Series { labels, points })
                        .collect(),
                ))
            }
            _ => {
                let mut groups: BTreeMap<Labels, Vec<usize>> = BTreeMap::new();
                for (i, s) in input.iter().enumerate() {
                    groups.entry(group_of(&s.labels)).or_default().push(i);
                }
                let mut out = Vec::new();
                for (labels, members) in groups {
                    let mut points = Vec::with_capacity(n);
                    for k in 0..n {
                        let values: Vec<f64> =
                            members.iter().filter_map(|&i| input[i].points[k]).collect();
                        points.push(if values.is_empty() {
                            None
                        } else {
                            Some(reduce(&op, &values)?)
                        });
                    }
                    out.push(Series { labels, points });
                }
                Ok(Value::Vector(out))
            }
        }
    }

    fn call(&self, c: &Call) -> Result<Value, ApiError> {
        let name = c.func.name;
        let args = &c.args.args;
        let map = |f: &dyn Fn(f64) -> f64| -> Result<Value, ApiError> {
            Ok(Value::Vector(map_points(self.vector(&args[0])?, |_, x| {
                f(x)
            })))
        };
        let scalar_arg = |i: usize| -> Result<Vec<f64>, ApiError> { self.scalar(&args[i]) };
        match name {
            "abs" => map(&f64::abs),
            "acos" => map(&f64::acos),
            "acosh" => map(&f64::acosh),
            "asin" => map(&f64::asin),
            "asinh" => map(&f64::asinh),
            "atan" => map(&f64::atan),
            "atanh" => map(&f64::atanh),
            "cos" => map(&f64::cos),
            "cosh" => map(&f64::cosh),
            "sin" => map(&f64::sin),
            "sinh" => map(&f64::sinh),
            "tan" => map(&f64::tan),
            "tanh" => map(&f64::tanh),
            "deg" => map(&f64::to_degrees),
            "rad" => map(&f64::to_radians),
            "pi" => Ok(Value::Scalar(vec![std::f64::consts::PI; self.steps.count])),
            "ceil" => map(&f64::ceil),
            "floor" => map(&f64::floor),
            "sqrt" => map(&f64::sqrt),
            "exp" => map(&f64::exp),
            "ln" => map(&f64::ln),
            "log2" => map(&f64::log2),
            "log10" => map(&f64::log10),
            "sgn" => map(&|x: f64| {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    x
                }
            }),
            "round" => {
                let to = if args.len() > 1 {
                    scalar_arg(1)?
                } else {
                    vec![1.0; self.steps.count]
                };
                let v = self.vector(&args[0])?;
                Ok(Value::Vector(map_points(v, |k, x| {
                    (x / to[k] + 0.5).floor() * to[k]
                })))
            }
            "clamp" | "clamp_min" | "clamp_max" => {
                let v = self.vector(&args[0])?;
                let (lo, hi) = match name {
                    "clamp" => (Some(scalar_arg(1)?), Some(scalar_arg(2)?)),
                    "clamp_min" => (Some(scalar_arg(1)?), None),
                    _ => (None, Some(scalar_arg(1)?)),
                };
                Ok(Value::Vector(
                    v.into_iter()
                        .map(|s| {
                            let points: Vec<Option<f64>> = s
                                .points
                                .iter()
                                .enumerate()
                                .map(|(k, p)| {
                                    let (min, max) =
                                        (lo.as_ref().map(|l| l[k]), hi.as_ref().map(|h| h[k]));
                                    if let (Some(a), Some(b)) = (min, max) {
                                        if b < a {
                                            return None;
                                        }
                                    }
                                    p.map(|x| {
                                        let x = min.map_or(x, |m| x.max(m));
                                        max.map_or(x, |m| x.min(m))
                                    })
                                })
                                .collect();
                            Series {
                                labels: without_name(&s.labels),
                                points,
                            }
                        })
                        .collect(),
                ))
            }
            "scalar" => {
                let v = self.vector(&args[0])?;
                Ok(Value::Scalar(
                    (0..self.steps.count)
                        .map(|k| {
                            let present: Vec<f64> = v.iter().filter_map(|s| s.points[k]).collect();
                            if present.len() == 1 {
                                present[0]
                            } else {
                                f64::NAN
                            }
                        })
                        .collect(),
                ))
            }
            "vector" => Ok(Value::Vector(vec![Series {
                labels: Labels::new(),
                points: scalar_arg(0)?.into_iter().map(Some).collect(),
            }])),
            "time" => Ok(Value::Scalar(
                (0..self.steps.count)
                    .map(|k| self.steps.time(k) as f64 / 1e9)
                    .collect(),
            )),
            "sort" | "sort_desc" => {
                let mut v = self.vector(&args[0])?;
                if self.steps.count == 1 {
                    v.sort_by(|a, b| {
                        let (x, y) = (
                            a.points[0].unwrap_or(f64::NAN),
                            b.points[0].unwrap_or(f64::NAN),
                        );
                        if name == "sort" {
                            x.total_cmp(&y)
                        } else {
                            y.total_cmp(&x)
                        }
                    });
                }
                Ok(Value::Vector(v))
            }
            "timestamp" => {
                // Evaluated values are computed at the step time itself.
                let v = self.vector(&args[0])?;
                Ok(Value::Vector(map_points(v, |k, _| {
                    self.steps.time(k) as f64 / 1e9
                })))
            }
            "absent" => {
                let v = self.vector(&args[0])?;
                let points = (0..self.steps.count)
                    .map(|k| (!v.iter().any(|s| s.points[k].is_some())).then_some(1.0))
                    .collect();
                Ok(Value::Vector(vec![Series {
                    labels: absent_labels(&args[0]),
                    points,
                }]))
            }
            "label_replace" => {
                let v = self.vector(&args[0])?;
                let text = |i: usize| -> Result<String, ApiError> {
                    match self.eval(&args[i])? {
                        Value::String(s) => Ok(s),
                        other => Err(ApiError::BadData(format!(
                            "expected string argument, got {}",
                            other.type_name()
                        ))),
                    }
                };
                let (dst, replacement, src, pattern) = (text(1)?, text(2)?, text(3)?, text(4)?);
                let re = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
                    .size_limit(self.regex_limit)
                    .dfa_size_limit(self.regex_limit)
                    .build()
                    .map_err(|e| {
                        ApiError::BadData(format!(
                            "invalid regular expression in label_replace(): {pattern}: {e}"
                        ))
                    })?;
                let relabeled = v.into_iter().map(|mut s| {
                    let value = s.labels.get(&src).cloned().unwrap_or_default();
                    if let Some(caps) = re.captures(&value) {
                        let mut out = String::new();
                        caps.expand(&replacement, &mut out);
                        if out.is_empty() {
                            s.labels.remove(&dst);
                        } else {
                            s.labels.insert(dst.clone(), out);
                        }
                    }
                    s
                });
                Ok(Value::Vector(merge_checked(relabeled.collect())?))
            }
            "label_join" => {
                let v = self.vector(&args[0])?;
                let mut texts = Vec::new();
                for a in &args[1..] {
                    match self.eval(a)? {
                        Value::String(s) => texts.push(s),
                        other => {
                            return Err(ApiError::BadData(format!(
                                "expected string argument, got {}",
                                other.type_name()
                            )))
                        }
                    }
                }
                let (dst, sep, srcs) = (&texts[0], &texts[1], &texts[2..]);
                let joined = v.into_iter().map(|mut s| {
                    let value: Vec<String> = srcs
                        .iter()
                        .map(|l| s.labels.get(l).cloned().unwrap_or_default())
                        .collect();
                    let value = value.join(sep);
                    if value.is_empty() {
                        s.labels.remove(dst);
                    } else {
                        s.labels.insert(dst.clone(), value);
                    }
                    s
                });
                Ok(Value::Vector(merge_checked(joined.collect())?))
            }
            "hour" | "minute" | "month" | "year" | "day_of_month" | "day_of_week"
            | "day_of_year" | "days_in_month" => self.date_function(name, args),
            "histogram_quantile" => {
                let phi = scalar_arg(0)?;
                let v = self.vector(&args[1])?;
                Ok(Value::Vector(histogram_quantile(
                    &phi,
                    &v,
                    self.steps.count,
                )))
            }
            other => Err(unsupported(&format!("function {other}"))),
        }
    }

    /// The date functions: of each sample's value read as Unix seconds, or without an argument
    /// of the evaluation time (as `vector(time())`), in UTC.
    fn date_function(&self, name: &str, args: &[Box<Expr>]) -> Result<Value, ApiError> {
        use chrono::{Datelike, Timelike};
        let part = |seconds: f64| -> f64 {
            let Some(t) = chrono::DateTime::from_timestamp(seconds as i64, 0) else {
                return f64::NAN;
            };
            f64::from(match name {
                "hour" => t.hour(),
                "minute" => t.minute(),
                "month" => t.month(),
                "year" => return f64::from(t.year()),
                "day_of_month" => t.day(),
                "day_of_week" => t.weekday().num_days_from_sunday(),
                "day_of_year" => t.ordinal(),
                _ => days_in_month(t.year(), t.month()),
            })
        };
        match args.first() {
            None => Ok(Value::Vector(vec![Series {
                labels: Labels::new(),
                points: (0..self.steps.count)
                    .map(|k| Some(part(self.steps.time(k) as f64 / 1e9)))
                    .collect(),
            }])),
            Some(arg) => Ok(Value::Vector(map_points(self.vector(arg)?, |_, x| part(x)))),
        }
    }
}

/// The labels `absent` answers with, as Prometheus derives them: the selector's equality
/// matchers (a label matched for equality twice is left out), nothing for other expressions.
fn absent_labels(expr: &Expr) -> Labels {
    let Expr::VectorSelector(vs) = expr else {
        return Labels::new();
    };
    let mut labels = Labels::new();
    let mut twice = Vec::new();
    for m in &vs.matchers.matchers {
        if m.name == "__name__" || !matches!(m.op, promql_parser::label::MatchOp::Equal) {
            continue;
        }
        if labels.insert(m.name.clone(), m.value.clone()).is_some() {
            twice.push(m.name.clone());
        }
    }
    for name in twice {
        labels.remove(&name);
    }
    labels
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    chrono::NaiveDate::from_ymd_opt(next_year, next_month, 1)
        .and_then(|d| d.pred_opt())
        .map_or(31, |d| chrono::Datelike::day(&d))
}

/// `histogram_quantile(φ, buckets)` over classic `le` buckets, per step, with Prometheus's
/// rules: series without a parsable `le` are ignored; buckets are sorted, equal bounds summed,
/// counts made monotonic; no `+Inf` bucket, fewer than two buckets or no observations give NaN;
/// φ < 0 gives -Inf and φ > 1 +Inf.
fn histogram_quantile(phi: &[f64], v: &[Series], steps: usize) -> Vec<Series> {
    let mut groups: BTreeMap<Labels, Vec<(f64, &Series)>> = BTreeMap::new();
    for s in v {
        let Some(le) = s.labels.get("le").and_then(|le| parse_bound(le)) else {
            continue;
        };
        let mut labels = without_name(&s.labels);
        labels.remove("le");
        groups.entry(labels).or_default().push((le, s));
    }
    groups
        .into_iter()
        .map(|(labels, members)| {
            let points = (0..steps)
                .map(|k| {
                    let buckets: Vec<(f64, f64)> = members
                        .iter()
                        .filter_map(|(le, s)| s.points[k].map(|c| (*le, c)))
                        .collect();
                    (!buckets.is_empty()).then(|| bucket_quantile(phi[k], buckets))
                })
                .collect();
            Series { labels, points }
        })
        .collect()
}

fn parse_bound(le: &str) -> Option<f64> {
    match le {
        "+Inf" | "Inf" | "+inf" | "inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if let Some(answer) = quantile_out_of_range(q) {
        return answer;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Buckets with the same bound are one bucket.
    let mut merged: Vec<(f64, f64)> = Vec::with_capacity(buckets.len());
    for (bound, count) in buckets {
        match merged.last_mut() {
            Some(last) if last.0 == bound => last.1 += count,
            _ => merged.push((bound, count)),
        }
    }
    // Counts never decrease with the bound (a scrape can see them out of step).
    let mut max = f64::NEG_INFINITY;
    for b in &mut merged {
        if b.1 > max {
            max = b.1;
        } else if b.1 < max {
            b.1 = max;
        }
    }
    if merged.len() < 2 {
        return f64::NAN;
    }
    let observations = merged[merged.len() - 1].1;
    if observations == 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let last = merged.len() - 1;
    let b = merged[..last].partition_point(|x| x.1 < rank);
    if b == last {
        return merged[last - 1].0;
    }
    if b == 0 && merged[0].0 <= 0.0 {
        return merged[0].0;
    }
    let (mut start, end, mut count) = (0.0, merged[b].0, merged[b].1);
    if b > 0 {
        start = merged[b - 1].0;
        count -= merged[b - 1].1;
        rank -= merged[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

fn is_comparison(op: &str) -> bool {
    matches!(op, "==" | "!=" | ">" | "<" | ">=" | "<=")
}

/// Whether the result keeps the metric name: filtering comparisons do, and so does `atan2` in
/// the Prometheus the tests check against (2.42); arithmetic and `bool` comparisons drop it.
fn keeps_name(op: &str, return_bool: bool) -> bool {
    (is_comparison(op) && !return_bool) || op == "atan2"
}

/// The result of `a op b`, and for comparisons whether it holds.
fn apply(op: &str, a: f64, b: f64) -> (f64, bool) {
    match op {
        "+" => (a + b, true),
        "-" => (a - b, true),
        "*" => (a * b, true),
        "/" => (a / b, true),
        "%" => (a % b, true),
        "^" => (a.powf(b), true),
        "atan2" => (a.atan2(b), true),
        "==" => (a, a == b),
        "!=" => (a, a != b),
        ">" => (a, a > b),
        "<" => (a, a < b),
        ">=" => (a, a >= b),
        "<=" => (a, a <= b),
        _ => (f64::NAN, false),
    }
}

fn vector_scalar(
    op: &str,
    v: Vec<Series>,
    s: &[f64],
    scalar_left: bool,
    return_bool: bool,
) -> Vec<Series> {
    let comparison = is_comparison(op);
    v.into_iter()
        .map(|series| {
            let points = series
                .points
                .iter()
                .enumerate()
                .map(|(k, p)| {
                    let x = (*p)?;
                    let (l, r) = if scalar_left { (s[k], x) } else { (x, s[k]) };
                    let (value, keep) = apply(op, l, r);
                    if return_bool {
                        return Some(f64::from(u8::from(keep)));
                    }
                    if comparison {
                        // The vector's own value is kept, on whichever side it stands.
                        return keep.then_some(x);
                    }
                    Some(value)
                })
                .collect();
            let labels = if keeps_name(op, return_bool) {
                series.labels
            } else {
                without_name(&series.labels)
            };
            Series { labels, points }
        })
        .collect()
}

/// Applies `f(step, value)` to every present point; the metric name goes, as in Prometheus's
/// instant-vector functions.
fn map_points(series: Vec<Series>, f: impl Fn(usize, f64) -> f64) -> Vec<Series> {
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

fn without_name(labels: &Labels) -> Labels {
    let mut l = labels.clone();
    l.remove("__name__");
    l
}

fn sig_labels(labels: &Labels, matching: Option<&LabelModifier>) -> Labels {
    match matching {
        Some(LabelModifier::Include(on)) => labels
            .iter()
            .filter(|(k, _)| on.labels.iter().any(|l| l == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        Some(LabelModifier::Exclude(ignoring)) => labels
            .iter()
            .filter(|(k, _)| *k != "__name__" && !ignoring.labels.iter().any(|l| l == *k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        None => without_name(labels),
    }
}

fn signature(labels: &Labels, matching: Option<&LabelModifier>) -> String {
    format_labels(&sig_labels(labels, matching))
}

fn format_labels(labels: &Labels) -> String {
    let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", parts.join(", "))
}

fn result_labels(
    many: &Labels,
    one: &Labels,
    op: &str,
    return_bool: bool,
    matching: Option<&LabelModifier>,
    include: Option<&[String]>,
) -> Labels {
    let mut labels = if keeps_name(op, return_bool) {
        many.clone()
    } else {
        without_name(many)
    };
    match include {
        None => match matching {
            Some(LabelModifier::Include(on)) => {
                labels.retain(|k, _| on.labels.iter().any(|l| l == k))
            }
            Some(LabelModifier::Exclude(ignoring)) => {
                labels.retain(|k, _| !ignoring.labels.iter().any(|l| l == k))
            }
            None => {}
        },
        Some(extra) => {
            for name in extra {
                match one.get(name) {
                    Some(v) => {
                        labels.insert(name.clone(), v.clone());
                    }
                    None => {
                        labels.remove(name);
                    }
                }
            }
        }
    }
    labels
}

/// Series that now share a label set must not both have a value at one step.
fn merge_checked(series: Vec<Series>) -> Result<Vec<Series>, ApiError> {
    let mut out: Vec<Series> = Vec::new();
    for s in series {
        match out.iter_mut().find(|o| o.labels == s.labels) {
            Some(o) => {
                for (p, q) in o.points.iter_mut().zip(s.points) {
                    if q.is_some() {
                        if p.is_some() {
                            return Err(execution(
                                "vector cannot contain metrics with the same labelset",
                            ));
                        }
                        *p = q;
                    }
                }
            }
            None => out.push(s),
        }
    }
    Ok(out)
}

fn merge_same_labels(series: Vec<Series>) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    for s in series {
        match out.iter_mut().find(|o| o.labels == s.labels) {
            Some(o) => {
                for (p, q) in o.points.iter_mut().zip(s.points) {
                    if p.is_none() {
                        *p = q;
                    }
                }
            }
            None => out.push(s),
        }
    }
    out
}

pub(crate) fn reduce(op: &str, values: &[f64]) -> Result<f64, ApiError> {
    let n = values.len() as f64;
    Ok(match op {
        "sum" => values.iter().sum(),
        "avg" => values.iter().sum::<f64>() / n,
        "min" => values
            .iter()
            .copied()
            .fold(f64::NAN, |a, b| if a.is_nan() || b < a { b } else { a }),
        "max" => values
            .iter()
            .copied()
            .fold(f64::NAN, |a, b| if a.is_nan() || b > a { b } else { a }),
        "count" => n,
        "group" => 1.0,
        "stddev" | "stdvar" => {
            let mean = values.iter().sum::<f64>() / n;
            let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
            if op == "stddev" {
                var.sqrt()
            } else {
                var
            }
        }
        other => return Err(unsupported(&format!("aggregation {other}"))),
    })
}

/// Prometheus's answer for a φ that is NaN or outside [0, 1] (both quantile functions).
fn quantile_out_of_range(q: f64) -> Option<f64> {
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

/// Prometheus's `quantile`: linear interpolation between the closest ranks.
pub(crate) fn quantile(q: f64, values: &mut [f64]) -> f64 {
    if let Some(answer) = quantile_out_of_range(q) {
        return answer;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}
