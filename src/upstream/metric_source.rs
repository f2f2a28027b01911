//! The upstream as the engine's [`MetricSource`]: each metric part of an expression is asked as
//! an instant or range query at the expression's steps, and its answer is decoded while it
//! streams in, within the query's sample budget.

use axum::body::Body;
use http::{HeaderMap, Method};

use super::{Forward, Upstream, UpstreamError};
use crate::engine::{EngineError, MetricAnswer, MetricQuery, MetricSource, SourceErrorKind};
use crate::promql::upstream_answer::{self, Answer, DecodeError, Shape};
use crate::promql::EvalError;

/// The upstream, asked on behalf of one client request (whose forwarded headers it carries).
pub struct UpstreamSource<'a> {
    pub upstream: &'a Upstream,
    pub headers: &'a HeaderMap,
    /// The query's time budget, for the words of a timeout.
    pub budget: std::time::Duration,
}

impl From<UpstreamError> for EngineError {
    fn from(e: UpstreamError) -> Self {
        let kind = match e {
            UpstreamError::Timeout(_) => SourceErrorKind::Timeout,
            UpstreamError::Unavailable(_) => SourceErrorKind::Unavailable,
            UpstreamError::Internal(message) => return EngineError::Internal(message),
        };
        EngineError::Source {
            kind,
            message: e.to_string(),
        }
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

fn path_and_query(query: &MetricQuery<'_>) -> String {
    let steps = query.steps;
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("query", query.text);
    if query.range {
        form.append_pair("start", &seconds(steps.start))
            .append_pair("end", &seconds(steps.time(steps.count - 1)))
            .append_pair("step", &seconds(steps.step));
        format!("/api/v1/query_range?{}", form.finish())
    } else {
        form.append_pair("time", &seconds(steps.start));
        format!("/api/v1/query?{}", form.finish())
    }
}

impl MetricSource for UpstreamSource<'_> {
    fn query<'a>(&'a self, query: MetricQuery<'a>) -> crate::engine::source::MetricFuture<'a> {
        Box::pin(async move {
            let path = path_and_query(&query);
            let answer = self
                .upstream
                .forward(Forward {
                    method: Method::GET,
                    path_and_query: &path,
                    headers: self.headers,
                    body: bytes::Bytes::new(),
                    handler: "/api/v1/query (pushed down)",
                    deadline: query.deadline,
                    budget: self.budget,
                    uncompressed: true,
                })
                .await?;
            let shape = Shape {
                steps: query.steps,
                scalar: query.scalar,
                max_samples: query.max_samples,
            };
            let status = answer.status();
            match decode_streamed(answer.into_body(), shape, query.deadline).await? {
                Answer::Success { value, warnings } if status.is_success() => {
                    Ok(MetricAnswer { value, warnings })
                }
                Answer::Success { .. } => Err(EngineError::Source {
                    kind: SourceErrorKind::Unavailable,
                    message: format!("the upstream answered {status} with a success body"),
                }),
                Answer::Error {
                    error_type,
                    message,
                } => Err(EngineError::Source {
                    kind: SourceErrorKind::from_error_type(&error_type),
                    message,
                }),
            }
        })
    }
}

/// Decodes an upstream answer on a blocking thread while its body streams in, chunk by chunk,
/// each chunk awaited until the query's deadline at most.
async fn decode_streamed(
    body: Body,
    shape: Shape,
    deadline: tokio::time::Instant,
) -> Result<Answer, EngineError> {
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
        return Err(UpstreamError::Timeout(
            "query timed out: the upstream did not finish its answer in time".into(),
        )
        .into());
    }
    match worker.await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(DecodeError::TooManySamples)) => Err(EvalError::TooManySamples.into()),
        Ok(Err(e)) => Err(UpstreamError::Unavailable(e.to_string()).into()),
        Err(e) => Err(EngineError::Internal(format!(
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
