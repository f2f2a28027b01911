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

struct Appender {
    file: File,
    dirty: bool,
    last_used: Instant,
}

/// Appends pushed lines to hour files: one appender per file, links refused, torn tails repaired.
pub struct Writer {
    root: PathBuf,
    fsync: FsyncMode,
    appenders: Mutex<HashMap<PathBuf, Arc<Mutex<Appender>>>>,
}

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

impl Writer {
    /// A writer under `root`, forcing writes to disk as `fsync` says.
    pub fn new(root: PathBuf, fsync: FsyncMode) -> Self {
        Writer {
            root,
            fsync,
            appenders: Mutex::new(HashMap::new()),
        }
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
    /// requests cannot deadlock), and on any write or sync error (a full disk) every file the
    /// request touched is cut back to its length before the request. A failed request then
    /// leaves no partial line for the next one to be glued to, and its retry duplicates nothing.
    pub fn append(&self, batches: &[(PathBuf, Vec<u8>)]) -> std::io::Result<Appended> {
        let mut order: Vec<&(PathBuf, Vec<u8>)> = batches.iter().collect();
        order.sort_by(|a, b| a.0.cmp(&b.0));
        order.dedup_by(|a, b| a.0 == b.0);
        let appenders = order
            .iter()
            .map(|(relative, _)| self.appender(relative))
            .collect::<std::io::Result<Vec<_>>>()?;
        let mut locked = Vec::with_capacity(appenders.len());
        for appender in &appenders {
            locked.push(
                appender
                    .lock()
                    .map_err(|_| std::io::Error::other("appender lock poisoned"))?,
            );
        }
        let mut before: Vec<u64> = Vec::with_capacity(locked.len());
        let mut done = Appended::default();
        let outcome = (|| -> std::io::Result<()> {
            for (a, (_, bytes)) in locked.iter_mut().zip(&order) {
                let len = a.file.metadata()?.len();
                before.push(len);
                if ends_mid_line(&a.file, len)? {
                    let mut joined = Vec::with_capacity(bytes.len() + 1);
                    joined.push(b'\n');
                    joined.extend_from_slice(bytes);
                    a.file.write_all(&joined)?;
                } else {
                    a.file.write_all(bytes)?;
                }
                a.last_used = Instant::now();
                done.bytes += bytes.len() as u64;
            }
            for a in locked.iter_mut() {
                match self.fsync {
                    FsyncMode::Always => {
                        let started = Instant::now();
                        a.file.sync_data()?;
                        done.fsync_seconds += started.elapsed().as_secs_f64();
                    }
                    FsyncMode::Batch => a.dirty = true,
                    FsyncMode::Never => {}
                }
            }
            Ok(())
        })();
        if let Err(e) = outcome {
            for (a, len) in locked.iter().zip(&before) {
                if let Err(cut) = a.file.set_len(*len) {
                    tracing::error!(error = %cut, "cannot cut a failed append back");
                }
            }
            return Err(e);
        }
        Ok(done)
    }

    fn appender(&self, relative: &Path) -> std::io::Result<Arc<Mutex<Appender>>> {
        let mut appenders = self
            .appenders
            .lock()
            .map_err(|_| std::io::Error::other("appender table lock poisoned"))?;
        if let Some(a) = appenders.get(relative) {
            return Ok(Arc::clone(a));
        }
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
        let file = beneath::open(&self.root, relative, beneath::Open::Append)?;
        let appender = Arc::new(Mutex::new(Appender {
            file,
            dirty: false,
            last_used: Instant::now(),
        }));
        appenders.insert(relative.to_path_buf(), Arc::clone(&appender));
        Ok(appender)
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
                    a.file.sync_data()?;
                    a.dirty = false;
                }
            }
        }
        Ok(started.elapsed().as_secs_f64())
    }

    /// Syncs, closes and unmarks appenders idle for a while (all of them when `all`).
    pub fn close_idle(&self, all: bool) -> std::io::Result<()> {
        let mut appenders = match self.appenders.lock() {
            Ok(a) => a,
            Err(_) => return Ok(()),
        };
        let idle: Vec<PathBuf> = appenders
            .iter()
            .filter(|(_, a)| {
                all || a
                    .lock()
                    .map(|a| a.last_used.elapsed() > IDLE)
                    .unwrap_or(false)
            })
            .map(|(p, _)| p.clone())
            .collect();
        for relative in idle {
            if let Some(appender) = appenders.remove(&relative) {
                if let Ok(a) = appender.lock() {
                    if self.fsync != FsyncMode::Never {
                        a.file.sync_data()?;
                    }
                }
                let _ = beneath::remove(&self.root, &Path::new(MARKERS).join(&relative));
            }
        }
        Ok(())
    }

    /// Whether Janus has the file open for appending (retention leaves such files alone).
    pub fn is_open(&self, path: &Path) -> bool {
        let Ok(relative) = path.strip_prefix(&self.root) else {
            return false;
        };
        self.appenders
            .lock()
            .map(|a| a.contains_key(relative))
            .unwrap_or(false)
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
