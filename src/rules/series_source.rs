//! In-memory series for `janus test rules`: promtool's `input_series` (in its expanding
//! notation) and whatever the rules record while the test runs. The engine, told to evaluate
//! everything it can, asks this source only for selectors and range functions over selectors,
//! which are answered here with Prometheus's rules: a 5-minute lookback that stops at a stale
//! marker, `offset` and `@`, windows open at their start.

use std::collections::BTreeMap;
use std::sync::RwLock;

use promql_parser::label::Matcher;
use promql_parser::parser::{Expr, VectorSelector};

use super::alerting::Labels;
use crate::engine::{EngineError, MetricAnswer, MetricFuture, MetricQuery, MetricSource};
use crate::promql::functions::Function;
use crate::promql::range_functions::{over_time, Window};
use crate::promql::value::{Series, Value};
use crate::promql::EvalError;

/// Prometheus's lookback for instant selectors.
const LOOKBACK_NS: i64 = 5 * 60 * 1_000_000_000;

/// A sample or a staleness marker.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Point {
    Value(f64),
    Stale,
}

/// Series by their labels (with `__name__`), each a time-ordered list of points (ns).
#[derive(Default)]
pub struct SeriesSource {
    series: RwLock<BTreeMap<Labels, Vec<(i64, Point)>>>,
}

/// Reads promtool's expanding notation (`1+2x3 _ stale 5x2`) into points `interval_ns` apart.
pub fn expand_values(
    text: &str,
    interval_ns: i64,
) -> Result<Vec<(i64, Option<f64>, bool)>, String> {
    let mut out = Vec::new();
    let mut k: i64 = 0;
    let mut push = |value: Option<f64>, stale: bool, out: &mut Vec<(i64, Option<f64>, bool)>| {
        out.push((k * interval_ns, value, stale));
        k += 1;
    };
    for word in text.split_whitespace() {
        if word == "_" {
            push(None, false, &mut out);
        } else if word == "stale" {
            push(None, true, &mut out);
        } else if let Some(n) = word.strip_prefix("_x") {
            let n: u32 = n
                .parse()
                .map_err(|_| format!("bad repetition in {word:?}"))?;
            for _ in 0..n {
                push(None, false, &mut out);
            }
        } else if let Some((start, times)) = word.rsplit_once('x') {
            let times: u32 = times
                .parse()
                .map_err(|_| format!("bad repetition in {word:?}"))?;
            if times > 1_000_000 {
                return Err(format!("{word:?} repeats more than 1000000 times"));
            }
            // `a+b`, `a-b` (a may be negative), or a alone.
            let split = start
                .char_indices()
                .skip(1)
                .find(|(i, c)| (*c == '+' || *c == '-') && !start[..*i].ends_with(['e', 'E']))
                .map(|(i, _)| i);
            let (a, b) = match split {
                Some(i) => (&start[..i], &start[i..]),
                None => (start, "0"),
            };
            let a: f64 = parse_number(a)?;
            let b: f64 = parse_number(b.trim_start_matches('+'))?;
            for i in 0..=times {
                push(Some(a + b * f64::from(i)), false, &mut out);
            }
        } else {
            push(Some(parse_number(word)?), false, &mut out);
        }
    }
    Ok(out)
}

fn parse_number(text: &str) -> Result<f64, String> {
    match text {
        "Inf" | "+Inf" | "inf" | "+inf" => Ok(f64::INFINITY),
        "-Inf" | "-inf" => Ok(f64::NEG_INFINITY),
        "NaN" | "nan" => Ok(f64::NAN),
        _ => text
            .parse()
            .map_err(|_| format!("{text:?} is not a number")),
    }
}

/// A series selector's labels (`up{job="x"}`), for input series and expected samples.
pub fn parse_series(text: &str) -> Result<Labels, String> {
    let parsed = crate::promql::plan::Parsed::parse(text).map_err(|e| e.trim().to_string())?;
    let Expr::VectorSelector(vs) = &*parsed else {
        return Err(format!("{text:?} is not a series"));
    };
    let mut labels = Labels::new();
    if let Some(name) = &vs.name {
        labels.insert("__name__".into(), name.clone());
    }
    for m in &vs.matchers.matchers {
        if !matches!(m.op, promql_parser::label::MatchOp::Equal) {
            return Err(format!("{text:?}: a series names its labels with ="));
        }
        labels.insert(m.name.clone(), m.value.clone());
    }
    Ok(labels)
}

impl SeriesSource {
    /// Adds a series from promtool's notation.
    pub fn add(&self, labels: Labels, values: &[(i64, Option<f64>, bool)]) {
        if let Ok(mut all) = self.series.write() {
            let points = all.entry(labels).or_default();
            for &(t, v, stale) in values {
                match (v, stale) {
                    (Some(v), _) => points.push((t, Point::Value(v))),
                    (None, true) => points.push((t, Point::Stale)),
                    (None, false) => {}
                }
            }
            points.sort_by_key(|p| p.0);
        }
    }

    /// Adds samples a rule recorded at `t_ns`.
    pub fn record(&self, samples: &[(Labels, f64)], t_ns: i64) {
        if let Ok(mut all) = self.series.write() {
            for (labels, v) in samples {
                let points = all.entry(labels.clone()).or_default();
                points.retain(|p| p.0 != t_ns);
                points.push((t_ns, Point::Value(*v)));
                points.sort_by_key(|p| p.0);
            }
        }
    }

    fn matching<'a>(
        all: &'a BTreeMap<Labels, Vec<(i64, Point)>>,
        vs: &VectorSelector,
    ) -> impl Iterator<Item = (&'a Labels, &'a Vec<(i64, Point)>)> + 'a {
        let mut matchers: Vec<Matcher> = vs.matchers.matchers.clone();
        if let Some(name) = &vs.name {
            matchers.push(Matcher::new(
                promql_parser::label::MatchOp::Equal,
                "__name__",
                name,
            ));
        }
        all.iter().filter(move |(labels, _)| {
            matchers
                .iter()
                .all(|m| m.is_match(labels.get(&m.name).map_or("", String::as_str)))
        })
    }

    fn answer(&self, query: &MetricQuery<'_>) -> Result<Value, EvalError> {
        let unsupported = || {
            EvalError::BadData(format!(
                "janus test rules cannot evaluate {:?} over input series",
                query.text
            ))
        };
        let parsed = crate::promql::plan::Parsed::parse(query.text)
            .map_err(|e| EvalError::BadData(e.trim().to_string()))?;
        let all = self.series.read().map_err(|_| unsupported())?;
        let steps = query.steps;
        let shifted = |vs: &VectorSelector, k: usize| {
            let t = vs.at.as_ref().map_or(steps.time(k), |at| {
                crate::promql::subquery::at_time(at, &steps)
            });
            let offset = match &vs.offset {
                Some(promql_parser::parser::Offset::Pos(d)) => {
                    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
                }
                Some(promql_parser::parser::Offset::Neg(d)) => {
                    -i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
                }
                None => 0,
            };
            t.saturating_sub(offset)
        };
        let series = match &*parsed {
            Expr::VectorSelector(vs) => Self::matching(&all, vs)
                .map(|(labels, points)| Series {
                    labels: labels.clone(),
                    points: (0..steps.count)
                        .map(|k| {
                            let t = shifted(vs, k);
                            points
                                .iter()
                                .rev()
                                .find(|p| p.0 <= t)
                                .filter(|p| p.0 > t - LOOKBACK_NS)
                                .and_then(|p| match p.1 {
                                    Point::Value(v) => Some(v),
                                    Point::Stale => None,
                                })
                        })
                        .collect(),
                })
                .filter(|s| s.points.iter().any(Option::is_some))
                .collect(),
            Expr::Call(call) => {
                let function = Function::from_name(call.func.name).ok_or_else(unsupported)?;
                let mut params = Vec::new();
                let mut matrix = None;
                for a in &call.args.args {
                    match a.as_ref() {
                        Expr::MatrixSelector(ms) => matrix = Some(ms),
                        Expr::NumberLiteral(n) => params.push(n.val),
                        _ => return Err(unsupported()),
                    }
                }
                let ms = matrix.ok_or_else(unsupported)?;
                let range = i64::try_from(ms.range.as_nanos()).unwrap_or(i64::MAX);
                let window = |points: &Vec<(i64, Point)>, k: usize| {
                    let end = shifted(&ms.vs, k);
                    let samples: Vec<(i64, f64)> = points
                        .iter()
                        .filter(|p| p.0 > end - range && p.0 <= end)
                        .filter_map(|p| match p.1 {
                            Point::Value(v) => Some((p.0, v)),
                            Point::Stale => None,
                        })
                        .collect();
                    (
                        samples,
                        Window {
                            begin: end - range,
                            end,
                            at: end,
                            range_seconds: range as f64 / 1e9,
                        },
                    )
                };
                if function == Function::AbsentOverTime {
                    let matched: Vec<_> = Self::matching(&all, &ms.vs).collect();
                    let labels: Labels = ms
                        .vs
                        .matchers
                        .matchers
                        .iter()
                        .filter(|m| {
                            matches!(m.op, promql_parser::label::MatchOp::Equal)
                                && m.name != "__name__"
                        })
                        .map(|m| (m.name.clone(), m.value.clone()))
                        .collect();
                    let points = (0..steps.count)
                        .map(|k| {
                            let any = matched.iter().any(|(_, p)| !window(p, k).0.is_empty());
                            (!any).then_some(1.0)
                        })
                        .collect();
                    vec![Series { labels, points }]
                } else {
                    Self::matching(&all, &ms.vs)
                        .map(|(labels, points)| {
                            let mut labels = labels.clone();
                            if !matches!(function, Function::LastOverTime | Function::FirstOverTime)
                            {
                                labels.remove("__name__");
                            }
                            Series {
                                labels,
                                points: (0..steps.count)
                                    .map(|k| {
                                        let (samples, w) = window(points, k);
                                        if samples.is_empty() {
                                            None
                                        } else {
                                            over_time(function, &params, &samples, &w)
                                        }
                                    })
                                    .collect(),
                            }
                        })
                        .filter(|s| s.points.iter().any(Option::is_some))
                        .collect()
                }
            }
            _ => return Err(unsupported()),
        };
        Ok(Value::Vector(series))
    }
}

impl MetricSource for SeriesSource {
    fn query<'a>(&'a self, query: MetricQuery<'a>) -> MetricFuture<'a> {
        Box::pin(async move {
            self.answer(&query)
                .map(|value| MetricAnswer {
                    value,
                    warnings: Vec::new(),
                })
                .map_err(EngineError::from)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promtools_notation() {
        let v = |t: &str| {
            expand_values(t, 1)
                .unwrap()
                .into_iter()
                .map(|p| p.1)
                .collect::<Vec<_>>()
        };
        assert_eq!(v("-2+4x3"), [Some(-2.0), Some(2.0), Some(6.0), Some(10.0)]);
        assert_eq!(
            v("1-2x4"),
            [Some(1.0), Some(-1.0), Some(-3.0), Some(-5.0), Some(-7.0)]
        );
        assert_eq!(v("1x4"), [Some(1.0); 5]);
        assert_eq!(v("1 _x3 stale"), [Some(1.0), None, None, None, None]);
        assert!(expand_values("1x", 1).is_err());
        assert_eq!(parse_series("up{job=\"x\"}").unwrap()["job"], "x");
    }
}
