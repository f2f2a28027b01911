//! Aggregations over step-aligned vectors: grouping by `by`/`without`, the reducing ones
//! (`sum` … `stdvar`), the ranking ones (`topk`, `bottomk`), `quantile` and `count_values`.

use std::collections::BTreeMap;

use promql_parser::parser::AggregateExpr;

use super::binary::signature_labels;
use super::eval::{quantile, unsupported, Evaluator};
use super::operators::Aggregation;
use super::value::{Labels, Series, Value};
use super::EvalError;

/// Input series indexes by group.
type Groups = BTreeMap<Labels, Vec<usize>>;

impl Evaluator<'_> {
    pub(super) fn aggregate(&self, a: &AggregateExpr) -> Result<Value, EvalError> {
        let op = Aggregation::from_token(a.op)
            .ok_or_else(|| unsupported(&format!("aggregation {}", a.op)))?;
        let input = self.vector(&a.expr)?;
        let group_of = |labels: &Labels| -> Labels {
            match &a.modifier {
                None => Labels::new(),
                // `by` and `without` pick labels as `on` and `ignoring` do.
                modifier => signature_labels(labels, modifier.as_ref()),
            }
        };
        let param = || {
            a.param
                .as_deref()
                .ok_or_else(|| EvalError::BadData(format!("{} needs a parameter", a.op)))
        };
        if op == Aggregation::CountValues {
            let label = self.string(param()?)?;
            return Ok(Value::Vector(self.count_values(&input, &label, group_of)));
        }
        let mut groups = Groups::new();
        for (i, s) in input.iter().enumerate() {
            groups.entry(group_of(&s.labels)).or_default().push(i);
        }
        Ok(Value::Vector(match op {
            Aggregation::Quantile => self.quantiles(&input, groups, &self.scalar(param()?)?),
            Aggregation::Topk | Aggregation::Bottomk => {
                self.ranked(input, &groups, &self.scalar(param()?)?, op)
            }
            _ => self.reduced(&input, groups, op),
        }))
    }

    /// One series per group, its value at each step the aggregation of the members present.
    fn reduced(&self, input: &[Series], groups: Groups, op: Aggregation) -> Vec<Series> {
        groups
            .into_iter()
            .map(|(labels, members)| {
                let points = (0..self.steps.count)
                    .map(|k| {
                        let values: Vec<f64> =
                            members.iter().filter_map(|&i| input[i].points[k]).collect();
                        if values.is_empty() {
                            None
                        } else {
                            op.reduce(&values)
                        }
                    })
                    .collect();
                Series { labels, points }
            })
            .collect()
    }

    fn quantiles(&self, input: &[Series], groups: Groups, phi: &[f64]) -> Vec<Series> {
        groups
            .into_iter()
            .map(|(labels, members)| {
                let points = (0..self.steps.count)
                    .map(|k| {
                        let mut values: Vec<f64> =
                            members.iter().filter_map(|&i| input[i].points[k]).collect();
                        (!values.is_empty()).then(|| quantile(phi[k], &mut values))
                    })
                    .collect();
                Series { labels, points }
            })
            .collect()
    }

    /// `topk`/`bottomk`: the input series keep their labels and keep a value at the steps where
    /// they rank within `count` of their group; NaN ranks last either way.
    fn ranked(
        &self,
        input: Vec<Series>,
        groups: &Groups,
        count: &[f64],
        op: Aggregation,
    ) -> Vec<Series> {
        let n = self.steps.count;
        let mut points: Vec<Vec<Option<f64>>> = input.iter().map(|_| vec![None; n]).collect();
        for members in groups.values() {
            for k in 0..n {
                let count = count[k];
                if count.is_nan() || count < 1.0 {
                    continue;
                }
                let mut present: Vec<(usize, f64)> = members
                    .iter()
                    .filter_map(|&i| input[i].points[k].map(|v| (i, v)))
                    .collect();
                present.sort_by(|x, y| match (x.1.is_nan(), y.1.is_nan()) {
                    (true, false) => std::cmp::Ordering::Greater,
                    (false, true) => std::cmp::Ordering::Less,
                    _ if op == Aggregation::Topk => y.1.total_cmp(&x.1),
                    _ => x.1.total_cmp(&y.1),
                });
                for (i, v) in present.into_iter().take(count as usize) {
                    points[i][k] = Some(v);
                }
            }
        }
        input
            .into_iter()
            .zip(points)
            .map(|(s, points)| Series {
                labels: s.labels,
                points,
            })
            .collect()
    }

    /// `count_values("label", v)`: per group and distinct value, how many series have it.
    fn count_values(
        &self,
        input: &[Series],
        label: &str,
        group_of: impl Fn(&Labels) -> Labels,
    ) -> Vec<Series> {
        let mut out: BTreeMap<Labels, Vec<Option<f64>>> = BTreeMap::new();
        for s in input {
            for (k, p) in s.points.iter().enumerate() {
                let Some(v) = p else { continue };
                let mut labels = group_of(&s.labels);
                labels.insert(label.to_string(), super::encode::float(*v));
                let slot = out
                    .entry(labels)
                    .or_insert_with(|| vec![None; self.steps.count]);
                slot[k] = Some(slot[k].unwrap_or(0.0) + 1.0);
            }
        }
        out.into_iter()
            .map(|(labels, points)| Series { labels, points })
            .collect()
    }
}
