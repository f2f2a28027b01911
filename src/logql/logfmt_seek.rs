//! `| logfmt` when only a few labels are wanted and they come late in the line: instead of
//! tokenizing every pair before them, each wanted key's bytes (` status=`) are searched for
//! (`memchr::memmem`), the position is checked to be a key as the tokenizer would see it — at
//! the line's start or after whitespace, outside any quoted value — and only that value is read.
//! Quoted values before it are stepped over by their quotes (`memchr`), with the tokenizer's own
//! rules for where a quote opens and closes; anything the check cannot decide exactly as the
//! tokenizer would (a quote where it is unclear whether it opens a value, an unclosed quote, a
//! key that is not found) sends the line to the tokenizer. The outcome is the tokenizer's:
//! the same labels, the same first-key-wins rule, the same point where it stops reading.

use memchr::memmem::Finder;

use super::parsers::push_lossy;

/// One wanted key: `key=` to search for.
#[derive(Debug, Clone)]
pub struct Seek {
    pub name: String,
    finder: Finder<'static>,
    /// `key=`'s length.
    len: usize,
}

impl Seek {
    pub fn new(name: &str) -> Self {
        Seek {
            name: name.to_string(),
            finder: Finder::new(format!("{name}=").as_bytes()).into_owned(),
            len: name.len() + 1,
        }
    }
}

/// Where a wanted key's value is, as the tokenizer would read it.
pub struct Found<'m> {
    /// The value's bytes (between the quotes when quoted).
    pub raw: &'m [u8],
    /// It holds a backslash escape (quoted values only).
    pub escaped: bool,
    /// Where the tokenizer would stop after this value (see `Outcome::stopped_at`): after the
    /// closing quote, or after the whitespace that ended a bare value; `None` at the line's end.
    pub stop: Option<usize>,
}

/// The value of `seek`'s key in `message`, or `None` when only the tokenizer can tell.
pub fn find<'m>(message: &'m [u8], seek: &Seek) -> Option<Found<'m>> {
    read_value(message, key_position(message, seek)? + seek.len)
}

/// The first `key=` at a token's start (the line's, or after whitespace) outside quoted values.
fn key_position(message: &[u8], seek: &Seek) -> Option<usize> {
    let mut outside_from = 0; // everything before this is known to be outside quotes
    let mut search_from = 0;
    loop {
        let candidate = search_from + seek.finder.find(&message[search_from..])?;
        // Inside a token (`xkey=`, `a=key=`): not a key.
        if candidate > 0 && !message[candidate - 1].is_ascii_whitespace() {
            search_from = candidate + 1;
            continue;
        }
        match quotes_between(message, outside_from, candidate)? {
            None => return Some(candidate),
            // The candidate was inside a quoted value: search again after it.
            Some(closed) => {
                outside_from = closed + 1;
                search_from = (candidate + 1).max(closed + 1);
            }
        }
    }
}

/// Steps over the quoted values that open in `from..to` (outside quotes at `from`):
/// `Some(None)` when `to` is outside quotes, `Some(Some(close))` when a value opened before
/// `to` closes at `close >= to`, `None` when only the tokenizer can tell.
fn quotes_between(message: &[u8], mut from: usize, to: usize) -> Option<Option<usize>> {
    while let Some(q) = memchr::memchr(b'"', &message[from..to]).map(|q| from + q) {
        // A quote opens a value only right after the first `=` of a token with a key.
        if q == 0 || message[q - 1] != b'=' {
            return None;
        }
        let eq = q - 1;
        let token_start = message[..eq]
            .iter()
            .rposition(u8::is_ascii_whitespace)
            .map_or(0, |s| s + 1);
        let token = &message[token_start..eq];
        if token.is_empty() || memchr::memchr2(b'=', b'"', token).is_some() {
            return None;
        }
        let close = closing_quote(message, q + 1)?;
        // The tokenizer starts the next key right after a closing quote, space or not; the
        // search sees keys after spaces only.
        if message
            .get(close + 1)
            .is_some_and(|b| !b.is_ascii_whitespace())
        {
            return None;
        }
        if close >= to {
            return Some(Some(close));
        }
        from = close + 1;
    }
    Some(None)
}

/// The quote that closes a value opened before `from`, stepping over `\x` escapes as the
/// tokenizer does; `None` when the line ends first (the tokenizer marks it malformed).
fn closing_quote(message: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let at = from + memchr::memchr2(b'"', b'\\', message.get(from..)?)?;
        if message[at] == b'"' {
            return Some(at);
        }
        from = at + 2;
    }
}

fn read_value(message: &[u8], at: usize) -> Option<Found<'_>> {
    let n = message.len();
    if message.get(at) == Some(&b'"') {
        let close = closing_quote(message, at + 1)?;
        let raw = &message[at + 1..close];
        return Some(Found {
            raw,
            escaped: memchr::memchr(b'\\', raw).is_some(),
            stop: Some(close + 1),
        });
    }
    let end = message[at..]
        .iter()
        .position(u8::is_ascii_whitespace)
        .map_or(n, |p| at + p);
    Some(Found {
        raw: &message[at..end],
        escaped: false,
        stop: (end < n).then_some(end + 1),
    })
}

/// Copies a found value into a label's text.
pub fn copy(found: &Found<'_>, unescape: fn(&[u8]) -> String, v: &mut String) {
    if found.escaped {
        v.push_str(&unescape(found.raw));
    } else {
        push_lossy(v, found.raw);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(line: &str, key: &str) -> Option<String> {
        find(line.as_bytes(), &Seek::new(key)).map(|f| String::from_utf8_lossy(f.raw).into_owned())
    }

    #[test]
    fn keys_are_found_where_the_tokenizer_finds_them() {
        assert_eq!(value("status=500 a=b", "status").as_deref(), Some("500"));
        assert_eq!(
            value("a=1 trace=9f2 status=503", "status").as_deref(),
            Some("503")
        );
        assert_eq!(
            value(r#"a=1 msg="x status=200 y" status=503"#, "status").as_deref(),
            Some("503")
        );
        assert_eq!(
            value(r#"msg="say \"status=1\"" status=2"#, "status").as_deref(),
            Some("2")
        );
        assert_eq!(
            value(r#"a=1 status="5 0 0" b=2"#, "status").as_deref(),
            Some("5 0 0")
        );
        assert_eq!(value("xstatus=1 status=2", "status").as_deref(), Some("2"));
        // Not found, or only the tokenizer can tell: the line goes to it.
        assert_eq!(value("a=1 b=2", "status"), None);
        assert_eq!(value(r#"a=1 msg="unclosed status=2"#, "status"), None);
        assert_eq!(value(r#"a=b="c x=" status=1"#, "status"), None);
        assert_eq!(value(r#"="x status=5" y=1"#, "status"), None);
        assert_eq!(
            value("a=1\tstatus=1 status=2", "status").as_deref(),
            Some("1")
        );
        assert_eq!(value("a=status=1 status=2", "status").as_deref(), Some("2"));
    }
}
