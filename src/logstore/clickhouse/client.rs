//! ClickHouse's HTTP interface as a blocking client: statements with their settings in the URL,
//! answers read as they arrive (TabSeparated rows), errors recognised in both places a server
//! puts them (a non-200 status, or a `Code: …` line after rows already sent with 200), and a
//! statement that is abandoned (deadline, client gone, error) killed on the server, since an
//! 18.16 server keeps running a query whose connection closed.
//!
//! This is the one place in the lower layers that speaks HTTP: as a client of a backend, not as
//! Janus's API (`tools/module_graph.py` allows it here only).

use std::io::{BufRead, BufReader, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::telemetry::{Metrics, OperationLabels, ReasonLabels};

/// Why a statement failed.
#[derive(Debug, thiserror::Error)]
pub enum ChError {
    /// No answer: connection refused, reset, DNS, TLS.
    #[error("ClickHouse at {url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    /// The server answered with an exception.
    #[error("ClickHouse refused the statement: {0}")]
    Server(String),
    /// The answer was not what was asked for.
    #[error("ClickHouse answered something Janus cannot read: {0}")]
    Malformed(String),
    /// The deadline passed (the statement was killed).
    #[error("query timed out in query execution")]
    Deadline,
    /// The client went away (the statement was killed).
    #[error("query was canceled")]
    Cancelled,
}

impl ChError {
    fn reason(&self) -> &'static str {
        match self {
            ChError::Unreachable { .. } => "unreachable",
            ChError::Server(_) => "server",
            ChError::Malformed(_) => "malformed",
            ChError::Deadline => "timeout",
            ChError::Cancelled => "cancelled",
        }
    }
}

/// Where and as whom to connect.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// The HTTP interface, e.g. `http://clickhouse:8123`.
    pub url: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// PEM of the CA that signs the server's certificate (`tls_config.ca_file`).
    pub ca_pem: Option<Vec<u8>>,
    pub insecure_skip_verify: bool,
}

/// A statement's bounds, sent as ClickHouse settings.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// When the answer must be complete; the server is told the seconds left.
    pub deadline: Instant,
    /// `max_memory_usage` for the statement.
    pub max_memory: u64,
}

/// How long a statement without a caller's deadline (DDL, pushes, housekeeping) may take.
pub const DEFAULT_STATEMENT_TIME: Duration = Duration::from_secs(60);
/// Bytes of an answer read whole ([`Client::execute`]: DDL, checks, listings of names and
/// streams); a longer one is refused rather than held.
pub const MAX_WHOLE_ANSWER: usize = 256 << 20;
/// Memory one statement may use on the server unless told otherwise.
pub const DEFAULT_MAX_MEMORY: u64 = 2 << 30;

pub struct Client {
    /// Always `Some` until dropped (see `Drop`).
    http: Option<reqwest::blocking::Client>,
    base: reqwest::Url,
    url_text: String,
    user: Option<String>,
    password: Option<String>,
    metrics: Arc<Metrics>,
    /// Makes query ids unique within this client; a random token per client makes them unique
    /// across clients and replicas (every replica may be PID 1 in its container, and two
    /// clients of one process may start in the same millisecond).
    next_id: AtomicU64,
    id_prefix: String,
}

impl Client {
    pub fn new(connection: &Connection, metrics: Arc<Metrics>) -> Result<Self, String> {
        let base = reqwest::Url::parse(&connection.url)
            .map_err(|e| format!("storage.clickhouse.url {:?}: {e}", connection.url))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(format!(
                "storage.clickhouse.url {:?}: the scheme must be http or https",
                connection.url
            ));
        }
        let mut builder = reqwest::blocking::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(None)
            .pool_idle_timeout(Duration::from_secs(30))
            .danger_accept_invalid_certs(connection.insecure_skip_verify);
        if let Some(pem) = &connection.ca_pem {
            let ca = reqwest::Certificate::from_pem(pem)
                .map_err(|e| format!("storage.clickhouse.tls_config.ca_file: {e}"))?;
            builder = builder.add_root_certificate(ca);
        }
        let http = builder
            .build()
            .map_err(|e| format!("the ClickHouse client: {e}"))?;
        Ok(Client {
            http: Some(http),
            url_text: connection.url.clone(),
            base,
            user: connection.user.clone(),
            password: connection.password.clone(),
            metrics,
            next_id: AtomicU64::new(0),
            id_prefix: format!("janus-{:016x}", unique_token()),
        })
    }

    /// The server's address, for messages.
    pub fn url(&self) -> &str {
        &self.url_text
    }

    fn query_id(&self) -> String {
        format!(
            "{}-{}",
            self.id_prefix,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn request(
        &self,
        sql_in_url: Option<&str>,
        settings: &[(&str, String)],
        body: Vec<u8>,
        timeout: Duration,
    ) -> reqwest::blocking::RequestBuilder {
        let mut url = self.base.clone();
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in settings {
                pairs.append_pair(k, v);
            }
            if let Some(sql) = sql_in_url {
                pairs.append_pair("query", sql);
            }
        }
        let mut request = match &self.http {
            Some(http) => http.post(url),
            None => reqwest::blocking::Client::new().post(url),
        }
        .body(body)
        .timeout(timeout);
        if let Some(user) = &self.user {
            request = request.basic_auth(user, self.password.as_deref());
        }
        request
    }

    fn failed(&self, operation: &str, e: ChError) -> ChError {
        self.metrics
            .clickhouse_errors
            .get_or_create(&ReasonLabels {
                reason: e.reason().into(),
            })
            .inc();
        tracing::debug!(operation, error = %e, "ClickHouse statement failed");
        e
    }

    fn unreachable(&self, e: reqwest::Error) -> ChError {
        if e.is_timeout() {
            return ChError::Deadline;
        }
        // The whole chain: reqwest's top message alone ("error sending request") says nothing.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        ChError::Unreachable {
            url: self.url_text.clone(),
            message,
        }
    }

    /// Runs a statement whose answer is small (DDL, counts, checks, listings) and returns it
    /// whole, at most [`MAX_WHOLE_ANSWER`] bytes.
    pub fn execute(&self, operation: &'static str, sql: &str) -> Result<String, ChError> {
        let deadline = Instant::now() + DEFAULT_STATEMENT_TIME;
        let never = AtomicBool::new(false);
        let mut rows = self.select(
            operation,
            sql,
            Bounds {
                deadline,
                max_memory: DEFAULT_MAX_MEMORY,
            },
            &never,
        )?;
        let mut out = String::new();
        while let Some(row) = rows.next_row()? {
            if out.len() + row.len() > MAX_WHOLE_ANSWER {
                return Err(ChError::Malformed(format!(
                    "an answer to {operation} over {} MiB",
                    MAX_WHOLE_ANSWER >> 20
                )));
            }
            out.push_str(&String::from_utf8_lossy(row));
            out.push('\n');
        }
        Ok(out)
    }

    /// Sends `head` (an `INSERT … FORMAT …`) with `body` as its data; `Ok` once the server
    /// acknowledged every row.
    pub fn insert(
        &self,
        head: &str,
        body: Vec<u8>,
        settings: &[(&str, String)],
    ) -> Result<(), ChError> {
        let started = Instant::now();
        let mut all = vec![
            ("query_id", self.query_id()),
            (
                "max_execution_time",
                DEFAULT_STATEMENT_TIME.as_secs().to_string(),
            ),
        ];
        all.extend(settings.iter().cloned());
        let response = self
            .request(Some(head), &all, body, DEFAULT_STATEMENT_TIME)
            .send()
            .map_err(|e| self.failed("insert", self.unreachable(e)))?;
        let status = response.status();
        let text = response
            .text()
            .map_err(|e| self.failed("insert", self.unreachable(e)))?;
        self.observe("insert", started);
        if !status.is_success() || text.starts_with("Code: ") {
            return Err(self.failed("insert", server_error(&text)));
        }
        Ok(())
    }

    /// Starts a statement whose answer is read row by row (TabSeparated). The server is told
    /// the time left before `bounds.deadline`; the rows stop (and the statement is killed) at
    /// the deadline or once `cancelled` is set.
    pub fn select<'c>(
        &'c self,
        operation: &'static str,
        sql: &str,
        bounds: Bounds,
        cancelled: &'c AtomicBool,
    ) -> Result<Rows<'c>, ChError> {
        let started = Instant::now();
        let left = bounds.deadline.saturating_duration_since(started);
        if left.is_zero() {
            return Err(self.failed(operation, ChError::Deadline));
        }
        if cancelled.load(Ordering::Relaxed) {
            return Err(self.failed(operation, ChError::Cancelled));
        }
        let query_id = self.query_id();
        let settings = [
            ("query_id", query_id.clone()),
            // Whole seconds, at least one: the server's own bound a little past ours, so that
            // Janus's deadline (and its words) is the one the client sees.
            ("max_execution_time", (left.as_secs() + 1).to_string()),
            ("max_memory_usage", bounds.max_memory.to_string()),
        ];
        // An 18.16 server sends its status only once its first buffer of rows is full or the
        // statement ended: the wait for it is bounded by the deadline too.
        let sent = self
            .request(
                None,
                &settings,
                sql.as_bytes().to_vec(),
                left + Duration::from_secs(2),
            )
            .send();
        let response = match sent {
            Ok(response) => response,
            Err(e) => {
                self.kill(&query_id);
                return Err(self.failed(operation, self.unreachable(e)));
            }
        };
        let status = response.status();
        if !status.is_success() {
            let text = response.text().unwrap_or_default();
            return Err(self.failed(operation, server_error(&text)));
        }
        Ok(Rows {
            client: self,
            operation,
            query_id,
            reader: BufReader::with_capacity(256 << 10, response),
            line: Vec::new(),
            started,
            deadline: bounds.deadline,
            cancelled,
            finished: false,
            rows: 0,
            bytes: 0,
        })
    }

    /// Stops a statement on the server: asked asynchronously, so it never waits on the
    /// statement itself.
    fn kill(&self, query_id: &str) {
        let sql = format!(
            "KILL QUERY WHERE query_id = {} ASYNC FORMAT TabSeparated",
            super::sql::quote(query_id)
        );
        let result = self
            .request(None, &[], sql.into_bytes(), Duration::from_secs(5))
            .send()
            .and_then(|r| r.text());
        if let Err(e) = result {
            tracing::debug!(error = %e, query_id, "killing a ClickHouse statement failed");
        }
    }

    fn observe(&self, operation: &str, started: Instant) {
        self.metrics
            .clickhouse_duration
            .get_or_create(&OperationLabels {
                operation: operation.into(),
            })
            .observe(started.elapsed().as_secs_f64());
    }
}

impl Drop for Client {
    /// The blocking client owns a runtime thread that it joins when dropped, which must not
    /// happen on an async thread (the last holder of the store may be one): dropped elsewhere.
    fn drop(&mut self) {
        if let Some(http) = self.http.take() {
            let _ = std::thread::Builder::new()
                .name("clickhouse-client-drop".into())
                .spawn(move || drop(http));
        }
    }
}

/// A random 64-bit token: the standard library's per-instance random hash keys, mixed with the
/// time and the process id.
fn unique_token() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// An exception's text as an error: the server's own timeout (`TIMEOUT_EXCEEDED`, 159) is the
/// deadline, a killed statement (`QUERY_WAS_CANCELLED`, 394) a cancel.
fn server_error(text: &str) -> ChError {
    let text = text.trim_start();
    if text.starts_with("Code: 159,") {
        ChError::Deadline
    } else if text.starts_with("Code: 394,") {
        ChError::Cancelled
    } else {
        ChError::Server(first_line(text))
    }
}

fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    let line = line
        .split(", e.what() = ")
        .next()
        .unwrap_or(line)
        .replace("e.displayText() = ", "");
    if line.is_empty() {
        "empty error answer".into()
    } else {
        line
    }
}

/// An answer read one TabSeparated row at a time. Dropped before its end, it kills its
/// statement on the server.
pub struct Rows<'c> {
    client: &'c Client,
    operation: &'static str,
    query_id: String,
    reader: BufReader<reqwest::blocking::Response>,
    line: Vec<u8>,
    started: Instant,
    deadline: Instant,
    cancelled: &'c AtomicBool,
    finished: bool,
    rows: u64,
    bytes: u64,
}

/// Rows between checks of the deadline and the cancel flag.
const CHECK_EVERY: u64 = 1024;

impl Rows<'_> {
    /// The next row without its newline (fields still escaped: [`super::rows::fields`]);
    /// `None` at the end of the answer.
    pub fn next_row(&mut self) -> Result<Option<&[u8]>, ChError> {
        if self.finished {
            return Ok(None);
        }
        if self.rows % CHECK_EVERY == 0 {
            if self.cancelled.load(Ordering::Relaxed) {
                return Err(self.stop(ChError::Cancelled));
            }
            if Instant::now() >= self.deadline {
                return Err(self.stop(ChError::Deadline));
            }
        }
        self.line.clear();
        let read = match self.reader.read_until(b'\n', &mut self.line) {
            Ok(n) => n,
            Err(e) => {
                let e = if Instant::now() >= self.deadline {
                    ChError::Deadline
                } else {
                    ChError::Unreachable {
                        url: self.client.url_text.clone(),
                        message: format!("reading the answer: {e}"),
                    }
                };
                return Err(self.stop(e));
            }
        };
        if read == 0 {
            self.finish();
            return Ok(None);
        }
        self.bytes += read as u64;
        if self.line.last() != Some(&b'\n') {
            // The answer ended inside a row: the server broke off.
            let text = String::from_utf8_lossy(&self.line).into_owned();
            let e = if text.starts_with("Code: ") {
                server_error(&text)
            } else {
                ChError::Malformed("the answer ended inside a row".into())
            };
            return Err(self.stop(e));
        }
        // An exception after rows already sent with status 200 (18.16): a row never starts so,
        // since every answer's first column is a number or a validated name.
        if self.line.starts_with(b"Code: ") {
            let mut text = String::from_utf8_lossy(&self.line).into_owned();
            let mut rest = Vec::new();
            let _ = (&mut self.reader).take(4096).read_to_end(&mut rest);
            text.push_str(&String::from_utf8_lossy(&rest));
            return Err(self.stop(server_error(&text)));
        }
        self.rows += 1;
        self.line.pop();
        Ok(Some(&self.line))
    }

    fn finish(&mut self) {
        if !self.finished {
            self.finished = true;
            self.client.observe(self.operation, self.started);
            self.client.metrics.clickhouse_rows.inc_by(self.rows);
            self.client.metrics.clickhouse_bytes.inc_by(self.bytes);
        }
    }

    /// Ends the answer early with `e`: the statement is killed on the server.
    fn stop(&mut self, e: ChError) -> ChError {
        if !self.finished {
            self.finish();
            self.client.kill(&self.query_id);
        }
        self.client.failed(self.operation, e)
    }
}

impl Drop for Rows<'_> {
    fn drop(&mut self) {
        if !self.finished {
            // Read what is left cheaply if it is little; otherwise kill the statement.
            self.finish();
            self.client.kill(&self.query_id);
        }
    }
}
