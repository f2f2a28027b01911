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
use serde_json::json;

use super::params::{self as lp, BadParameter};
use super::{prepare, LokiError};
use crate::api::log_encode::{LogAnswer, Order, StreamEntry};
use crate::api::params::{Params, Timestamp};
use crate::api::SharedState;
use crate::config::LogAnswerFormat;
use crate::engine::{LineSearch, Prepared};
use crate::logql::LogQuery;
use crate::logstore::Keep;

/// Tails open at once; more are refused with 429 before the upgrade.
pub const MAX_TAILS: usize = 32;
/// How long one tail may stay open (Loki's default `tail_max_duration`).
pub const MAX_TAIL_DURATION: Duration = Duration::from_secs(3600);
/// The largest `delay_for` Loki accepts, in seconds.
const MAX_DELAY_FOR: u64 = 5;
/// The largest tail message: a batch of lines is sent as several messages of at most this many
/// bytes (a single larger line goes alone), so a batch never sits in memory whole.
pub const MAX_TAIL_MESSAGE_BYTES: usize = 1 << 20;
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
    crate::api::Face::Log.mark(
        tail_inner(state, request)
            .await
            .unwrap_or_else(IntoResponse::into_response),
    )
}

async fn tail_inner(state: SharedState, request: Request) -> Result<Response, LokiError> {
    let (mut parts, _) = request.into_parts();
    let params = Params::parse(parts.uri.query(), None);
    let tenant = crate::api::tenancy::tenant_of(&parts.extensions);
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
    tenant: Option<&crate::auth::tenants::Tenant>,
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

impl Cursor {
    /// Whether the line at `ts` with this hash already went out.
    fn was_sent(&self, ts: i64, hash: u64) -> bool {
        ts == self.time && self.sent.contains(&hash)
    }

    /// After a truncated batch: the cursor moves to the newest line sent, remembering which
    /// lines at that time went out (`at_newest`).
    fn advance(&mut self, newest: i64, at_newest: HashSet<u64>) {
        if newest != self.time {
            self.time = newest;
            self.sent = at_newest;
        } else {
            self.sent.extend(at_newest);
        }
    }
}

/// A line's identity at its time: its stream (labels as JSON) and text.
fn line_hash(labels_json: &str, line: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    labels_json.hash(&mut h);
    line.hash(&mut h);
    h.finish()
}

/// Sends new lines until the client goes, the socket fails or the tail's time is up.
async fn run(state: SharedState, mut socket: WebSocket, tail: TailRequest) {
    let ends = tokio::time::Instant::now() + MAX_TAIL_DURATION;
    let mut cursor = Cursor {
        time: tail.start,
        sent: HashSet::new(),
    };
    loop {
        match send_new_lines(&state, &tail, &mut cursor, &mut socket).await {
            Ok(true) => {}
            Ok(false) => return,
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

fn failed(e: impl std::fmt::Display) -> LokiError {
    LokiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("tail failed: {e}"),
    )
}

/// Sends the lines after the cursor up to `now − delay_for`, in messages of at most
/// [`MAX_TAIL_MESSAGE_BYTES`] (one line larger than that goes alone). What the batch holds
/// (positions, a message being built and one being sent) is taken from the same budget as query
/// answers before anything is encoded. Returns false when the client is gone.
async fn send_new_lines(
    state: &SharedState,
    tail: &TailRequest,
    cursor: &mut Cursor,
    socket: &mut WebSocket,
) -> Result<bool, LokiError> {
    let upper = Timestamp::now().0.saturating_sub(tail.delay);
    if upper < cursor.time {
        return Ok(true);
    }
    let deadline = tokio::time::Instant::now() + state.config.query_timeout;
    let slot = state.log_limiter.acquire(deadline).await?;
    // The batch may repeat lines at the cursor's time already sent: room for them too.
    let limit = tail.limit.saturating_add(cursor.sent.len());
    let (mut found, slot) = state
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
            slot,
        )
        .await?;
    let truncated = found.truncated;
    let warnings = std::mem::take(&mut found.warnings);
    let mut answer = LogAnswer::new(
        found,
        tail.query.kind,
        Order::Ascending,
        LogAnswerFormat::Streams,
        warnings,
    )
    .with_pipeline(tail.query.pipeline.clone());
    let answer = tokio::task::spawn_blocking(move || answer.prepare().map(|()| answer))
        .await
        .map_err(failed)?
        .map_err(failed)?;
    // Sending waits on the client: a tail that does not read holds its memory, not a query slot.
    drop(slot);
    let _held = crate::api::log_stream::hold_answer_budget(
        state,
        answer.held_bytes() + 2 * MAX_TAIL_MESSAGE_BYTES,
        deadline,
    )
    .await?;
    let mut batch = Batch {
        answer,
        before: Cursor {
            time: cursor.time,
            sent: std::mem::take(&mut cursor.sent),
        },
        pending: None,
        labels: None,
        newest: None,
        at_newest: HashSet::new(),
    };
    loop {
        let (back, message) = tokio::task::spawn_blocking(move || {
            let message = batch.next_message(MAX_TAIL_MESSAGE_BYTES);
            (batch, message)
        })
        .await
        .map_err(failed)?;
        batch = back;
        let Some(text) = message else { break };
        if socket.send(Message::Text(text.into())).await.is_err() {
            return Ok(false);
        }
    }
    cursor.sent = batch.before.sent;
    match batch.newest {
        // Everything up to `upper` was read: the next batch starts after it.
        _ if !truncated => {
            cursor.time = upper.saturating_add(1);
            cursor.sent.clear();
        }
        Some(newest) => cursor.advance(newest, batch.at_newest),
        // A whole batch of lines already sent, all at the cursor's time: more lines share that
        // nanosecond than a batch holds. Report them and move on.
        None => {
            let message = json!({
                "streams": [],
                "dropped_entries": [{"timestamp": cursor.time.to_string()}],
            });
            cursor.time = cursor.time.saturating_add(1);
            cursor.sent.clear();
            if socket
                .send(Message::Text(message.to_string().into()))
                .await
                .is_err()
            {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// One search's lines being cut into messages: lines the cursor already sent are left out, and
/// the newest time sent (with which lines at it) is kept for the cursor.
struct Batch {
    answer: LogAnswer,
    /// What went out before this batch.
    before: Cursor,
    /// A line read for the previous message that did not fit in it.
    pending: Option<(StreamEntry, u64, String)>,
    /// The current stream's labels as JSON.
    labels: Option<(usize, String)>,
    newest: Option<i64>,
    at_newest: HashSet<u64>,
}

impl Batch {
    /// The next message, `{"streams":[{"stream":{…},"values":[["<ns>","<line>"],…]},…]}`, of
    /// at most `max` bytes unless its one line is larger. `None`: no line is left. Blocking.
    fn next_message(&mut self, max: usize) -> Option<String> {
        let mut out = String::from("{\"streams\":[");
        let mut open: Option<usize> = None;
        loop {
            let (entry, hash, value) = match self.pending.take() {
                Some(pending) => pending,
                None => {
                    let Some(entry) = self.answer.next_entry() else {
                        break;
                    };
                    let labels = self.labels_json(entry.group);
                    let hash = line_hash(labels, &entry.text);
                    if self.before.was_sent(entry.ts, hash) {
                        continue;
                    }
                    let value = serde_json::to_string(&[entry.ts.to_string(), entry.text.clone()])
                        .unwrap_or_default();
                    (entry, hash, value)
                }
            };
            let labels_len = self.labels.as_ref().map_or(0, |(_, l)| l.len());
            if open.is_some() && out.len() + value.len() + labels_len + 32 > max {
                self.pending = Some((entry, hash, value));
                break;
            }
            if open != Some(entry.group) {
                if open.is_some() {
                    out.push_str("]},");
                }
                out.push_str("{\"stream\":");
                out.push_str(self.labels_json(entry.group));
                out.push_str(",\"values\":[");
                open = Some(entry.group);
            } else {
                out.push(',');
            }
            out.push_str(&value);
            if self.newest.is_none_or(|n| entry.ts > n) {
                self.newest = Some(entry.ts);
                self.at_newest.clear();
            }
            if self.newest == Some(entry.ts) {
                self.at_newest.insert(hash);
            }
        }
        open?;
        out.push_str("]}]}");
        Some(out)
    }

    /// Stream `group`'s labels as JSON, made once per stream.
    fn labels_json(&mut self, group: usize) -> &str {
        if self.labels.as_ref().is_none_or(|(g, _)| *g != group) {
            let json = self
                .answer
                .stream_labels(group)
                .and_then(|l| serde_json::to_string(l).ok())
                .unwrap_or_else(|| "{}".into());
            self.labels = Some((group, json));
        }
        self.labels.as_ref().map_or("{}", |(_, l)| l.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cursor sends each line once: lines at its time already sent are left out of the
    /// next batch, and it moves to the newest line sent, remembering the lines at that time.
    #[test]
    fn the_cursor_sends_each_line_once() {
        let mut cursor = Cursor {
            time: 100,
            sent: HashSet::new(),
        };
        let (x, y, z) = (
            line_hash("{}", "x"),
            line_hash("{}", "y"),
            line_hash("{}", "z"),
        );
        assert!(!cursor.was_sent(100, x));
        cursor.advance(101, HashSet::from([z]));
        assert_eq!((cursor.time, cursor.sent.len()), (101, 1));
        assert!(cursor.was_sent(101, z) && !cursor.was_sent(102, z) && !cursor.was_sent(101, y));
        // More lines at the same time add to what was sent there.
        cursor.advance(101, HashSet::from([y]));
        assert!(cursor.was_sent(101, z) && cursor.was_sent(101, y));
        // A newer time forgets the older time's lines.
        cursor.advance(102, HashSet::from([x]));
        assert!(!cursor.was_sent(101, z) && cursor.was_sent(102, x));
    }
}
