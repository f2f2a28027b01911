//! The upstream as the engine's [`MetricSource`]: each metric part of an expression is asked as
//! an instant or range query at the expression's steps, and its answer is decoded while it
//! streams in, within the query's sample budget.

use axum::body::Body;
use http::{HeaderMap, Method};

use super::{Forward, Upstream, UpstreamError};
use crate::engine::{EngineError, MetricAnswer, MetricQuery, MetricSource, SourceErrorKind};
use crate::promql::upstream_answer::{self, Answer, DecodeError, Shape};
use crate::promql::EvalError;
use crate::results_cache::matrix;
use crate::results_cache::plan::{cacheable_expression, RangePlan};
use crate::results_cache::range;
use crate::results_cache::ResultsCache;

/// The upstream, asked on behalf of one client request (whose forwarded headers it carries).
pub struct UpstreamSource<'a> {
    pub upstream: &'a Upstream,
    pub headers: &'a HeaderMap,
    /// The query's time budget, for the words of a timeout.
    pub budget: std::time::Duration,
    /// Where range parts that can be cut are answered from (see `results_cache::range`).
    pub cache: Option<&'a ResultsCache>,
    /// The headers forwarded to the upstream (`upstream.forward_headers`), part of every key.
    pub forward_headers: &'a [http::HeaderName],
}

/// A piece read whole for the cache; a larger one is asked the ordinary way, decoded as it
/// streams within the samples budget.
const MAX_PIECE_BODY: usize = 64 << 20;

impl UpstreamSource<'_> {
    /// One GET of the upstream on the client's behalf, uncompressed (it is decoded here).
    async fn ask(
        &self,
        path_and_query: &str,
        deadline: tokio::time::Instant,
    ) -> Result<http::Response<Body>, UpstreamError> {
        self.upstream
            .forward(Forward {
                method: Method::GET,
                path_and_query,
                headers: self.headers,
                body: bytes::Bytes::new(),
                handler: "/api/v1/query (pushed down)",
                deadline,
                budget: self.budget,
                uncompressed: true,
            })
            .await
    }

    /// A range part through the results cache: the joined answer's bytes, or `None` when it
    /// cannot be cut or a piece could not be read (then it is asked whole, as always).
    async fn cached_range(&self, query: &MetricQuery<'_>) -> Option<bytes::Bytes> {
        let cache = self.cache?;
        let steps = query.steps;
        let plan = RangePlan::new(
            steps.start,
            steps.time(steps.count - 1),
            steps.step,
            cache.settings.split_interval_ms,
        )?;
        let text = query.text.to_string();
        let cacheable = if text.len() <= 4096 {
            cacheable_expression(&text)
        } else {
            tokio::task::spawn_blocking(move || cacheable_expression(&text))
                .await
                .unwrap_or(false)
        };
        if !cacheable {
            return None;
        }
        let forwarded = self.forward_headers.iter().flat_map(|name| {
            self.headers
                .get_all(name)
                .iter()
                .map(move |v| (name.as_str(), v.as_bytes()))
        });
        let base = range::base_key("range", query.text, forwarded, self.upstream.base_url());
        let fetch = |a: i64, b: i64| async move {
            let path = format!(
                "/api/v1/query_range?{}",
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("query", query.text)
                    .append_pair("start", &seconds(a * 1_000_000))
                    .append_pair("end", &seconds(b * 1_000_000))
                    .append_pair("step", &seconds(steps.step))
                    .finish()
            );
            let answer = self.ask(&path, query.deadline).await.ok()?;
            let json = answer
                .headers()
                .get(http::header::CONTENT_TYPE)
                .is_some_and(|t| t == "application/json");
            if !answer.status().is_success() || !json {
                return None;
            }
            let body = self
                .upstream
                .read_body(answer.into_body(), MAX_PIECE_BODY, query.deadline)
                .await
                .ok()?;
            matrix::parse(&body, a, b)
        };
        range::answer(cache, base, &plan, fetch)
            .await
            .map(bytes::Bytes::from)
    }
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
            let shape = Shape {
                steps: query.steps,
                scalar: query.scalar,
                max_samples: query.max_samples,
            };
            let cached = match query.range {
                true => self.cached_range(&query).await,
                false => None,
            };
            let (status, body) = match cached {
                Some(body) => (http::StatusCode::OK, Body::from(body)),
                None => {
                    let answer = self.ask(&path_and_query(&query), query.deadline).await?;
                    (answer.status(), answer.into_body())
                }
            };
            match decode_streamed(body, shape, query.deadline).await? {
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

/// The upstream as a metric source of its own (the rules have no client request whose headers
/// to forward).
pub struct UpstreamMetrics {
    pub upstream: std::sync::Arc<Upstream>,
    pub headers: http::HeaderMap,
    pub budget: std::time::Duration,
}

impl MetricSource for UpstreamMetrics {
    fn query<'a>(&'a self, query: MetricQuery<'a>) -> crate::engine::MetricFuture<'a> {
        Box::pin(async move {
            let source = UpstreamSource {
                upstream: &self.upstream,
                headers: &self.headers,
                budget: self.budget,
                cache: None,
                forward_headers: &[],
            };
            source.query(query).await
        })
    }
}
