//! The upstream Prometheus-compatible server: one pooled client, faithful forwarding, health.
//!
//! Forwarding never decodes: bodies stream through as bytes in both directions, so a gzip answer
//! stays the upstream's gzip and Janus's memory does not grow with the size of an answer.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http::{Method, Response};
use tokio::time::Instant;

use crate::config::{Config, UpstreamAuth};
use crate::telemetry::{Metrics, UpstreamLabels};

pub mod metric_source;

/// Why the upstream gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No answer (or no whole answer) before the query's deadline.
    #[error("{0}")]
    Timeout(String),
    /// Unreachable, or its answer could not be read.
    #[error("{0}")]
    Unavailable(String),
    /// A bug in Janus building the answer.
    #[error("{0}")]
    Internal(String),
}

/// How often the upstream's `/-/ready` is probed for the status page and `janus_upstream_up`.
const HEALTH_INTERVAL: Duration = Duration::from_secs(10);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);
/// A blackholed upstream must fail fast rather than hold a query slot for the whole deadline.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Request headers that are always end-to-end and matter to the upstream's answer.
const ALWAYS_FORWARDED: [HeaderName; 3] = [
    header::ACCEPT,
    header::ACCEPT_ENCODING,
    header::CONTENT_TYPE,
];

/// Hop-by-hop headers (RFC 9110 §7.6.1): they describe one connection, not the message.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// What the last health probe saw.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub up: Option<bool>,
    pub detail: String,
    pub checked_at: Option<SystemTime>,
}

/// A request to send upstream, already read and checked by the API layer.
pub struct Forward<'a> {
    pub method: Method,
    /// Path and query exactly as the client sent them (percent-encoding untouched).
    pub path_and_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: Bytes,
    /// Route template, for metrics.
    pub handler: &'a str,
    pub deadline: Instant,
    pub budget: Duration,
    /// Ask for an uncompressed answer (Janus reads it to merge), whatever the client accepts.
    pub uncompressed: bool,
}

pub struct Upstream {
    client: reqwest::Client,
    /// Base URL without a trailing slash, so a path prefix (`/prometheus`) is kept.
    base: String,
    base_url: reqwest::Url,
    /// The base URL's path without its trailing slash (`""` or `/prometheus`).
    base_path: String,
    auth: UpstreamAuth,
    forward_headers: Vec<HeaderName>,
    health: Mutex<Health>,
    metrics: Arc<Metrics>,
}

impl Upstream {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Result<Self, reqwest::Error> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("janus/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(CONNECT_TIMEOUT)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            // A proxy passes redirects on; following them would hide them from the client.
            .redirect(reqwest::redirect::Policy::none())
            // Like Prometheus's HTTP client config: proxies are explicit, not taken from env.
            .no_proxy()
            .danger_accept_invalid_certs(config.upstream_insecure_skip_verify);
        if let Some(pem) = &config.upstream_ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Upstream {
            client: builder.build()?,
            base: config
                .upstream_url
                .as_str()
                .trim_end_matches('/')
                .to_string(),
            base_url: config.upstream_url.clone(),
            base_path: config.upstream_url.path().trim_end_matches('/').to_string(),
            auth: config.upstream_auth.clone(),
            forward_headers: config.forward_headers.clone(),
            health: Mutex::new(Health::default()),
            metrics,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn health(&self) -> Health {
        self.health.lock().map(|h| h.clone()).unwrap_or_default()
    }

    fn request(&self, method: Method, path_and_query: &str) -> reqwest::RequestBuilder {
        // Editing a parsed copy of the base URL skips re-parsing (and IDNA-checking) the host on
        // every request; path and query are already valid URI text from hyper.
        let mut url = self.base_url.clone();
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        url.set_path(&format!("{}{}", self.base_path, path));
        url.set_query(query);
        let builder = self.client.request(method, url);
        match &self.auth {
            UpstreamAuth::None => builder,
            UpstreamAuth::Basic { username, password } => {
                builder.basic_auth(username, Some(password))
            }
            UpstreamAuth::Bearer(token) => builder.bearer_auth(token),
        }
    }

    /// Sends the request and returns the upstream's answer as a streaming response. The answer
    /// head must arrive before the deadline; the body then streams at the client's pace.
    pub async fn forward(&self, req: Forward<'_>) -> Result<Response<Body>, UpstreamError> {
        let mut builder = self.request(req.method, req.path_and_query);
        for name in ALWAYS_FORWARDED.iter().chain(self.forward_headers.iter()) {
            if req.uncompressed && name == header::ACCEPT_ENCODING {
                continue;
            }
            for value in req.headers.get_all(name) {
                builder = builder.header(name, value);
            }
        }
        if !req.body.is_empty() {
            builder = builder.body(req.body);
        }
        let started = std::time::Instant::now();
        let sent = tokio::time::timeout_at(req.deadline, builder.send()).await;
        let answer = match sent {
            Err(_) => {
                self.metrics.upstream_error("timeout");
                return Err(UpstreamError::Timeout(format!(
                    "query timed out: upstream {} did not answer within {}",
                    self.base,
                    promql_parser::util::display_duration(&req.budget)
                )));
            }
            Ok(Err(e)) => {
                self.metrics.upstream_error("unreachable");
                return Err(self.unreachable(&e));
            }
            Ok(Ok(answer)) => answer,
        };
        self.metrics
            .upstream_duration
            .get_or_create(&UpstreamLabels {
                handler: req.handler.to_string(),
            })
            .observe(started.elapsed().as_secs_f64());

        let mut response = Response::builder().status(answer.status());
        if let Some(headers) = response.headers_mut() {
            copy_end_to_end(answer.headers(), headers);
        }
        response
            .body(Body::from_stream(idle_bounded(answer.bytes_stream())))
            .map_err(|e| UpstreamError::Internal(format!("building the upstream answer: {e}")))
    }

    /// Reads a whole upstream answer body, of at most `limit` bytes, by `deadline`: an upstream
    /// that sends its head and then trickles the body cannot hold a query past its deadline.
    pub async fn read_body(
        &self,
        body: Body,
        limit: usize,
        deadline: tokio::time::Instant,
    ) -> Result<bytes::Bytes, UpstreamError> {
        let budget =
            std::sync::atomic::AtomicIsize::new(isize::try_from(limit).unwrap_or(isize::MAX));
        self.read_body_within(body, &budget, deadline)
            .await?
            .ok_or_else(|| {
                UpstreamError::Unavailable(format!(
                    "reading the upstream answer: length limit exceeded ({limit} bytes)"
                ))
            })
    }

    /// Reads a whole upstream answer body by `deadline`, taking its bytes from `budget` as they
    /// arrive (several answers of one request share it); `Ok(None)` once the budget is spent,
    /// with what was read dropped at once.
    pub async fn read_body_within(
        &self,
        body: Body,
        budget: &std::sync::atomic::AtomicIsize,
        deadline: tokio::time::Instant,
    ) -> Result<Option<bytes::Bytes>, UpstreamError> {
        use http_body_util::BodyExt;
        use std::sync::atomic::Ordering;
        let read = async {
            let mut body = body;
            // Chunks kept as they came and joined once at their exact size: a buffer grown by
            // doubling would hold up to twice the answer while it is parsed.
            let mut chunks: Vec<bytes::Bytes> = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| {
                    UpstreamError::Unavailable(format!("reading the upstream answer: {e}"))
                })?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                let len = isize::try_from(data.len()).unwrap_or(isize::MAX);
                if budget.fetch_sub(len, Ordering::Relaxed) < len {
                    return Ok(None);
                }
                chunks.push(data);
            }
            if chunks.len() == 1 {
                return Ok(chunks.pop());
            }
            let mut out = bytes::BytesMut::with_capacity(chunks.iter().map(|c| c.len()).sum());
            for chunk in chunks.drain(..) {
                out.extend_from_slice(&chunk);
            }
            Ok(Some(out.freeze()))
        };
        match tokio::time::timeout_at(deadline, read).await {
            Ok(outcome) => outcome,
            Err(_) => {
                self.metrics.upstream_error("timeout");
                Err(UpstreamError::Timeout(format!(
                    "query timed out: upstream {} did not finish its answer in time",
                    self.base
                )))
            }
        }
    }

    fn unreachable(&self, e: &reqwest::Error) -> UpstreamError {
        UpstreamError::Unavailable(format!(
            "upstream {} is unreachable ({}); start it or point --upstream.url at a running Prometheus-compatible server",
            self.base,
            root_cause(e)
        ))
    }

    /// Probes `/-/ready` once and records the outcome.
    pub async fn probe(&self) -> Health {
        let outcome = self
            .request(Method::GET, "/-/ready")
            .timeout(HEALTH_TIMEOUT)
            .send()
            .await;
        let (up, detail) = match outcome {
            Ok(r) if r.status().is_success() => (true, format!("ready ({})", r.status())),
            Ok(r) => (false, format!("not ready ({})", r.status())),
            Err(e) => (false, root_cause(&e)),
        };
        self.metrics.upstream_up.set(i64::from(up));
        let health = Health {
            up: Some(up),
            detail,
            checked_at: Some(SystemTime::now()),
        };
        if let Ok(mut slot) = self.health.lock() {
            *slot = health.clone();
        }
        health
    }

    /// Probes forever; the task ends with the runtime.
    pub fn spawn_health_probe(self: &Arc<Self>) {
        let upstream = Arc::clone(self);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(HEALTH_INTERVAL);
            loop {
                ticker.tick().await;
                upstream.probe().await;
            }
        });
    }
}

/// Copies every header that is about the message rather than the connection.
fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap) {
    let named_in_connection: Vec<String> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    for (name, value) in from {
        let lower = name.as_str();
        if HOP_BY_HOP.contains(&lower) || named_in_connection.iter().any(|n| n == lower) {
            continue;
        }
        to.append(name.clone(), value.clone());
    }
}

/// The innermost error: "Connection refused (os error 111)" says more than "error sending request".
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut current = e;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

/// Longest wait for the next chunk of a streamed upstream answer. A passthrough answer streams
/// at the client's pace without a deadline, but an upstream that stops sending mid-answer must
/// not hold the client's connection (and Janus's memory) forever.
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Ends a byte stream with an error when no chunk arrives for [`STREAM_IDLE_TIMEOUT`].
fn idle_bounded<S>(
    stream: S,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>>
where
    S: futures_util::Stream<Item = Result<bytes::Bytes, reqwest::Error>> + Send + Unpin,
{
    futures_util::stream::unfold(Some(stream), |state| async move {
        let mut stream = state?;
        match tokio::time::timeout(
            STREAM_IDLE_TIMEOUT,
            futures_util::StreamExt::next(&mut stream),
        )
        .await
        {
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(stream))),
            Ok(Some(Err(e))) => Some((Err(std::io::Error::other(e)), None)),
            Ok(None) => None,
            Err(_) => Some((
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the upstream stopped sending its answer",
                )),
                None,
            )),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn drops_hop_by_hop_headers() {
        let mut from = HeaderMap::new();
        from.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        from.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        from.insert(header::VARY, HeaderValue::from_static("Origin"));
        from.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Custom"),
        );
        from.insert("x-custom", HeaderValue::from_static("1"));
        from.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        from.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        let mut to = HeaderMap::new();
        copy_end_to_end(&from, &mut to);
        let mut names: Vec<_> = to.keys().map(|k| k.as_str().to_string()).collect();
        names.sort();
        assert_eq!(names, ["content-encoding", "content-type", "vary"]);
    }
}
