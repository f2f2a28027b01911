//! Instant functions over step-aligned values, dispatched on the function table's
//! [`Function`]: per-sample math comes from the table itself, the rest has a rule here.

use std::collections::BTreeMap;

use promql_parser::parser::{Call, Expr};

use super::eval::{
    map_points, merge_series, quantile_out_of_range, unsupported, without_name, Clash, Evaluator,
};
use super::functions::{Evaluation, Function};
use super::value::{Labels, Series, Value};
use super::EvalError;

impl Evaluator<'_> {
    pub(super) fn call(&self, c: &Call) -> Result<Value, EvalError> {
        let function = Function::from_name(c.func.name)
            .ok_or_else(|| unsupported(&format!("function {}", c.func.name)))?;
        let args = &c.args.args;
        let arg = |i: usize| {
            args.get(i).map(|a| a.as_ref()).ok_or_else(|| {
                EvalError::BadData(format!(
                    "expected at least {} argument(s) in call to {:?}",
                    i + 1,
                    c.func.name
                ))
            })
        };
        let steps = self.steps.count;
        if let Evaluation::Map(f) = function.evaluation() {
            return Ok(Value::Vector(map_points(self.vector(arg(0)?)?, |_, x| {
                f(x)
            })));
        }
        let vector = match function {
            Function::Pi => return Ok(Value::Scalar(vec![std::f64::consts::PI; steps])),
            Function::Time => {
                return Ok(Value::Scalar(
                    (0..steps)
                        .map(|k| self.steps.time(k) as f64 / 1e9)
                        .collect(),
                ))
            }
            Function::Scalar => return Ok(Value::Scalar(self.scalar_of(arg(0)?)?)),
            Function::Round => {
                let to = match args.get(1) {
                    Some(to) => self.scalar(to)?,
                    None => vec![1.0; steps],
                };
                map_points(self.vector(arg(0)?)?, |k, x| round(x, to[k]))
            }
            Function::Clamp | Function::ClampMin | Function::ClampMax => {
                self.clamp(function, args)?
            }
            Function::Vector => vec![Series {
                labels: Labels::new(),
                points: self.scalar(arg(0)?)?.into_iter().map(Some).collect(),
            }],
            Function::Sort | Function::SortDesc => {
                sorted(self.vector(arg(0)?)?, function == Function::Sort, steps)
            }
            // Evaluated values are computed at the step time itself.
            Function::Timestamp => map_points(self.vector(arg(0)?)?, |k, _| {
                self.steps.time(k) as f64 / 1e9
            }),
            Function::Absent => {
                let v = self.vector(arg(0)?)?;
                let points = (0..steps)
                    .map(|k| (!v.iter().any(|s| s.points[k].is_some())).then_some(1.0))
                    .collect();
                vec![Series {
                    labels: absent_labels(arg(0)?),
                    points,
                }]
            }
            Function::LabelReplace => self.label_replace(args)?,
            Function::LabelJoin => self.label_join(args)?,
            Function::Hour
            | Function::Minute
            | Function::Month
            | Function::Year
            | Function::DayOfMonth
            | Function::DayOfWeek
            | Function::DayOfYear
            | Function::DaysInMonth => {
                self.date_function(function, args.first().map(|a| a.as_ref()))?
            }
            Function::HistogramQuantile => {
                let phi = self.scalar(arg(0)?)?;
                histogram_quantile(&phi, &self.vector(arg(1)?)?, steps)
            }
            // Range functions reach the evaluator as leaves (store, subquery, upstream).
            other => return Err(unsupported(&format!("function {}", other.name()))),
        };
        Ok(Value::Vector(vector))
    }

    /// `scalar(v)`: the one value present at each step, NaN where there are none or several.
    fn scalar_of(&self, expr: &Expr) -> Result<Vec<f64>, EvalError> {
        let v = self.vector(expr)?;
        Ok((0..self.steps.count)
            .map(|k| {
                let mut present = v.iter().filter_map(|s| s.points[k]);
                match (present.next(), present.next()) {
                    (Some(x), None) => x,
                    _ => f64::NAN,
                }
            })
            .collect())
    }

    fn clamp(&self, function: Function, args: &[Box<Expr>]) -> Result<Vec<Series>, EvalError> {
        let bound = |i: usize| -> Result<Vec<f64>, EvalError> {
            match args.get(i) {
                Some(a) => self.scalar(a),
                None => Err(EvalError::BadData(format!(
                    "expected {} arguments in call to {:?}",
                    i + 1,
                    function.name()
                ))),
            }
        };
        let (lo, hi) = match function {
            Function::Clamp => (Some(bound(1)?), Some(bound(2)?)),
            Function::ClampMin => (Some(bound(1)?), None),
            _ => (None, Some(bound(1)?)),
        };
        let v = match args.first() {
            Some(a) => self.vector(a)?,
            None => return Err(unsupported("clamp without arguments")),
        };
        Ok(v.into_iter()
            .map(|s| {
                let points = s
                    .points
                    .iter()
                    .enumerate()
                    .map(|(k, p)| {
                        let (min, max) = (lo.as_ref().map(|l| l[k]), hi.as_ref().map(|h| h[k]));
                        // `clamp` with min > max answers nothing (Prometheus's rule).
                        if let (Some(a), Some(b)) = (min, max) {
                            if b < a {
                                return None;
                            }
                        }
                        p.map(|x| {
                            let x = max.map_or(x, |m| go_min(m, x));
                            min.map_or(x, |m| go_max(m, x))
                        })
                    })
                    .collect();
                Series {
                    labels: without_name(&s.labels),
                    points,
                }
            })
            .collect())
    }

    fn strings(&self, args: &[Box<Expr>]) -> Result<Vec<String>, EvalError> {
        args.iter().map(|a| self.string(a)).collect()
    }

    fn label_replace(&self, args: &[Box<Expr>]) -> Result<Vec<Series>, EvalError> {
        let [v, rest @ ..] = args else {
            return Err(unsupported("label_replace without arguments"));
        };
        let v = self.vector(v)?;
        let [dst, replacement, src, pattern] = &self.strings(rest)?[..] else {
            return Err(EvalError::BadData(
                "expected 5 arguments in call to \"label_replace\"".into(),
            ));
        };
        check_label_name("destination", "label_replace", dst)?;
        let re = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
            .size_limit(self.regex_limit)
            .dfa_size_limit(self.regex_limit)
            .build()
            .map_err(|e| {
                EvalError::BadData(format!(
                    "invalid regular expression in label_replace(): {pattern}: {e}"
                ))
            })?;
        let relabeled = v.into_iter().map(|mut s| {
            let value = s.labels.get(src).cloned().unwrap_or_default();
            if let Some(caps) = re.captures(&value) {
                let mut out = String::new();
                caps.expand(replacement, &mut out);
                if out.is_empty() {
                    s.labels.remove(dst);
                } else {
                    s.labels.insert(dst.clone(), out);
                }
            }
            s
        });
        merge_series(relabeled.collect(), Clash::Refuse)
    }

    fn label_join(&self, args: &[Box<Expr>]) -> Result<Vec<Series>, EvalError> {
        let [v, rest @ ..] = args else {
            return Err(unsupported("label_join without arguments"));
        };
        let v = self.vector(v)?;
        let texts = self.strings(rest)?;
        let [dst, sep, srcs @ ..] = &texts[..] else {
            return Err(EvalError::BadData(
                "expected at least 3 arguments in call to \"label_join\"".into(),
            ));
        };
        check_label_name("destination", "label_join", dst)?;
        for src in srcs {
            check_label_name("source", "label_join", src)?;
        }
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
        merge_series(joined.collect(), Clash::Refuse)
    }

    /// The date functions: of each sample's value read as Unix seconds, or without an argument
    /// of the evaluation time (as `vector(time())`), in UTC.
    fn date_function(
        &self,
        function: Function,
        arg: Option<&Expr>,
    ) -> Result<Vec<Series>, EvalError> {
        let part = |seconds: f64| date_part(function, seconds);
        match arg {
            None => Ok(vec![Series {
                labels: Labels::new(),
                points: (0..self.steps.count)
                    .map(|k| Some(part(self.steps.time(k) as f64 / 1e9)))
                    .collect(),
            }]),
            Some(arg) => Ok(map_points(self.vector(arg)?, |_, x| part(x))),
        }
    }
}

/// Prometheus's check of a label name a function writes or reads (`model.LabelName.IsValid`,
/// `promql/functions.go`): `[a-zA-Z_][a-zA-Z0-9_]*`, else an execution error (422).
fn check_label_name(role: &str, function: &str, name: &str) -> Result<(), EvalError> {
    let mut bytes = name.bytes();
    let valid = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(EvalError::Execution(format!(
            "invalid {role} label name in {function}(): {name}"
        )))
    }
}

/// Go's `math.Max`: an infinity wins, then NaN; `f64::max` would drop the NaN.
fn go_max(a: f64, b: f64) -> f64 {
    if a == f64::INFINITY || b == f64::INFINITY {
        f64::INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() && b.is_sign_negative() {
            -0.0
        } else {
            0.0
        }
    } else if a > b {
        a
    } else {
        b
    }
}

/// Go's `math.Min`, the mirror of [`go_max`].
fn go_min(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY || b == f64::NEG_INFINITY {
        f64::NEG_INFINITY
    } else if a.is_nan() || b.is_nan() {
        f64::NAN
    } else if a == 0.0 && b == 0.0 {
        if a.is_sign_negative() || b.is_sign_negative() {
            -0.0
        } else {
            0.0
        }
    } else if a < b {
        a
    } else {
        b
    }
}

/// Prometheus's `round`: to the nearest multiple of `to`, halves rounded up.
fn round(x: f64, to: f64) -> f64 {
    (x / to + 0.5).floor() * to
}

/// `sort`/`sort_desc` order an instant query's answer (NaN last); a range query's series keep
/// their order, as in Prometheus.
fn sorted(mut v: Vec<Series>, ascending: bool, steps: usize) -> Vec<Series> {
    if steps == 1 {
        v.sort_by(|a, b| {
            let (x, y) = (
                a.points[0].unwrap_or(f64::NAN),
                b.points[0].unwrap_or(f64::NAN),
            );
            if ascending {
                x.total_cmp(&y)
            } else {
                y.total_cmp(&x)
            }
        });
    }
    v
}

fn date_part(function: Function, seconds: f64) -> f64 {
    let d = super::go_time::date(seconds);
    match function {
        Function::Hour => f64::from(d.hour),
        Function::Minute => f64::from(d.minute),
        Function::Month => f64::from(d.month),
        Function::Year => d.year as f64,
        Function::DayOfMonth => f64::from(d.day),
        Function::DayOfWeek => f64::from(d.weekday),
        Function::DayOfYear => f64::from(d.day_of_year),
        _ => f64::from(d.days_in_month()),
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
