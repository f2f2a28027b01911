//! The upstream Prometheus-compatible server: one pooled client, faithful forwarding, health.
//!
//! Forwarding never decodes: bodies stream through as bytes in both directions, so a gzip answer
//! stays the upstream's gzip and Janus's memory does not grow with the size of an answer.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response};
use http_body_util::Full;
use tokio::time::Instant;

use crate::config::{Config, UpstreamAuth};
use crate::telemetry::Metrics;

mod idle_body;
pub mod metric_source;
mod transport;

/// Why the upstream client could not be set up: Janus does not start.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamSetupError {
    #[error("{0}")]
    Transport(#[from] transport::TransportError),
    #[error("--upstream.url: {0}")]
    Url(String),
    #[error("upstream credentials: {0}")]
    Credentials(String),
}

/// A credential as a header value, kept out of debug output.
fn secret_header(text: &str) -> Result<HeaderValue, UpstreamSetupError> {
    let mut value = HeaderValue::from_str(text)
        .map_err(|_| UpstreamSetupError::Credentials("not valid in an HTTP header".into()))?;
    value.set_sensitive(true);
    Ok(value)
}

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
    client: transport::UpstreamClient,
    /// Base URL without a trailing slash, so a path prefix (`/prometheus`) is kept.
    base: String,
    /// The base URL's scheme and authority, reused by every request's URI.
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// The base URL's path without its trailing slash (`""` or `/prometheus`).
    base_path: String,
    /// The `Authorization` value the upstream wants, made once.
    authorization: Option<HeaderValue>,
    forward_headers: Vec<HeaderName>,
    health: Mutex<Health>,
    metrics: Arc<Metrics>,
}

/// Janus's `User-Agent` towards the upstream.
const USER_AGENT: HeaderValue =
    HeaderValue::from_static(concat!("janus/", env!("CARGO_PKG_VERSION")));

impl Upstream {
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Result<Self, UpstreamSetupError> {
        let client = transport::build(&transport::TransportConfig {
            connect_timeout: CONNECT_TIMEOUT,
            idle_timeout: Duration::from_secs(90),
            ca_pem: config.upstream_ca_pem.as_deref(),
            insecure_skip_verify: config.upstream_insecure_skip_verify,
        })?;
        let base_uri: http::Uri = config
            .upstream_url
            .as_str()
            .parse()
            .map_err(|e| UpstreamSetupError::Url(format!("{e}")))?;
        let (Some(scheme), Some(authority)) = (base_uri.scheme(), base_uri.authority()) else {
            return Err(UpstreamSetupError::Url(
                "an absolute http(s) URL is needed".into(),
            ));
        };
        let authorization = match &config.upstream_auth {
            UpstreamAuth::None => None,
            UpstreamAuth::Basic { username, password } => {
                use base64::Engine;
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{password}"));
                Some(secret_header(&format!("Basic {encoded}"))?)
            }
            UpstreamAuth::Bearer(token) => Some(secret_header(&format!("Bearer {token}"))?),
        };
        Ok(Upstream {
            client,
            base: config
                .upstream_url
                .as_str()
                .trim_end_matches('/')
                .to_string(),
            scheme: scheme.clone(),
            authority: authority.clone(),
            base_path: config.upstream_url.path().trim_end_matches('/').to_string(),
            authorization,
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

    /// A request to the upstream: its URI is the base's scheme and authority, the base path,
    /// then the client's path and query as hyper received them (already valid URI text).
    fn request(
        &self,
        method: Method,
        path_and_query: &str,
    ) -> Result<http::request::Builder, UpstreamError> {
        let path_and_query = if self.base_path.is_empty() {
            http::uri::PathAndQuery::try_from(path_and_query)
        } else {
            http::uri::PathAndQuery::try_from(format!("{}{}", self.base_path, path_and_query))
        }
        .map_err(|e| UpstreamError::Internal(format!("building the upstream URI: {e}")))?;
        let uri = http::Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| UpstreamError::Internal(format!("building the upstream URI: {e}")))?;
        let mut builder = http::Request::builder()
            .method(method)
            .uri(uri)
            .header(header::USER_AGENT, USER_AGENT);
        if let Some(value) = &self.authorization {
            builder = builder.header(header::AUTHORIZATION, value.clone());
        }
        Ok(builder)
    }

    /// Sends the request and returns the upstream's answer as a streaming response. The answer
    /// head must arrive before the deadline; the body then streams at the client's pace.
    pub async fn forward(&self, req: Forward<'_>) -> Result<Response<Body>, UpstreamError> {
        let mut builder = self.request(req.method, req.path_and_query)?;
        if let Some(headers) = builder.headers_mut() {
            for name in ALWAYS_FORWARDED.iter().chain(self.forward_headers.iter()) {
                if req.uncompressed && name == header::ACCEPT_ENCODING {
                    continue;
                }
                for value in req.headers.get_all(name) {
                    headers.append(name.clone(), value.clone());
                }
            }
        }
        let request = builder
            .body(Full::new(req.body))
            .map_err(|e| UpstreamError::Internal(format!("building the upstream request: {e}")))?;
        let started = std::time::Instant::now();
        let sent = tokio::time::timeout_at(req.deadline, self.client.request(request)).await;
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
            .record_upstream(req.handler, started.elapsed().as_secs_f64());

        let (head, body) = answer.into_parts();
        let mut response = Response::new(Body::new(idle_body::IdleBounded::new(
            body,
            STREAM_IDLE_TIMEOUT,
        )));
        *response.status_mut() = head.status;
        copy_end_to_end(&head.headers, response.headers_mut());
        Ok(response)
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

    fn unreachable(&self, e: &hyper_util::client::legacy::Error) -> UpstreamError {
        UpstreamError::Unavailable(format!(
            "upstream {} is unreachable ({}); start it or point --upstream.url at a running Prometheus-compatible server",
            self.base,
            root_cause(e)
        ))
    }

    /// Probes `/-/ready` once and records the outcome.
    pub async fn probe(&self) -> Health {
        let request = self.request(Method::GET, "/-/ready").and_then(|b| {
            b.body(Full::new(Bytes::new()))
                .map_err(|e| UpstreamError::Internal(e.to_string()))
        });
        let (up, detail) = match request {
            Err(e) => (false, e.to_string()),
            Ok(request) => {
                match tokio::time::timeout(HEALTH_TIMEOUT, self.client.request(request)).await {
                    Ok(Ok(r)) if r.status().is_success() => {
                        (true, format!("ready ({})", r.status()))
                    }
                    Ok(Ok(r)) => (false, format!("not ready ({})", r.status())),
                    Ok(Err(e)) => (false, root_cause(&e)),
                    Err(_) => (
                        false,
                        format!(
                            "no answer within {}",
                            promql_parser::util::display_duration(&HEALTH_TIMEOUT)
                        ),
                    ),
                }
            }
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

/// Longest wait for the next chunk of a streamed upstream answer (`idle_body`).
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

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
