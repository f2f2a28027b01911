//! The one error type of the HTTP API and its single mapping to Prometheus-style answers.
//!
//! Every handler returns `Result<_, ApiError>`; nothing else decides status codes, so the
//! `errorType` ↔ HTTP status pairing matches Prometheus's `web/api/v1/api.go` in exactly one place.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An error answered to a client. The variants are Prometheus's `errorType`s plus the few HTTP
/// conditions (body too large, not found) that Prometheus answers outside its JSON envelope.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A malformed query or parameter: the client's mistake, never retried.
    #[error("{0}")]
    BadData(String),
    /// The query was valid but failed while running.
    #[error("{0}")]
    Execution(String),
    /// The query deadline passed before an answer was ready.
    #[error("{0}")]
    Timeout(String),
    /// A backend Janus depends on (the upstream) could not be reached.
    #[error("{0}")]
    Unavailable(String),
    /// The client went away or the request was cancelled.
    #[error("{0}")]
    Canceled(String),
    /// A request body over the configured limit.
    #[error("{0}")]
    TooLarge(String),
    /// A body of a type the endpoint does not read.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// An identified tenant asked for what its scope does not reach.
    #[error("{0}")]
    Forbidden(String),
    /// A tenant over its own limits (push rate, queries at once): retried later.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Option<std::time::Duration>,
    },
    /// A bug in Janus. Never the answer to user input.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// Prometheus's `errorType` string for this error.
    pub fn error_type(&self) -> &'static str {
        match self {
            ApiError::BadData(_) | ApiError::TooLarge(_) | ApiError::UnsupportedMediaType(_) => {
                "bad_data"
            }
            ApiError::Execution(_) => "execution",
            ApiError::Timeout(_) => "timeout",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Canceled(_) => "canceled",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::RateLimited { .. } => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The HTTP status Prometheus pairs with the `errorType`.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadData(_) => StatusCode::BAD_REQUEST,
            ApiError::Execution(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Timeout(_) | ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            // Prometheus answers a cancelled query with 499 (client closed request).
            ApiError::Canceled(_) => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

// Each part's own error, mapped to Prometheus's error types here and nowhere else.

impl From<crate::logql::SyntaxError> for ApiError {
    fn from(e: crate::logql::SyntaxError) -> Self {
        ApiError::BadData(e.0)
    }
}

impl From<crate::promql::EvalError> for ApiError {
    fn from(e: crate::promql::EvalError) -> Self {
        use crate::promql::EvalError;
        match e {
            EvalError::BadData(m) => ApiError::BadData(m),
            EvalError::Execution(m) => ApiError::Execution(m),
            EvalError::Timeout => ApiError::Timeout(e.to_string()),
            EvalError::TooManySamples => ApiError::Execution(e.to_string()),
        }
    }
}

impl From<crate::logstore::ScanStop> for ApiError {
    fn from(e: crate::logstore::ScanStop) -> Self {
        use crate::logstore::ScanStop;
        match e {
            ScanStop::Deadline => ApiError::Timeout(e.to_string()),
            ScanStop::Cancelled => ApiError::Canceled(e.to_string()),
            ScanStop::Unavailable(_) => ApiError::Unavailable(e.to_string()),
            ScanStop::TooManyStreams(_)
            | ScanStop::TooManySamples(_)
            | ScanStop::LabelsTooLarge(_)
            | ScanStop::AnswerTooLarge(_) => ApiError::Execution(e.to_string()),
        }
    }
}

impl From<crate::upstream::UpstreamError> for ApiError {
    fn from(e: crate::upstream::UpstreamError) -> Self {
        use crate::upstream::UpstreamError;
        match e {
            UpstreamError::Timeout(m) => ApiError::Timeout(m),
            UpstreamError::Unavailable(m) => ApiError::Unavailable(m),
            UpstreamError::Internal(m) => ApiError::Internal(m),
        }
    }
}

impl From<crate::engine::EngineError> for ApiError {
    fn from(e: crate::engine::EngineError) -> Self {
        use crate::engine::{EngineError, SourceErrorKind};
        match e {
            EngineError::Syntax(e) => e.into(),
            EngineError::Eval(e) => e.into(),
            EngineError::Stopped(e) => e.into(),
            EngineError::Source { kind, message } => match kind {
                SourceErrorKind::BadData => ApiError::BadData(message),
                SourceErrorKind::Execution => ApiError::Execution(message),
                SourceErrorKind::Timeout => ApiError::Timeout(message),
                SourceErrorKind::Canceled => ApiError::Canceled(message),
                SourceErrorKind::Unavailable => ApiError::Unavailable(message),
            },
            EngineError::Timeout(m) => ApiError::Timeout(m),
            EngineError::Internal(m) => ApiError::Internal(m),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    status: &'static str,
    #[serde(rename = "errorType")]
    error_type: &'static str,
    error: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = self.to_string();
        let retry_after = match &self {
            ApiError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        };
        let body = ErrorBody {
            status: "error",
            error_type: self.error_type(),
            error: &message,
        };
        // Serializing three strings cannot fail; fall back to a fixed body rather than panic.
        let json = serde_json::to_vec(&body).unwrap_or_else(|_| {
            br#"{"status":"error","errorType":"internal","error":"error encoding failed"}"#.to_vec()
        });
        let mut response = (self.status(), json).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(wait) = retry_after {
            // Whole seconds, rounded up: a client that waits that long is let through.
            let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn encodes_like_prometheus() {
        let response = ApiError::BadData("invalid parameter \"step\": x".into()).into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            &body[..],
            br#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"step\": x"}"#
        );
    }

    #[test]
    fn status_codes_follow_prometheus() {
        assert_eq!(ApiError::Execution(String::new()).status(), 422);
        assert_eq!(ApiError::Timeout(String::new()).status(), 503);
        assert_eq!(ApiError::Unavailable(String::new()).status(), 503);
        assert_eq!(ApiError::Internal(String::new()).status(), 500);
        assert_eq!(ApiError::TooLarge(String::new()).status(), 413);
    }
}
