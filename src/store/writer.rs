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
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// When appended lines are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncMode {
    /// Never: the page cache survives a killed process, not a power loss.
    Never,
    /// At most every `--storage.fsync-interval`, in the background.
    Batch,
    /// Before each request is acknowledged.
    Always,
}

impl FsyncMode {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "never" => Some(FsyncMode::Never),
            "batch" => Some(FsyncMode::Batch),
            "always" => Some(FsyncMode::Always),
            _ => None,
        }
    }
}

/// Where markers of files being written live; hidden from the reader (it lists `pod/`, `node/`).
const MARKERS: &str = ".janus/writing";
/// Appenders unused this long are synced, closed and unmarked.
const IDLE: Duration = Duration::from_secs(120);

struct Appender {
    file: File,
    dirty: bool,
    last_used: Instant,
    /// The file ended in another writer's unterminated line when opened: end it before ours,
    /// so our lines stay whole and visible (that line is the other writer's to answer for).
    needs_newline: bool,
}

pub struct Writer {
    root: PathBuf,
    fsync: FsyncMode,
    appenders: Mutex<HashMap<PathBuf, Arc<Mutex<Appender>>>>,
}

/// What one `append` call did, for metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct Appended {
    pub bytes: u64,
    pub fsync_seconds: f64,
}

fn open_append(path: &Path) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.append(true).create(true).read(true);
    #[cfg(target_os = "linux")]
    options.custom_flags(0o400000); // O_NOFOLLOW
    options.open(path)
}

impl Writer {
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
                let target = self.root.join(&relative);
                if truncate_torn_tail(&target)? {
                    repaired.push(target);
                }
                std::fs::remove_file(entry.path())?;
            }
        }
        Ok(repaired)
    }

    /// Appends each `(relative path, rendered lines)`; one write per file. Returns after every
    /// byte is written (and synced under `fsync=always`).
    pub fn append(&self, batches: &[(PathBuf, Vec<u8>)]) -> std::io::Result<Appended> {
        let mut done = Appended::default();
        for (relative, bytes) in batches {
            let appender = self.appender(relative)?;
            let mut a = appender
                .lock()
                .map_err(|_| std::io::Error::other("appender lock poisoned"))?;
            if a.needs_newline {
                let mut joined = Vec::with_capacity(bytes.len() + 1);
                joined.push(b'\n');
                joined.extend_from_slice(bytes);
                a.file.write_all(&joined)?;
                a.needs_newline = false;
            } else {
                a.file.write_all(bytes)?;
            }
            a.last_used = Instant::now();
            done.bytes += bytes.len() as u64;
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
        let path = self.root.join(relative);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Mark before the first write, so a crash mid-write is repaired at the next start.
        let marker = self.root.join(MARKERS).join(relative);
        if let Some(dir) = marker.parent() {
            std::fs::create_dir_all(dir)?;
        }
        File::create(&marker)?;
        let file = open_append(&path)?;
        let len = file.metadata()?.len();
        let mut last = [0u8; 1];
        let needs_newline =
            len > 0 && file.read_exact_at(&mut last, len - 1).is_ok() && last[0] != b'\n';
        let appender = Arc::new(Mutex::new(Appender {
            file,
            dirty: false,
            last_used: Instant::now(),
            needs_newline,
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
                let _ = std::fs::remove_file(self.root.join(MARKERS).join(&relative));
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

/// Cuts an unterminated last line off `path`. Returns whether anything was cut.
fn truncate_torn_tail(path: &Path) -> std::io::Result<bool> {
    let file = match OpenOptions::new().read(true).write(true).open(path) {
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
