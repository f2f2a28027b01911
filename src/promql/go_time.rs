//! Calendar fields of a Unix time as Prometheus computes them (Go's `time.Unix(int64(v), 0)` in
//! UTC), for the date functions. Go converts the float with the processor's rule — on amd64 a
//! NaN, an infinity or a value beyond int64 becomes the smallest int64 — and its calendar runs
//! on wrapping 64-bit arithmetic from an "absolute" epoch, so such values land on a fixed date
//! far in the future rather than on an error. Computing the same way gives the same answers for
//! every input, ordinary or not.

const SECONDS_PER_MINUTE: u64 = 60;
const SECONDS_PER_HOUR: u64 = 60 * SECONDS_PER_MINUTE;
const SECONDS_PER_DAY: u64 = 24 * SECONDS_PER_HOUR;
const SECONDS_PER_WEEK: u64 = 7 * SECONDS_PER_DAY;
const DAYS_PER_400_YEARS: u64 = 365 * 400 + 97;
const DAYS_PER_100_YEARS: u64 = 365 * 100 + 24;
const DAYS_PER_4_YEARS: u64 = 365 * 4 + 1;
/// The year of Go's absolute epoch, a multiple of 400 years before year 1.
const ABSOLUTE_ZERO_YEAR: i64 = -292_277_022_399;
/// Seconds from Go's absolute epoch to year 1, and from year 1 to 1970.
const ABSOLUTE_TO_INTERNAL: i64 = -9_223_371_966_579_724_800;
const UNIX_TO_INTERNAL: i64 = 62_135_596_800;
/// Days before each month in a non-leap year.
const DAYS_BEFORE: [u32; 13] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 365];

/// The fields the date functions read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Date {
    pub year: i64,
    /// 1–12.
    pub month: u32,
    /// 1–31.
    pub day: u32,
    /// 1–366.
    pub day_of_year: u32,
    /// 0 (Sunday) – 6.
    pub weekday: u32,
    pub hour: u32,
    pub minute: u32,
}

impl Date {
    pub fn days_in_month(&self) -> u32 {
        match self.month {
            2 if is_leap(self.year) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        }
    }
}

fn is_leap(year: i64) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

/// amd64's float → int64 conversion: truncation, and the smallest int64 for NaN and for
/// anything out of range.
fn to_int64(v: f64) -> i64 {
    // (NaN is in no range.)
    if !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&v) {
        i64::MIN
    } else {
        v as i64
    }
}

/// The date of `seconds` since 1970 in UTC.
pub fn date(seconds: f64) -> Date {
    let sec = to_int64(seconds);
    let abs = sec
        .wrapping_add(UNIX_TO_INTERNAL)
        .wrapping_add(ABSOLUTE_TO_INTERNAL.wrapping_neg()) as u64;
    let mut d = abs / SECONDS_PER_DAY;
    let mut n = d / DAYS_PER_400_YEARS;
    let mut y = 400 * n;
    d -= DAYS_PER_400_YEARS * n;
    n = d / DAYS_PER_100_YEARS;
    n -= n >> 2;
    y += 100 * n;
    d -= DAYS_PER_100_YEARS * n;
    n = d / DAYS_PER_4_YEARS;
    y += 4 * n;
    d -= DAYS_PER_4_YEARS * n;
    n = d / 365;
    n -= n >> 2;
    y += n;
    d -= 365 * n;
    let year = (y as i64).wrapping_add(ABSOLUTE_ZERO_YEAR);
    let yday = d as u32;
    let (month, day) = month_and_day(year, yday);
    // Go's absolute epoch began on a Monday.
    let weekday = ((abs.wrapping_add(SECONDS_PER_DAY) % SECONDS_PER_WEEK) / SECONDS_PER_DAY) as u32;
    Date {
        year,
        month,
        day,
        day_of_year: yday + 1,
        weekday,
        hour: ((abs % SECONDS_PER_DAY) / SECONDS_PER_HOUR) as u32,
        minute: ((abs % SECONDS_PER_HOUR) / SECONDS_PER_MINUTE) as u32,
    }
}

/// Month (1–12) and day (1–31) of the zero-based day of the year.
fn month_and_day(year: i64, yday: u32) -> (u32, u32) {
    let mut day = yday;
    if is_leap(year) {
        if day == 31 + 29 - 1 {
            return (2, 29);
        }
        if day > 31 + 29 - 1 {
            day -= 1;
        }
    }
    let mut month = (day / 31) as usize;
    let end = DAYS_BEFORE[month + 1];
    let begin = if day >= end {
        month += 1;
        end
    } else {
        DAYS_BEFORE[month]
    };
    (month as u32 + 1, day - begin + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Timelike};

    #[test]
    fn ordinary_times_agree_with_chrono() {
        let mut t = -5_000_000_000i64;
        while t < 5_000_000_000 {
            let ours = date(t as f64);
            let theirs = chrono::DateTime::from_timestamp(t, 0).unwrap();
            assert_eq!(ours.year, i64::from(theirs.year()), "{t}");
            assert_eq!(ours.month, theirs.month(), "{t}");
            assert_eq!(ours.day, theirs.day(), "{t}");
            assert_eq!(ours.day_of_year, theirs.ordinal(), "{t}");
            assert_eq!(ours.weekday, theirs.weekday().num_days_from_sunday(), "{t}");
            assert_eq!(ours.hour, theirs.hour(), "{t}");
            assert_eq!(ours.minute, theirs.minute(), "{t}");
            t += 86_399 * 7 + 3_607;
        }
    }

    #[test]
    fn out_of_range_values_land_where_prometheus_puts_them() {
        // What Prometheus 2.42 on amd64 answers for year/month/… of NaN (checked by the
        // evaluator corpus against the real server).
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e300] {
            let d = date(v);
            assert_eq!(
                (
                    d.year,
                    d.month,
                    d.day,
                    d.day_of_year,
                    d.weekday,
                    d.hour,
                    d.minute
                ),
                (292_277_026_596, 12, 4, 339, 0, 15, 30)
            );
            assert_eq!(d.days_in_month(), 31);
        }
    }
}
