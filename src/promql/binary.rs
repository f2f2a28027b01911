//! Binary operators over step-aligned values: scalar–scalar, vector–scalar, and vector–vector
//! with Prometheus's vector matching (`on`/`ignoring`, `group_left`/`group_right`, set
//! operators), its result labels and its error words.

use std::collections::{BTreeMap, HashMap};

use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::eval::{merge_series, unsupported, without_name, Clash, Evaluator};
use super::operators::BinaryOp;
use super::value::{Labels, Series, Value};
use super::EvalError;

/// How two vectors are matched: the parser's modifier, read once.
struct Matching<'a> {
    labels: Option<&'a LabelModifier>,
    cardinality: VectorMatchCardinality,
    return_bool: bool,
}

impl Matching<'_> {
    fn signature(&self, labels: &Labels) -> String {
        format_labels(&signature_labels(labels, self.labels))
    }
}

impl Evaluator<'_> {
    pub(super) fn binary(&self, b: &BinaryExpr) -> Result<Value, EvalError> {
        let op =
            BinaryOp::from_token(b.op).ok_or_else(|| unsupported(&format!("operator {}", b.op)))?;
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let lhs = self.eval(&b.lhs)?;
        let rhs = self.eval(&b.rhs)?;
        match (lhs, rhs) {
            (Value::Scalar(l), Value::Scalar(r)) => Ok(Value::Scalar(
                l.iter()
                    .zip(&r)
                    .map(|(a, b)| {
                        let (v, holds) = op.apply(*a, *b);
                        if op.is_comparison() {
                            f64::from(u8::from(holds))
                        } else {
                            v
                        }
                    })
                    .collect(),
            )),
            (Value::Vector(v), Value::Scalar(s)) => {
                Ok(Value::Vector(vector_scalar(op, v, &s, false, return_bool)))
            }
            (Value::Scalar(s), Value::Vector(v)) => {
                Ok(Value::Vector(vector_scalar(op, v, &s, true, return_bool)))
            }
            (Value::Vector(l), Value::Vector(r)) => {
                let matching = Matching {
                    labels: b.modifier.as_ref().and_then(|m| m.matching.as_ref()),
                    cardinality: b
                        .modifier
                        .as_ref()
                        .map(|m| m.card.clone())
                        .unwrap_or(VectorMatchCardinality::OneToOne),
                    return_bool,
                };
                if op.is_set() {
                    set_operation(op, &matching, l, r).map(Value::Vector)
                } else {
                    self.matched(op, &matching, l, r).map(Value::Vector)
                }
            }
            (l, r) => Err(EvalError::BadData(format!(
                "binary expression must contain only scalar and instant vector types, got {} and {}",
                l.type_name(),
                r.type_name()
            ))),
        }
    }

    /// Arithmetic and comparisons between two vectors: each series of the "many" side meets
    /// the series of the "one" side with its signature, step by step.
    fn matched(
        &self,
        op: BinaryOp,
        matching: &Matching<'_>,
        lhs: Vec<Series>,
        rhs: Vec<Series>,
    ) -> Result<Vec<Series>, EvalError> {
        let n = self.steps.count;
        let (many, one, swapped, include) = match &matching.cardinality {
            VectorMatchCardinality::OneToMany(labels) => {
                (&rhs, &lhs, true, Some(labels.labels.clone()))
            }
            VectorMatchCardinality::ManyToOne(labels) => {
                (&lhs, &rhs, false, Some(labels.labels.clone()))
            }
            _ => (&lhs, &rhs, false, None),
        };
        let one_sigs: Vec<String> = one.iter().map(|s| matching.signature(&s.labels)).collect();
        let many_sigs: Vec<String> = many.iter().map(|s| matching.signature(&s.labels)).collect();
        let mut results: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
        for k in 0..n {
            let by_sig = one_side_at(one, &one_sigs, k, swapped, matching)?;
            let mut seen_one_to_one: HashMap<&str, ()> = HashMap::new();
            for (i, s) in many.iter().enumerate() {
                let Some(mv) = s.points[k] else { continue };
                let Some(&j) = by_sig.get(many_sigs[i].as_str()) else {
                    continue;
                };
                let Some(ov) = one[j].points[k] else { continue };
                if include.is_none() && seen_one_to_one.insert(&many_sigs[i], ()).is_some() {
                    return Err(EvalError::Execution(
                        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                    ));
                }
                let (lv, rv) = if swapped { (ov, mv) } else { (mv, ov) };
                let Some(value) = combine(op, lv, rv, matching.return_bool) else {
                    continue;
                };
                let labels =
                    result_labels(&s.labels, &one[j].labels, op, matching, include.as_deref());
                let slot = results.entry(labels).or_insert_with(|| vec![None; n]);
                if slot[k].is_some() {
                    return Err(EvalError::Execution(
                        "multiple matches for labels: grouping labels must ensure unique matches"
                            .into(),
                    ));
                }
                slot[k] = Some(value);
            }
        }
        Ok(results
            .into_iter()
            .map(|(labels, points)| Series { labels, points })
            .collect())
    }
}

/// The "one" side's series present at step `k`, by signature; a signature seen twice is
/// Prometheus's many-to-many error.
fn one_side_at<'s>(
    one: &[Series],
    one_sigs: &'s [String],
    k: usize,
    swapped: bool,
    matching: &Matching<'_>,
) -> Result<HashMap<&'s str, usize>, EvalError> {
    let mut by_sig: HashMap<&str, usize> = HashMap::new();
    for (j, s) in one.iter().enumerate() {
        if s.points[k].is_none() {
            continue;
        }
        if let Some(prev) = by_sig.insert(&one_sigs[j], j) {
            let side = if swapped { "left" } else { "right" };
            return Err(EvalError::Execution(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                format_labels(&signature_labels(&one[j].labels, matching.labels)),
                format_labels(&one[prev].labels),
                format_labels(&one[j].labels)
            )));
        }
    }
    Ok(by_sig)
}

/// `lv op rv` as a vector–vector result: a failed filtering comparison drops the sample, a
/// filtering comparison keeps the left value, `bool` gives 0 or 1.
fn combine(op: BinaryOp, lv: f64, rv: f64, return_bool: bool) -> Option<f64> {
    let (value, holds) = op.apply(lv, rv);
    if return_bool {
        Some(f64::from(u8::from(holds)))
    } else if op.is_comparison() {
        holds.then_some(lv)
    } else {
        Some(value)
    }
}

/// `and`, `or`, `unless`: whole series kept or dropped by whether the other side has a series
/// of the same signature at that step.
fn set_operation(
    op: BinaryOp,
    matching: &Matching<'_>,
    lhs: Vec<Series>,
    rhs: Vec<Series>,
) -> Result<Vec<Series>, EvalError> {
    let rsigs: Vec<String> = rhs.iter().map(|s| matching.signature(&s.labels)).collect();
    let lsigs: Vec<String> = lhs.iter().map(|s| matching.signature(&s.labels)).collect();
    let present = |side: &[Series], sigs: &[String], sig: &str, k: usize| {
        side.iter()
            .zip(sigs)
            .any(|(s, ss)| ss == sig && s.points[k].is_some())
    };
    let mut out = Vec::new();
    for (i, s) in lhs.iter().enumerate() {
        let mut points = s.points.clone();
        for (k, p) in points.iter_mut().enumerate() {
            let keep = match op {
                BinaryOp::And => present(&rhs, &rsigs, &lsigs[i], k),
                BinaryOp::Unless => !present(&rhs, &rsigs, &lsigs[i], k),
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
    if op == BinaryOp::Or {
        for (j, r) in rhs.iter().enumerate() {
            let mut points = r.points.clone();
            for (k, p) in points.iter_mut().enumerate() {
                if present(&lhs, &lsigs, &rsigs[j], k) {
                    *p = None;
                }
            }
            out.push(Series {
                labels: r.labels.clone(),
                points,
            });
        }
    }
    merge_series(out, Clash::KeepFirst)
}

fn vector_scalar(
    op: BinaryOp,
    v: Vec<Series>,
    s: &[f64],
    scalar_left: bool,
    return_bool: bool,
) -> Vec<Series> {
    v.into_iter()
        .map(|series| {
            let points = series
                .points
                .iter()
                .enumerate()
                .map(|(k, p)| {
                    let x = (*p)?;
                    let (l, r) = if scalar_left { (s[k], x) } else { (x, s[k]) };
                    let (value, holds) = op.apply(l, r);
                    if return_bool {
                        Some(f64::from(u8::from(holds)))
                    } else if op.is_comparison() {
                        // The vector's own value is kept, on whichever side it stands.
                        holds.then_some(x)
                    } else {
                        Some(value)
                    }
                })
                .collect();
            let labels = if op.keeps_name(return_bool) {
                series.labels
            } else {
                without_name(&series.labels)
            };
            Series { labels, points }
        })
        .collect()
}

/// The labels a signature is made of: those of `on`, all but those of `ignoring`, or all;
/// never the metric name unless `on` names it. Also what `by` and `without` group on.
pub(super) fn signature_labels(labels: &Labels, matching: Option<&LabelModifier>) -> Labels {
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

fn format_labels(labels: &Labels) -> String {
    let parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", parts.join(", "))
}

fn result_labels(
    many: &Labels,
    one: &Labels,
    op: BinaryOp,
    matching: &Matching<'_>,
    include: Option<&[String]>,
) -> Labels {
    let mut labels = if op.keeps_name(matching.return_bool) {
        many.clone()
    } else {
        without_name(many)
    };
    match include {
        None => match matching.labels {
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
