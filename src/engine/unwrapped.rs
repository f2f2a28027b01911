//! Loki's unwrapped range aggregations: `sum_over_time({…} | logfmt | unwrap took [5m])` and
//! the other range functions over the values `| unwrap` reads from each line, at every step,
//! from one pass over the window's lines.

use std::sync::atomic::AtomicBool;

use crate::logql::pipeline::SAMPLE_ERROR;
use crate::logql::LogQuery;
use crate::logstore::{Count, LogStore};
use crate::promql::functions::Function;
use crate::promql::plan::LogCall;
use crate::promql::range_functions::{over_time, Window};
use crate::promql::value::{Series, Steps, Value};
use crate::promql::EvalError;

use super::EngineError;

/// Loki's refusal of a metric over lines a stage marked (`logqlmodel.NewPipelineErr`, raised by
/// its range vector evaluator): errors are not counted as series unless a label filter
/// (`| __error__=""`) drops or keeps them on purpose.
pub fn pipeline_error(
    labels: &std::collections::BTreeMap<String, String>,
    fallback: &str,
) -> EvalError {
    let error = labels.get("__error__").map_or(fallback, String::as_str);
    EvalError::BadData(format!(
        "pipeline error: '{error}' for series: '{{{}}}'. Use a label filter to intentionally skip this error. (e.g | __error__!=\"{error}\")",
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// The limits an unwrapped aggregation answers within.
pub struct Bounds {
    /// Most series (streams or groups) the answer may hold.
    pub max_series: usize,
    /// Most unwrapped values the scan may hold at once.
    pub max_samples: usize,
}

/// Answers an unwrapped range aggregation at every step (`eval_time(k)` is step `k`'s time).
#[allow(clippy::too_many_arguments)]
pub fn unwrapped_call(
    store: &dyn LogStore,
    query: &LogQuery,
    call: &LogCall,
    steps: &Steps,
    eval_time: &dyn Fn(usize) -> i64,
    deadline: std::time::Instant,
    cancelled: &AtomicBool,
    bounds: Bounds,
) -> Result<Value, EngineError> {
    if !call.function.reads_unwrapped() {
        return Err(EvalError::BadData(format!(
            "invalid aggregation {} with unwrap: use one of {}",
            call.function.name(),
            crate::promql::functions::names(Function::reads_unwrapped)
        ))
        .into());
    }
    let range = i64::try_from(call.range.as_nanos()).unwrap_or(i64::MAX);
    let ends: Vec<i64> = (0..steps.count).map(eval_time).collect();
    let (Some(&first), Some(&last)) = (ends.iter().min(), ends.iter().max()) else {
        return Ok(Value::Vector(Vec::new()));
    };
    let count = Count {
        query,
        deadline,
        cancelled,
        max_series: bounds.max_series,
        max_samples: bounds.max_samples,
        grouping: query.sample_grouping.as_ref(),
    };
    let samples = store.samples(&count, first.saturating_sub(range).saturating_add(1), last)?;
    // As Loki does: a value that could not be read fails the query unless a filter after the
    // unwrap drops such lines (`| __error__=""`).
    if let Some(labels) = samples.keys().find(|l| l.contains_key("__error__")) {
        return Err(pipeline_error(labels, SAMPLE_ERROR).into());
    }
    let seconds = call.range.as_secs_f64();
    let mut out = Vec::with_capacity(samples.len());
    for (labels, values) in samples {
        let points = ends
            .iter()
            .map(|&end| {
                let begin = end.saturating_sub(range);
                let from = values.partition_point(|s| s.0 <= begin);
                let to = values.partition_point(|s| s.0 <= end);
                let window = &values[from..to];
                if window.is_empty() {
                    return None;
                }
                match call.function {
                    // Loki's rate of unwrapped values: their sum per second of the range.
                    Function::Rate => Some(window.iter().map(|s| s.1).sum::<f64>() / seconds),
                    f => over_time(
                        f,
                        &call.params,
                        window,
                        &Window {
                            begin,
                            end,
                            at: end,
                            range_seconds: seconds,
                        },
                    ),
                }
            })
            .collect();
        out.push(Series { labels, points });
    }
    Ok(Value::Vector(out))
}
