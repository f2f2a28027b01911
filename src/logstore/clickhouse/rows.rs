//! TabSeparated rows as ClickHouse writes them: fields split at tabs, escapes (`\t`, `\n`, `\\`,
//! `\0`, `\b`, `\f`, `\r`, `\'`) read back, so a line comes back with exactly its bytes.

/// Splits `row` into its fields, unescaped into `out` (reused between rows); field `i` is
/// `out[ranges[i]]`.
pub fn fields(row: &[u8], out: &mut Vec<u8>, ranges: &mut Vec<std::ops::Range<usize>>) {
    out.clear();
    ranges.clear();
    let mut start = 0;
    let mut i = 0;
    while i < row.len() {
        match row[i] {
            b'\t' => {
                ranges.push(start..out.len());
                start = out.len();
            }
            b'\\' if i + 1 < row.len() => {
                i += 1;
                out.push(match row[i] {
                    b't' => b'\t',
                    b'n' => b'\n',
                    b'0' => 0,
                    b'b' => 0x08,
                    b'f' => 0x0c,
                    b'r' => b'\r',
                    other => other,
                });
            }
            b => out.push(b),
        }
        i += 1;
    }
    ranges.push(start..out.len());
}

/// A field as a number.
pub fn number<T: std::str::FromStr>(field: &[u8]) -> Option<T> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_fields_read_back() {
        let (mut out, mut ranges) = (Vec::new(), Vec::new());
        fields(b"pod\tshop\t12\ta\\tb\\nc\\\\d\\'", &mut out, &mut ranges);
        let got: Vec<&[u8]> = ranges.iter().map(|r| &out[r.clone()]).collect();
        assert_eq!(got, [&b"pod"[..], b"shop", b"12", b"a\tb\nc\\d'"]);
        fields(b"\t", &mut out, &mut ranges);
        assert_eq!(ranges.len(), 2);
        assert_eq!(number::<i64>(b"-17"), Some(-17));
    }
}
