pub mod encode;
pub mod eval;
pub mod plan;
pub mod upstream_answer;
pub mod value;
