//! Loki's pattern syntax, for the `| pattern "<ip> - <_> \"<method> <path>\""` parser and the
//! `|> "<_> error <_>"` / `!> …` line filters: literal text with captures (`<name>`, or `<_>`
//! to skip). Matching takes each literal's first occurrence after the previous one; no
//! backtracking, so a line costs one pass per literal.

/// One part of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Vec<u8>),
    /// A named capture; `None` for `<_>`.
    Capture(Option<String>),
}

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    parts: Vec<Part>,
}

impl Pattern {
    /// Parses a pattern for the `| pattern` parser: it must name at least one capture.
    pub fn for_parser(text: &str) -> Result<Pattern, String> {
        let p = Pattern::parse(text)?;
        if p.names().next().is_none() {
            return Err("at least one capture is required".into());
        }
        Ok(p)
    }

    /// Parses a pattern for a `|>` / `!>` line filter: captures are optional.
    pub fn for_filter(text: &str) -> Result<Pattern, String> {
        Pattern::parse(text)
    }

    fn parse(text: &str) -> Result<Pattern, String> {
        if text.is_empty() {
            return Err("an empty pattern".into());
        }
        let mut parts: Vec<Part> = Vec::new();
        let mut literal = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            // A capture is `<` followed by a label name or `_` and `>`; anything else is text.
            if let Some(name) = capture_at(rest) {
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                if matches!(parts.last(), Some(Part::Capture(_))) {
                    return Err("found consecutive capture: invalid expression".into());
                }
                let named = (name != "_").then(|| name.to_string());
                if let Some(n) = &named {
                    if parts.iter().any(|p| p == &Part::Capture(Some(n.clone()))) {
                        return Err(format!("duplicate capture name ({n}): invalid expression"));
                    }
                }
                parts.push(Part::Capture(named));
                rest = &rest[name.len() + 2..];
                continue;
            }
            let c = rest.chars().next().map_or(1, char::len_utf8);
            literal.extend_from_slice(&rest.as_bytes()[..c]);
            rest = &rest[c..];
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Pattern { parts })
    }

    /// The capture names, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Capture(Some(n)) => Some(n.as_str()),
            _ => None,
        })
    }

    /// The named captures of `line`: a leading literal must start the line; each capture ends
    /// at its next literal's first occurrence, or takes the rest of the line when that literal
    /// is missing (Loki's behaviour).
    pub fn captures<'p, 'l>(
        &'p self,
        mut line: &'l [u8],
        mut found: impl FnMut(&'p str, &'l [u8]),
    ) {
        if line.is_empty() {
            return;
        }
        let mut parts = self.parts.as_slice();
        if let Some(Part::Literal(l)) = parts.first() {
            if !line.starts_with(l) {
                return;
            }
            line = &line[l.len()..];
            parts = &parts[1..];
        }
        while let Some(Part::Capture(name)) = parts.first() {
            let Some(Part::Literal(next)) = parts.get(1) else {
                if let Some(n) = name {
                    found(n, line);
                }
                return;
            };
            parts = &parts[2..];
            match memchr::memmem::find(line, next) {
                Some(at) => {
                    if let Some(n) = name {
                        found(n, &line[..at]);
                    }
                    line = &line[at + next.len()..];
                }
                None => {
                    if let Some(n) = name {
                        found(n, line);
                    }
                    return;
                }
            }
        }
    }

    /// Whether `line` matches as a whole (the `|>` filter): every literal in order, no capture
    /// empty, a trailing literal ending the line and a trailing capture taking something.
    pub fn test(&self, line: &[u8]) -> bool {
        if line.is_empty() || self.parts.is_empty() {
            return line.is_empty() && self.parts.is_empty();
        }
        let mut offset = 0;
        for (i, part) in self.parts.iter().enumerate() {
            let Part::Literal(l) = part else { continue };
            let Some(at) = memchr::memmem::find(&line[offset..], l) else {
                return false;
            };
            if i != 0 && at == 0 {
                return false;
            }
            offset += at + l.len();
        }
        let ends_on_capture = matches!(self.parts.last(), Some(Part::Capture(_)));
        ends_on_capture == (offset != line.len())
    }
}

/// The name of the capture `<name>` that `text` starts with.
fn capture_at(text: &str) -> Option<&str> {
    let body = text.strip_prefix('<')?;
    let end = body.find('>')?;
    let name = &body[..end];
    let valid = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    valid.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn captured(pattern: &str, line: &str) -> Vec<String> {
        let p = Pattern::for_parser(pattern).unwrap();
        let mut out = Vec::new();
        p.captures(line.as_bytes(), |_, v| {
            out.push(String::from_utf8_lossy(v).into_owned())
        });
        out
    }

    /// Loki's fixtures (pkg/logql/log/pattern): same pattern, same line, same captures.
    #[test]
    fn captures_as_loki() {
        assert_eq!(captured("foo <foo> bar", "foo buzz bar"), ["buzz"]);
        assert_eq!(
            captured("foo <foo> bar<fuzz>", "foo buzz bar"),
            ["buzz", ""]
        );
        assert_eq!(captured("<foo> bar<fuzz>", " bar"), ["", ""]);
        assert_eq!(
            captured("<path>?<_>", "/api/plugins/versioncheck?slugIn=x&v=1"),
            ["/api/plugins/versioncheck"]
        );
        assert_eq!(
            captured("<path>?<_>", "/api/plugins/status"),
            ["/api/plugins/status"]
        );
        assert_eq!(
            captured(
                r#"<ip> <userid> <user> [<_>] "<method> <path> <_>" <status> <size>"#,
                r#"127.0.0.1 user-identifier frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#
            ),
            [
                "127.0.0.1",
                "user-identifier",
                "frank",
                "GET",
                "/apache_pb.gif",
                "200",
                "2326"
            ]
        );
        assert_eq!(
            captured(
                r#"<_> msg="<method> <path> (<status>) <duration>""#,
                r#"level=debug ts=2021-05-19T07:54:26.864644382Z caller=logging.go:66 traceID=7fbb92fd0eb9c65d msg="POST /loki/api/v1/push (204) 1.238734ms""#
            ),
            ["POST", "/loki/api/v1/push", "204", "1.238734ms"]
        );
        assert_eq!(
            captured(
                "<_>][<level>][<component>] [<id>] [<index>]",
                "[2021-05-19T06:54:06,994][INFO ][o.e.c.m.MetaDataMappingService] [1f605d47] [usage-stats] update_mapping [report]"
            ),
            ["INFO ", "o.e.c.m.MetaDataMappingService", "1f605d47", "usage-stats"]
        );
        assert!(captured("foo <x>", "bar baz").is_empty());
    }

    #[test]
    fn refuses_what_loki_refuses() {
        assert!(Pattern::for_parser("<f>").is_ok());
        assert!(Pattern::for_parser("<f> <a>").is_ok());
        for bad in [
            "",
            "<_>",
            "foo <_> bar <_>",
            "foo bar buzz",
            "<f><f>",
            "<f> f<d><b>",
            "<f> f<f>",
        ] {
            assert!(Pattern::for_parser(bad).is_err(), "{bad}");
        }
        assert!(Pattern::for_filter("<_> error <_>").is_ok());
        assert!(Pattern::for_filter("<_><_>").is_err());
    }

    #[test]
    fn whole_line_test_as_loki() {
        let t = |p: &str, l: &str| Pattern::for_filter(p).unwrap().test(l.as_bytes());
        assert!(!t("<_> bar", "foo bar baz"));
        assert!(t("<_> baz", "foo bar baz"));
        assert!(t("foo <_>", "foo bar baz"));
        assert!(!t("<_> bar <_>", " bar "));
        assert!(t("<_> level=error <_>", "ts=1 level=error msg=x"));
        assert!(!t("<_> level=error <_>", "ts=1 level=info msg=x"));
    }
}
