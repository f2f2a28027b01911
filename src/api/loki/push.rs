//! `POST /loki/api/v1/push`: the Loki push API into the store. 204 only once every line of the
//! request is written (and synced, as configured); any refusal leaves the store untouched.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::api::error::ApiError;
use crate::api::{Face, SharedState};
use crate::ingest::{self, decode};
use crate::logstore::write::WriteError;
use crate::telemetry::{ReasonLabels, StageLabels};

pub async fn push(State(state): State<SharedState>, request: Request) -> Response {
    let mut response = match accept_push(&state, request).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err((reason, e)) => {
            state
                .metrics
                .ingest_refused
                .get_or_create(&ReasonLabels {
                    reason: reason.into(),
                })
                .inc();
            e.into_response()
        }
    };
    response.extensions_mut().insert(Face::Log);
    response
}

fn count(state: &SharedState, stage: &str, n: u64) {
    state
        .metrics
        .ingest_lines
        .get_or_create(&StageLabels {
            stage: stage.into(),
        })
        .inc_by(n);
}

/// How long a push waits for room in the memory budget before it is answered 503 (the shipper
/// retries).
const PUSH_QUEUE_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// How much a compressed body is expected to grow; a body that grows more asks for the rest.
const EXPECTED_RATIO: usize = 8;
/// What a push costs beyond its body, per byte decoded: its entries and its rendered lines.
const COST_PER_DECODED_BYTE: usize = 3;

/// KiB of the push budget (`--ingest.max-bytes-in-flight`), rounded up.
fn kib(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(1024)).unwrap_or(u32::MAX)
}

fn busy() -> (&'static str, ApiError) {
    (
        "busy",
        ApiError::Unavailable(
            "too many push bytes in flight (--ingest.max-bytes-in-flight); retry the request"
                .into(),
        ),
    )
}

/// How much of a body over the limit is read and thrown away, so the client (still sending)
/// reads the 413 instead of a broken pipe; past it, or after [`DRAIN_TIME`], the connection is
/// closed with the answer.
const DRAIN_BYTES: usize = 64 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

enum BodyError {
    TooLarge,
    Read(axum::Error),
}

/// The body, at most `max` bytes. A longer one is refused, after the rest is read and discarded
/// (bounded) when `drain`; a client that asked `Expect: 100-continue` and declared too much
/// was never told to send, so nothing is drained.
async fn read_within(
    body: axum::body::Body,
    max: usize,
    drain: bool,
) -> Result<bytes::Bytes, BodyError> {
    use http_body_util::BodyExt;
    let declared = http_body::Body::size_hint(&body).exact();
    if !drain && declared.is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = body;
    let mut out = bytes::BytesMut::with_capacity(
        usize::try_from(declared.unwrap_or(0))
            .unwrap_or(max)
            .min(max),
    );
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(BodyError::Read)?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        if total > max {
            if drain {
                let _ = tokio::time::timeout(DRAIN_TIME, async {
                    while let Some(Ok(frame)) = body.frame().await {
                        total = total.saturating_add(frame.data_ref().map_or(0, |d| d.len()));
                        if total > max.saturating_add(DRAIN_BYTES) {
                            break;
                        }
                    }
                })
                .await;
            }
            return Err(BodyError::TooLarge);
        }
        out.extend_from_slice(&data);
    }
    Ok(out.freeze())
}

async fn accept_push(
    state: &SharedState,
    request: Request,
) -> Result<(), (&'static str, ApiError)> {
    let max = state.config.ingest_max_body_size;
    let (parts, body) = request.into_parts();
    let tenant = crate::api::tenancy::tenant_of(&parts.extensions);
    let header_text = |name: header::HeaderName| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header_text(header::CONTENT_TYPE).unwrap_or_default();
    let content_encoding = header_text(header::CONTENT_ENCODING);
    // A push holds memory for its body, its decoded entries and its rendered lines; it takes
    // that from one budget before reading a byte, estimated from its declared length (a
    // compressed body is expected to grow up to EXPECTED_RATIO times), so many small pushes run
    // at once and a few large ones take turns.
    let declared = header_text(header::CONTENT_LENGTH)
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(max)
        .min(max);
    let compressed = content_encoding.is_some() || content_type.contains("protobuf");
    let decoded_estimate = if compressed {
        declared.saturating_mul(EXPECTED_RATIO).min(max)
    } else {
        declared
    };
    let weight = kib(declared + COST_PER_DECODED_BYTE * decoded_estimate)
        .min(state.config.ingest_budget_kib());
    let mut held = tokio::time::timeout(
        PUSH_QUEUE_WAIT,
        std::sync::Arc::clone(&state.push_budget).acquire_many_owned(weight),
    )
    .await
    .map_err(|_| busy())?
    .map_err(|_| {
        (
            "busy",
            ApiError::Unavailable("Janus is shutting down".into()),
        )
    })?;
    let expects_continue = parts
        .headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let body = read_within(body, max, !expects_continue)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => (
                "too_large",
                ApiError::TooLarge(format!(
                    "request body is over the {max}-byte limit (--ingest.max-body-size)"
                )),
            ),
            BodyError::Read(e) => (
                "bad_request",
                ApiError::BadData(format!("reading the request body failed: {e}")),
            ),
        })?;
    state
        .metrics
        .ingest_bytes_received
        .inc_by(body.len() as u64);
    let budget = std::sync::Arc::clone(&state.push_budget);
    let max_entries = state.config.ingest_max_entries;
    let first_limit = if compressed {
        decoded_estimate.max(body.len())
    } else {
        max
    };
    let state_for_work = std::sync::Arc::clone(state);
    let body_len = body.len() as u64;
    let outcome = tokio::task::spawn_blocking(move || {
        let decode_within = |max_size: usize| {
            let limits = decode::Limits {
                max_size,
                max_entries,
            };
            decode::decode(
                &content_type,
                content_encoding.as_deref(),
                body.clone(),
                limits,
            )
        };
        // A body that grows past its estimate takes more of the budget in steps (×4), at once
        // or not at all: it never waits while holding a share. Snappy announces its length, so
        // those steps cost no decompression; gzip's cost at most a third more inflating.
        let mut limit = first_limit;
        let decoded = loop {
            match decode_within(limit) {
                Err(decode::DecodeError::TooLarge(_)) if limit < max => {
                    let next = limit.saturating_mul(4).min(max);
                    let extra = std::sync::Arc::clone(&budget)
                        .try_acquire_many_owned(kib(COST_PER_DECODED_BYTE * (next - limit)))
                        .map_err(|_| busy())?;
                    held.merge(extra);
                    limit = next;
                }
                other => break other,
            }
        };
        let decoded = decoded.map_err(|e| match e {
            decode::DecodeError::TooLarge(_) | decode::DecodeError::TooManyEntries(_) => {
                ("too_large", ApiError::TooLarge(e.to_string()))
            }
            decode::DecodeError::ContentType(_) => (
                "content_type",
                ApiError::UnsupportedMediaType(e.to_string()),
            ),
            other => ("bad_request", ApiError::BadData(other.to_string())),
        })?;
        let _held = held;
        let streams = decoded.streams;
        if decoded.invalid_utf8 > 0 {
            state_for_work
                .metrics
                .ingest_invalid_utf8
                .inc_by(decoded.invalid_utf8);
        }
        let received: u64 = streams.iter().map(|s| s.entries.len() as u64).sum();
        count(&state_for_work, "received", received);
        if let Some(tenant) = &tenant {
            // Every stream must go where the tenant may write, or nothing is written.
            may_write(tenant, &streams, &state_for_work.config.ingest_labels).map_err(|e| {
                count(&state_for_work, "refused", received);
                ("forbidden", e)
            })?;
            // The tenant's own ingestion rate: message bytes and lines, as Loki counts them.
            let bytes: u64 = streams
                .iter()
                .flat_map(|s| s.entries.iter())
                .map(|(_, line)| line.as_str().len() as u64)
                .sum();
            tenant
                .limits
                .admit_push(&tenant.name, bytes, received)
                .map_err(|refused| {
                    count(&state_for_work, "refused", received);
                    (
                        "rate_limited",
                        ApiError::RateLimited {
                            message: refused.message,
                            retry_after: refused.retry_after,
                        },
                    )
                })?;
        }
        let grace = i64::try_from(
            state_for_work
                .config
                .ingest_creation_grace_period
                .as_nanos(),
        )
        .unwrap_or(i64::MAX);
        let newest = crate::api::params::Timestamp::now().0.saturating_add(grace);
        let batch = ingest::prepare(&streams, &state_for_work.config.ingest_labels, newest)
            .map_err(|e| {
                count(&state_for_work, "refused", received);
                ("bad_request", ApiError::BadData(e))
            })?;
        let written = state_for_work.store.push(&batch).map_err(|e| match e {
            WriteError::Failed(ref cause) => {
                tracing::error!(error = %cause, "appending pushed lines failed");
                ("write_failed", ApiError::Unavailable(e.to_string()))
            }
            WriteError::TooLarge(_) => {
                count(&state_for_work, "refused", received);
                ("too_large", ApiError::TooLarge(e.to_string()))
            }
        })?;
        count(&state_for_work, "written", batch.lines);
        if let Some(tenant) = &tenant {
            state_for_work
                .metrics
                .tenant_pushed_bytes
                .get_or_create(&crate::telemetry::TenantNameLabels {
                    tenant: tenant.name.clone(),
                })
                .inc_by(body_len);
        }
        state_for_work
            .metrics
            .ingest_bytes_written
            .inc_by(written.bytes);
        if written.fsync_seconds > 0.0 {
            state_for_work
                .metrics
                .fsync_duration
                .observe(written.fsync_seconds);
        }
        Ok(())
    })
    .await;
    match outcome {
        Ok(result) => result,
        Err(e) => Err((
            "write_failed",
            ApiError::Internal(format!("push worker failed: {e}")),
        )),
    }
}

/// Whether every stream of a push falls where `tenant` may write: its namespaces (node logs
/// only for an unrestricted tenant). A stream whose labels map nowhere is left to `prepare`,
/// which refuses it as any bad push.
fn may_write(
    tenant: &crate::auth::tenants::Tenant,
    streams: &[crate::ingest::decode::PushStream],
    mapping: &crate::ingest::mapping::LabelMapping,
) -> Result<(), ApiError> {
    if tenant.scope.is_none() {
        return Ok(());
    }
    for stream in streams {
        let Ok(target) = mapping.target(&stream.labels) else {
            continue;
        };
        let namespace = target
            .values
            .first()
            .map(String::as_str)
            .unwrap_or_default();
        let allowed = target.kind == crate::logql::LogKind::Pod && tenant.may_push_into(namespace);
        if !allowed {
            return Err(ApiError::Forbidden(format!(
                "tenant {:?} may not push into {} {:?}; nothing of this request was written",
                tenant.name,
                target.kind.target_label(),
                namespace
            )));
        }
    }
    Ok(())
}
