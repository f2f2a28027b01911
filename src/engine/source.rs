//! Where the engine gets the metric parts of an expression: anything that answers a PromQL
//! query at given steps. The gateway's is the upstream server (`upstream::metric_source`);
//! a test or another binary can hand the engine any other.

use std::future::Future;
use std::pin::Pin;

use super::EngineError;
use crate::promql::value::{Steps, Value};

/// A part of an expression for the source to answer.
#[derive(Debug, Clone, Copy)]
pub struct MetricQuery<'a> {
    /// PromQL text without log selectors.
    pub text: &'a str,
    /// The evaluation steps the answer must be aligned to.
    pub steps: Steps,
    /// Asked as a range query (`query_range`), else as an instant query at `steps.start`.
    pub range: bool,
    /// The part is scalar-valued: its answer is a scalar, not a vector.
    pub scalar: bool,
    /// Samples the answer may hold; a source stops reading beyond them.
    pub max_samples: usize,
    /// When the answer is no longer wanted.
    pub deadline: tokio::time::Instant,
}

/// A source's answer: the value at the query's steps and any warnings it gave.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricAnswer {
    /// The part's value at the query's steps.
    pub value: Value,
    /// The source's warnings, passed on with the answer.
    pub warnings: Vec<String>,
}

/// A source's answer in the making: boxed so that `MetricSource` can be used as `dyn`.
pub type MetricFuture<'a> =
    Pin<Box<dyn Future<Output = Result<MetricAnswer, EngineError>> + Send + 'a>>;

/// Answers the metric parts of expressions.
pub trait MetricSource: Send + Sync {
    /// Answers one part of an expression at the query's steps.
    fn query<'a>(&'a self, query: MetricQuery<'a>) -> MetricFuture<'a>;
}
