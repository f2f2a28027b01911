//! Equality of short byte strings (label names, keys of a few dozen bytes) without libc's
//! `memcmp`: a scan compares such strings millions of times, and for a handful of bytes the call
//! and its vector set-up cost more than the comparison (it was the largest item of a profile).

/// Whether `a` and `b` hold the same bytes.
#[inline]
pub fn short_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut x = a.chunks_exact(8);
    let mut y = b.chunks_exact(8);
    for (p, q) in x.by_ref().zip(y.by_ref()) {
        let p = u64::from_ne_bytes(p.try_into().unwrap_or_default());
        let q = u64::from_ne_bytes(q.try_into().unwrap_or_default());
        if p != q {
            return false;
        }
    }
    x.remainder().iter().zip(y.remainder()).all(|(p, q)| p == q)
}

/// A byte-string key of a hash map that compares itself with [`short_eq`].
#[derive(Debug, Clone, Default)]
pub struct Key(pub Vec<u8>);

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        short_eq(&self.0, &other.0)
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_exactly_when_the_bytes_are() {
        let words: [&[u8]; 7] = [
            b"",
            b"a",
            b"level",
            b"levels",
            b"0123456789abcdef",
            b"0123456789abcdeg",
            b"0123456789abcdef0",
        ];
        for a in words {
            for b in words {
                assert_eq!(short_eq(a, b), a == b, "{a:?} {b:?}");
            }
        }
    }
}
