//! Appending pushed lines to hour files, in Lethe's line format.
//!
//! One appender per file, shared by all requests: a request's lines for a file are rendered into
//! one buffer and appended with one `write` under the file's lock, so concurrent requests never
//! interleave partial lines. A file is opened with `O_APPEND`, so another writer (Fluent Bit)
//! appending whole lines to the same file is safe too.
//!
//! Crash safety: every line of a request is written (and synced, under `fsync=always`) before the
//! request is acknowledged, so a killed process loses no acknowledged line. A write cut short by
//! the kill leaves an unterminated tail, which readers skip; at start-up Janus truncates such tails
//! in the files it was writing (it marks them under `<root>/.janus/writing/`), and only in those:
//! files written by other processes are never truncated.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::beneath;

/// When appended lines are forced to disk (a flag's values, hence `ValueEnum`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FsyncMode {
    /// Never: the page cache survives a killed process, not a power loss.
    Never,
    /// At most every `--storage.fsync-interval`, in the background.
    Batch,
    /// Before each request is acknowledged.
    Always,
}

/// Where markers of files being written live; hidden from the reader (it lists `pod/`, `node/`).
const MARKERS: &str = ".janus/writing";
/// Appenders unused this long are synced, closed and unmarked.
const IDLE: Duration = Duration::from_secs(120);
/// Files kept open for appending at most, unless `--storage.max-open-files` says otherwise.
pub const DEFAULT_MAX_OPEN_FILES: usize = 1024;

/// One hour file's appender: its lock orders requests writing the file; the handle is open
/// only while the file is among the recently written (at most `max_open` are).
struct Appender {
    file: Option<File>,
    dirty: bool,
    last_used: Instant,
}

/// Appends pushed lines to hour files: one appender per file, links refused, torn tails repaired.
///
/// Open handles are bounded: a push writing more hour files than `max_open` (20,000 lines an hour
/// apart) closes each file it opened once its lines are in, and after every push the least
/// recently written files beyond the bound are closed. A push is never refused because handles
/// are busy: when opening fails for want of descriptors, idle handles are closed and it tries
/// again.
pub struct Writer {
    root: PathBuf,
    fsync: FsyncMode,
    max_open: usize,
    /// Handles open now (every `Appender::file` that is `Some`).
    open: AtomicUsize,
    appenders: Mutex<HashMap<PathBuf, Arc<Mutex<Appender>>>>,
}

/// Told of each file an append wrote: (relative path, handle, length before, bytes written).
pub type AppendedHook<'a> = dyn Fn(&Path, &File, u64, &[u8]) + 'a;

/// What one `append` call did, for metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Appended {
    /// Bytes appended by the write.
    pub bytes: u64,
    /// Seconds spent forcing the write to disk, when the mode did.
    pub fsync_seconds: f64,
}

/// Whether the file ends in a byte other than `\n`: another writer's unterminated line, or a
/// line Lethe's tree ended without a newline. An append never starts right after such a byte.
fn ends_mid_line(file: &File, len: u64) -> std::io::Result<bool> {
    if len == 0 {
        return Ok(false);
    }
    let mut last = [0u8; 1];
    file.read_exact_at(&mut last, len - 1)?;
    Ok(last[0] != b'\n')
}

/// Whether an error means the process or the system is out of file descriptors.
fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

/// What a request did to one file, to undo it if the request fails.
struct Touched {
    /// The file's length before the request.
    before: u64,
    /// Whether the request's lines were written.
    written: bool,
    /// Whether a newline went first (the file ended mid-line).
    joined: bool,
}

impl Writer {
    /// A writer under `root`, forcing writes to disk as `fsync` says.
    pub fn new(root: PathBuf, fsync: FsyncMode) -> Self {
        Writer {
            root,
            fsync,
            max_open: DEFAULT_MAX_OPEN_FILES,
            open: AtomicUsize::new(0),
            appenders: Mutex::new(HashMap::new()),
        }
    }

    /// At most `max_open` files (at least 1) are kept open for appending.
    pub fn with_max_open_files(mut self, max_open: usize) -> Self {
        self.max_open = max_open.max(1);
        self
    }

    /// Handles open for appending now.
    pub fn open_files(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Repairs the files a previous run was writing when it stopped: an unterminated last line
    /// is cut off (it was never acknowledged). Returns the files repaired.
    pub fn repair_after_crash(&self) -> std::io::Result<Vec<PathBuf>> {
        let markers = self.root.join(MARKERS);
        let mut repaired = Vec::new();
        let mut stack = vec![markers.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(kind) = entry.file_type() else {
                    continue;
                };
                if kind.is_dir() {
                    stack.push(entry.path());
                    continue;
                }
                let Ok(relative) = entry.path().strip_prefix(&markers).map(Path::to_path_buf)
                else {
                    continue;
                };
                match truncate_torn_tail(&self.root, &relative) {
                    Ok(true) => repaired.push(self.root.join(&relative)),
                    Ok(false) => {}
                    // A link or an odd file under a marked name is not Janus's to cut.
                    Err(e) => tracing::warn!(
                        file = %relative.display(),
                        error = %e,
                        "not repairing a marked file"
                    ),
                }
                let marker = Path::new(MARKERS).join(&relative);
                if let Err(e) = beneath::remove(&self.root, &marker) {
                    tracing::warn!(marker = %marker.display(), error = %e, "cannot remove a marker");
                }
            }
        }
        Ok(repaired)
    }

    /// Appends each `(relative path, rendered lines)`; one write per file. Returns after every
    /// byte is written (and synced under `fsync=always`).
    ///
    /// All or nothing, on disk too: the request's files are locked together (in path order, so
    /// requests cannot deadlock), and on any open, write or sync error (a full disk) every file
    /// the request touched is cut back to its length before the request, and a file it made is
    /// removed. A failed request then leaves no partial line for the next one to be glued to, no
    /// empty file, and its retry duplicates nothing.
    pub fn append(&self, batches: &[(PathBuf, Vec<u8>)]) -> std::io::Result<Appended> {
        self.append_observed(batches, &|_, _, _, _| {})
    }

    /// [`Writer::append`], then, once every file's lines are in and while the files are still
    /// locked, `appended(relative path, handle, length before, bytes)` for each file whose
    /// bytes were written as given at its old end (the index is built from them).
    pub fn append_observed(
        &self,
        batches: &[(PathBuf, Vec<u8>)],
        appended: &AppendedHook<'_>,
    ) -> std::io::Result<Appended> {
        let mut order: Vec<&(PathBuf, Vec<u8>)> = batches.iter().collect();
        order.sort_by(|a, b| a.0.cmp(&b.0));
        order.dedup_by(|a, b| a.0 == b.0);
        let appenders = {
            let mut table = self
                .appenders
                .lock()
                .map_err(|_| std::io::Error::other("appender table lock poisoned"))?;
            order
                .iter()
                .map(|(relative, _)| {
                    Arc::clone(table.entry(relative.clone()).or_insert_with(|| {
                        Arc::new(Mutex::new(Appender {
                            file: None,
                            dirty: false,
                            last_used: Instant::now(),
                        }))
                    }))
                })
                .collect::<Vec<_>>()
        };
        let mut locked = Vec::with_capacity(appenders.len());
        for appender in &appenders {
            locked.push(
                appender
                    .lock()
                    .map_err(|_| std::io::Error::other("appender lock poisoned"))?,
            );
        }
        let mut touched: Vec<Touched> = Vec::with_capacity(locked.len());
        let mut done = Appended::default();
        let outcome = (|| -> std::io::Result<()> {
            for (a, (relative, bytes)) in locked.iter_mut().zip(&order) {
                let file = self.open_for_append(a, relative)?;
                let len = file.metadata()?.len();
                let joined = ends_mid_line(file, len)?;
                touched.push(Touched {
                    before: len,
                    written: false,
                    joined,
                });
                if joined {
                    let mut joined = Vec::with_capacity(bytes.len() + 1);
                    joined.push(b'\n');
                    joined.extend_from_slice(bytes);
                    (&*file).write_all(&joined)?;
                } else {
                    (&*file).write_all(bytes)?;
                }
                if let Some(t) = touched.last_mut() {
                    t.written = true;
                }
                a.last_used = Instant::now();
                a.dirty = true;
                done.bytes += bytes.len() as u64;
                // Over the bound (a push writing more files than it): this file is done.
                if self.open.load(Ordering::Relaxed) > self.max_open {
                    done.fsync_seconds += self.close(a, relative)?;
                }
            }
            for a in locked.iter_mut() {
                match (self.fsync, &a.file) {
                    (FsyncMode::Always, Some(file)) => {
                        let started = Instant::now();
                        file.sync_data()?;
                        done.fsync_seconds += started.elapsed().as_secs_f64();
                        a.dirty = false;
                    }
                    (FsyncMode::Never, _) => a.dirty = false,
                    _ => {}
                }
            }
            Ok(())
        })();
        if let Err(e) = outcome {
            for ((a, (relative, _)), t) in locked.iter_mut().zip(&order).zip(&touched) {
                self.undo(a, relative, t);
            }
            drop(locked);
            drop(appenders);
            self.close_beyond_bound();
            return Err(e);
        }
        for ((a, (relative, bytes)), t) in locked.iter().zip(&order).zip(&touched) {
            if let (Some(file), false) = (&a.file, t.joined) {
                appended(relative, file, t.before, bytes);
            }
        }
        drop(locked);
        drop(appenders);
        self.close_beyond_bound();
        Ok(done)
    }

    /// The appender's handle, opened (and the file marked) when it is not open; when the
    /// process is out of descriptors, idle handles are closed and the open is tried again.
    fn open_for_append<'a>(
        &self,
        a: &'a mut Appender,
        relative: &Path,
    ) -> std::io::Result<&'a File> {
        if a.file.is_none() {
            let file = match self.mark_and_open(relative) {
                Err(e) if out_of_descriptors(&e) => {
                    self.close_all_idle();
                    self.mark_and_open(relative)?
                }
                other => other?,
            };
            a.file = Some(file);
            self.open.fetch_add(1, Ordering::Relaxed);
        }
        a.file
            .as_ref()
            .ok_or_else(|| std::io::Error::other("appender has no file"))
    }

    /// Marks `relative` as being written, then opens it for appending (making it).
    fn mark_and_open(&self, relative: &Path) -> std::io::Result<File> {
        // Mark before the first write, so a crash mid-write is repaired at the next start. A
        // link planted under the marker's name is removed (never followed) and the mark made.
        let marker = Path::new(MARKERS).join(relative);
        if let Err(e) = beneath::open(&self.root, &marker, beneath::Open::Truncate) {
            if e.raw_os_error() != Some(libc::ELOOP) {
                return Err(e);
            }
            tracing::warn!(marker = %marker.display(), "removing a link planted as a marker");
            beneath::remove(&self.root, &marker)?;
            beneath::open(&self.root, &marker, beneath::Open::Truncate)?;
        }
        match beneath::open(&self.root, relative, beneath::Open::Append) {
            Ok(file) => Ok(file),
            Err(e) => {
                let _ = beneath::remove(&self.root, &marker);
                Err(e)
            }
        }
    }

    /// Syncs (unless `fsync=never`) and closes an appender's handle, and removes its marker: the
    /// file is complete on disk. Returns the seconds spent syncing.
    fn close(&self, a: &mut Appender, relative: &Path) -> std::io::Result<f64> {
        let Some(file) = a.file.take() else {
            return Ok(0.0);
        };
        self.open.fetch_sub(1, Ordering::Relaxed);
        let mut seconds = 0.0;
        if a.dirty && self.fsync != FsyncMode::Never {
            let started = Instant::now();
            file.sync_data()?;
            seconds = started.elapsed().as_secs_f64();
        }
        a.dirty = false;
        drop(file);
        let _ = beneath::remove(&self.root, &Path::new(MARKERS).join(relative));
        Ok(seconds)
    }

    /// Undoes what a failed request did to one file: cut back to its length before, or removed
    /// when the request made it (nobody else wrote to it since: its lock is held).
    fn undo(&self, a: &mut Appender, relative: &Path, t: &Touched) {
        let reopened;
        let file = match &a.file {
            Some(file) => file,
            None if !t.written && t.before > 0 => return,
            None => match beneath::open(&self.root, relative, beneath::Open::Existing) {
                Ok(file) => {
                    reopened = file;
                    &reopened
                }
                Err(e) => {
                    tracing::error!(error = %e, file = %relative.display(), "cannot reopen a failed append to cut it back");
                    return;
                }
            },
        };
        if t.before == 0 {
            if file.metadata().map(|m| m.len()).unwrap_or(1) > 0 {
                if let Err(cut) = file.set_len(0) {
                    tracing::error!(error = %cut, "cannot cut a failed append back");
                    return;
                }
            }
            let _ = self.close(a, relative);
            if let Err(e) = beneath::remove(&self.root, relative) {
                tracing::warn!(error = %e, file = %relative.display(), "cannot remove a file a failed push made");
            }
        } else if let Err(cut) = file.set_len(t.before) {
            tracing::error!(error = %cut, "cannot cut a failed append back");
        }
    }

    /// Closes the least recently written handles not in use until at most three quarters of the
    /// bound are open (so steady pushes over more files than the bound do not close one file
    /// per push), and forgets appenders that hold no handle.
    fn close_beyond_bound(&self) {
        if self.open.load(Ordering::Relaxed) <= self.max_open {
            self.forget_closed();
            return;
        }
        let Ok(mut table) = self.appenders.lock() else {
            return;
        };
        let mut open: Vec<(Instant, PathBuf)> = table
            .iter()
            .filter_map(|(path, a)| {
                let a = a.try_lock().ok()?;
                a.file.as_ref()?;
                Some((a.last_used, path.clone()))
            })
            .collect();
        open.sort();
        let target = self.max_open - self.max_open / 4;
        for (_, path) in open {
            if self.open.load(Ordering::Relaxed) <= target {
                break;
            }
            if let Some(appender) = table.get(&path) {
                if let Ok(mut a) = appender.try_lock() {
                    if let Err(e) = self.close(&mut a, &path) {
                        tracing::warn!(error = %e, file = %path.display(), "syncing a file before closing it failed");
                    }
                }
            }
        }
        table.retain(|_, a| {
            Arc::strong_count(a) > 1 || a.try_lock().map_or(true, |a| a.file.is_some())
        });
    }

    /// Forgets appenders that hold no handle and that no request holds.
    fn forget_closed(&self) {
        if let Ok(mut table) = self.appenders.lock() {
            if table.len() > self.open.load(Ordering::Relaxed) {
                table.retain(|_, a| {
                    Arc::strong_count(a) > 1 || a.try_lock().map_or(true, |a| a.file.is_some())
                });
            }
        }
    }

    /// Closes every handle no request holds, when descriptors ran out.
    fn close_all_idle(&self) {
        let Ok(table) = self.appenders.lock() else {
            return;
        };
        for (path, appender) in table.iter() {
            if let Ok(mut a) = appender.try_lock() {
                let _ = self.close(&mut a, path);
            }
        }
    }

    /// Syncs files written since the last call (`fsync=batch`); returns the seconds spent.
    pub fn sync_dirty(&self) -> std::io::Result<f64> {
        let list: Vec<Arc<Mutex<Appender>>> = match self.appenders.lock() {
            Ok(a) => a.values().cloned().collect(),
            Err(_) => return Ok(0.0),
        };
        let started = Instant::now();
        for appender in list {
            if let Ok(mut a) = appender.lock() {
                if a.dirty {
                    if let Some(file) = &a.file {
                        file.sync_data()?;
                    }
                    a.dirty = false;
                }
            }
        }
        Ok(started.elapsed().as_secs_f64())
    }

    /// Syncs, closes and unmarks appenders idle for a while (all of them when `all`).
    pub fn close_idle(&self, all: bool) -> std::io::Result<()> {
        // Collected first: a request holds its appenders' locks while it may take the table's.
        let list: Vec<(PathBuf, Arc<Mutex<Appender>>)> = match self.appenders.lock() {
            Ok(table) => table
                .iter()
                .map(|(p, a)| (p.clone(), Arc::clone(a)))
                .collect(),
            Err(_) => return Ok(()),
        };
        for (relative, appender) in list {
            if let Ok(mut a) = appender.lock() {
                if all || a.last_used.elapsed() > IDLE {
                    self.close(&mut a, &relative)?;
                }
            }
        }
        self.forget_closed();
        Ok(())
    }

    /// Whether Janus has the file open for appending (retention leaves such files alone).
    pub fn is_open(&self, path: &Path) -> bool {
        let Ok(relative) = path.strip_prefix(&self.root) else {
            return false;
        };
        let appender = match self.appenders.lock() {
            Ok(a) => a.get(relative).cloned(),
            Err(_) => return false,
        };
        // A request holding the appender is writing the file now.
        appender.is_some_and(|a| a.try_lock().map_or(true, |a| a.file.is_some()))
    }
}

/// Cuts an unterminated last line off `root/relative`. Returns whether anything was cut.
fn truncate_torn_tail(root: &Path, relative: &Path) -> std::io::Result<bool> {
    let file = match beneath::open(root, relative, beneath::Open::Existing) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(false);
    }
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let start = end.saturating_sub(buf.len() as u64);
        let n = (end - start) as usize;
        file.read_exact_at(&mut buf[..n], start)?;
        if end == len && buf[n - 1] == b'\n' {
            return Ok(false);
        }
        if let Some(p) = memchr::memrchr(b'\n', &buf[..n]) {
            file.set_len(start + p as u64 + 1)?;
            return Ok(true);
        }
        if start == 0 {
            file.set_len(0)?;
            return Ok(true);
        }
        end = start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn torn_tails_are_cut_only_in_marked_files() {
        let root = std::env::temp_dir().join(format!("janus-writer-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let writer = Writer::new(root.clone(), FsyncMode::Always);
        let ours = PathBuf::from("pod/shop/2024-01-01_00.log");
        writer
            .append(&[(ours.clone(), b"line one\n".to_vec())])
            .unwrap();
        // A crash mid-write: half a line after the last complete one.
        std::fs::OpenOptions::new()
            .append(true)
            .open(root.join(&ours))
            .unwrap()
            .write_all(b"half a li")
            .unwrap();
        // Someone else's file with an unterminated line (being appended by Fluent Bit).
        let theirs = root.join("pod/shop/2024-01-01_01.log");
        std::fs::write(&theirs, b"complete\nbeing writ").unwrap();
        drop(writer);
        let writer = Writer::new(root.clone(), FsyncMode::Always);
        assert_eq!(writer.repair_after_crash().unwrap(), vec![root.join(&ours)]);
        assert_eq!(std::fs::read(root.join(&ours)).unwrap(), b"line one\n");
        assert_eq!(std::fs::read(&theirs).unwrap(), b"complete\nbeing writ");
        writer
            .append(&[(ours.clone(), b"line two\n".to_vec())])
            .unwrap();
        assert_eq!(
            std::fs::read(root.join(&ours)).unwrap(),
            b"line one\nline two\n"
        );
        writer.close_idle(true).unwrap();
        assert!(std::fs::read_dir(root.join(MARKERS).join("pod/shop"))
            .unwrap()
            .next()
            .is_none());
        std::fs::remove_dir_all(root).unwrap();
    }
}
