//! Moving a file store (a Lethe or Janus tree) into another backend: every hour file, oldest
//! target first, read in chunks of whole lines and pushed through [`LogStore::push`], all or
//! nothing per chunk. Resumable: after each chunk the file's offset is appended to a progress
//! log, and a second run starts every file where the first one stopped.

use std::collections::HashMap;
use std::io::{BufRead, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::files::layout;
use super::line;
use super::write::{Batch, BatchStream};
use super::LogStore;
use crate::logql::LogKind;

/// Lines per chunk: one push, well inside what a backend writes at once.
pub const CHUNK_LINES: usize = 100_000;
/// Bytes per chunk, whichever comes first.
pub const CHUNK_BYTES: usize = 32 << 20;
/// How long after its hour a file is taken to be finished (writers flush late lines).
const SETTLE_NANOS: i64 = 60_000_000_000;

/// How far an import got, reported after every chunk and at the end.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    /// Hour files found, and done (whole, now or in an earlier run).
    pub files: usize,
    pub files_done: usize,
    /// Bytes of every hour file, and bytes imported (earlier runs included).
    pub bytes: u64,
    pub bytes_done: u64,
    /// Lines pushed by this run.
    pub lines: u64,
    /// Lines that are not log lines (or whose fields do not fit their kind): skipped, counted.
    pub skipped_lines: u64,
    /// Seconds this run has taken.
    pub seconds: f64,
}

/// Why an import stopped. What was pushed stays pushed and is recorded: run it again.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the progress file {path}: {source}")]
    Progress {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pushing {path} at byte {offset}: {message}")]
    Push {
        path: PathBuf,
        offset: u64,
        message: String,
    },
}

/// The progress log: `<offset>\t<path>` per chunk done, the last line for a path wins.
fn read_progress(path: &Path) -> Result<HashMap<PathBuf, u64>, ImportError> {
    let mut done = HashMap::new();
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(done),
        Err(source) => {
            return Err(ImportError::Progress {
                path: path.into(),
                source,
            })
        }
    };
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(|source| ImportError::Progress {
            path: path.into(),
            source,
        })?;
        if let Some((offset, file)) = line.split_once('\t') {
            if let Ok(offset) = offset.parse::<u64>() {
                done.insert(PathBuf::from(file), offset);
            }
        }
    }
    Ok(done)
}

/// Opens the progress log for appending, never through a link at its name.
fn open_progress(path: &Path) -> Result<std::fs::File, ImportError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|source| ImportError::Progress {
            path: path.into(),
            source,
        })
}

/// Imports every hour file under `tree` into `into`, resuming from `progress_file`;
/// `report` is called after every chunk.
pub fn import(
    tree: &Path,
    into: &dyn LogStore,
    progress_file: &Path,
    report: &mut dyn FnMut(&Progress),
) -> Result<Progress, ImportError> {
    let started = Instant::now();
    let done = read_progress(progress_file)?;
    let mut log = open_progress(progress_file)?;
    let mut files = Vec::new();
    let mut skipped = layout::Skipped::default();
    for kind in [LogKind::Pod, LogKind::Node] {
        for target in layout::targets(tree, kind, |_| true, &mut skipped) {
            for hour in layout::hour_files(&target, &mut skipped) {
                let size = std::fs::symlink_metadata(&hour.path).map_or(0, |m| m.len());
                files.push((kind, hour.path, hour.hour_start, size));
            }
        }
    }
    let mut progress = Progress {
        files: files.len(),
        bytes: files.iter().map(|f| f.3).sum(),
        ..Progress::default()
    };
    let mut buf = Vec::new();
    let now = crate::time::timestamp::Timestamp::now().0;
    for (kind, path, hour_start, size) in files {
        // A last line without its newline in an hour still being written may be half a line:
        // it is left for the next run. In an hour that is over, it is the file's last line.
        let settled = hour_start.saturating_add(layout::HOUR_NANOS + SETTLE_NANOS) < now;
        let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        let mut offset = done.get(&key).copied().unwrap_or(0).min(size);
        progress.bytes_done += offset;
        while offset < size {
            let read = |source| ImportError::Read {
                path: path.clone(),
                source,
            };
            let mut file = super::files::open_no_follow(&path).map_err(read)?;
            file.seek(std::io::SeekFrom::Start(offset)).map_err(read)?;
            buf.clear();
            let wanted = (size - offset).min(CHUNK_BYTES as u64);
            (&mut file)
                .take(wanted)
                .read_to_end(&mut buf)
                .map_err(read)?;
            // Whole lines only: the chunk ends after its last newline (a file's last line may
            // have none, and a line longer than a chunk is taken whole).
            let at_end = offset + buf.len() as u64 >= size;
            let mut end = match memchr::memrchr(b'\n', &buf) {
                _ if at_end && settled => buf.len(),
                Some(nl) if at_end => nl + 1,
                None if at_end => 0,
                Some(nl) => nl + 1,
                None => {
                    let mut rest = Vec::new();
                    std::io::BufReader::new(&mut file)
                        .read_until(b'\n', &mut rest)
                        .map_err(read)?;
                    buf.extend_from_slice(&rest);
                    buf.len()
                }
            };
            // At most CHUNK_LINES lines.
            if let Some(cut) = memchr::memchr_iter(b'\n', &buf[..end]).nth(CHUNK_LINES - 1) {
                end = cut + 1;
            }
            let text = String::from_utf8_lossy(&buf[..end]);
            let batch = batch_of(kind, &text, &mut progress.skipped_lines);
            if batch.lines > 0 {
                into.push(&batch).map_err(|e| ImportError::Push {
                    path: path.clone(),
                    offset,
                    message: e.to_string(),
                })?;
            }
            progress.lines += batch.lines;
            if end == 0 {
                break;
            }
            offset += end as u64;
            progress.bytes_done += end as u64;
            writeln!(log, "{offset}\t{}", key.display())
                .and_then(|()| log.flush())
                .map_err(|source| ImportError::Progress {
                    path: progress_file.into(),
                    source,
                })?;
            progress.seconds = started.elapsed().as_secs_f64();
            report(&progress);
        }
        progress.files_done += 1;
    }
    progress.seconds = started.elapsed().as_secs_f64();
    report(&progress);
    Ok(progress)
}

/// The log lines of `text` as a batch: consecutive lines of one stream share a stream entry.
fn batch_of<'t>(kind: LogKind, text: &'t str, skipped: &mut u64) -> Batch<'t> {
    let mut batch = Batch::default();
    let mut times = line::TimestampCache::default();
    for raw in text.split('\n').filter(|l| !l.is_empty()) {
        let Some(l) = line::parse_with(raw.as_bytes(), &mut times) else {
            *skipped += 1;
            continue;
        };
        let message = std::str::from_utf8(l.message).unwrap_or_default();
        if l.field_count != kind.labels().len() || l.ts < 0 {
            *skipped += 1;
            continue;
        }
        let fields = &l.fields[..l.field_count];
        let same = batch.streams.last().is_some_and(|s: &BatchStream<'_>| {
            s.values.iter().zip(fields).all(|(a, b)| a.as_bytes() == *b)
        });
        if !same {
            batch.streams.push(BatchStream {
                kind,
                values: fields
                    .iter()
                    .map(|f| String::from_utf8_lossy(f).into_owned())
                    .collect(),
                lines: Vec::new(),
                time_texts: Vec::new(),
            });
        }
        if let Some(stream) = batch.streams.last_mut() {
            stream.lines.push((l.ts, message));
            stream
                .time_texts
                .push(std::str::from_utf8(l.time_text).unwrap_or_default());
            batch.entries += 1;
            batch.lines += 1;
        }
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_streams_and_odd_lines_are_counted() {
        let text = "2024-01-01T00:00:00Z[ns|p|c] one\n2024-01-01T00:00:01Z[ns|p|c] two\n\
                    garbage\n2024-01-01T00:00:02Z[ns|q|c] three\n2024-01-01T00:00:03Z[n1|kubelet] node line in a pod file\n";
        let mut skipped = 0;
        let b = batch_of(LogKind::Pod, text, &mut skipped);
        assert_eq!((b.lines, b.streams.len(), skipped), (3, 2, 2));
        assert_eq!(
            b.streams[0].lines,
            [
                (1_704_067_200_000_000_000, "one"),
                (1_704_067_201_000_000_000, "two")
            ]
        );
        assert_eq!(b.streams[1].values, ["ns", "q", "c"]);
    }
}
