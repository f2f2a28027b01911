//! Subqueries: a range function Janus applies over the values of an inner expression that it
//! evaluated at the subquery's own steps (`max_over_time(rate(pod{…}[5m])[1h:1m])`).

use std::time::Duration;

use promql_parser::parser::{AtModifier, Expr};

use super::functions::Function;
use super::range_functions::{over_time, Window};
use super::value::{Labels, Series, Steps, Value};
use super::EvalError;

/// A range function over a subquery, e.g.
/// `max_over_time(rate(pod{…}[5m])[1h:1m])`: the inner expression is evaluated at the subquery's
/// own steps, then the function runs over each outer step's window.
#[derive(Debug, Clone)]
pub struct SubqueryCall<'e> {
    pub function: Function,
    /// The function's number arguments besides the subquery: `quantile_over_time`'s φ,
    /// `predict_linear`'s seconds, `holt_winters`' smoothing and trend factors.
    pub params: Vec<f64>,
    pub inner: &'e Expr,
    pub range: Duration,
    pub step: Option<Duration>,
    pub offset_ns: i64,
    pub at: Option<AtModifier>,
}

/// Prometheus's default subquery resolution (its default evaluation interval).
const DEFAULT_SUBQUERY_STEP: Duration = Duration::from_secs(60);

pub fn at_time(at: &AtModifier, outer: &Steps) -> i64 {
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
    pub fn inner_steps(&self, outer: &Steps, max_points: usize) -> Result<Steps, EvalError> {
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
            return Err(EvalError::TooManySamples);
        }
        let (Ok(start), Ok(step)) = (i64::try_from(start), i64::try_from(step)) else {
            return Err(EvalError::BadData(
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
    ) -> Result<Value, EvalError> {
        let series = match inner {
            Value::Vector(v) => v.clone(),
            Value::Scalar(points) => vec![Series {
                labels: Labels::new(),
                points: points.iter().map(|p| Some(*p)).collect(),
            }],
            Value::String(_) => {
                return Err(EvalError::BadData(format!(
                    "expected type range vector in call to function {:?}, got string",
                    self.function.name()
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
        if self.function == Function::DoubleExponentialSmoothing
            && series.iter().any(|s| s.points.iter().any(Option::is_some))
        {
            for (i, (what, short)) in [("smoothing", "sf"), ("trend", "tf")]
                .into_iter()
                .enumerate()
            {
                let f = self.params.get(i).copied().unwrap_or(f64::NAN);
                if !(f > 0.0 && f < 1.0) {
                    return Err(EvalError::Execution(format!(
                        "invalid {what} factor. Expected: 0 < {short} < 1, got: {f:.6}"
                    )));
                }
            }
        }
        if self.function == Function::AbsentOverTime {
            // One series without labels (a subquery has no matchers to take them from), present
            // where no inner series has a sample in the window.
            let points = (0..outer.count)
                .map(|k| {
                    let end = self.eval_time(outer, k);
                    let span = window(end.saturating_sub(range), end);
                    let any = series.iter().any(|s| {
                        span.clone()
                            .any(|j| s.points.get(j).copied().flatten().is_some())
                    });
                    (!any).then_some(1.0)
                })
                .collect();
            return Ok(Value::Vector(vec![Series {
                labels: Labels::new(),
                points,
            }]));
        }
        let mut out = Vec::new();
        let mut samples: Vec<(i64, f64)> = Vec::new();
        for s in series {
            let mut labels = s.labels.clone();
            // Prometheus keeps the metric name for last_over_time only.
            if self.function != Function::LastOverTime {
                labels.remove("__name__");
            }
            let mut points = Vec::with_capacity(outer.count);
            for k in 0..outer.count {
                if k % 1024 == 0 && std::time::Instant::now() >= deadline {
                    return Err(EvalError::Timeout);
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
