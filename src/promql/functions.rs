//! The one table of PromQL functions (Prometheus 2.42's, plus Janus's log functions): each name
//! with its arguments, its result and how Janus evaluates it. The planner asks this table
//! whether a call can be evaluated here; the evaluator dispatches on the same [`Function`], so
//! "can Janus evaluate this" and "how" cannot drift apart.

use promql_parser::parser::value::ValueType;

/// A function argument's type, as Prometheus declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    Vector,
    Scalar,
    Matrix,
    String,
}

/// How Janus evaluates a function.
#[derive(Debug, Clone, Copy)]
pub enum Evaluation {
    /// The same math on every sample; the metric name goes.
    Map(fn(f64) -> f64),
    /// An instant function with its own rule in the evaluator (`round`, `label_replace`, …).
    Instant,
    /// Reads a range of samples: over a metric selector the upstream answers it (it has the raw
    /// samples); over a subquery Janus applies it to the inner values; over a log selector the
    /// store answers it when `over_logs`.
    Range { over_logs: bool },
    /// Native-histogram functions: Janus's values hold floats only, so the upstream answers.
    Upstream,
}

/// Every function Janus knows, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    Abs,
    Absent,
    AbsentOverTime,
    Acos,
    Acosh,
    Asin,
    Asinh,
    Atan,
    Atanh,
    AvgOverTime,
    BytesOverTime,
    BytesRate,
    Ceil,
    Changes,
    Clamp,
    ClampMax,
    ClampMin,
    Cos,
    Cosh,
    CountOverTime,
    DayOfMonth,
    DayOfWeek,
    DayOfYear,
    DaysInMonth,
    Deg,
    Delta,
    Deriv,
    DoubleExponentialSmoothing,
    Exp,
    FirstOverTime,
    Floor,
    HistogramCount,
    HistogramFraction,
    HistogramQuantile,
    HistogramSum,
    Hour,
    Idelta,
    Increase,
    Irate,
    LabelJoin,
    LabelReplace,
    LastOverTime,
    Ln,
    Log10,
    Log2,
    MaxOverTime,
    MinOverTime,
    Minute,
    Month,
    Pi,
    PredictLinear,
    PresentOverTime,
    QuantileOverTime,
    Rad,
    Rate,
    RateCounter,
    Resets,
    Round,
    Scalar,
    Sgn,
    Sin,
    Sinh,
    Sort,
    SortDesc,
    Sqrt,
    StddevOverTime,
    StdvarOverTime,
    SumOverTime,
    Tan,
    Tanh,
    Time,
    Timestamp,
    Vector,
    Year,
}

/// One row of the table.
pub struct Entry {
    pub function: Function,
    pub name: &'static str,
    /// Declared arguments; `optional` of them at the end may be left out, and `label_join`'s
    /// last one repeats.
    pub args: &'static [Arg],
    pub optional: usize,
    pub returns: ValueType,
    pub evaluation: Evaluation,
}

use Arg::{Matrix as M, Scalar as S, String as T, Vector as V};
use Evaluation::{Instant, Map, Range, Upstream};
use ValueType::{Scalar as RS, Vector as RV};

const fn entry(
    function: Function,
    name: &'static str,
    args: &'static [Arg],
    optional: usize,
    returns: ValueType,
    evaluation: Evaluation,
) -> Entry {
    Entry {
        function,
        name,
        args,
        optional,
        returns,
        evaluation,
    }
}

const LOGS: Evaluation = Range { over_logs: true };
const METRICS: Evaluation = Range { over_logs: false };

fn sgn(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x // 0, -0 and NaN are their own sign
    }
}

/// The table, sorted by name.
#[rustfmt::skip]
pub const TABLE: &[Entry] = &[
    entry(Function::Abs, "abs", &[V], 0, RV, Map(f64::abs)),
    entry(Function::Absent, "absent", &[V], 0, RV, Instant),
    entry(Function::AbsentOverTime, "absent_over_time", &[M], 0, RV, LOGS),
    entry(Function::Acos, "acos", &[V], 0, RV, Map(f64::acos)),
    entry(Function::Acosh, "acosh", &[V], 0, RV, Map(f64::acosh)),
    entry(Function::Asin, "asin", &[V], 0, RV, Map(f64::asin)),
    entry(Function::Asinh, "asinh", &[V], 0, RV, Map(f64::asinh)),
    entry(Function::Atan, "atan", &[V], 0, RV, Map(f64::atan)),
    entry(Function::Atanh, "atanh", &[V], 0, RV, Map(f64::atanh)),
    entry(Function::AvgOverTime, "avg_over_time", &[M], 0, RV, METRICS),
    entry(Function::BytesOverTime, "bytes_over_time", &[M], 0, RV, LOGS),
    entry(Function::BytesRate, "bytes_rate", &[M], 0, RV, LOGS),
    entry(Function::Ceil, "ceil", &[V], 0, RV, Map(f64::ceil)),
    entry(Function::Changes, "changes", &[M], 0, RV, METRICS),
    entry(Function::Clamp, "clamp", &[V, S, S], 0, RV, Instant),
    entry(Function::ClampMax, "clamp_max", &[V, S], 0, RV, Instant),
    entry(Function::ClampMin, "clamp_min", &[V, S], 0, RV, Instant),
    entry(Function::Cos, "cos", &[V], 0, RV, Map(f64::cos)),
    entry(Function::Cosh, "cosh", &[V], 0, RV, Map(f64::cosh)),
    entry(Function::CountOverTime, "count_over_time", &[M], 0, RV, LOGS),
    entry(Function::DayOfMonth, "day_of_month", &[V], 1, RV, Instant),
    entry(Function::DayOfWeek, "day_of_week", &[V], 1, RV, Instant),
    entry(Function::DayOfYear, "day_of_year", &[V], 1, RV, Instant),
    entry(Function::DaysInMonth, "days_in_month", &[V], 1, RV, Instant),
    entry(Function::Deg, "deg", &[V], 0, RV, Map(f64::to_degrees)),
    entry(Function::Delta, "delta", &[M], 0, RV, METRICS),
    entry(Function::Deriv, "deriv", &[M], 0, RV, METRICS),
    entry(Function::DoubleExponentialSmoothing, "double_exponential_smoothing", &[M, S, S], 0, RV, METRICS),
    entry(Function::Exp, "exp", &[V], 0, RV, Map(f64::exp)),
    entry(Function::FirstOverTime, "first_over_time", &[M], 0, RV, METRICS),
    entry(Function::Floor, "floor", &[V], 0, RV, Map(f64::floor)),
    entry(Function::HistogramCount, "histogram_count", &[V], 0, RV, Upstream),
    entry(Function::HistogramFraction, "histogram_fraction", &[S, S, V], 0, RV, Upstream),
    entry(Function::HistogramQuantile, "histogram_quantile", &[S, V], 0, RV, Instant),
    entry(Function::HistogramSum, "histogram_sum", &[V], 0, RV, Upstream),
    entry(Function::Hour, "hour", &[V], 1, RV, Instant),
    entry(Function::Idelta, "idelta", &[M], 0, RV, METRICS),
    entry(Function::Increase, "increase", &[M], 0, RV, METRICS),
    entry(Function::Irate, "irate", &[M], 0, RV, METRICS),
    entry(Function::LabelJoin, "label_join", &[V, T, T, T], 0, RV, Instant),
    entry(Function::LabelReplace, "label_replace", &[V, T, T, T, T], 0, RV, Instant),
    entry(Function::LastOverTime, "last_over_time", &[M], 0, RV, METRICS),
    entry(Function::Ln, "ln", &[V], 0, RV, Map(f64::ln)),
    entry(Function::Log10, "log10", &[V], 0, RV, Map(f64::log10)),
    entry(Function::Log2, "log2", &[V], 0, RV, Map(f64::log2)),
    entry(Function::MaxOverTime, "max_over_time", &[M], 0, RV, METRICS),
    entry(Function::MinOverTime, "min_over_time", &[M], 0, RV, METRICS),
    entry(Function::Minute, "minute", &[V], 1, RV, Instant),
    entry(Function::Month, "month", &[V], 1, RV, Instant),
    entry(Function::Pi, "pi", &[], 0, RS, Instant),
    entry(Function::PredictLinear, "predict_linear", &[M, S], 0, RV, METRICS),
    entry(Function::PresentOverTime, "present_over_time", &[M], 0, RV, METRICS),
    entry(Function::QuantileOverTime, "quantile_over_time", &[S, M], 0, RV, METRICS),
    entry(Function::Rad, "rad", &[V], 0, RV, Map(f64::to_radians)),
    entry(Function::Rate, "rate", &[M], 0, RV, LOGS),
    entry(Function::RateCounter, "rate_counter", &[M], 0, RV, METRICS),
    entry(Function::Resets, "resets", &[M], 0, RV, METRICS),
    entry(Function::Round, "round", &[V, S], 1, RV, Instant),
    entry(Function::Scalar, "scalar", &[V], 0, RS, Instant),
    entry(Function::Sgn, "sgn", &[V], 0, RV, Map(sgn)),
    entry(Function::Sin, "sin", &[V], 0, RV, Map(f64::sin)),
    entry(Function::Sinh, "sinh", &[V], 0, RV, Map(f64::sinh)),
    entry(Function::Sort, "sort", &[V], 0, RV, Instant),
    entry(Function::SortDesc, "sort_desc", &[V], 0, RV, Instant),
    entry(Function::Sqrt, "sqrt", &[V], 0, RV, Map(f64::sqrt)),
    entry(Function::StddevOverTime, "stddev_over_time", &[M], 0, RV, METRICS),
    entry(Function::StdvarOverTime, "stdvar_over_time", &[M], 0, RV, METRICS),
    entry(Function::SumOverTime, "sum_over_time", &[M], 0, RV, METRICS),
    entry(Function::Tan, "tan", &[V], 0, RV, Map(f64::tan)),
    entry(Function::Tanh, "tanh", &[V], 0, RV, Map(f64::tanh)),
    entry(Function::Time, "time", &[], 0, RS, Instant),
    entry(Function::Timestamp, "timestamp", &[V], 0, RV, Instant),
    entry(Function::Vector, "vector", &[S], 0, RV, Instant),
    entry(Function::Year, "year", &[V], 1, RV, Instant),
];

impl Function {
    /// The function called `name`, if Janus knows it.
    pub fn from_name(name: &str) -> Option<Function> {
        TABLE
            .binary_search_by(|e| e.name.cmp(name))
            .ok()
            .map(|i| TABLE[i].function)
    }

    pub fn entry(self) -> &'static Entry {
        // The table holds every variant (checked by a test); the first row is a safe fallback.
        TABLE
            .iter()
            .find(|e| e.function == self)
            .unwrap_or(&TABLE[0])
    }

    pub fn name(self) -> &'static str {
        self.entry().name
    }

    pub fn evaluation(self) -> Evaluation {
        self.entry().evaluation
    }

    /// Range functions answered from the store over a log selector.
    pub fn reads_logs(self) -> bool {
        matches!(self.evaluation(), Range { over_logs: true })
    }

    /// Range functions over the values a log pipeline's `| unwrap label` reads from its lines
    /// (Loki's unwrapped range aggregations).
    /// The names are LogQL's to list ([`crate::logql::UNWRAPPED_RANGE_AGGREGATIONS`]): the
    /// rewriter, below this evaluator, must know them too.
    pub fn reads_unwrapped(self) -> bool {
        crate::logql::UNWRAPPED_RANGE_AGGREGATIONS.contains(&self.name())
    }

    /// Range functions Janus applies over a subquery: every range function over floats.
    pub fn applies_over_subquery(self) -> bool {
        matches!(self.evaluation(), Range { .. })
            && !matches!(self, Function::BytesOverTime | Function::BytesRate)
    }

    /// Where the range argument stands among the call's arguments.
    pub fn range_argument(self) -> Option<usize> {
        self.entry().args.iter().position(|a| *a == M)
    }
}

/// Teaches promql-parser Janus's own log functions (`bytes_over_time`, `bytes_rate`,
/// `rate_counter`), once per
/// process, so that expressions using them parse.
pub fn register_with_parser() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let own: Vec<promql_parser::parser::Function> = TABLE
            .iter()
            .filter(|e| {
                matches!(
                    e.function,
                    Function::BytesOverTime | Function::BytesRate | Function::RateCounter
                )
            })
            .map(|e| {
                promql_parser::parser::Function::new(
                    e.name,
                    vec![ValueType::Matrix],
                    0,
                    e.returns,
                    false,
                )
            })
            .collect();
        if let Err(e) = promql_parser::parser::register_extra_functions(own) {
            tracing::warn!(error = %e, "log functions could not be registered with the parser");
        }
    });
}

/// The names of the functions that satisfy `keep`, for error messages.
pub fn names(keep: impl Fn(Function) -> bool) -> String {
    TABLE
        .iter()
        .filter(|e| keep(e.function))
        .map(|e| e.name)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_every_name_found() {
        assert!(TABLE.windows(2).all(|w| w[0].name < w[1].name));
        for e in TABLE {
            assert_eq!(Function::from_name(e.name), Some(e.function));
            assert_eq!(e.function.name(), e.name);
        }
        assert_eq!(Function::from_name("holt_winters"), None);
    }

    #[test]
    fn the_table_agrees_with_the_parser() {
        // Every PromQL function promql-parser reads is in the table, with the same signature.
        register_with_parser(); // Janus's own log functions too
        for e in TABLE {
            let call: Vec<&str> = e
                .args
                .iter()
                .map(|a| match a {
                    V => "x",
                    S => "1",
                    M => "x[5m]",
                    T => "\"a\"",
                })
                .collect();
            let text = format!("{}({})", e.name, call.join(", "));
            let parsed =
                promql_parser::parser::parse(&text).unwrap_or_else(|err| panic!("{text}: {err}"));
            let promql_parser::parser::Expr::Call(c) = parsed else {
                panic!("{text} is not a call");
            };
            let known = c.func;
            assert_eq!(known.return_type, e.returns, "{}", e.name);
            let declared: Vec<ValueType> = e
                .args
                .iter()
                .map(|a| match a {
                    V => ValueType::Vector,
                    S => ValueType::Scalar,
                    M => ValueType::Matrix,
                    T => ValueType::String,
                })
                .collect();
            assert_eq!(known.arg_types, declared, "{}", e.name);
        }
    }

    #[test]
    fn range_arguments() {
        assert_eq!(Function::QuantileOverTime.range_argument(), Some(1));
        assert_eq!(Function::PredictLinear.range_argument(), Some(0));
        assert_eq!(Function::Abs.range_argument(), None);
        assert!(Function::Rate.reads_logs() && !Function::Deriv.reads_logs());
        assert!(!Function::BytesRate.applies_over_subquery());
        assert_eq!(sgn(-3.0), -1.0);
        assert!(sgn(f64::NAN).is_nan());
    }
}
