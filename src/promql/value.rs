//! Values of the evaluator, step-aligned: every instant vector is a set of series with a value
//! (or none) at each evaluation step, so a range query is evaluated once, not once per step.

use std::collections::BTreeMap;

pub type Labels = BTreeMap<String, String>;

/// The evaluation steps: `count` times from `start`, `step` apart (nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Steps {
    pub start: i64,
    pub step: i64,
    pub count: usize,
}

impl Steps {
    /// The time of step `k`, saturating at the ends of time (`time=-Inf` is a real input).
    pub fn time(&self, k: usize) -> i64 {
        let k = i64::try_from(k).unwrap_or(i64::MAX);
        self.start.saturating_add(self.step.saturating_mul(k))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub points: Vec<Option<f64>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(Vec<f64>),
    Vector(Vec<Series>),
    String(String),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar(_) => "scalar",
            Value::Vector(_) => "instant vector",
            Value::String(_) => "string",
        }
    }
}
