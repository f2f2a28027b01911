//! What the regexes of one query may cost. Compiling a regex costs memory and time that grow
//! with repetition of large classes (`\w{100}` is megabytes), and a short query can hold a
//! thousand of them; each is compiled under its share of one per-query budget, off the async
//! threads (the caller's job), and a query whose regexes do not fit is refused with 400.

use super::lexer::{position, unquote, Kind, Token};
use super::SyntaxError;

/// Bytes of compiled programs (and, again, of lazy-DFA cache) one query's regexes may use.
pub const MAX_REGEX_BYTES: usize = 32 << 20;

/// The operators whose right-hand string is a regex: label matchers and line filters.
fn is_regex_operator(op: &str) -> bool {
    matches!(op, "=~" | "!~" | "|~")
}

/// The regex literals of a query, as (offset, pattern).
fn regex_literals(query: &str, tokens: &[Token]) -> Vec<(usize, String)> {
    tokens
        .windows(2)
        .filter(|w| {
            w[0].kind == Kind::Op
                && is_regex_operator(&query[w[0].start..w[0].end])
                && w[1].kind == Kind::Str
        })
        .filter_map(|w| {
            let pattern = unquote(&query[w[1].start..w[1].end]).ok()?;
            Some((w[1].start, pattern))
        })
        .collect()
}

/// Each regex's share of the budget for a query with these tokens.
pub fn share(query: &str, tokens: &[Token]) -> usize {
    share_of(MAX_REGEX_BYTES, query, tokens)
}

/// Each regex's share of `budget` for a query with these tokens.
pub fn share_of(budget: usize, query: &str, tokens: &[Token]) -> usize {
    budget / regex_literals(query, tokens).len().max(1)
}

/// How many regex literals a query holds (a request with several queries, such as `match[]`
/// values, splits one budget among all of them).
pub fn count(query: &str) -> usize {
    count_in(query, &super::lexer::tokenize(query))
}

/// [`count`] of a query already tokenized.
pub fn count_in(query: &str, tokens: &[Token]) -> usize {
    regex_literals(query, tokens).len()
}

/// Compiles a line-filter regex within `limit` bytes.
pub fn compile(pattern: &str, limit: usize) -> Result<regex::bytes::Regex, regex::Error> {
    regex::bytes::RegexBuilder::new(pattern)
        .size_limit(limit)
        .dfa_size_limit(limit)
        .build()
}

/// Refuses a query whose regexes do not fit the budget, before anything else compiles them
/// (promql-parser compiles label matchers with the regex crate's default 10 MB limit each).
/// Syntax errors are left to the parsers, which word them.
pub fn check(query: &str, tokens: &[Token]) -> Result<(), SyntaxError> {
    check_within(query, tokens, MAX_REGEX_BYTES)
}

/// As [`check`], within `budget` bytes (a query's part of a request's budget).
pub fn check_within(query: &str, tokens: &[Token], budget: usize) -> Result<(), SyntaxError> {
    let literals = regex_literals(query, tokens);
    let limit = budget / literals.len().max(1);
    for (offset, pattern) in &literals {
        if let Err(regex::Error::CompiledTooBig(_)) = compile(pattern, limit) {
            return Err(SyntaxError(format!(
                "{}: parse error: regex {pattern:?} is too large: the regexes of a request share {} MiB of compiled size, {limit} bytes each here",
                position(query, *offset),
                MAX_REGEX_BYTES >> 20,
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logql::lexer::tokenize;

    #[test]
    fn many_large_regexes_are_refused_quickly() {
        let query = format!("pod{{namespace=\"x\"}}{}", r#" |~ "\\w{100}""#.repeat(1000));
        let started = std::time::Instant::now();
        let err = check(&query, &tokenize(&query)).unwrap_err();
        assert!(err.to_string().contains("too large"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
        let one = r#"pod{namespace="x"} |~ "\\w{100}""#;
        assert!(check(one, &tokenize(one)).is_ok());
        let label = format!(
            "pod{{namespace=\"x\", pod=~\"{}\"}}",
            r"\\w{1000}".repeat(20)
        );
        assert!(check(&label, &tokenize(&label)).is_err());
    }
}
