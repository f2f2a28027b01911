//! Cache keys: a SHA-256 digest over every input that can change an answer, each part
//! length-prefixed so that no two different inputs run together into the same bytes.
//!
//! For a query that is: the kind of entry, the query's text with white space and comments
//! normalized (its tokens, which keep strings and case), the step and the start's phase within
//! it, every other parameter but those that cannot change the answer (`timeout`, and the
//! `start`/`end` the pieces stand for), the upstream, and the values of the headers Janus
//! forwards (so a tenant's `X-Scope-OrgID` or a forwarded credential is part of the key: one
//! identity never reads another's entry).

use super::{CacheFace, Key};

#[derive(Clone)]
pub struct KeyBuilder {
    face: CacheFace,
    context: ring::digest::Context,
}

impl KeyBuilder {
    pub fn new(face: CacheFace, kind: &str) -> Self {
        let mut builder = KeyBuilder {
            face,
            context: ring::digest::Context::new(&ring::digest::SHA256),
        };
        builder.part(kind.as_bytes());
        builder
    }

    /// Adds one part.
    pub fn part(&mut self, bytes: &[u8]) -> &mut Self {
        self.context.update(&(bytes.len() as u64).to_le_bytes());
        self.context.update(bytes);
        self
    }

    pub fn number(&mut self, n: i64) -> &mut Self {
        self.part(&n.to_le_bytes())
    }

    pub fn finish(self) -> Key {
        let mut digest = [0u8; 32];
        digest.copy_from_slice(self.context.finish().as_ref());
        Key {
            face: self.face,
            digest,
        }
    }
}

/// A query's text as its tokens, one space between: the same query however it is spaced or
/// commented gets the same key, and any difference that the parser sees stays.
pub fn normalized_query(text: &str) -> String {
    let tokens = crate::logql::lexer::tokenize(text);
    let mut out = String::with_capacity(text.len());
    for (i, t) in tokens.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&text[t.start..t.end]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spacing_and_comments_do_not_change_a_key_but_anything_else_does() {
        assert_eq!(
            normalized_query("sum(rate(x[5m]))  # total\n"),
            normalized_query("sum ( rate( x [5m] ) )")
        );
        assert_ne!(
            normalized_query(r#"x{a="b c"}"#),
            normalized_query(r#"x{a="b  c"}"#)
        );
        let key = |parts: &[&str]| {
            let mut b = KeyBuilder::new(CacheFace::Metric, "range");
            for p in parts {
                b.part(p.as_bytes());
            }
            b.finish()
        };
        assert_eq!(key(&["ab", "c"]), key(&["ab", "c"]));
        assert_ne!(key(&["ab", "c"]), key(&["a", "bc"]));
    }
}
