//! Binary operators and aggregations as enums: read from the parser's tokens once, so the
//! evaluator matches on variants rather than on spellings.

use promql_parser::parser::token::TokenType;

/// A binary operator of PromQL 2.42.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl BinaryOp {
    pub fn from_token(token: TokenType) -> Option<BinaryOp> {
        Some(match token.to_string().as_str() {
            "+" => BinaryOp::Add,
            "-" => BinaryOp::Sub,
            "*" => BinaryOp::Mul,
            "/" => BinaryOp::Div,
            "%" => BinaryOp::Mod,
            "^" => BinaryOp::Pow,
            "atan2" => BinaryOp::Atan2,
            "==" => BinaryOp::Eq,
            "!=" => BinaryOp::Ne,
            ">" => BinaryOp::Gt,
            "<" => BinaryOp::Lt,
            ">=" => BinaryOp::Ge,
            "<=" => BinaryOp::Le,
            "and" => BinaryOp::And,
            "or" => BinaryOp::Or,
            "unless" => BinaryOp::Unless,
            _ => return None,
        })
    }

    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Gt | BinaryOp::Lt | BinaryOp::Ge | BinaryOp::Le
        )
    }

    pub fn is_set(self) -> bool {
        matches!(self, BinaryOp::And | BinaryOp::Or | BinaryOp::Unless)
    }

    /// Whether the result keeps the metric name: filtering comparisons do, and so does `atan2`
    /// in the Prometheus the tests check against (2.42); arithmetic and `bool` comparisons
    /// drop it.
    pub fn keeps_name(self, return_bool: bool) -> bool {
        (self.is_comparison() && !return_bool) || self == BinaryOp::Atan2
    }

    /// The result of `a op b`, and for comparisons whether it holds (the value is then `a`).
    pub fn apply(self, a: f64, b: f64) -> (f64, bool) {
        match self {
            BinaryOp::Add => (a + b, true),
            BinaryOp::Sub => (a - b, true),
            BinaryOp::Mul => (a * b, true),
            BinaryOp::Div => (a / b, true),
            BinaryOp::Mod => (a % b, true),
            BinaryOp::Pow => (a.powf(b), true),
            BinaryOp::Atan2 => (a.atan2(b), true),
            BinaryOp::Eq => (a, a == b),
            BinaryOp::Ne => (a, a != b),
            BinaryOp::Gt => (a, a > b),
            BinaryOp::Lt => (a, a < b),
            BinaryOp::Ge => (a, a >= b),
            BinaryOp::Le => (a, a <= b),
            // Set operators work on whole series, never on two values.
            BinaryOp::And | BinaryOp::Or | BinaryOp::Unless => (f64::NAN, false),
        }
    }
}

/// An aggregation operator of PromQL 2.42.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Group,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    Quantile,
    CountValues,
}

impl Aggregation {
    /// The aggregation, if Janus evaluates it (Prometheus 3's `limitk` and `limit_ratio` are
    /// not PromQL 2.42 and stay with the upstream).
    pub fn from_token(token: TokenType) -> Option<Aggregation> {
        Aggregation::from_name(&token.to_string())
    }

    pub fn from_name(name: &str) -> Option<Aggregation> {
        Some(match name {
            "sum" => Aggregation::Sum,
            "avg" => Aggregation::Avg,
            "min" => Aggregation::Min,
            "max" => Aggregation::Max,
            "count" => Aggregation::Count,
            "group" => Aggregation::Group,
            "stddev" => Aggregation::Stddev,
            "stdvar" => Aggregation::Stdvar,
            "topk" => Aggregation::Topk,
            "bottomk" => Aggregation::Bottomk,
            "quantile" => Aggregation::Quantile,
            "count_values" => Aggregation::CountValues,
            _ => return None,
        })
    }

    /// The aggregation of one group's values at one step, for those that reduce to one number;
    /// `None` for no values.
    pub fn reduce(self, values: &[f64]) -> Option<f64> {
        let n = values.len() as f64;
        if values.is_empty() {
            return None;
        }
        Some(match self {
            Aggregation::Sum => values.iter().sum(),
            Aggregation::Avg => values.iter().sum::<f64>() / n,
            Aggregation::Min => {
                values
                    .iter()
                    .copied()
                    .fold(f64::NAN, |a, b| if a.is_nan() || b < a { b } else { a })
            }
            Aggregation::Max => {
                values
                    .iter()
                    .copied()
                    .fold(f64::NAN, |a, b| if a.is_nan() || b > a { b } else { a })
            }
            Aggregation::Count => n,
            Aggregation::Group => 1.0,
            Aggregation::Stddev | Aggregation::Stdvar => {
                // Prometheus's running (Welford) variance, seeded with the first value: a group
                // of one NaN has variance 0, not NaN.
                let (mut mean, mut sum_squares) = (values[0], 0.0);
                for (i, v) in values.iter().enumerate().skip(1) {
                    let delta = v - mean;
                    mean += delta / (i + 1) as f64;
                    sum_squares += delta * (v - mean);
                }
                let var = sum_squares / n;
                if self == Aggregation::Stddev {
                    var.sqrt()
                } else {
                    var
                }
            }
            Aggregation::Topk
            | Aggregation::Bottomk
            | Aggregation::Quantile
            | Aggregation::CountValues => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(text: &str) -> promql_parser::parser::BinaryExpr {
        match promql_parser::parser::parse(&format!("a {text} b")) {
            Ok(promql_parser::parser::Expr::Binary(b)) => b,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn every_operator_is_read() {
        for text in [
            "+", "-", "*", "/", "%", "^", "atan2", "==", "!=", ">", "<", ">=", "<=", "and", "or",
            "unless",
        ] {
            assert!(BinaryOp::from_token(op(text).op).is_some(), "{text}");
        }
        assert!(BinaryOp::from_token(op("==").op).is_some_and(BinaryOp::is_comparison));
        assert!(BinaryOp::from_token(op("unless").op).is_some_and(BinaryOp::is_set));
        assert_eq!(Aggregation::from_name("limitk"), None);
        assert_eq!(Aggregation::Stdvar.reduce(&[1.0, 3.0]), Some(1.0));
        assert_eq!(Aggregation::Topk.reduce(&[1.0]), None);
    }
}
