//! Range functions over one window of samples, with Prometheus's semantics: what Janus applies
//! to the values of a subquery at each outer step (`subquery.rs`).

use super::functions::Function;
use super::operators::Aggregation;

/// The window a range function reads, in nanoseconds, and the evaluation time.
pub struct Window {
    pub begin: i64,
    pub end: i64,
    pub at: i64,
    pub range_seconds: f64,
}

/// A range function over one window's samples `(time ns, value)`, none of them missing;
/// `None` where Prometheus answers nothing (fewer than two samples for rates and slopes, a
/// function that is not a range function).
pub fn over_time(
    function: Function,
    params: &[f64],
    samples: &[(i64, f64)],
    w: &Window,
) -> Option<f64> {
    let values = || samples.iter().map(|s| s.1).collect::<Vec<f64>>();
    let param = |i: usize| params.get(i).copied().unwrap_or(f64::NAN);
    let aggregate = |a: Aggregation| a.reduce(&values());
    match function {
        Function::LastOverTime => samples.last().map(|s| s.1),
        Function::FirstOverTime => samples.first().map(|s| s.1),
        // Loki's counter rate of unwrapped values: Prometheus's `rate`.
        Function::RateCounter => extrapolated_rate(samples, w, true, true),
        Function::PresentOverTime => Some(1.0),
        Function::AbsentOverTime => None, // answered over all series at once (`subquery.rs`)
        Function::QuantileOverTime => Some(super::eval::quantile(param(0), &mut values())),
        Function::Rate => extrapolated_rate(samples, w, true, true),
        Function::Increase => extrapolated_rate(samples, w, true, false),
        Function::Delta => extrapolated_rate(samples, w, false, false),
        Function::Irate | Function::Idelta => instant_change(samples, function == Function::Irate),
        Function::Deriv => (samples.len() >= 2).then(|| linear_regression(samples, samples[0].0).0),
        Function::PredictLinear => (samples.len() >= 2).then(|| {
            let (slope, intercept) = linear_regression(samples, w.at);
            intercept + slope * param(0)
        }),
        Function::DoubleExponentialSmoothing => holt_winters(&values(), param(0), param(1)),
        Function::Changes => Some(count_pairs(samples, |prev, cur| {
            cur != prev && !(cur.is_nan() && prev.is_nan())
        })),
        Function::Resets => Some(count_pairs(samples, |prev, cur| cur < prev)),
        Function::AvgOverTime => aggregate(Aggregation::Avg),
        Function::MinOverTime => aggregate(Aggregation::Min),
        Function::MaxOverTime => aggregate(Aggregation::Max),
        Function::SumOverTime => aggregate(Aggregation::Sum),
        Function::CountOverTime => aggregate(Aggregation::Count),
        Function::StddevOverTime => Some(variance(samples).sqrt()),
        Function::StdvarOverTime => Some(variance(samples)),
        _ => None,
    }
}

/// The population variance of the window's values (NaN in, NaN out, unlike the aggregation).
fn variance(samples: &[(i64, f64)]) -> f64 {
    let n = samples.len() as f64;
    let mean = samples.iter().map(|s| s.1).sum::<f64>() / n;
    samples
        .iter()
        .map(|s| (s.1 - mean) * (s.1 - mean))
        .sum::<f64>()
        / n
}

/// How many consecutive pairs `(previous, current)` satisfy `counted`.
fn count_pairs(samples: &[(i64, f64)], counted: impl Fn(f64, f64) -> bool) -> f64 {
    samples
        .windows(2)
        .filter(|pair| counted(pair[0].1, pair[1].1))
        .count() as f64
}

/// `irate` and `idelta`: from the last two samples; a counter reset makes the last value the
/// increase.
fn instant_change(samples: &[(i64, f64)], per_second: bool) -> Option<f64> {
    let [.., (t0, v0), (t1, v1)] = samples else {
        return None;
    };
    let value = if per_second && v1 < v0 { *v1 } else { v1 - v0 };
    let interval = (t1 - t0) as f64 / 1e9;
    if interval == 0.0 {
        return None;
    }
    Some(if per_second { value / interval } else { value })
}

/// `rate`, `increase` and `delta`: the change over the window, counter resets corrected for the
/// first two, extrapolated towards the window's edges as Prometheus does.
fn extrapolated_rate(
    samples: &[(i64, f64)],
    w: &Window,
    is_counter: bool,
    per_second: bool,
) -> Option<f64> {
    let (first, last) = (samples.first()?, samples.last()?);
    if samples.len() < 2 {
        return None;
    }
    let mut result = last.1 - first.1;
    if is_counter {
        let mut previous = 0.0;
        for s in samples {
            if s.1 < previous {
                result += previous;
            }
            previous = s.1;
        }
    }
    let mut to_start = (first.0 - w.begin) as f64 / 1e9;
    let to_end = (w.end - last.0) as f64 / 1e9;
    let sampled = (last.0 - first.0) as f64 / 1e9;
    let average = sampled / (samples.len() - 1) as f64;
    if is_counter && result > 0.0 && first.1 >= 0.0 {
        to_start = to_start.min(sampled * (first.1 / result));
    }
    let threshold = average * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        average / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        average / 2.0
    };
    result *= interval / sampled;
    if per_second {
        result /= w.range_seconds;
    }
    Some(result)
}

/// Adds `inc` to a compensated sum `(sum, compensation)`.
fn kahan_add(acc: &mut (f64, f64), inc: f64) {
    let (sum, c) = *acc;
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    *acc = (t, c);
}

/// Least-squares slope and intercept of the samples, times in seconds from `intercept_time`.
fn linear_regression(samples: &[(i64, f64)], intercept_time: i64) -> (f64, f64) {
    let first = samples[0].1;
    if samples.iter().all(|s| s.1 == first) {
        return if first.is_infinite() {
            (f64::NAN, f64::NAN)
        } else {
            (0.0, first)
        };
    }
    // Compensated (Kahan–Neumaier) sums, as Prometheus computes them.
    let mut n = 0.0;
    let (mut x, mut y, mut xy, mut x2) = ((0.0, 0.0), (0.0, 0.0), (0.0, 0.0), (0.0, 0.0));
    for &(t, v) in samples {
        let dx = (t - intercept_time) as f64 / 1e9;
        n += 1.0;
        kahan_add(&mut x, dx);
        kahan_add(&mut y, v);
        kahan_add(&mut xy, dx * v);
        kahan_add(&mut x2, dx * dx);
    }
    let (sum_x, sum_y, sum_xy, sum_x2) = (x.0 + x.1, y.0 + y.1, xy.0 + xy.1, x2.0 + x2.1);
    let cov_xy = sum_xy - sum_x * sum_y / n;
    let var_x = sum_x2 - sum_x * sum_x / n;
    let slope = cov_xy / var_x;
    (slope, sum_y / n - slope * sum_x / n)
}

/// Double exponential smoothing (Prometheus 2.x's `holt_winters`); the factors are checked
/// before (`SubqueryCall::apply`); `None` for fewer than two values.
fn holt_winters(values: &[f64], sf: f64, tf: f64) -> Option<f64> {
    if values.len() < 2 {
        return None;
    }
    let (mut s0, mut s1, mut b) = (0.0, values[0], values[1] - values[0]);
    for (i, &v) in values.iter().enumerate().skip(1) {
        if i > 1 {
            b = tf * (s1 - s0) + (1.0 - tf) * b;
        }
        let next = sf * v + (1.0 - sf) * (s1 + b);
        (s0, s1) = (s1, next);
    }
    Some(s1)
}
