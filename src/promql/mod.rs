//! PromQL over step-aligned values: the function table, the planner that splits an expression
//! into leaves (upstream, store, subqueries) and the evaluator of what is above them.

pub mod aggregate;
pub mod binary;
pub mod confine;
pub mod encode;
pub mod error;
pub mod eval;
pub mod functions;
pub mod go_time;
pub mod instant_functions;
pub mod operators;
pub mod plan;
pub mod range_functions;
pub mod subquery;
pub mod upstream_answer;
pub mod value;

pub use error::EvalError;
pub use functions::Function;
