//! A sparse time index per hour file: line-aligned blocks of about [`BLOCK_BYTES`] with the
//! smallest and largest timestamp in each.
//!
//! Files are *mostly* ordered (Fluent Bit appends in arrival order; late lines happen), so no
//! position in a file bounds the time of the lines after it. The block bounds do: the scanner skips
//! blocks outside the window and, for newest-N, reads blocks in order of their newest line and
//! stops as soon as no unread block can beat the answer it holds. That keeps newest-N exact for
//! out-of-order lines and independent of the size of the hour. Indexes are built on first touch,
//! extended when the file grows, rebuilt when it is replaced or shrinks, and kept in memory.

use std::collections::HashMap;

use rustc_hash::FxHashSet;
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::{beneath, index_file};
use crate::logstore::line::{timestamp_of, TimestampCache};

/// Target size of one block. Small enough that newest-1000 reads a few hundred KiB, large
/// enough that the index of a 1 GiB hour is a few thousand entries.
pub const BLOCK_BYTES: u64 = 256 * 1024;
const READ_CHUNK: usize = 4 << 20;
/// Indexes kept; far more than the hour files a store holds in its retention window.
const MAX_CACHED: usize = 200_000;

/// A run of whole lines of a file, the unit a scan reads with one `pread` and skips by time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// Byte offset of the block's first line.
    pub start: u64,
    /// Byte offset just past the block's last line.
    pub end: u64,
    /// `i64::MAX`/`i64::MIN` when the block holds no parsable line.
    pub min_ts: i64,
    /// Newest line time in the block: a block older than a window is never read.
    pub max_ts: i64,
}

/// What Janus knows of one hour file without reading it again: its blocks and streams.
#[derive(Debug, Clone, Default)]
pub struct FileIndex {
    pub(super) dev: u64,
    pub(super) ino: u64,
    /// Modification time when the index was last built or extended.
    pub(super) mtime: (i64, i64),
    /// A hash of the first and last bytes of the indexed prefix: a file deleted and written
    /// again at the same path (ext4 reuses the inode) or rewritten in place no longer matches.
    pub(super) fingerprint: u64,
    /// Bytes covered: up to the end of the last complete line (a torn tail is left for later).
    pub indexed_len: u64,
    /// The file's blocks, in file order.
    pub blocks: Vec<Block>,
    /// A last line without a newline in a file nobody is writing any more (Lethe's sample tree
    /// ends that way): a line like the others, kept apart because an append may still end it.
    pub tail: Option<Block>,
    /// Lines without a parsable timestamp (skipped by every query).
    pub bad_lines: u64,
    /// Distinct bracket contents (`ns|pod|container`) of the file's lines, for label values and
    /// series without a scan; at most [`MAX_STREAMS`] (then `streams_capped`).
    pub streams: FxHashSet<Vec<u8>>,
    /// The file had more streams than an index remembers: listing them reads the file.
    pub streams_capped: bool,
    /// Written to (or read back from) the store's index directory as it is.
    pub(super) persisted: bool,
}

/// Streams remembered per file, and in all indexes together: memory stays bounded whatever the
/// store holds. A file whose streams were not all remembered is marked `streams_capped`, and
/// label values and series read its lines instead.
pub const MAX_STREAMS: usize = 5_000;
/// Streams all cached indexes may remember together: many files of many streams each cannot fill
/// memory; past it, files are marked `streams_capped` and read when listed.
pub const STREAM_BUDGET: usize = 200_000;

impl FileIndex {
    /// Every block, the settled tail line included.
    pub fn all_blocks(&self) -> impl Iterator<Item = &Block> {
        self.blocks.iter().chain(self.tail.as_ref())
    }

    /// Bytes the index covers, the settled tail line included.
    fn covered_len(&self) -> u64 {
        self.tail.map_or(self.indexed_len, |t| t.end)
    }

    /// Oldest line time in the file, if it has a parsable line.
    pub fn min_ts(&self) -> Option<i64> {
        self.all_blocks()
            .map(|b| b.min_ts)
            .min()
            .filter(|&t| t != i64::MAX)
    }

    /// Newest line time in the file, if it has a parsable line.
    pub fn max_ts(&self) -> Option<i64> {
        self.all_blocks()
            .map(|b| b.max_ts)
            .max()
            .filter(|&t| t != i64::MIN)
    }
}

/// The in-memory index cache, shared by all queries, backed by persisted index files.
pub struct IndexCache {
    entries: Mutex<HashMap<PathBuf, Arc<FileIndex>>>,
    block_bytes: u64,
    /// Streams that may still be remembered, across all indexes.
    stream_budget: AtomicUsize,
    /// The store root, when indexes of files at rest are persisted under it.
    persist_root: Option<PathBuf>,
}

/// Where persisted indexes live below the store root (beside the writer's markers).
pub const INDEX_DIR: &str = ".janus/index";

impl Default for IndexCache {
    fn default() -> Self {
        IndexCache::with_block_bytes(BLOCK_BYTES)
    }
}

/// What `IndexCache::get` did, for metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct IndexWork {
    /// Bytes read to build or extend the index (`janus_store_indexed_bytes_total`).
    pub bytes_indexed: u64,
    /// Lines found unparsable while indexing, counted once each.
    pub new_bad_lines: u64,
    /// The cached index described another file (replaced or rewritten) and was thrown away.
    pub rebuilt: bool,
    /// The index was read back from its persisted file.
    pub loaded: bool,
    /// A persisted index file was found and not used, and why.
    pub refused: Option<&'static str>,
    /// The index was persisted.
    pub written: bool,
}

/// A file untouched this long is no longer being written: its unterminated last line is a line,
/// not a write in progress.
pub const SETTLED: std::time::Duration = std::time::Duration::from_secs(30);
/// The longest unterminated last line taken as a line.
const MAX_TAIL: u64 = 1 << 20;
/// Bytes hashed at each end of the indexed prefix.
const FINGERPRINT_BYTES: u64 = 4096;

fn mtime_of(meta: &std::fs::Metadata) -> (i64, i64) {
    (meta.mtime(), meta.mtime_nsec())
}

fn settled(meta: &std::fs::Metadata) -> bool {
    meta.modified()
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|age| age >= SETTLED)
}

/// Hash of the first and the last [`FINGERPRINT_BYTES`] of `[0, len)`.
fn fingerprint(file: &File, len: u64) -> std::io::Result<u64> {
    use std::hash::Hasher;
    let mut hasher = rustc_hash::FxHasher::default();
    let mut buf = vec![0u8; FINGERPRINT_BYTES.min(len) as usize];
    file.read_exact_at(&mut buf, 0)?;
    hasher.write(&buf);
    if len > FINGERPRINT_BYTES {
        file.read_exact_at(&mut buf, len - FINGERPRINT_BYTES)?;
        hasher.write(&buf);
    }
    hasher.write_u64(len);
    Ok(hasher.finish())
}

impl IndexCache {
    /// Tests use tiny blocks so that small files span many of them.
    pub fn with_block_bytes(block_bytes: u64) -> Self {
        IndexCache {
            entries: Mutex::new(HashMap::new()),
            block_bytes: block_bytes.max(1),
            stream_budget: AtomicUsize::new(STREAM_BUDGET),
            persist_root: None,
        }
    }

    /// A cache that persists the indexes of files at rest under `root`'s [`INDEX_DIR`] and
    /// reads them back on first use, so a restart does not read every file again.
    pub fn persisted_under(root: PathBuf, block_bytes: u64) -> Self {
        IndexCache {
            persist_root: Some(root),
            ..IndexCache::with_block_bytes(block_bytes)
        }
    }

    /// The persisted index file of the log file `path`, relative to the store root.
    fn index_file(&self, path: &Path) -> Option<(&Path, PathBuf)> {
        let root = self.persist_root.as_deref()?;
        let relative = path.strip_prefix(root).ok()?;
        let mut name = relative.as_os_str().to_owned();
        name.push(index_file::SUFFIX);
        Some((root, Path::new(INDEX_DIR).join(name)))
    }

    /// The persisted index of `path`, when there is one and it describes the file as it is now
    /// (same device and inode, and the indexed bytes still hash to its fingerprint).
    fn load(
        &self,
        path: &Path,
        file: &File,
        meta: &std::fs::Metadata,
        work: &mut IndexWork,
    ) -> Option<FileIndex> {
        use std::io::Read;
        let (root, relative) = self.index_file(path)?;
        let mut stored = beneath::open(root, &relative, beneath::Open::Read).ok()?;
        let size = stored.metadata().ok()?.len();
        if size > index_file::MAX_FILE_BYTES {
            work.refused = Some("too large");
            return None;
        }
        let mut bytes = Vec::with_capacity(size as usize);
        stored.read_to_end(&mut bytes).ok()?;
        let (mut index, identity) = match index_file::decode(&bytes, self.block_bytes) {
            Ok(decoded) => decoded,
            Err(refused) => {
                work.refused = Some(match refused {
                    index_file::Refused::Version(_) => "old format",
                    index_file::Refused::BlockSize(_) => "block size",
                    _ => "corrupt",
                });
                return None;
            }
        };
        let same = identity.dev == meta.dev()
            && identity.ino == meta.ino()
            && index.tail.map_or(index.indexed_len, |t| t.end) <= meta.len()
            && fingerprint(file, index.indexed_len).ok()? == identity.fingerprint;
        if !same {
            work.refused = Some("another file");
            return None;
        }
        index.dev = identity.dev;
        index.ino = identity.ino;
        index.mtime = identity.mtime;
        index.fingerprint = identity.fingerprint;
        // Read-back streams take from the same budget as built ones.
        let streams = index.streams.len();
        let taken = self
            .stream_budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                b.checked_sub(streams)
            })
            .is_ok();
        if !taken {
            index.streams = FxHashSet::default();
            index.streams_capped = true;
        }
        work.loaded = true;
        index.persisted = true;
        Some(index)
    }

    /// Persists the index of a file at rest; a store Janus may not write to is only read.
    fn persist(&self, path: &Path, index: &FileIndex, len: u64) -> bool {
        let Some((root, relative)) = self.index_file(path) else {
            return false;
        };
        let identity = index_file::Identity {
            dev: index.dev,
            ino: index.ino,
            len,
            mtime: index.mtime,
            fingerprint: index.fingerprint,
        };
        let bytes = index_file::encode(index, &identity, self.block_bytes);
        match beneath::replace(root, &relative, &bytes) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!(file = %path.display(), error = %e, "index not persisted");
                false
            }
        }
    }

    /// Whether `path` has an index to start from: cached, or persisted. (Not whether it is up to
    /// date: [`IndexCache::get`] checks and extends it.)
    pub fn has_index(&self, path: &Path) -> bool {
        if self
            .entries
            .lock()
            .is_ok_and(|entries| entries.contains_key(path))
        {
            return true;
        }
        self.index_file(path).is_some_and(|(root, relative)| {
            beneath::open(root, &relative, beneath::Open::Read).is_ok()
        })
    }

    /// Caches `index` for `path`, within the cache's bounds.
    fn remember(&self, path: &Path, index: &Arc<FileIndex>) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_CACHED {
                let held: usize = entries.values().map(|i| i.streams.len()).sum();
                entries.clear();
                self.release(held);
            }
            if let Some(old) = entries.insert(path.to_path_buf(), Arc::clone(index)) {
                // The replaced index's streams were carried over when it was extended; a rebuilt
                // one starts afresh, so give the old one's back.
                if old.ino != index.ino || old.indexed_len > index.indexed_len {
                    self.release(old.streams.len());
                }
            }
        }
    }

    /// The index of `path` as it is now on disk, built or extended as needed.
    /// `stop` is asked between reads; when it says so, the partial work is dropped and the
    /// error kind is `Interrupted`.
    pub fn get(
        &self,
        path: &Path,
        file: &File,
        stop: &dyn Fn() -> bool,
    ) -> std::io::Result<(Arc<FileIndex>, IndexWork)> {
        let meta = file.metadata()?;
        let mut work = IndexWork::default();
        let cached = match self.entries.lock().ok().and_then(|m| m.get(path).cloned()) {
            Some(cached) => Some(cached),
            None => self.load(path, file, &meta, &mut work).map(Arc::new),
        };
        let same_file = |c: &FileIndex| -> std::io::Result<bool> {
            if c.dev != meta.dev() || c.ino != meta.ino() || c.indexed_len > meta.len() {
                return Ok(false);
            }
            // Untouched since indexed, or touched but the indexed bytes are still the same.
            Ok(c.mtime == mtime_of(&meta) || fingerprint(file, c.indexed_len)? == c.fingerprint)
        };
        let mut rebuilt = false;
        let reusable = match cached {
            Some(c) if same_file(&c)? => Some(c),
            Some(_) => {
                rebuilt = true;
                None
            }
            None => None,
        };
        if let Some(index) = &reusable {
            if index.covered_len() == meta.len() && index.mtime == mtime_of(&meta) {
                if work.loaded {
                    self.remember(path, index);
                }
                return Ok((Arc::clone(index), work));
            }
        }
        let mut index = reusable.map(|c| (*c).clone()).unwrap_or(FileIndex {
            dev: meta.dev(),
            ino: meta.ino(),
            ..FileIndex::default()
        });
        index.tail = None;
        let before_bad = index.bad_lines;
        let from = index.indexed_len;
        let streams_before = index.streams.len();
        let extended = extend(
            &mut index,
            file,
            meta.len(),
            self.block_bytes,
            &self.stream_budget,
            stop,
        )
        .and_then(|()| {
            if settled(&meta) {
                index.tail = settled_tail(file, index.indexed_len, meta.len())?;
            }
            index.mtime = mtime_of(&meta);
            index.fingerprint = fingerprint(file, index.indexed_len)?;
            Ok(())
        });
        if let Err(e) = extended {
            self.release(index.streams.len().saturating_sub(streams_before));
            return Err(e);
        }
        work.bytes_indexed = index.indexed_len - from;
        work.new_bad_lines = index.bad_lines - before_bad;
        work.rebuilt = rebuilt;
        // A file at rest keeps its index across restarts (others: `persist_pending`).
        index.persisted = false;
        if settled(&meta) {
            work.written = self.persist(path, &index, meta.len());
            index.persisted = work.written;
        }
        let index = Arc::new(index);
        self.remember(path, &index);
        Ok((index, work))
    }

    /// Extends the cached index of `path` with lines Janus just appended at offset `before`,
    /// from the bytes in hand: files Janus writes carry their index from the writer, with no
    /// second read. Only an index that ends exactly where the append began is extended; a file
    /// without one (never indexed, or written by others since) is left to [`IndexCache::get`].
    /// A file that is new (`before == 0`) gets its index here.
    pub fn note_append(&self, path: &Path, file: &File, before: u64, bytes: &[u8]) {
        if bytes.last() != Some(&b'\n') {
            return;
        }
        let Ok(meta) = file.metadata() else { return };
        if meta.len() != before + bytes.len() as u64 {
            // Someone else appended too: what the file holds is not only these bytes.
            return;
        }
        let cached = self.entries.lock().ok().and_then(|m| m.get(path).cloned());
        let mut index = match cached {
            Some(c)
                if c.dev == meta.dev()
                    && c.ino == meta.ino()
                    && c.indexed_len == before
                    && c.tail.is_none() =>
            {
                (*c).clone()
            }
            None if before == 0 => FileIndex {
                dev: meta.dev(),
                ino: meta.ino(),
                ..FileIndex::default()
            },
            _ => return,
        };
        let streams_before = index.streams.len();
        extend_with(&mut index, bytes, self.block_bytes, &self.stream_budget);
        index.mtime = mtime_of(&meta);
        match fingerprint(file, index.indexed_len) {
            Ok(f) => index.fingerprint = f,
            Err(_) => {
                self.release(index.streams.len().saturating_sub(streams_before));
                return;
            }
        }
        index.persisted = false;
        self.remember(path, &Arc::new(index));
    }

    /// Persists the cached indexes not yet on disk (built as Janus appended, or extended since),
    /// so that a restart finds them: at shutdown and from the pass over files at rest. Returns
    /// how many were written.
    pub fn persist_pending(&self) -> usize {
        let pending: Vec<(PathBuf, Arc<FileIndex>)> = match self.entries.lock() {
            Ok(entries) => entries
                .iter()
                .filter(|(_, index)| !index.persisted)
                .map(|(path, index)| (path.clone(), Arc::clone(index)))
                .collect(),
            Err(_) => return 0,
        };
        let mut written = 0;
        for (path, index) in pending {
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            // Only an index that still describes the file as it is now.
            if meta.ino() != index.ino || meta.len() < index.indexed_len {
                continue;
            }
            if self.persist(&path, &index, meta.len()) {
                written += 1;
                let mut done = (*index).clone();
                done.persisted = true;
                if let Ok(mut entries) = self.entries.lock() {
                    // Unless it changed meanwhile: then the newer one is still pending.
                    if entries
                        .get(&path)
                        .is_some_and(|now| Arc::ptr_eq(now, &index))
                    {
                        entries.insert(path, Arc::new(done));
                    }
                }
            }
        }
        written
    }

    fn release(&self, streams: usize) {
        self.stream_budget.fetch_add(streams, Ordering::Relaxed);
    }

    /// Drops indexes of files that no longer exist (after retention deleted them).
    pub fn forget_missing(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            let mut freed = 0;
            entries.retain(|path, index| {
                let keep = path.exists();
                if !keep {
                    freed += index.streams.len();
                }
                keep
            });
            self.release(freed);
        }
    }
}

/// A plan for reading a file whole without an index: its complete lines cut into line-aligned
/// chunks of about `chunk` bytes, each of unknown time (so no scan skips or orders them by
/// time), plus the settled unterminated last line as an index has it. Costs a few small reads
/// at the chunk edges and the end, never a pass over the file.
pub fn unindexed_plan(file: &File, chunk: u64) -> std::io::Result<FileIndex> {
    let meta = file.metadata()?;
    let len = meta.len();
    let complete = after_last_newline(file, len)?;
    let mut blocks = Vec::new();
    let mut start = 0;
    while start < complete {
        let want = start.saturating_add(chunk.max(1));
        let end = if want >= complete {
            complete
        } else {
            next_line_start(file, want, complete)?
        };
        blocks.push(Block {
            start,
            end,
            min_ts: i64::MIN,
            max_ts: i64::MAX,
        });
        start = end;
    }
    let tail = if settled(&meta) {
        settled_tail(file, complete, len)?
    } else {
        None
    };
    Ok(FileIndex {
        dev: meta.dev(),
        ino: meta.ino(),
        mtime: mtime_of(&meta),
        indexed_len: complete,
        blocks,
        tail,
        ..FileIndex::default()
    })
}

/// Bytes read at a time when looking for a line's edge.
const EDGE_READ: usize = 64 * 1024;

/// Where the line after the one at `pos` starts (`limit` when no newline comes before it).
fn next_line_start(file: &File, pos: u64, limit: u64) -> std::io::Result<u64> {
    let mut buf = vec![0u8; EDGE_READ];
    let mut at = pos;
    while at < limit {
        let want = ((limit - at) as usize).min(EDGE_READ);
        let n = file.read_at(&mut buf[..want], at)?;
        if n == 0 {
            break;
        }
        if let Some(nl) = memchr::memchr(b'\n', &buf[..n]) {
            return Ok(at + nl as u64 + 1);
        }
        at += n as u64;
    }
    Ok(limit)
}

/// The length of the file's complete lines: just past its last newline (0 without one).
fn after_last_newline(file: &File, len: u64) -> std::io::Result<u64> {
    let mut buf = vec![0u8; EDGE_READ];
    let mut end = len;
    while end > 0 {
        let from = end.saturating_sub(EDGE_READ as u64);
        let piece = &mut buf[..(end - from) as usize];
        file.read_exact_at(piece, from)?;
        if let Some(nl) = memchr::memrchr(b'\n', piece) {
            return Ok(from + nl as u64 + 1);
        }
        end = from;
    }
    Ok(0)
}

/// The unterminated last line `[from, len)` as a block of its own, when it is a line Janus can
/// read (parsable, not longer than [`MAX_TAIL`]).
fn settled_tail(file: &File, from: u64, len: u64) -> std::io::Result<Option<Block>> {
    if len <= from || len - from > MAX_TAIL {
        return Ok(None);
    }
    let mut buf = vec![0u8; (len - from) as usize];
    file.read_exact_at(&mut buf, from)?;
    if memchr::memchr(b'\n', &buf).is_some() {
        return Ok(None);
    }
    let mut times = TimestampCache::default();
    Ok(timestamp_of(&buf, &mut times).map(|ts| Block {
        start: from,
        end: len,
        min_ts: ts,
        max_ts: ts,
    }))
}

/// Timestamp (≤ 40 bytes) plus three label values of up to 253 bytes and their separators.
const CARRY_MAX: usize = 1024;

/// Remembers the bracket content of a line (its stream), within the per-file cap and the budget.
fn note_stream(index: &mut FileIndex, line: &[u8], budget: &AtomicUsize) {
    let Some(fields) = fields_of(line) else {
        return;
    };
    if index.streams.contains(fields) {
        return;
    }
    let taken = index.streams.len() < MAX_STREAMS
        && budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
            .is_ok();
    if !taken {
        index.streams_capped = true;
        return;
    }
    index.streams.insert(fields.to_vec());
}

/// The bracket content (`ns|pod|container`) of a line's head, if it has one.
fn fields_of(line: &[u8]) -> Option<&[u8]> {
    let head = &line[..line.len().min(CARRY_MAX)];
    let open = memchr::memchr(b'[', &head[..head.len().min(64)])?;
    let close = memchr::memchr(b']', &head[open + 1..])?;
    Some(&head[open + 1..open + 1 + close])
}

/// Calls `each(line_head, end_offset)` for every complete line of `[from, len)`, in order, with
/// at least the first [`CARRY_MAX`] bytes of each line (all a timestamp and fields need), reading
/// in large chunks. Stops early when `each` returns false or `stop` says so (`Interrupted`).
fn for_each_line(
    file: &File,
    from: u64,
    len: u64,
    stop: &dyn Fn() -> bool,
    mut each: impl FnMut(&[u8], u64) -> bool,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; READ_CHUNK];
    let mut pos = from;
    // The head of a line that straddles two reads.
    let mut carry: Vec<u8> = Vec::new();
    while pos < len {
        if stop() {
            return Err(std::io::Error::from(std::io::ErrorKind::Interrupted));
        }
        let want = ((len - pos) as usize).min(READ_CHUNK);
        let n = file.read_at(&mut buf[..want], pos)?;
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', chunk) {
            let end = pos + nl as u64 + 1;
            let go_on = if carry.is_empty() {
                each(&chunk[start..nl], end)
            } else {
                carry.extend_from_slice(&chunk[start..nl]);
                let go_on = each(&carry, end);
                carry.clear();
                go_on
            };
            if !go_on {
                return Ok(());
            }
            start = nl + 1;
        }
        if carry.len() < CARRY_MAX {
            let keep = (chunk.len() - start).min(CARRY_MAX - carry.len());
            carry.extend_from_slice(&chunk[start..start + keep]);
        }
        pos += n as u64;
    }
    Ok(())
}

/// Every distinct bracket content of a file's complete lines, up to `limit`: the slow path for
/// files whose index could not remember all of theirs.
pub fn read_streams(file: &File, limit: usize) -> std::io::Result<FxHashSet<Vec<u8>>> {
    let len = file.metadata()?.len();
    let mut out: FxHashSet<Vec<u8>> = FxHashSet::default();
    for_each_line(file, 0, len, &|| false, |line, _| {
        if let Some(fields) = fields_of(line) {
            if !out.contains(fields) {
                out.insert(fields.to_vec());
            }
        }
        out.len() < limit
    })?;
    Ok(out)
}

/// Cuts lines into blocks as they come, continuing the file's last block while it is short:
/// small appends (a push every second) would otherwise leave a block each.
struct Blocks {
    block: Block,
    block_bytes: u64,
    times: TimestampCache,
}

impl Blocks {
    /// Starts after the index's last complete line, taking its last block back when short.
    fn resume(index: &mut FileIndex, block_bytes: u64) -> Blocks {
        let start = index.indexed_len;
        let short = index
            .blocks
            .last()
            .is_some_and(|last| last.end == start && last.end - last.start < block_bytes);
        let taken_back = if short { index.blocks.pop() } else { None };
        let block = taken_back.unwrap_or(Block {
            start,
            end: start,
            min_ts: i64::MAX,
            max_ts: i64::MIN,
        });
        Blocks {
            block,
            block_bytes,
            times: TimestampCache::default(),
        }
    }

    /// One complete line ending at byte `end`.
    fn line(&mut self, index: &mut FileIndex, line: &[u8], end: u64, budget: &AtomicUsize) {
        note_stream(index, line, budget);
        match timestamp_of(line, &mut self.times) {
            Some(ts) => {
                self.block.min_ts = self.block.min_ts.min(ts);
                self.block.max_ts = self.block.max_ts.max(ts);
            }
            None => index.bad_lines += 1,
        }
        self.block.end = end;
        if self.block.end - self.block.start >= self.block_bytes {
            index.blocks.push(self.block);
            self.block = Block {
                start: end,
                end,
                min_ts: i64::MAX,
                max_ts: i64::MIN,
            };
        }
    }

    /// Keeps the last, short block and moves the indexed length past it.
    fn finish(self, index: &mut FileIndex) {
        if self.block.end > self.block.start {
            index.blocks.push(self.block);
        }
        index.indexed_len = self.block.end.max(index.indexed_len);
    }
}

/// Indexes `[index.indexed_len, len)`, appending blocks.
fn extend(
    index: &mut FileIndex,
    file: &File,
    len: u64,
    block_bytes: u64,
    budget: &AtomicUsize,
    stop: &dyn Fn() -> bool,
) -> std::io::Result<()> {
    let mut blocks = Blocks::resume(index, block_bytes);
    for_each_line(file, index.indexed_len, len, stop, |line, end| {
        blocks.line(index, line, end, budget);
        true
    })?;
    blocks.finish(index);
    Ok(())
}

/// Indexes `bytes`, complete lines just appended at the index's end, without reading the file.
fn extend_with(index: &mut FileIndex, bytes: &[u8], block_bytes: u64, budget: &AtomicUsize) {
    let mut blocks = Blocks::resume(index, block_bytes);
    let base = index.indexed_len;
    let mut start = 0;
    for nl in memchr::memchr_iter(b'\n', bytes) {
        blocks.line(index, &bytes[start..nl], base + nl as u64 + 1, budget);
        start = nl + 1;
    }
    blocks.finish(index);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_blocks_and_leaves_torn_tails() {
        let dir = std::env::temp_dir().join(format!("janus-index-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("2024-01-01_00.log");
        let mut text = String::new();
        for i in 0..20_000u32 {
            text.push_str(&format!(
                "2024-01-01T00:{:02}:{:02}Z[ns|p|c] message number {i} padded to be a bit longer\n",
                (i / 60) % 60,
                i % 60
            ));
        }
        text.push_str("not a log line\n");
        text.push_str("2024-01-01T00:59:59Z[ns|p|c] torn");
        std::fs::write(&path, &text).unwrap();
        let cache = IndexCache::default();
        let file = File::open(&path).unwrap();
        let (index, work) = cache.get(&path, &file, &|| false).unwrap();
        assert!(index.blocks.len() > 4);
        assert_eq!(index.bad_lines, 1);
        assert_eq!(work.new_bad_lines, 1);
        assert_eq!(index.indexed_len as usize, text.rfind('\n').unwrap() + 1);
        assert_eq!(index.blocks[0].start, 0);
        for pair in index.blocks.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
        // The torn line completes: only the new part is indexed.
        std::fs::write(&path, format!("{text}\n")).unwrap();
        let file = File::open(&path).unwrap();
        let (grown, work) = cache.get(&path, &file, &|| false).unwrap();
        assert_eq!(grown.indexed_len as usize, text.len() + 1);
        assert!(work.bytes_indexed < 100);
        assert_eq!(
            grown.blocks.last().unwrap().max_ts,
            index.blocks.iter().map(|b| b.max_ts).max().unwrap()
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// An index built append by append from the writer's bytes is the one reading the file
    /// whole builds: the same blocks (short ones continued, not one per append), bad lines and
    /// streams.
    #[test]
    fn appends_index_as_reading_the_file_does() {
        use std::io::Write;
        let dir = std::env::temp_dir().join(format!("janus-index-append-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("2024-01-01_00.log");
        let _ = std::fs::remove_file(&path);
        let writer_cache = IndexCache::with_block_bytes(4096);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .unwrap();
        let mut len = 0u64;
        for batch in 0..200u32 {
            let mut bytes = Vec::new();
            for i in 0..(batch % 7 + 1) {
                if (batch + i) % 50 == 3 {
                    bytes.extend_from_slice(b"not a log line\n");
                }
                writeln!(
                    bytes,
                    "2024-01-01T00:{:02}:{:02}Z[ns|p{}|c] append {batch} line {i}",
                    (batch / 4) % 60,
                    (batch + i) % 60,
                    batch % 3
                )
                .unwrap();
            }
            file.write_all(&bytes).unwrap();
            writer_cache.note_append(&path, &file, len, &bytes);
            len += bytes.len() as u64;
        }
        let cached = || {
            writer_cache
                .entries
                .lock()
                .unwrap()
                .get(&path)
                .cloned()
                .unwrap()
        };
        let written = cached();
        assert_eq!(written.indexed_len, len);
        assert!(!written.persisted);
        let reader_cache = IndexCache::with_block_bytes(4096);
        let (read, _) = reader_cache.get(&path, &file, &|| false).unwrap();
        assert!(read.blocks.len() > 3);
        assert_eq!(written.blocks, read.blocks);
        assert_eq!(written.bad_lines, read.bad_lines);
        assert_eq!(written.streams, read.streams);
        // Asked afterwards, the writer's index is taken as it is: nothing is read.
        let (again, work) = writer_cache.get(&path, &file, &|| false).unwrap();
        assert_eq!(work.bytes_indexed, 0);
        assert_eq!(again.blocks, read.blocks);
        // An append that does not start where the index ends is not taken.
        writer_cache.note_append(&path, &file, len + 1, b"x\n");
        let kept = cached();
        assert_eq!(kept.indexed_len, len);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn replaced_or_rewritten_files_are_indexed_again() {
        let dir = std::env::temp_dir().join(format!("janus-index-replaced-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("2024-01-01_00.log");
        let text = |minute: u32, n: u32| -> String {
            (0..n)
                .map(|i| {
                    format!(
                        "2024-01-01T00:{minute:02}:{:02}Z[ns|p|c] line {i}\n",
                        i % 60
                    )
                })
                .collect()
        };
        std::fs::write(&path, text(1, 50)).unwrap();
        let cache = IndexCache::default();
        let (index, _) = cache
            .get(&path, &File::open(&path).unwrap(), &|| false)
            .unwrap();
        assert_eq!(
            index.max_ts(),
            Some(1_704_067_200_000_000_000 + 109_000_000_000)
        );

        // Deleted and written again, longer, at the same path (ext4 may reuse the inode).
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, text(30, 80)).unwrap();
        let (index, _) = cache
            .get(&path, &File::open(&path).unwrap(), &|| false)
            .unwrap();
        assert_eq!(
            index.blocks[0].min_ts,
            1_704_067_200_000_000_000 + 1_800_000_000_000
        );

        // Rewritten in place with the same length and other times.
        let same_length = text(45, 80);
        assert_eq!(same_length.len(), text(30, 80).len());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| f.write_all_at(same_length.as_bytes(), 0))
            .unwrap();
        let (index, work) = cache
            .get(&path, &File::open(&path).unwrap(), &|| false)
            .unwrap();
        assert!(work.rebuilt);
        assert_eq!(
            index.blocks[0].min_ts,
            1_704_067_200_000_000_000 + 2_700_000_000_000
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
}
