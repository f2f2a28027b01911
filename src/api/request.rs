//! Reading a request once, for every handler: head, form body and merged parameters, plus the
//! query deadline.

use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, request::Parts, Method};
use bytes::Bytes;
use tokio::time::Instant;

use crate::api::error::ApiError;
use crate::api::params::Params;
use crate::config::Config;

/// Prometheus reads form bodies up to 10 MiB; a little more leaves room for other upstreams.
pub const MAX_FORM_BODY: usize = 16 << 20;
/// How long past a client's own `timeout` Janus waits for the upstream's timeout answer.
const UPSTREAM_TIMEOUT_GRACE: Duration = Duration::from_millis(500);

pub struct ReadRequest {
    pub parts: Parts,
    pub body: Bytes,
    pub params: Params,
}

pub async fn read(request: Request) -> Result<ReadRequest, ApiError> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, MAX_FORM_BODY)
        .await
        .map_err(|_| ApiError::TooLarge(format!("request body over {MAX_FORM_BODY} bytes")))?;
    let is_form = parts.method == Method::POST
        && parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let params = Params::parse(parts.uri.query(), is_form.then_some(&body[..]));
    Ok(ReadRequest {
        parts,
        body,
        params,
    })
}

/// The same request with parameter `name` set to `value` (every other parameter kept): a POST
/// carries them all as a form body, a GET in its URL. Used to forward a query Janus rewrote.
pub fn with_param(read: ReadRequest, name: &str, value: &str) -> Result<ReadRequest, ApiError> {
    with_values(read, name, &[value.to_string()])
}

/// As [`with_param`], for a parameter given any number of times (`match[]`): its values are
/// replaced by `values`, every other parameter kept.
pub fn with_values(
    read: ReadRequest,
    name: &str,
    values: &[String],
) -> Result<ReadRequest, ApiError> {
    let mut pairs: Vec<(String, String)> = read
        .params
        .pairs()
        .iter()
        .filter(|(k, _)| k != name)
        .cloned()
        .collect();
    pairs.extend(values.iter().map(|v| (name.to_string(), v.clone())));
    let encoded = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&pairs)
        .finish();
    let mut parts = read.parts;
    let path = parts.uri.path().to_string();
    let (uri, body) = if parts.method == Method::POST {
        parts.headers.insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        (path, Bytes::from(encoded))
    } else {
        (format!("{path}?{encoded}"), Bytes::new())
    };
    // Never the original URI: it holds the query as it was before the rewrite.
    parts.uri = uri
        .parse()
        .map_err(|e| ApiError::Internal(format!("rebuilding the request: {e}")))?;
    Ok(ReadRequest {
        parts,
        body,
        params: Params::from_pairs(pairs),
    })
}

/// When a query must be answered by, and the budget that deadline came from.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    pub at: Instant,
    pub budget: Duration,
}

impl Deadline {
    /// For queries Janus answers itself: the smaller of `timeout` and --query.timeout; a bad
    /// `timeout` is refused in Prometheus's words.
    pub fn own(params: &Params, config: &Config) -> Result<Self, ApiError> {
        let budget = params
            .timeout()?
            .map_or(config.query_timeout, |t| t.min(config.query_timeout));
        Ok(Deadline {
            at: Instant::now() + budget,
            budget,
        })
    }

    /// For forwarded queries: as above, but a `timeout` Janus cannot read is left to the upstream
    /// to refuse, and when the client's `timeout` is the smaller the upstream gets a short grace
    /// to answer its own timeout in its own words.
    pub fn forwarded(params: &Params, config: &Config) -> Self {
        let (budget, grace) = match params.timeout() {
            Ok(Some(requested)) if requested < config.query_timeout => {
                (requested, UPSTREAM_TIMEOUT_GRACE)
            }
            _ => (config.query_timeout, Duration::ZERO),
        };
        Deadline {
            at: Instant::now() + budget + grace,
            budget,
        }
    }
}
