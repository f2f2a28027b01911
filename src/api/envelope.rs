//! Prometheus's success envelope, written in one place: `{"status":"success","data":…}` with
//! `"warnings"` when there are any. Streaming answers write the head and tail around their data.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::api::error::ApiError;

/// What comes before the data.
pub const HEAD: &[u8] = br#"{"status":"success","data":"#;

/// What comes after the data: the warnings, if any, and the closing brace.
pub fn write_tail(out: &mut Vec<u8>, warnings: &[String]) -> serde_json::Result<()> {
    if !warnings.is_empty() {
        out.extend_from_slice(br#","warnings":"#);
        serde_json::to_writer(&mut *out, warnings)?;
    }
    out.push(b'}');
    Ok(())
}

/// A whole answer around data already encoded as JSON.
pub fn success_json(data: &[u8], warnings: &[String]) -> Response {
    let mut body = Vec::with_capacity(HEAD.len() + data.len() + 2);
    body.extend_from_slice(HEAD);
    body.extend_from_slice(data);
    match write_tail(&mut body, warnings) {
        Ok(()) => json_response(body),
        Err(e) => ApiError::Internal(format!("encoding the answer: {e}")).into_response(),
    }
}

/// A whole answer around data to serialize.
pub fn success<T: Serialize>(data: T, warnings: &[String]) -> Response {
    match serde_json::to_vec(&data) {
        Ok(data) => success_json(&data, warnings),
        Err(e) => ApiError::Internal(format!("encoding the answer: {e}")).into_response(),
    }
}

pub fn json_response(body: impl Into<axum::body::Body>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body.into()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_has_warnings_only_when_there_are_some() {
        let mut out = Vec::new();
        write_tail(&mut out, &[]).unwrap();
        assert_eq!(out, b"}");
        let mut out = Vec::new();
        write_tail(&mut out, &["w".into()]).unwrap();
        assert_eq!(out, br#","warnings":["w"]}"#);
    }
}
