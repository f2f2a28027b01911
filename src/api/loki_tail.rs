//! `GET /loki/api/v1/tail`: Loki's live tail over a WebSocket, as Grafana's Explore "Live" mode
//! and `logcli --tail` use it. Each second the store is read from where the last message ended
//! up to `now − delay_for`, and the new lines go out as one message
//! `{"streams":[{"stream":{…},"values":[["<ns>","<line>"]]}]}` in Loki's shape.
//!
//! Polling the store (not the push path) shows lines from every writer of the shared tree
//! (Fluent Bit, Lethe) as well as pushed ones. Nothing is sent twice and nothing is skipped: the
//! cursor keeps the newest time sent and which lines at that time went out. Only more lines in
//! one nanosecond than a whole batch can be skipped, and those are reported in
//! `dropped_entries`, as Loki reports what a tail could not deliver.
//!
//! Bounds: [`MAX_TAILS`] connections at once (more are refused before the upgrade), a batch of
//! at most `limit` lines per message, one search per second per tail under the log query
//! limiter, and [`MAX_TAIL_DURATION`] per connection (Loki's `tail_max_duration`).

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::log_encode::{LogAnswer, Order};
use super::loki::{prepare, LokiError};
use super::loki_params::{self as lp, BadParameter};
use super::SharedState;
use crate::config::LogAnswerFormat;
use crate::engine::{LineSearch, Prepared};
use crate::logql::LogQuery;
use crate::params::{Params, Timestamp};
use crate::store::scan::Keep;

/// Tails open at once; more are refused with 429 before the upgrade.
pub const MAX_TAILS: usize = 32;
/// How long one tail may stay open (Loki's default `tail_max_duration`).
pub const MAX_TAIL_DURATION: Duration = Duration::from_secs(3600);
/// The largest `delay_for` Loki accepts, in seconds.
const MAX_DELAY_FOR: u64 = 5;
/// How often the store is read for new lines.
const POLL: Duration = Duration::from_secs(1);

/// What a tail reads: the query, where it starts, how many lines a message holds, how far
/// behind now it stays.
struct TailRequest {
    query: LogQuery,
    start: i64,
    limit: usize,
    delay: i64,
}

pub async fn tail(State(state): State<SharedState>, request: Request) -> Response {
    super::Face::Log.mark(
        tail_inner(state, request)
            .await
            .unwrap_or_else(IntoResponse::into_response),
    )
}

async fn tail_inner(state: SharedState, request: Request) -> Result<Response, LokiError> {
    let (mut parts, _) = request.into_parts();
    let params = Params::parse(parts.uri.query(), None);
    let tenant = super::tenancy::tenant_of(&parts.extensions);
    let tail = read_request(&state, tenant.as_deref(), &params).await?;
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &state)
        .await
        .map_err(|_| {
            LokiError::new(
                StatusCode::BAD_REQUEST,
                "tail needs a WebSocket connection (Connection: Upgrade, Upgrade: websocket)",
            )
        })?;
    let slot = Arc::clone(&state.tails).try_acquire_owned().map_err(|_| {
        LokiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("max concurrent tail requests limit exceeded: {MAX_TAILS} tails are open"),
        )
    })?;
    Ok(upgrade.on_upgrade(move |socket| async move {
        let _slot = slot;
        run(state, socket, tail).await;
    }))
}

/// Reads and checks the parameters before the upgrade, so a bad request gets Loki's 400.
async fn read_request(
    state: &SharedState,
    tenant: Option<&crate::tenants::Tenant>,
    params: &Params,
) -> Result<TailRequest, LokiError> {
    let query =
        match prepare(state, tenant, params.get("query")).await? {
            Prepared::Lines(query) => query.map_err(crate::engine::EngineError::from)?,
            _ => return Err(BadParameter(
                "tail takes a log query (a stream selector and its pipeline), not a metric query"
                    .into(),
            )
            .into()),
        };
    let limit = lp::limit(params)?;
    let now = Timestamp::now().0;
    let start = match params.get("start") {
        "" => now.saturating_sub(3_600_000_000_000),
        value => lp::parse_time(value)
            .map_err(|e| BadParameter(format!("could not parse 'start' parameter: {e}")))?,
    };
    let delay = match params.get("delay_for") {
        "" => 0,
        value => value.parse::<u64>().map_err(|_| {
            BadParameter(format!(
                "could not parse 'delay_for' parameter: {value:?} is not a whole number of seconds"
            ))
        })?,
    };
    if delay > MAX_DELAY_FOR {
        return Err(
            BadParameter(format!("delay_for can't be greater than {MAX_DELAY_FOR}")).into(),
        );
    }
    Ok(TailRequest {
        query,
        start,
        limit,
        delay: delay as i64 * 1_000_000_000,
    })
}

/// Where a tail is: every line before `time` has been sent, and of the lines at exactly `time`
/// those in `sent` (hashes of their stream and text); the next search starts at `time`.
struct Cursor {
    time: i64,
    sent: HashSet<u64>,
}

/// Sends new lines until the client goes, the socket fails or the tail's time is up.
async fn run(state: SharedState, mut socket: WebSocket, tail: TailRequest) {
    let ends = tokio::time::Instant::now() + MAX_TAIL_DURATION;
    let mut cursor = Cursor {
        time: tail.start,
        sent: HashSet::new(),
    };
    loop {
        match next_message(&state, &tail, &mut cursor).await {
            Ok(Some(text)) => {
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => {
                let _ = socket
                    .send(Message::Close(Some(CloseFrame {
                        code: 1011,
                        reason: e.message().chars().take(120).collect::<String>().into(),
                    })))
                    .await;
                return;
            }
        }
        if tokio::time::Instant::now() >= ends {
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code: 1000,
                    reason: "tail max duration reached".into(),
                })))
                .await;
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// The lines after the cursor up to `now − delay_for`, as one message (`None`: nothing new).
async fn next_message(
    state: &SharedState,
    tail: &TailRequest,
    cursor: &mut Cursor,
) -> Result<Option<String>, LokiError> {
    let upper = Timestamp::now().0.saturating_sub(tail.delay);
    if upper < cursor.time {
        return Ok(None);
    }
    let deadline = tokio::time::Instant::now() + state.config.query_timeout;
    let _slot = state.log_limiter.acquire(deadline).await?;
    // The batch may repeat lines at the cursor's time already sent: room for them too.
    let limit = tail.limit.saturating_add(cursor.sent.len());
    let mut found = state
        .engine
        .search_lines(
            LineSearch {
                query: tail.query.clone(),
                lo: cursor.time,
                hi: upper,
                limit,
                keep: Keep::Oldest,
            },
            deadline,
        )
        .await?;
    let truncated = found.truncated;
    let warnings = std::mem::take(&mut found.warnings);
    let kind = tail.query.kind;
    let pipeline = tail.query.pipeline.clone();
    let body = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let mut answer = LogAnswer::new(
            found,
            kind,
            Order::Ascending,
            LogAnswerFormat::Streams,
            warnings,
        )
        .with_pipeline(pipeline);
        answer.prepare().map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        while answer
            .fill(&mut out, usize::MAX)
            .map_err(|e| e.to_string())?
        {}
        Ok(out)
    })
    .await
    .map_err(|e| {
        LokiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("tail failed: {e}"),
        )
    })?
    .map_err(|e| {
        LokiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("tail failed: {e}"),
        )
    })?;
    let answer: Value = serde_json::from_slice(&body).map_err(|e| {
        LokiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("tail failed: {e}"),
        )
    })?;
    let (streams, newest) = unsent(&answer["data"]["result"], cursor);
    let mut dropped = Vec::new();
    match newest {
        // Everything up to `upper` was read: the next batch starts after it.
        _ if !truncated => {
            cursor.time = upper.saturating_add(1);
            cursor.sent.clear();
        }
        Some(newest) => advance(cursor, newest, &streams),
        // A whole batch of lines already sent, all at the cursor's time: more lines share that
        // nanosecond than a batch holds. Report them and move on.
        None => {
            dropped.push(json!({"timestamp": cursor.time.to_string()}));
            cursor.time = cursor.time.saturating_add(1);
            cursor.sent.clear();
        }
    }
    if streams.is_empty() && dropped.is_empty() {
        return Ok(None);
    }
    let mut message = json!({ "streams": streams });
    if !dropped.is_empty() {
        message["dropped_entries"] = Value::Array(dropped);
    }
    Ok(Some(message.to_string()))
}

/// A line's identity at its time: its stream and text.
fn line_hash(stream: &Value, line: &Value) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    stream.to_string().hash(&mut h);
    line.as_str().unwrap_or("").hash(&mut h);
    h.finish()
}

/// The streams of `result` without the lines at the cursor's time already sent, and the
/// newest time among what is left.
fn unsent(result: &Value, cursor: &Cursor) -> (Vec<Value>, Option<i64>) {
    let mut streams = Vec::new();
    let mut newest = None;
    for stream in result.as_array().into_iter().flatten() {
        let values: Vec<Value> = stream["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|v| {
                let ts = v[0]
                    .as_str()
                    .and_then(|t| t.parse::<i64>().ok())
                    .unwrap_or(0);
                let repeat =
                    ts == cursor.time && cursor.sent.contains(&line_hash(&stream["stream"], &v[1]));
                if !repeat {
                    newest = newest.max(Some(ts));
                }
                !repeat
            })
            .cloned()
            .collect();
        if !values.is_empty() {
            streams.push(json!({"stream": stream["stream"], "values": values}));
        }
    }
    (streams, newest)
}

/// After a truncated batch: the cursor moves to its newest line, remembering which lines at
/// that time went out.
fn advance(cursor: &mut Cursor, newest: i64, streams: &[Value]) {
    if newest != cursor.time {
        cursor.sent.clear();
        cursor.time = newest;
    }
    for stream in streams {
        for v in stream["values"].as_array().into_iter().flatten() {
            if v[0].as_str().and_then(|t| t.parse::<i64>().ok()) == Some(newest) {
                cursor.sent.insert(line_hash(&stream["stream"], &v[1]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(lines: &[(&str, &str, &str)]) -> Value {
        Value::Array(
            lines
                .iter()
                .map(|(pod, ts, line)| json!({"stream": {"pod": pod}, "values": [[ts, line]]}))
                .collect(),
        )
    }

    /// The cursor sends each line once: lines at its time already sent are left out of the
    /// next batch, the rest go, and the cursor moves to the newest line sent.
    #[test]
    fn the_cursor_sends_each_line_once() {
        let mut cursor = Cursor {
            time: 100,
            sent: HashSet::new(),
        };
        let first = result(&[("a", "100", "x"), ("b", "100", "y"), ("a", "101", "z")]);
        let (streams, newest) = unsent(&first, &cursor);
        assert_eq!((streams.len(), newest), (3, Some(101)));
        advance(&mut cursor, 101, &streams);
        assert_eq!((cursor.time, cursor.sent.len()), (101, 1));
        // The next batch starts at 101 and holds `z` again, and a new line at 101.
        let second = result(&[("a", "101", "z"), ("b", "101", "w"), ("a", "102", "v")]);
        let (streams, newest) = unsent(&second, &cursor);
        let lines: Vec<&str> = streams
            .iter()
            .flat_map(|s| s["values"].as_array().into_iter().flatten())
            .filter_map(|v| v[1].as_str())
            .collect();
        assert_eq!((lines, newest), (vec!["w", "v"], Some(102)));
        // A batch of only lines already sent: nothing new (the caller reports a drop and
        // moves on).
        let (streams, newest) = unsent(&result(&[("a", "101", "z")]), &cursor);
        assert!(streams.is_empty() && newest.is_none());
    }
}
