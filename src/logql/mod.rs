//! The log query language: routing (which queries involve logs) and LetheQL parsing.

pub mod lexer;
pub mod parse;
pub mod regex_budget;
pub mod rewrite;

pub use lexer::involves_logs;
pub use parse::{parse_log_query, FieldMatcher, LineFilter, LogKind, LogQuery};
