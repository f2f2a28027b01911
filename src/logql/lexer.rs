//! A small PromQL-aware tokenizer: enough to tell log queries from metric queries, and to split
//! a LetheQL pipeline (`|= "x"`, which PromQL's lexer cannot read) from its selector.
//!
//! It knows strings (double, single, back quotes, with escapes), `#` comments and brackets, so a
//! `pod{` or `|=` inside a string or a comment never turns a metric query into a log query.

/// One token with its byte span in the query.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Ident,
    /// A string literal, still quoted; [`unquote`] decodes it.
    Str,
    Number,
    LBrace,
    RBrace,
    LBracket,
    RBracket,
    LParen,
    RParen,
    Comma,
    /// `|=` `|~` `!=` `!~` `=~` `=` `==` and the other operators.
    Op,
    /// A string that never ends; the lexer stops there.
    Unterminated,
    /// The rest of a query past [`MAX_TOKENS`]; the lexer stops there.
    TooMany,
}

/// Tokens of one query Janus lexes, routes or parses. A parsed tree costs about 100 bytes per
/// token (a flat selector of a million matchers took 390 MB), so this bounds what one query's
/// parse can take (~10 MB) and what routing one costs, whatever the body size. Dashboards'
/// queries have hundreds; a long regex alternation is one token.
pub const MAX_TOKENS: usize = 100_000;

/// Refuses a query the lexer stopped reading at [`MAX_TOKENS`].
pub fn refuse_too_many(query: &str, tokens: &[Token]) -> Result<(), super::SyntaxError> {
    match tokens.last() {
        Some(t) if t.kind == Kind::TooMany => Err(super::SyntaxError(format!(
            "{}: parse error: the query has more than {MAX_TOKENS} tokens (names, numbers, strings, operators), more than Janus parses",
            position(query, t.start)
        ))),
        _ => Ok(()),
    }
}

/// Splits a query into tokens, skipping white space and comments.
pub fn tokenize(query: &str) -> Vec<Token> {
    let bytes = query.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let kind = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'"' | b'\'' | b'`' => match string_end(bytes, i) {
                Some(end) => {
                    i = end;
                    Kind::Str
                }
                None => {
                    tokens.push(Token {
                        kind: Kind::Unterminated,
                        start,
                        end: bytes.len(),
                    });
                    break;
                }
            },
            b'{' => single(&mut i, Kind::LBrace),
            b'}' => single(&mut i, Kind::RBrace),
            b'[' => single(&mut i, Kind::LBracket),
            b']' => single(&mut i, Kind::RBracket),
            b'(' => single(&mut i, Kind::LParen),
            b')' => single(&mut i, Kind::RParen),
            b',' => single(&mut i, Kind::Comma),
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b':')
                {
                    i += 1;
                }
                Kind::Ident
            }
            c if c.is_ascii_digit() || c == b'.' => {
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.' || bytes[i] == b'_')
                {
                    i += 1;
                }
                Kind::Number
            }
            _ => {
                // Two-character operators first, then any other single character.
                let two = bytes.get(i..i + 2);
                i += match two {
                    Some(b"|=" | b"|~" | b"!=" | b"!~" | b"=~" | b"==" | b"<=" | b">=") => 2,
                    _ => query[i..].chars().next().map_or(1, char::len_utf8),
                };
                Kind::Op
            }
        };
        if tokens.len() == MAX_TOKENS {
            tokens.push(Token {
                kind: Kind::TooMany,
                start,
                end: bytes.len(),
            });
            break;
        }
        tokens.push(Token {
            kind,
            start,
            end: i,
        });
    }
    tokens
}

fn single(i: &mut usize, kind: Kind) -> Kind {
    *i += 1;
    kind
}

/// The index just past the closing quote of the string starting at `start`.
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    let quote = bytes[start];
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote != b'`' => i += 2,
            b if b == quote => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The names that start a log selector.
pub const LOG_SELECTORS: [&str; 2] = ["pod", "node"];

/// True when the query involves logs: a `pod{…}`/`node{…}` selector outside any braces, or a
/// `|=`/`|~` line filter, outside strings and comments. Everything else is the upstream's.
pub fn involves_logs(query: &str) -> bool {
    tokens_involve_logs(query, &tokenize(query))
}

/// Which API a query came in by: the two read `{…}` differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// The Prometheus API: `{…}` is a metric selector unless a pipeline stage follows it or it
    /// names `job="pod"`/`job="node"` (Lethe's way of naming a log selector).
    Prometheus,
    /// The Loki API: every `{…}` is a LogQL stream selector.
    Loki,
}

/// As [`involves_logs`], over the query's tokens already made.
pub fn tokens_involve_logs(query: &str, tokens: &[Token]) -> bool {
    // A query read only up to `MAX_TOKENS` may hold a log selector further on: the log side's
    // parsers refuse it, rather than the upstream answering it as if it had none.
    tokens.last().is_some_and(|t| t.kind == Kind::TooMany)
        || first_log_selector(query, tokens).is_some()
        || stream_selector_positions(query, tokens, Dialect::Prometheus)
            .next()
            .is_some()
        || tokens
            .iter()
            .any(|t| t.kind == Kind::Op && matches!(&query[t.start..t.end], "|=" | "|~"))
}

/// Whether token `i` (outside braces) starts a log selector: `pod` or `node` followed by `{`.
pub fn starts_log_selector(query: &str, tokens: &[Token], i: usize) -> bool {
    let t = &tokens[i];
    t.kind == Kind::Ident
        && LOG_SELECTORS.contains(&&query[t.start..t.end])
        && tokens.get(i + 1).is_some_and(|n| n.kind == Kind::LBrace)
}

/// Whether token `i` (a `{` outside braces) opens a LogQL stream selector `{namespace="…"}` in
/// `dialect`: not a metric name's braces, and on the Prometheus API followed by a pipeline stage
/// or naming `job="pod"`/`job="node"`.
pub fn starts_stream_selector(query: &str, tokens: &[Token], i: usize, dialect: Dialect) -> bool {
    let text = |t: &Token| &query[t.start..t.end];
    if tokens[i].kind != Kind::LBrace {
        return false;
    }
    // `name{…}` is a metric (or `pod{…}`/`node{…}`) selector's braces.
    if i > 0 && tokens[i - 1].kind == Kind::Ident {
        return false;
    }
    if dialect == Dialect::Loki {
        return true;
    }
    let Some(close) = (i + 1..tokens.len()).find(|&j| tokens[j].kind == Kind::RBrace) else {
        return false;
    };
    let names_a_log_kind = tokens[i + 1..close].windows(3).any(|w| {
        w[0].kind == Kind::Ident
            && text(&w[0]) == "job"
            && text(&w[1]) == "="
            && w[2].kind == Kind::Str
            && matches!(&text(&w[2])[1..text(&w[2]).len() - 1], "pod" | "node")
    });
    let stage_follows = match (tokens.get(close + 1), tokens.get(close + 2)) {
        (Some(op), next) if op.kind == Kind::Op => match text(op) {
            "|=" | "|~" | "!~" => true,
            "!=" => next.is_some_and(|n| n.kind == Kind::Str),
            "|" => next.is_some_and(|n| {
                n.kind == Kind::Ident
                    || (n.kind == Kind::LParen)
                    || (&query[n.start..n.end] == ">" && n.start == op.end)
            }),
            "!" => next.is_some_and(|n| &query[n.start..n.end] == ">" && n.start == op.end),
            _ => false,
        },
        _ => false,
    };
    names_a_log_kind || stage_follows
}

/// Token indexes of the stream selectors outside braces.
fn stream_selector_positions<'a>(
    query: &'a str,
    tokens: &'a [Token],
    dialect: Dialect,
) -> impl Iterator<Item = usize> + 'a {
    let mut depth = 0usize;
    (0..tokens.len()).filter(move |&i| {
        let opens = depth == 0 && starts_stream_selector(query, tokens, i, dialect);
        match tokens[i].kind {
            Kind::LBrace => depth += 1,
            Kind::RBrace => depth = depth.saturating_sub(1),
            _ => {}
        }
        opens
    })
}

/// The first `pod{`/`node{` selector name outside braces: its token.
pub fn first_log_selector<'t>(query: &str, tokens: &'t [Token]) -> Option<&'t Token> {
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate() {
        match t.kind {
            Kind::LBrace => depth += 1,
            Kind::RBrace => depth = depth.saturating_sub(1),
            _ if depth == 0 && starts_log_selector(query, tokens, i) => return Some(t),
            _ => {}
        }
    }
    None
}

/// Decodes a PromQL string literal (Go syntax): `"…"` and `'…'` with escapes, `` `…` `` raw —
/// promql-parser's own decoding, so that a log pipeline's strings read exactly as the
/// expression's do.
pub fn unquote(literal: &str) -> Result<String, String> {
    promql_parser::util::unquote_string(literal)
        .map_err(|e| format!("{e} in string literal {literal}"))
}

/// `line:column` (1-based, columns in bytes as Prometheus counts them) of a byte offset.
pub fn position(query: &str, offset: usize) -> String {
    let before = &query.as_bytes()[..offset.min(query.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    format!("{}:{}", line, offset.min(query.len()) - line_start + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_log_queries() {
        for q in [
            r#"pod{namespace="x"}"#,
            r#"node {node="n"}"#,
            r#"pod{namespace="x"} |= "a""#,
            r#"rate(pod{namespace="x"}[5m])"#,
            r#"sum(rate(pod{namespace="x"} |~ "e" [5m])) / sum(rate(http_requests_total[5m]))"#,
            r#"up |= "x""#,
        ] {
            assert!(involves_logs(q), "{q}");
        }
    }

    #[test]
    fn leaves_metric_queries_alone() {
        for q in [
            "up",
            r#"up{pod="x"}"#,
            r#"kube_pod{namespace="x"}"#,
            r#"pods{namespace="x"}"#,
            r#"up{job="pod{x}"}"#,
            r#"label_replace(up, "pod", "$1", "instance", "(.*)")"#,
            r#"up{job="a |= b"}"#,
            "sum by (pod, node) (up) # pod{namespace=\"x\"} |= \"y\"",
            r#"up != 1"#,
            r#"up{a!~"x"}"#,
            "`pod{` + up",
            r#"holt_winters(x[5m], 0.5, 0.5)"#,
            r#"WITH (x = up) x"#,
            "sum(up) by (node)",
        ] {
            assert!(!involves_logs(q), "{q}");
        }
    }

    #[test]
    fn unquotes_go_strings() {
        assert_eq!(unquote(r#""a\"b\n""#).unwrap(), "a\"b\n");
        assert_eq!(unquote(r"'it\'s'").unwrap(), "it's");
        assert_eq!(unquote(r"`a\d+`").unwrap(), r"a\d+");
        assert_eq!(unquote(r#""\x41\u00e9\101""#).unwrap(), "AéA");
        assert!(unquote(r#""\q""#).is_err());
        assert!(unquote(r#""\x4""#).is_err());
    }

    #[test]
    fn tokens_and_positions() {
        let q = "pod{a=\"x\"} |= \"y\"\n  != 'z'";
        let kinds: Vec<_> = tokenize(q).into_iter().map(|t| t.kind).collect();
        assert_eq!(
            kinds,
            [
                Kind::Ident,
                Kind::LBrace,
                Kind::Ident,
                Kind::Op,
                Kind::Str,
                Kind::RBrace,
                Kind::Op,
                Kind::Str,
                Kind::Op,
                Kind::Str
            ]
        );
        assert_eq!(position(q, 0), "1:1");
        assert_eq!(position(q, q.find("!=").unwrap()), "2:3");
        assert_eq!(
            tokenize("up{a=\"x").last().unwrap().kind,
            Kind::Unterminated
        );
    }

    #[test]
    fn the_lexer_stops_at_max_tokens_and_the_query_is_refused() {
        // 2 + 4 × 24,999 tokens for the selector, 2 for `+ 1`.
        let at_bound = format!("up{{{}}} + 1", vec!["a=\"x\""; 24_999].join(","));
        let tokens = tokenize(&at_bound);
        assert_eq!(tokens.len(), MAX_TOKENS);
        assert!(refuse_too_many(&at_bound, &tokens).is_ok());
        let over = format!("{at_bound} + pod{{namespace=\"x\"}}");
        let tokens = tokenize(&over);
        assert_eq!(tokens.len(), MAX_TOKENS + 1);
        let refusal = refuse_too_many(&over, &tokens).unwrap_err().0;
        assert!(refusal.contains("more than 100000 tokens"), "{refusal}");
        // Unread, it may hold a log selector: routed to the parsers that refuse it.
        assert!(tokens_involve_logs(&over, &tokens));
    }
}
