//! Persisted indexes: the index of a file at rest, written next to Janus's other state in the
//! store (`<root>/.janus/index/<kind>/<target>/<hour>.log.idx`) so that a restart does not read
//! every file again. A few KB per GB of logs.
//!
//! An index file is trusted only when everything about it checks out: its magic and format
//! version, a checksum over its bytes, the block size the cache uses, sane lengths, and the
//! identity of the log file it describes (device, inode, size, modification time, and a
//! fingerprint of the indexed bytes read again now). Anything else — truncated, corrupt, from
//! another file or another format — is ignored and the index rebuilt; a bad index file can cost
//! a rebuild, never a wrong answer.

use std::hash::Hasher;

use rustc_hash::FxHashSet;

use super::index::{Block, FileIndex, MAX_STREAMS};

const MAGIC: &[u8; 8] = b"JANUSIDX";
/// Bumped whenever the layout below changes: older files are then rebuilt.
pub const FORMAT_VERSION: u32 = 1;
/// Larger index files are not read (a 1 GiB hour has ~4,000 blocks: 128 KiB).
pub const MAX_FILE_BYTES: u64 = 64 << 20;
/// Bytes of one block in the file.
const BLOCK_BYTES: usize = 32;

/// The suffix of an index file's name.
pub const SUFFIX: &str = ".idx";

/// Why an index file was not used.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// It does not start as an index file does (another file under its name).
    #[error("not an index file")]
    Magic,
    /// Written by a Janus with another layout.
    #[error("format version {0}, this Janus writes {FORMAT_VERSION}")]
    Version(u32),
    /// Its bytes changed after it was written (a crash mid-write, a disk error, an editor).
    #[error("checksum mismatch")]
    Checksum,
    /// It ends before its content does.
    #[error("cut short")]
    Truncated,
    /// Written for another block size (tests use tiny blocks).
    #[error("indexed with {0}-byte blocks")]
    BlockSize(u64),
    /// Its fields contradict each other.
    #[error("inconsistent: {0}")]
    Inconsistent(&'static str),
}

/// What identifies the log file an index describes, as it was when the index was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    /// Device and inode.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub len: u64,
    /// Modification time, seconds and nanoseconds.
    pub mtime: (i64, i64),
    /// Hash of the first and last bytes of the indexed prefix.
    pub fingerprint: u64,
}

fn checksum(bytes: &[u8]) -> u64 {
    let mut hasher = rustc_hash::FxHasher::default();
    hasher.write(bytes);
    hasher.finish()
}

fn put_block(out: &mut Vec<u8>, b: &Block) {
    out.extend_from_slice(&b.start.to_le_bytes());
    out.extend_from_slice(&b.end.to_le_bytes());
    out.extend_from_slice(&b.min_ts.to_le_bytes());
    out.extend_from_slice(&b.max_ts.to_le_bytes());
}

/// The bytes of an index file for `index` of a file with `identity`.
pub fn encode(index: &FileIndex, identity: &Identity, block_bytes: u64) -> Vec<u8> {
    let streams: usize = index.streams.iter().map(|s| 4 + s.len()).sum();
    let mut out = Vec::with_capacity(128 + index.blocks.len() * BLOCK_BYTES + streams);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    for v in [block_bytes, identity.dev, identity.ino, identity.len] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&identity.mtime.0.to_le_bytes());
    out.extend_from_slice(&identity.mtime.1.to_le_bytes());
    out.extend_from_slice(&identity.fingerprint.to_le_bytes());
    out.extend_from_slice(&index.indexed_len.to_le_bytes());
    out.extend_from_slice(&index.bad_lines.to_le_bytes());
    out.push(u8::from(index.streams_capped));
    match &index.tail {
        Some(tail) => {
            out.push(1);
            put_block(&mut out, tail);
        }
        None => out.push(0),
    }
    out.extend_from_slice(&(index.blocks.len() as u64).to_le_bytes());
    for b in &index.blocks {
        put_block(&mut out, b);
    }
    out.extend_from_slice(&(index.streams.len() as u64).to_le_bytes());
    let mut sorted: Vec<&Vec<u8>> = index.streams.iter().collect();
    sorted.sort();
    for s in sorted {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s);
    }
    let sum = checksum(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// Reads fields in order, refusing to read past the end.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Refused> {
        if self.bytes.len() < n {
            return Err(Refused::Truncated);
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u64(&mut self) -> Result<u64, Refused> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    fn i64(&mut self) -> Result<i64, Refused> {
        Ok(self.u64()? as i64)
    }

    fn u32(&mut self) -> Result<u32, Refused> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn u8(&mut self) -> Result<u8, Refused> {
        Ok(self.take(1)?[0])
    }

    fn block(&mut self) -> Result<Block, Refused> {
        Ok(Block {
            start: self.u64()?,
            end: self.u64()?,
            min_ts: self.i64()?,
            max_ts: self.i64()?,
        })
    }
}

/// The index and the identity it was written for; the caller checks the identity against the
/// log file as it is now.
pub fn decode(bytes: &[u8], block_bytes: u64) -> Result<(FileIndex, Identity), Refused> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(Refused::Magic);
    }
    let mut r = Reader {
        bytes: &bytes[MAGIC.len()..],
    };
    let version = r.u32()?;
    if version != FORMAT_VERSION {
        return Err(Refused::Version(version));
    }
    let (body, sum) = bytes.split_at(bytes.len().saturating_sub(8).max(MAGIC.len() + 4));
    if sum.len() != 8 || checksum(body).to_le_bytes() != sum {
        return Err(Refused::Checksum);
    }
    r.bytes = &body[MAGIC.len() + 4..];
    let written_block_bytes = r.u64()?;
    if written_block_bytes != block_bytes {
        return Err(Refused::BlockSize(written_block_bytes));
    }
    let identity = Identity {
        dev: r.u64()?,
        ino: r.u64()?,
        len: r.u64()?,
        mtime: (r.i64()?, r.i64()?),
        fingerprint: r.u64()?,
    };
    let indexed_len = r.u64()?;
    let bad_lines = r.u64()?;
    let streams_capped = r.u8()? != 0;
    let tail = match r.u8()? {
        0 => None,
        1 => Some(r.block()?),
        _ => return Err(Refused::Inconsistent("tail flag")),
    };
    let blocks = r.u64()?;
    if blocks > (r.bytes.len() / BLOCK_BYTES) as u64 {
        return Err(Refused::Truncated);
    }
    let mut index_blocks = Vec::with_capacity(blocks as usize);
    let mut end = 0;
    for _ in 0..blocks {
        let b = r.block()?;
        // Blocks tile the indexed prefix in order.
        if b.start != end || b.end < b.start {
            return Err(Refused::Inconsistent("blocks"));
        }
        end = b.end;
        index_blocks.push(b);
    }
    if end != indexed_len || indexed_len > identity.len {
        return Err(Refused::Inconsistent("indexed length"));
    }
    if tail.is_some_and(|t| t.start != indexed_len || t.end > identity.len) {
        return Err(Refused::Inconsistent("tail"));
    }
    let count = r.u64()?;
    if count > MAX_STREAMS as u64 {
        return Err(Refused::Inconsistent("streams"));
    }
    let mut streams = FxHashSet::default();
    for _ in 0..count {
        let len = r.u32()? as usize;
        streams.insert(r.take(len)?.to_vec());
    }
    if !r.bytes.is_empty() {
        return Err(Refused::Inconsistent("trailing bytes"));
    }
    let index = FileIndex {
        indexed_len,
        blocks: index_blocks,
        tail,
        bad_lines,
        streams,
        streams_capped,
        ..FileIndex::default()
    };
    Ok((index, identity))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (FileIndex, Identity) {
        let blocks = vec![
            Block {
                start: 0,
                end: 100,
                min_ts: 5,
                max_ts: 9,
            },
            Block {
                start: 100,
                end: 250,
                min_ts: 1,
                max_ts: 12,
            },
        ];
        let index = FileIndex {
            indexed_len: 250,
            blocks,
            tail: Some(Block {
                start: 250,
                end: 260,
                min_ts: 13,
                max_ts: 13,
            }),
            bad_lines: 2,
            streams: [b"a|b|c".to_vec(), b"a|d|c".to_vec()].into_iter().collect(),
            ..FileIndex::default()
        };
        let identity = Identity {
            dev: 1,
            ino: 2,
            len: 260,
            mtime: (3, 4),
            fingerprint: 5,
        };
        (index, identity)
    }

    #[test]
    fn round_trips() {
        let (index, identity) = sample();
        let bytes = encode(&index, &identity, 4096);
        let (back, id) = decode(&bytes, 4096).unwrap();
        assert_eq!(id, identity);
        assert_eq!(back.blocks, index.blocks);
        assert_eq!(back.tail, index.tail);
        assert_eq!(back.streams, index.streams);
        assert_eq!((back.indexed_len, back.bad_lines), (250, 2));
    }

    #[test]
    fn every_damage_is_refused() {
        let (index, identity) = sample();
        let bytes = encode(&index, &identity, 4096);
        // Cut anywhere.
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n], 4096).is_err(), "cut at {n}");
        }
        // Any byte flipped.
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad, 4096).is_err(), "byte {i} flipped");
        }
        // Another block size, another format version, not an index at all.
        assert_eq!(decode(&bytes, 8192).unwrap_err(), Refused::BlockSize(4096));
        let mut old = bytes.clone();
        old[8..12].copy_from_slice(&0u32.to_le_bytes());
        assert_eq!(decode(&old, 4096).unwrap_err(), Refused::Version(0));
        assert_eq!(
            decode(b"2024-01-01T00:00:00Z[a|b|c] x\n", 4096).unwrap_err(),
            Refused::Magic
        );
    }
}
