//! The log query language: routing (which queries involve logs) and LetheQL parsing.

pub mod extracted;
pub mod label_filter;
pub mod lexer;
pub mod parse;
mod parse_stages;
pub mod parsers;
pub mod pattern;
pub mod pipeline;
pub mod regex_budget;
pub mod rewrite;
pub mod template;

pub use lexer::involves_logs;

/// A query the log language cannot read: always the client's mistake (`bad_data`). The message
/// carries Prometheus-style positions (`1:10: parse error: …`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SyntaxError(pub String);
pub use parse::{parse_log_query, FieldMatcher, LineFilter, LogKind, LogQuery};
