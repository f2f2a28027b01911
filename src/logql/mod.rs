//! The log query language: routing (which queries involve logs) and LetheQL parsing.

pub mod extracted;
pub mod label_filter;
pub mod lexer;
mod logfmt_seek;
pub mod parse;
mod parse_stages;
pub mod parsers;
pub mod pattern;
pub mod pipeline;
pub mod regex_budget;
pub mod rewrite;
pub mod short_eq;
pub mod template;

pub use lexer::involves_logs;

/// A query the log language cannot read: always the client's mistake (`bad_data`). The message
/// carries Prometheus-style positions (`1:10: parse error: …`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SyntaxError(pub String);
pub use parse::{parse_log_query, FieldMatcher, LineFilter, LogKind, LogQuery};

/// Loki's unwrapped range aggregations: the range functions that read the values `| unwrap`
/// takes from lines (`sum_over_time({…} | unwrap took [5m])`), and that take a grouping after
/// the call (`… [5m]) by (a)`).
pub const UNWRAPPED_RANGE_AGGREGATIONS: &[&str] = &[
    "avg_over_time",
    "first_over_time",
    "last_over_time",
    "max_over_time",
    "min_over_time",
    "quantile_over_time",
    "rate",
    "rate_counter",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
];
