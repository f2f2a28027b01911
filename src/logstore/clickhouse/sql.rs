//! SQL text from a parsed query: every literal quoted here (18.16 has no server-side
//! parameters), selectors and line filters pushed down where ClickHouse computes exactly what
//! Janus does, left to Janus (which checks every row again anyway) where it might not.

use promql_parser::label::MatchOp;

use crate::logql::{LineFilter, LogKind, LogQuery};

/// A string literal: `\` and `'` escaped, and the bytes a reader could trip on (NUL, newline)
/// written as escapes.
pub fn quote(text: &str) -> String {
    quote_bytes(text.as_bytes())
}

/// A string literal of arbitrary bytes (a filter's literal need not be UTF-8).
pub fn quote_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('\'');
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            b'\'' => out.push_str("\\'"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0 => out.push_str("\\0"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02X}")),
        }
    }
    out.push('\'');
    out
}

/// A `LIKE` pattern that matches lines containing `needle` anywhere: `%`, `_` and `\` escaped.
pub fn like_containing(needle: &[u8]) -> String {
    let mut pattern = Vec::with_capacity(needle.len() + 2);
    pattern.push(b'%');
    for &b in needle {
        if matches!(b, b'%' | b'_' | b'\\') {
            pattern.push(b'\\');
        }
        pattern.push(b);
    }
    pattern.push(b'%');
    quote_bytes(&pattern)
}

/// Whether ClickHouse's RE2 reads `pattern` as Rust's `regex` does. Only plain ASCII patterns
/// whose classes and flags mean the same in both qualify: Unicode-aware shorthands (`\w`, `\b`,
/// `\d`, `\s`, `\p{…}`), POSIX classes and flags other than `i` and `s` differ in corner
/// cases, so those stay in Janus.
pub fn same_in_re2(pattern: &str) -> bool {
    if !pattern.is_ascii() || pattern.contains("[[:") || pattern.contains("[^[:") {
        return false;
    }
    let bytes = pattern.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => {
                let Some(&next) = bytes.get(i + 1) else {
                    return false;
                };
                if matches!(
                    next,
                    b'w' | b'W'
                        | b'b'
                        | b'B'
                        | b'd'
                        | b'D'
                        | b's'
                        | b'S'
                        | b'p'
                        | b'P'
                        | b'x'
                        | b'u'
                        | b'U'
                        | b'z'
                        | b'Q'
                        | b'E'
                        | b'C'
                        | b'<'
                        | b'>'
                ) || next.is_ascii_digit()
                {
                    return false;
                }
                i += 2;
                continue;
            }
            b'(' if bytes.get(i + 1) == Some(&b'?') => {
                // Flags: only `i` and `s`, as a group `(?i:…)` or at the very start `(?i)`.
                let mut j = i + 2;
                while let Some(&f) = bytes.get(j) {
                    match f {
                        b'i' | b's' => j += 1,
                        b':' => break,
                        b')' if i == 0 => break,
                        _ => return false,
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    true
}

/// `pattern` as RE2 on 18.16 reads it: a leading `(?i)X` is ignored there, `(?i:X)` is not.
pub fn re2_pattern(pattern: &str) -> String {
    for flags in ["(?i)", "(?s)", "(?is)", "(?si)"] {
        if let Some(rest) = pattern.strip_prefix(flags) {
            return format!("(?{}:{rest})", &flags[2..flags.len() - 1]);
        }
    }
    pattern.to_string()
}

/// The column holding a stream label: the target (namespace, node) and the two fields.
pub fn column(field: usize) -> &'static str {
    match field {
        0 => "target",
        1 => "stream",
        _ => "container",
    }
}

/// One label matcher as SQL, `None` when it stays in Janus. Regexes are anchored as Prometheus
/// anchors them (`^(?:re)$`).
fn matcher(col: &str, op: &MatchOp, value: &str) -> Option<String> {
    match op {
        MatchOp::Equal => Some(format!("{col} = {}", quote(value))),
        MatchOp::NotEqual => Some(format!("{col} != {}", quote(value))),
        MatchOp::Re(_) | MatchOp::NotRe(_) => {
            if !same_in_re2(value) {
                return None;
            }
            let anchored = format!("^(?:{})$", re2_pattern(value));
            let test = format!("match({col}, {})", quote(&anchored));
            Some(if matches!(op, MatchOp::Re(_)) {
                test
            } else {
                format!("NOT {test}")
            })
        }
    }
}

/// One line filter as SQL over the `line` column, `None` when it stays in Janus.
fn line_filter(filter: &LineFilter) -> Option<String> {
    let any = |needles: &[memchr::memmem::Finder<'static>]| {
        let parts: Vec<String> = needles
            .iter()
            .map(|f| format!("line LIKE {}", like_containing(f.needle())))
            .collect();
        format!("({})", parts.join(" OR "))
    };
    match filter {
        LineFilter::Contains(f) => Some(format!("line LIKE {}", like_containing(f.needle()))),
        LineFilter::NotContains(f) => {
            Some(format!("line NOT LIKE {}", like_containing(f.needle())))
        }
        LineFilter::ContainsAny(fs) => Some(any(fs)),
        LineFilter::ContainsNone(fs) => Some(format!("NOT {}", any(fs))),
        LineFilter::Matches(re) if same_in_re2(re.as_str()) => {
            Some(format!("match(line, {})", quote(&re2_pattern(re.as_str()))))
        }
        LineFilter::NotMatches(re) if same_in_re2(re.as_str()) => Some(format!(
            "NOT match(line, {})",
            quote(&re2_pattern(re.as_str()))
        )),
        _ => None,
    }
}

/// The `WHERE` conditions of a query over `[lo, hi]`, and whether they are the whole query (no
/// condition left to Janus, no pipeline): then ClickHouse's count or `LIMIT` is the answer's.
pub fn conditions(query: &LogQuery, lo: i64, hi: i64) -> (Vec<String>, bool) {
    let mut out = vec![kind_condition(query.kind)];
    out.push(format!("ts >= {lo} AND ts <= {hi}"));
    let mut whole = query.pipeline.is_empty();
    for m in &query.targets {
        match matcher("target", &m.op, &m.value) {
            Some(c) => out.push(c),
            None => whole = false,
        }
    }
    for f in &query.fields {
        match matcher(column(f.field), &f.matcher.op, &f.matcher.value) {
            Some(c) => out.push(c),
            None => whole = false,
        }
    }
    for f in &query.filters {
        match line_filter(f) {
            Some(c) => out.push(c),
            None => whole = false,
        }
    }
    (out, whole)
}

pub fn kind_condition(kind: LogKind) -> String {
    format!("kind = {}", quote(kind.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_escaped() {
        assert_eq!(quote("a'b\\c\n"), "'a\\'b\\\\c\\n'");
        assert_eq!(quote_bytes(&[0xff, 0]), "'\\xFF\\0'");
        assert_eq!(like_containing(b"50%_a\\"), "'%50\\\\%\\\\_a\\\\\\\\%'");
    }

    #[test]
    fn only_regexes_re2_reads_alike_are_pushed_down() {
        assert!(same_in_re2("err(or)?|fail.*"));
        assert!(same_in_re2("(?i)timeout"));
        assert!(same_in_re2("a(?i:b)c"));
        assert!(!same_in_re2("\\w+"));
        assert!(!same_in_re2("\\bword"));
        assert!(!same_in_re2("ünï"));
        assert!(!same_in_re2("(?m)^x"));
        assert!(!same_in_re2("[[:alpha:]]"));
        assert_eq!(re2_pattern("(?i)hello"), "(?i:hello)");
        assert_eq!(re2_pattern("a(?i)b"), "a(?i)b");
    }
}
