//! Log metrics: one log range function (`count_over_time`, `rate`, `bytes_over_time`,
//! `bytes_rate`, `absent_over_time`, or an unwrapped range aggregation) at every step, from
//! one pass over the window's lines.

use std::sync::atomic::AtomicBool;

use crate::logql::LogQuery;
use crate::logstore::{Count, LogStore};
use crate::promql::functions::Function;
use crate::promql::plan::LogCall;
use crate::promql::subquery::at_time;
use crate::promql::value::{Labels, Series, Steps, Value};
use crate::promql::EvalError;

use super::unwrapped::unwrapped_call;
pub use super::unwrapped::Bounds;
use super::EngineError;

/// Answers one log range function at every step, reading the window's lines once.
pub fn log_call(
    store: &dyn LogStore,
    query: &LogQuery,
    call: &LogCall,
    steps: &Steps,
    deadline: std::time::Instant,
    cancelled: &AtomicBool,
    bounds: Bounds,
) -> Result<Value, EngineError> {
    super::runs_it(store, query, true)?;
    let max_streams = bounds.max_series;
    let range = i64::try_from(call.range.as_nanos()).unwrap_or(i64::MAX);
    let eval_time = |k: usize| -> i64 {
        let t = call
            .at
            .as_ref()
            .map_or_else(|| steps.time(k), |at| at_time(at, steps));
        t.saturating_sub(call.offset_ns)
    };
    if query.pipeline.unwrap().is_some() {
        return unwrapped_call(
            store, query, call, steps, &eval_time, deadline, cancelled, bounds,
        );
    }
    if !call.function.reads_logs() {
        return Err(EvalError::BadData(format!(
            "invalid aggregation {} without unwrap: add | unwrap <label> to the log pipeline, or use one of {}",
            call.function.name(),
            crate::promql::functions::names(Function::reads_logs)
        ))
        .into());
    }
    let mut bounds: Vec<i64> = (0..steps.count)
        .flat_map(|k| {
            let end = eval_time(k);
            [end.saturating_sub(range), end]
        })
        .collect();
    bounds.sort_unstable();
    bounds.dedup();
    // Under a `sum by`, parsers extract only what the grouping and the label filters read.
    let grouped;
    let query = match &call.grouping {
        Some(crate::logql::pipeline::Grouping::By(labels)) if !query.pipeline.is_empty() => {
            let mut narrowed = query.clone();
            narrowed.pipeline.want_only(labels);
            grouped = narrowed;
            &grouped
        }
        _ => query,
    };
    let count = Count {
        query,
        deadline,
        cancelled,
        max_series: max_streams,
        max_samples: 0,
        grouping: call.grouping.as_ref(),
    };
    let buckets = store.buckets(&count, &bounds)?;
    // A line a stage marked (`__error__`) fails the query, as in Loki, whatever the grouping.
    if let Some((labels, _)) = buckets
        .iter()
        .find(|(l, b)| l.contains_key("__error__") && b.iter().skip(1).any(|c| c.0 > 0))
    {
        return Err(super::unwrapped::pipeline_error(labels, "").into());
    }
    let index = |t: i64| bounds.partition_point(|&b| b < t);
    let seconds = call.range.as_secs_f64();
    if call.function == Function::AbsentOverTime {
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
    for (labels, b) in buckets {
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
                    Function::Rate => n as f64 / seconds,
                    Function::BytesOverTime => bytes,
                    Function::BytesRate => bytes / seconds,
                    _ => n as f64, // count_over_time, the only other log function
                })
            })
            .collect();
        out.push(Series { labels, points });
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
