pub mod encode;
pub mod eval;
pub mod plan;
pub mod value;
