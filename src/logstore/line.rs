//! One stored log line: `<RFC 3339 time>[<field>|<field>…] <message>`.
//!
//! Parsed on bytes, without allocating, because the scanner calls this for every candidate line.

/// The parts of a line, borrowed from the block it was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// The line's time, nanoseconds since 1970, read from its RFC 3339 prefix.
    pub ts: i64,
    /// The timestamp exactly as written (Lethe answers it verbatim).
    pub time_text: &'a [u8],
    /// The bracket fields, up to three (pod: namespace, pod, container; node: node, process).
    pub fields: [&'a [u8]; 3],
    /// How many bracket fields the line has (3 for pod lines, 2 for node lines).
    pub field_count: usize,
    /// The message after the closing bracket and its space.
    pub message: &'a [u8],
}

/// Parses a whole line (without its `\n`). `None` for anything that is not a log line.
pub fn parse(line: &[u8]) -> Option<Line<'_>> {
    parse_with(line, &mut TimestampCache::default())
}

/// As [`parse`], reusing the date and hour of the previous line `cache` saw (scans read a block
/// of one hour file line after line).
pub fn parse_with<'l>(line: &'l [u8], cache: &mut TimestampCache) -> Option<Line<'l>> {
    let open = memchr::memchr(b'[', line)?;
    let time_text = &line[..open];
    let ts = cache.parse(time_text)?;
    let rest = &line[open + 1..];
    let close = memchr::memchr(b']', rest)?;
    let mut fields: [&[u8]; 3] = [&[], &[], &[]];
    let mut field_count = 0;
    for field in rest[..close].split(|&b| b == b'|') {
        if field_count == 3 {
            return None;
        }
        fields[field_count] = field;
        field_count += 1;
    }
    let after = &rest[close + 1..];
    // Exactly one space separates the fields from the message; tolerate its absence.
    let message = after.strip_prefix(b" ").unwrap_or(after);
    Some(Line {
        ts,
        time_text,
        fields,
        field_count,
        message,
    })
}

/// Just the timestamp of a line (what the index needs), in nanoseconds since the epoch.
pub fn timestamp_of(line: &[u8], cache: &mut TimestampCache) -> Option<i64> {
    let open = memchr::memchr(b'[', &line[..line.len().min(64)])?;
    cache.parse(&line[..open])
}

fn digits(b: &[u8]) -> Option<i64> {
    let mut v: i64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(v)
}

/// Remembers the date and hour of the last timestamp parsed, because consecutive lines of an
/// hour file share them: the index builder then parses only minutes, seconds and fraction.
#[derive(Debug, Default)]
pub struct TimestampCache {
    prefix: [u8; 13],
    /// Nanoseconds of `prefix` (UTC lines only; others take the full path).
    base: i64,
    valid: bool,
}

impl TimestampCache {
    /// The time of an RFC 3339 timestamp, reusing the date part when it is the previous line's.
    pub fn parse(&mut self, t: &[u8]) -> Option<i64> {
        // Fast path: same `YYYY-MM-DDTHH`, then `:MM:SS[.frac]Z`.
        if self.valid && t.len() >= 20 && t[..13] == self.prefix && t[t.len() - 1] == b'Z' {
            if let Some(rest) = parse_minute_second_fraction(&t[13..t.len() - 1]) {
                return Some(self.base + rest);
            }
        }
        let ts = parse_timestamp(t)?;
        if t.len() >= 20 && t[t.len() - 1] == b'Z' {
            if let Some(rest) = parse_minute_second_fraction(&t[13..t.len() - 1]) {
                self.prefix.copy_from_slice(&t[..13]);
                self.base = ts - rest;
                self.valid = true;
            }
        }
        Some(ts)
    }
}

/// `:MM:SS[.fraction]` → nanoseconds into the hour.
fn parse_minute_second_fraction(t: &[u8]) -> Option<i64> {
    if t.len() < 6 || t[0] != b':' || t[3] != b':' {
        return None;
    }
    let minute = digits(&t[1..3])?;
    let second = digits(&t[4..6])?;
    if minute > 59 || second > 60 {
        return None;
    }
    let mut nanos = 0i64;
    if t.len() > 6 {
        if t[6] != b'.' || t.len() == 7 {
            return None;
        }
        let frac = &t[7..];
        for (i, &c) in frac.iter().enumerate() {
            if !c.is_ascii_digit() {
                return None;
            }
            if i < 9 {
                nanos = nanos * 10 + i64::from(c - b'0');
            }
        }
        for _ in frac.len().min(9)..9 {
            nanos *= 10;
        }
    }
    Some((minute * 60 + second) * 1_000_000_000 + nanos)
}

/// RFC 3339: `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, to nanoseconds.
pub fn parse_timestamp(t: &[u8]) -> Option<i64> {
    if t.len() < 20 || t[4] != b'-' || t[7] != b'-' || !matches!(t[10], b'T' | b't') {
        return None;
    }
    if t[13] != b':' || t[16] != b':' {
        return None;
    }
    let year = digits(&t[0..4])?;
    let month = digits(&t[5..7])?;
    let day = digits(&t[8..10])?;
    let hour = digits(&t[11..13])?;
    let minute = digits(&t[14..16])?;
    let second = digits(&t[17..19])?;
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut nanos: i64 = 0;
    if t[i] == b'.' {
        i += 1;
        let start = i;
        while i < t.len() && t[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + i64::from(t[i] - b'0');
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..9 {
            nanos *= 10;
        }
    }
    let offset_seconds = match t.get(i..)? {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = digits(&[*h1, *h2])?;
            let m = digits(&[*m1, *m2])?;
            if h > 23 || m > 59 {
                return None;
            }
            let s = h * 3600 + m * 60;
            if *sign == b'+' {
                s
            } else {
                -s
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    seconds.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Days in a month of the proleptic Gregorian calendar, for checking timestamps.
pub fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A line's stream labels (its bracket fields by name), for the pipeline.
pub fn stream_labels<'l>(
    kind: crate::logql::LogKind,
    line: &'l Line<'_>,
) -> Vec<(&'static str, std::borrow::Cow<'l, str>)> {
    kind.labels()
        .iter()
        .zip(&line.fields[..line.field_count])
        .map(|(name, value)| (*name, String::from_utf8_lossy(value)))
        .collect()
}

/// Whether a stored line belongs to a query's answer: its fields match the field matchers, its
/// message passes the line filters (`filters`, cheapest first: [`LogQuery::filters_by_cost`])
/// and the pipeline keeps it. `Some(true)` when the pipeline ran (`outcome` holds what it
/// extracted), `Some(false)` when there is no pipeline, `None` when the line is not wanted. The
/// target and the window are the caller's: a backend chooses them before reading lines.
/// `stream_values`: whether a stage reads the stream labels' values
/// ([`crate::logql::pipeline::Pipeline::reads_stream_values`]).
///
/// [`LogQuery::filters_by_cost`]: crate::logql::LogQuery::filters_by_cost
#[inline]
pub fn passes(
    query: &crate::logql::LogQuery,
    filters: &[crate::logql::LineFilter],
    stream_values: bool,
    l: &Line<'_>,
    outcome: &mut crate::logql::pipeline::Outcome,
) -> Option<bool> {
    if l.field_count != query.kind.labels().len() {
        return None;
    }
    for m in &query.fields {
        match std::str::from_utf8(l.fields[m.field]) {
            Ok(v) if m.matches(v) => {}
            _ => return None,
        }
    }
    if !filters.iter().all(|f| f.matches(l.message)) {
        return None;
    }
    let pipeline = &query.pipeline;
    if pipeline.is_empty() {
        return Some(false);
    }
    // Parsers and label filters run on the lines the filters let through.
    let names = query.kind.labels();
    let mut pairs = [("", ""); 3];
    let mut lossy = Vec::new();
    for (n, field) in l.fields[..l.field_count.min(3)].iter().enumerate() {
        if !stream_values {
            // No stage reads them: the names are enough.
            pairs[n] = (names[n], "");
            continue;
        }
        match std::str::from_utf8(field) {
            Ok(text) => pairs[n] = (names[n], text),
            Err(_) => lossy.push((n, String::from_utf8_lossy(field).into_owned())),
        }
    }
    for (n, text) in &lossy {
        pairs[*n] = (names[*n], text.as_str());
    }
    // One outcome serves many lines: its buffers are reused.
    pipeline
        .run_into(&pairs[..l.field_count.min(3)], l.message, l.ts, outcome)
        .then_some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chrono_ns(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_nanos_opt()
            .unwrap()
    }

    #[test]
    fn timestamps_agree_with_chrono() {
        for s in [
            "2009-11-10T22:56:00.000000Z",
            "2024-09-24T15:00:01Z",
            "2000-02-29T23:59:59.999999999Z",
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.5Z",
            "2024-01-01T01:00:00+01:00",
            "2024-01-01T01:00:00.123-05:30",
        ] {
            assert_eq!(parse_timestamp(s.as_bytes()), Some(chrono_ns(s)), "{s}");
        }
        for bad in [
            "0000-00-00T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-01-01 00:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T24:00:00Z",
            "lorem",
        ] {
            assert_eq!(parse_timestamp(bad.as_bytes()), None, "{bad}");
        }
    }

    #[test]
    fn the_cache_agrees_with_the_full_parser() {
        let mut cache = TimestampCache::default();
        for s in [
            "2024-01-01T00:00:00Z",
            "2024-01-01T00:59:59.5Z",
            "2024-01-01T00:10:00.123456789Z",
            "2024-01-01T00:10:00.1234567891Z",
            "2024-01-01T01:00:00+01:00",
            "2024-01-01T00:10:00Z",
            "2024-01-01T00:61:00Z",
            "2024-01-01T00:10:00.Z",
            "2024-01-02T00:00:00Z",
        ] {
            assert_eq!(
                cache.parse(s.as_bytes()),
                parse_timestamp(s.as_bytes()),
                "{s}"
            );
        }
    }

    #[test]
    fn splits_pod_and_node_lines() {
        let l = parse(b"2024-09-24T15:00:01Z[ns|pod-1|c] hello [x] world").unwrap();
        assert_eq!(l.time_text, b"2024-09-24T15:00:01Z");
        assert_eq!(l.field_count, 3);
        assert_eq!(&l.fields[..3], [&b"ns"[..], b"pod-1", b"c"]);
        assert_eq!(l.message, b"hello [x] world");
        let l = parse(b"2024-09-24T15:00:01Z[node01|kubelet] a").unwrap();
        assert_eq!(
            (l.field_count, l.fields[1], l.message),
            (2, &b"kubelet"[..], &b"a"[..])
        );
        let l = parse(b"2024-09-24T15:00:01Z[n|p]").unwrap();
        assert_eq!(l.message, b"");
        assert!(parse(b"lorem").is_none());
        assert!(parse(b"2024-09-24T15:00:01Z[a|b|c|d] x").is_none());
        assert!(parse(b"2024-09-24T15:00:01Z[a|b").is_none());
    }
}
