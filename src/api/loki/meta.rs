//! Loki's metadata endpoints beside the queries: `index/stats` (Grafana's query-size estimate),
//! `detected_labels` and `detected_fields` / `detected_field/{name}/values` (Explore's label
//! and field suggestions, Logs Drilldown), and `format_query`.
//!
//! Janus has no chunk index to estimate from, so `index/stats` counts what the selector would
//! read: one pass over the window's lines of the selected streams (filters left out, as Loki
//! leaves them out), under the log query limiter and the query deadline. Detected fields are
//! read from a sample of the newest lines (`line_limit`, default 1,000), as Loki samples them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::response::Response;
use serde_json::json;

use super::params::{self as lp, BadParameter};
use super::{answer, selector, streams, LokiError};
use crate::api::error::ApiError;
use crate::api::params::Params;
use crate::api::request::{self, Deadline};
use crate::api::{envelope, SharedState};
use crate::engine::LineSearch;
use crate::logql::lexer::{tokenize, Kind};
use crate::logql::parsers;
use crate::logql::pipeline::Outcome;
use crate::logstore::Keep;

/// The most lines `detected_fields` reads.
const MAX_LINE_LIMIT: usize = 100_000;

/// `GET|POST /loki/api/v1/index/stats`: streams, chunks (hour files), entries and bytes the
/// selector selects in `[start, end)`, as Loki's bare object.
pub async fn index_stats(State(state): State<SharedState>, request: Request) -> Response {
    answer(
        async {
            let read = request::read(request).await?;
            let params = &read.params;
            let (start, end) = lp::bounds(params)?;
            let tenant = super::tenant(&read);
            let mut query = selector(&state, tenant.as_deref(), params.get("query")).await?;
            // Stats are the selector's: filters and stages do not narrow them (Loki's rule).
            query.filters.clear();
            query.pipeline = Default::default();
            let deadline = Deadline::own(params, &state.config)?;
            let slot = state.log_limiter.acquire(deadline.at).await?;
            let store = Arc::clone(&state.store);
            let max_series = state.config.query_max_series;
            let at = deadline.at.into_std();
            let (buckets, files) = crate::engine::blocking(slot, move |cancelled| {
                let bounds = [start.saturating_sub(1), end.saturating_sub(1)];
                let count = crate::logstore::Count {
                    query: &query,
                    deadline: at,
                    cancelled,
                    max_series,
                    max_samples: 0,
                    grouping: None,
                };
                let buckets = store.buckets(&count, &bounds);
                let files = store.chunk_count(&query, start, end.saturating_sub(1))?;
                buckets.map(|b| (b, files))
            })
            .await?
            .map_err(ApiError::from)?;
            let (mut entries, mut bytes) = (0u64, 0u64);
            let mut streams = 0u64;
            for counts in buckets.values() {
                let (n, b) = counts.iter().fold((0, 0), |a, c| (a.0 + c.0, a.1 + c.1));
                streams += u64::from(n > 0);
                entries += n;
                bytes += b;
            }
            let body =
                json!({"streams": streams, "chunks": files, "bytes": bytes, "entries": entries});
            Ok(envelope::json_response(body.to_string()))
        }
        .await,
    )
}

/// `GET /loki/api/v1/detected_labels`: the stream labels of the window (of the `query`'s streams
/// when given), each with how many values it has.
pub async fn detected_labels(State(state): State<SharedState>, request: Request) -> Response {
    answer(
        async {
            let read = request::read(request).await?;
            let params = &read.params;
            let selectors = match params.get("query") {
                "" => super::everything(&state, super::tenant(&read).as_deref()).await?,
                text => vec![selector(&state, super::tenant(&read).as_deref(), text).await?],
            };
            let mut values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for labels in streams(&state, params, selectors).await? {
                for (name, value) in labels {
                    values.entry(name).or_default().insert(value);
                }
            }
            let detected: Vec<_> = values
                .into_iter()
                .map(|(label, v)| json!({"label": label, "cardinality": v.len()}))
                .collect();
            Ok(envelope::json_response(
                json!({ "detectedLabels": detected }).to_string(),
            ))
        }
        .await,
    )
}

/// What is known of one detected field.
#[derive(Default)]
struct Field {
    values: BTreeSet<String>,
    parsers: BTreeSet<&'static str>,
}

/// The fields of a sample of the query's newest lines: the keys `| json` or `| logfmt` reads
/// from each line (the parser Loki would detect for it), with their values.
async fn sample_fields(
    state: &SharedState,
    read: &crate::api::request::ReadRequest,
    only: Option<String>,
) -> Result<BTreeMap<String, Field>, LokiError> {
    let params = &read.params;
    let (start, end) = lp::bounds(params)?;
    let query = selector(state, super::tenant(read).as_deref(), params.get("query")).await?;
    let line_limit = match params.get("line_limit") {
        "" => 1000,
        value => value
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_LINE_LIMIT).contains(n))
            .ok_or_else(|| {
                BadParameter(format!(
                    "line_limit must be a whole number from 1 to {MAX_LINE_LIMIT}, got {value:?}"
                ))
            })?,
    };
    let deadline = Deadline::own(params, &state.config)?;
    let slot = state.log_limiter.acquire(deadline.at).await?;
    let kind = query.kind;
    let (found, slot) = state
        .engine
        .search_lines(
            LineSearch {
                query,
                lo: start,
                hi: end.saturating_sub(1),
                limit: line_limit,
                keep: Keep::Newest,
            },
            deadline.at,
            slot,
        )
        .await?;
    let at = deadline.at.into_std();
    let fields = crate::engine::blocking(slot, move |cancelled| {
        let mut fields = Fields::default();
        let mut buf = Vec::new();
        for i in 0..found.lines.len() {
            // One line may hold 100,000 keys: the deadline and the client are checked per line.
            if cancelled.load(Ordering::Relaxed) {
                return Err(ApiError::Timeout("the client went away".into()));
            }
            if std::time::Instant::now() >= at {
                return Err(ApiError::Timeout(
                    "query timed out while detecting fields".into(),
                ));
            }
            let Some(line) = found.read_line(i, &mut buf) else {
                continue;
            };
            let stream = crate::logstore::line::stream_labels(kind, &line);
            let pairs: Vec<(&str, &str)> = stream.iter().map(|(k, v)| (*k, v.as_ref())).collect();
            let mut out = Outcome::default();
            let parser = if line.message.first() == Some(&b'{') {
                parsers::json(line.message, &pairs, None, &mut out);
                "json"
            } else {
                parsers::logfmt(line.message, &pairs, None, &Default::default(), &mut out);
                "logfmt"
            };
            if out.labels.contains_key("__error__") {
                continue;
            }
            for (name, value) in out.labels {
                fields.add(name, value, parser, only.as_deref());
            }
        }
        Ok(fields.by_name)
    })
    .await??;
    Ok(fields)
}

/// Fields and values kept from the sample, bounded: at most [`MAX_FIELDS`] names and
/// [`MAX_FIELD_BYTES`] of names and values together; past either, new ones are not kept (a
/// cardinality then counts the values kept).
#[derive(Default)]
struct Fields {
    by_name: BTreeMap<String, Field>,
    bytes: usize,
}

/// Names of detected fields kept at most.
const MAX_FIELDS: usize = 10_000;
/// Bytes of detected field names and values kept at most.
const MAX_FIELD_BYTES: usize = 16 << 20;

impl Fields {
    /// Keeps `value` of field `name` (only of the field `only`, when given) while within bounds.
    fn add(&mut self, name: String, value: String, parser: &'static str, only: Option<&str>) {
        if only.is_some_and(|only| only != name) {
            return;
        }
        let field = match self.by_name.get_mut(&name) {
            Some(field) => field,
            None => {
                if self.by_name.len() >= MAX_FIELDS || self.bytes + name.len() > MAX_FIELD_BYTES {
                    return;
                }
                self.bytes += name.len();
                self.by_name.entry(name).or_default()
            }
        };
        field.parsers.insert(parser);
        if self.bytes + value.len() <= MAX_FIELD_BYTES && !field.values.contains(&value) {
            self.bytes += value.len();
            field.values.insert(value);
        }
    }
}

/// Loki's type of a field, from its values: every value a whole number, a number, a duration,
/// a size or a boolean; else a string.
fn field_type(values: &BTreeSet<String>) -> &'static str {
    use crate::logql::pipeline::{read_bytes, read_duration_seconds};
    let all = |f: &dyn Fn(&str) -> bool| !values.is_empty() && values.iter().all(|v| f(v));
    if all(&|v| v.parse::<i64>().is_ok()) {
        "int"
    } else if all(&|v| v.parse::<f64>().is_ok()) {
        "float"
    } else if all(&|v| matches!(v, "true" | "false")) {
        "boolean"
    } else if all(&|v| read_duration_seconds(v).is_some()) {
        "duration"
    } else if all(&|v| read_bytes(v).is_some()) {
        "bytes"
    } else {
        "string"
    }
}

/// A `limit` of fields or values: default 1,000, at most 100,000.
fn answer_limit(params: &Params) -> Result<usize, LokiError> {
    Ok(match params.get("limit") {
        "" => 1000,
        _ => lp::limit(params)?,
    })
}

/// `GET /loki/api/v1/detected_fields`: the fields of the query's newest lines, with their type,
/// how many values each has and which parser reads them.
pub async fn detected_fields(State(state): State<SharedState>, request: Request) -> Response {
    answer(
        async {
            let read = request::read(request).await?;
            let limit = answer_limit(&read.params)?;
            let fields = sample_fields(&state, &read, None).await?;
            let list: Vec<_> = fields
                .iter()
                .take(limit)
                .map(|(label, f)| {
                    json!({
                        "label": label,
                        "type": field_type(&f.values),
                        "cardinality": f.values.len(),
                        "parsers": f.parsers,
                    })
                })
                .collect();
            Ok(envelope::json_response(
                json!({"fields": list, "limit": limit}).to_string(),
            ))
        }
        .await,
    )
}

/// `GET /loki/api/v1/detected_field/{name}/values`: one detected field's values.
pub async fn detected_field_values(
    State(state): State<SharedState>,
    Path(name): Path<String>,
    request: Request,
) -> Response {
    answer(
        async {
            let read = request::read(request).await?;
            let limit = answer_limit(&read.params)?;
            let mut fields = sample_fields(&state, &read, Some(name.clone())).await?;
            let values: Vec<String> = fields
                .remove(&name)
                .map(|f| f.values.into_iter().take(limit).collect())
                .unwrap_or_default();
            Ok(envelope::json_response(
                json!({"values": values, "limit": limit}).to_string(),
            ))
        }
        .await,
    )
}

/// `GET|POST /loki/api/v1/format_query`: the query checked and written in one canonical way —
/// tokens separated by one space, none inside brackets or before a comma.
pub async fn format_query(State(state): State<SharedState>, request: Request) -> Response {
    answer(
        async {
            let read = request::read(request).await?;
            let text = read.params.get("query");
            super::prepare(&state, super::tenant(&read).as_deref(), text).await?;
            Ok(envelope::success(canonical(text), &[]))
        }
        .await,
    )
}

/// Words a bracket follows with a space: `sum by (a)`, `on (b)`.
const GROUPING_WORDS: [&str; 11] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
];

/// `text` with its tokens joined canonically: one space between tokens, none inside a
/// selector's braces (but after its commas), inside brackets' edges, before a comma, or between
/// a name and its bracket.
fn canonical(text: &str) -> String {
    let tokens = tokenize(text);
    let mut out = String::with_capacity(text.len());
    let mut braces = 0usize;
    let mut previous: Option<&crate::logql::lexer::Token> = None;
    let mut before: Option<&crate::logql::lexer::Token> = None;
    for t in &tokens {
        if let Some(p) = previous {
            let space = if braces > 0 && t.kind != Kind::RBrace {
                p.kind == Kind::Comma
            } else {
                let after_open = matches!(p.kind, Kind::LParen | Kind::LBrace | Kind::LBracket);
                let before_close = matches!(
                    t.kind,
                    Kind::RParen | Kind::RBrace | Kind::RBracket | Kind::Comma
                );
                let word = &text[p.start..p.end];
                let opens_after_name = match t.kind {
                    Kind::LBrace => p.kind == Kind::Ident,
                    // A range follows a selector or a metric name, not a pipeline stage's word.
                    Kind::LBracket => {
                        p.kind == Kind::RBrace
                            || (p.kind == Kind::Ident
                                && before.is_none_or(|b| &text[b.start..b.end] != "|"))
                    }
                    Kind::LParen => p.kind == Kind::Ident && !GROUPING_WORDS.contains(&word),
                    _ => false,
                };
                let one_operator = p.kind == Kind::Op && t.kind == Kind::Op && p.end == t.start;
                !(after_open || before_close || opens_after_name || one_operator)
            };
            if space {
                out.push(' ');
            }
        }
        match t.kind {
            Kind::LBrace => braces += 1,
            Kind::RBrace => braces = braces.saturating_sub(1),
            _ => {}
        }
        out.push_str(&text[t.start..t.end]);
        before = previous;
        previous = Some(t);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_spacing() {
        assert_eq!(
            canonical(
                r#"sum  by(level)(count_over_time( { namespace = "a" ,pod=~"w.*"}|= "x" |json|status>=500 [5m] ))"#
            ),
            r#"sum by (level) (count_over_time({namespace="a", pod=~"w.*"} |= "x" | json | status >= 500 [5m]))"#
        );
        assert_eq!(
            canonical(r#"{node="n"} |> "<_> x""#),
            r#"{node="n"} |> "<_> x""#
        );
    }
}
