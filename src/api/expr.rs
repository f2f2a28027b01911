//! Expressions over logs (log metrics, aggregations, mixed with metrics): parse with the log
//! selectors replaced, plan, compute the leaves concurrently (store and upstream), evaluate,
//! encode as Prometheus does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use promql_parser::parser::Expr;

use super::query::QueryKind;
use super::request::Deadline;
use super::SharedState;
use crate::error::ApiError;
use crate::logql::rewrite::Rewritten;
use crate::params::{Params, Timestamp};
use crate::promql::encode;
use crate::promql::plan::{self, LogCall};
use crate::promql::upstream_answer::{self, Answer, Shape};
use crate::promql::value::{Steps, Value};
use crate::store::scan::ScanStop;
use crate::upstream::Forward;

struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Unix seconds with nanoseconds, as the upstream reads `time`, `start`, `end`, `step`.
fn seconds(ns: i64) -> String {
    format!(
        "{}.{:09}",
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000)
    )
}

pub async fn answer(
    state: &SharedState,
    params: &Params,
    headers: &HeaderMap,
    kind: QueryKind,
    rewritten: Rewritten,
    expr: crate::promql::plan::Parsed,
) -> Result<Response, ApiError> {
    let steps = match kind {
        QueryKind::Instant => Steps {
            start: params.time_or("time", Timestamp::now())?.0,
            step: 1,
            count: 1,
        },
        QueryKind::Range => {
            let r = params.range()?;
            Steps {
                start: r.start.0,
                step: r.step_nanos,
                count: r.steps(),
            }
        }
    };
    let deadline = Deadline::own(params, &state.config)?;
    // An expression that waits on the upstream takes an upstream slot, so that a slow upstream
    // never starves the queries answered from the store alone.
    let limiter = if state.config.evaluate_metric_queries || plan::reads_upstream(&expr) {
        &state.limiter
    } else {
        &state.log_limiter
    };
    let _slot = limiter.acquire(deadline.at).await?;
    let cancelled = Arc::new(AtomicBool::new(false));
    let _guard = CancelOnDrop(Arc::clone(&cancelled));
    let context = Context {
        state,
        headers,
        logs: Arc::new(rewritten.logs),
        holt_winters: rewritten.holt_winters,
        deadline,
        cancelled,
    };
    let (value, warnings) = evaluate(&context, &expr, steps, 0).await?;
    let data = encode::data(&value, &steps, kind == QueryKind::Range);
    let mut body = format!("{{\"status\":\"success\",\"data\":{data}");
    if !warnings.is_empty() {
        body.push_str(",\"warnings\":");
        body.push_str(&serde_json::to_string(&warnings).unwrap_or_else(|_| "[]".into()));
    }
    body.push('}');
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

/// What every level of a (possibly nested) evaluation shares.
struct Context<'a> {
    state: &'a SharedState,
    headers: &'a HeaderMap,
    logs: Arc<Vec<crate::logql::LogQuery>>,
    /// The user spelled `holt_winters`: pushed-down text says so too.
    holt_winters: bool,
    deadline: Deadline,
    cancelled: Arc<AtomicBool>,
}

type Evaluated = Result<(Value, Vec<String>), ApiError>;

/// Plans `expr` at `steps`, computes its leaves concurrently — log range functions from the
/// store, pushed-down parts from the upstream, subqueries by evaluating their inner expression
/// at their own steps — and evaluates the rest.
/// How deep subqueries may nest: each level is an evaluation (and an async frame) of its own.
const MAX_SUBQUERY_NESTING: usize = 32;

fn evaluate<'a>(
    ctx: &'a Context<'a>,
    expr: &'a Expr,
    steps: Steps,
    nesting: usize,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Evaluated> + Send + 'a>> {
    Box::pin(async move {
        let state = ctx.state;
        let plan = plan::plan(expr, state.config.evaluate_metric_queries)?;
        // Each stream holds a value per step: bound the streams by both limits.
        let max_streams = state
            .config
            .query_max_series
            .min(state.config.query_max_samples / steps.count.max(1))
            .max(1);
        let range = steps.count > 1;
        let log_tasks = plan.logs.iter().map(|(node, call)| {
            let (store, logs, call, cancelled) = (
                Arc::clone(&state.store),
                Arc::clone(&ctx.logs),
                call.clone(),
                Arc::clone(&ctx.cancelled),
            );
            let node = *node;
            let at = ctx.deadline.at.into_std();
            async move {
                let value = tokio::task::spawn_blocking(move || {
                    run_log_call(&store, &logs, &call, &steps, at, &cancelled, max_streams)
                })
                .await
                .map_err(|e| ApiError::Internal(format!("log metric failed: {e}")))??;
                Ok::<_, ApiError>((node, value, Vec::new()))
            }
        });
        let upstream_tasks = plan.upstream.iter().map(|(node, text, scalar)| async move {
            let (new, old) = (
                crate::logql::rewrite::HOLT_WINTERS.1,
                crate::logql::rewrite::HOLT_WINTERS.0,
            );
            let text = if ctx.holt_winters {
                std::borrow::Cow::Owned(text.replace(&format!("{new}("), &format!("{old}(")))
            } else {
                std::borrow::Cow::Borrowed(text.as_str())
            };
            ctx.state.metrics.pushed_parts.inc();
            let (value, warnings) = push_down(ctx, &text, *scalar, steps, range).await?;
            Ok::<_, ApiError>((*node, value, warnings))
        });
        let subquery_tasks = plan.subqueries.iter().map(|(node, call)| async move {
            if nesting >= MAX_SUBQUERY_NESTING {
                return Err(ApiError::BadData(format!(
                    "subqueries nested more than {MAX_SUBQUERY_NESTING} deep"
                )));
            }
            state.metrics.subqueries_evaluated.inc();
            let inner_steps = call.inner_steps(&steps, state.config.query_max_samples)?;
            let (inner, warnings) = evaluate(ctx, call.inner, inner_steps, nesting + 1).await?;
            let at = ctx.deadline.at.into_std();
            let applied =
                tokio::task::block_in_place(|| call.apply(&inner, &inner_steps, &steps, at))?;
            Ok::<_, ApiError>((*node, applied, warnings))
        });
        let (logs_done, upstream_done, subqueries_done) = tokio::join!(
            futures_util::future::join_all(log_tasks),
            futures_util::future::join_all(upstream_tasks),
            futures_util::future::join_all(subquery_tasks)
        );
        let mut inputs: HashMap<plan::NodeId, Value> = HashMap::new();
        let mut warnings = Vec::new();
        let mut samples = 0usize;
        for done in logs_done
            .into_iter()
            .chain(upstream_done)
            .chain(subqueries_done)
        {
            let (node, value, w) = done?;
            samples += sample_count(&value);
            inputs.insert(node, value);
            warnings.extend(w);
        }
        if samples > state.config.query_max_samples {
            return Err(plan::too_many_samples());
        }
        let value = tokio::task::block_in_place(|| plan::evaluate(expr, steps, &inputs))?;
        if sample_count(&value) > state.config.query_max_samples {
            return Err(plan::too_many_samples());
        }
        Ok((value, warnings))
    })
}

/// One sub-expression without log selectors, answered by the upstream at the same steps.
async fn push_down(
    ctx: &Context<'_>,
    text: &str,
    scalar: bool,
    steps: Steps,
    range: bool,
) -> Result<(Value, Vec<String>), ApiError> {
    let path = if range {
        format!(
            "/api/v1/query_range?{}",
            form_urlencoded::Serializer::new(String::new())
                .append_pair("query", text)
                .append_pair("start", &seconds(steps.start))
                .append_pair("end", &seconds(steps.time(steps.count - 1)))
                .append_pair("step", &seconds(steps.step))
                .finish()
        )
    } else {
        format!(
            "/api/v1/query?{}",
            form_urlencoded::Serializer::new(String::new())
                .append_pair("query", text)
                .append_pair("time", &seconds(steps.start))
                .finish()
        )
    };
    let answer = ctx
        .state
        .upstream
        .forward(Forward {
            method: axum::http::Method::GET,
            path_and_query: &path,
            headers: ctx.headers,
            body: bytes::Bytes::new(),
            handler: "/api/v1/query (pushed down)",
            deadline: ctx.deadline.at,
            budget: ctx.deadline.budget,
            identity: true,
        })
        .await?;
    let shape = Shape {
        steps,
        scalar,
        max_samples: ctx.state.config.query_max_samples,
    };
    let status = answer.status();
    match decode_streamed(answer.into_body(), shape, ctx.deadline.at).await? {
        Answer::Success { value, warnings } if status.is_success() => Ok((value, warnings)),
        Answer::Success { .. } => Err(ApiError::Unavailable(format!(
            "the upstream answered {status} with a success body"
        ))),
        Answer::Error {
            error_type,
            message,
        } => Err(match error_type.as_str() {
            "bad_data" => ApiError::BadData(message),
            "execution" => ApiError::Execution(message),
            "timeout" => ApiError::Timeout(message),
            "canceled" => ApiError::Canceled(message),
            _ => ApiError::Unavailable(message),
        }),
    }
}

/// Decodes an upstream answer on a blocking thread while its body streams in, chunk by chunk,
/// each chunk awaited until the query's deadline at most.
async fn decode_streamed(
    body: axum::body::Body,
    shape: Shape,
    deadline: tokio::time::Instant,
) -> Result<Answer, ApiError> {
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(8);
    let worker = tokio::task::spawn_blocking(move || {
        upstream_answer::decode(
            ChunkReader {
                rx,
                current: bytes::Bytes::new(),
            },
            shape,
        )
    });
    let mut stream = body.into_data_stream();
    let pumped = tokio::time::timeout_at(deadline, async {
        while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
            let Ok(chunk) = chunk else { break };
            if tx.send(chunk).await.is_err() {
                break; // the decoder stopped (budget reached or bad JSON)
            }
        }
    })
    .await;
    drop(tx);
    if pumped.is_err() {
        return Err(ApiError::Timeout(
            "query timed out: the upstream did not finish its answer in time".into(),
        ));
    }
    match worker.await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(upstream_answer::DecodeError::TooManySamples)) => Err(plan::too_many_samples()),
        Ok(Err(e)) => Err(ApiError::Unavailable(e.to_string())),
        Err(e) => Err(ApiError::Internal(format!(
            "decoding the upstream answer: {e}"
        ))),
    }
}

/// `Read` over the chunks a channel delivers.
struct ChunkReader {
    rx: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    current: bytes::Bytes,
}

impl std::io::Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        bytes::Buf::advance(&mut self.current, n);
        Ok(n)
    }
}

fn sample_count(value: &Value) -> usize {
    match value {
        Value::Scalar(points) => points.len(),
        Value::Vector(series) => series
            .iter()
            .map(|s| s.points.iter().flatten().count())
            .sum(),
        Value::String(_) => 1,
    }
}

fn run_log_call(
    store: &crate::store::Store,
    logs: &[crate::logql::LogQuery],
    call: &LogCall,
    steps: &Steps,
    deadline: std::time::Instant,
    cancelled: &AtomicBool,
    max_streams: usize,
) -> Result<Value, ApiError> {
    let query = logs
        .get(call.log)
        .ok_or_else(|| ApiError::Internal("log selector placeholder without a query".into()))?;
    plan::log_call(store, query, call, steps, deadline, cancelled, max_streams).map_err(|stop| match stop {
        ScanStop::Deadline => ApiError::Timeout("query timed out in query execution".into()),
        ScanStop::Cancelled => ApiError::Canceled("query was canceled".into()),
        ScanStop::TooManyStreams(limit) => ApiError::Execution(format!(
            "query processing would load too many samples into memory in query execution: the log selector matches more than {limit} streams (--query.max-samples, --query.max-series)"
        )),
    })
}
