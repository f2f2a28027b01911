//! Retention: whole hour files go, oldest first, by age (`--retention.time`) and by total size
//! (`--retention.size`), never a file Janus is writing. A query racing with a deletion never
//! fails: a file gone before it is opened is not part of the answer, and one deleted after it is
//! opened stays readable until closed.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::layout::{self, HOUR_NANOS};
use crate::logql::LogKind;

pub use crate::logstore::write::RetentionOutcome as Outcome;

struct HourFile {
    path: PathBuf,
    hour_start: i64,
    bytes: u64,
}

/// One retention pass. `keep` says whether a file must stay (being written).
pub fn run(
    root: &Path,
    now_ns: i64,
    max_age: Duration,
    max_bytes: u64,
    keep: &dyn Fn(&Path) -> bool,
) -> Outcome {
    let mut out = Outcome::default();
    let mut files = Vec::new();
    let mut skipped = layout::Skipped::default();
    let mut target_dirs = Vec::new();
    for kind in [LogKind::Pod, LogKind::Node] {
        for target in layout::targets(root, kind, |_| true, &mut skipped) {
            for f in layout::hour_files(&target, &mut skipped) {
                let bytes = std::fs::metadata(&f.path).map(|m| m.len()).unwrap_or(0);
                files.push(HourFile {
                    path: f.path,
                    hour_start: f.hour_start,
                    bytes,
                });
            }
            target_dirs.push(target.path);
        }
    }
    files.sort_by(|a, b| (a.hour_start, &a.path).cmp(&(b.hour_start, &b.path)));
    let current_hour = now_ns.div_euclid(HOUR_NANOS) * HOUR_NANOS;
    // A zero age turns deletion by time off.
    let cutoff = if max_age.is_zero() {
        i64::MIN
    } else {
        now_ns.saturating_sub(i64::try_from(max_age.as_nanos()).unwrap_or(i64::MAX))
    };
    let mut total: u64 = files.iter().map(|f| f.bytes).sum();
    for f in &files {
        let by_time = f.hour_start.saturating_add(HOUR_NANOS) <= cutoff;
        let by_size = max_bytes > 0 && total > max_bytes;
        if !(by_time || by_size) {
            // Files are oldest first: nothing later is due by time; size is already met.
            break;
        }
        if f.hour_start >= current_hour || keep(&f.path) {
            continue;
        }
        // Removed from the root down, never through a link swapped in since the listing.
        let relative = f.path.strip_prefix(root).ok();
        let removed =
            relative.is_some_and(|relative| super::beneath::remove(root, relative).is_ok());
        if let (true, Some(relative)) = (removed, relative) {
            // The file's persisted index goes with it (if it had one).
            let mut name = relative.as_os_str().to_owned();
            name.push(super::index_file::SUFFIX);
            let index = Path::new(super::index::INDEX_DIR).join(name);
            let _ = super::beneath::remove(root, &index);
        }
        if removed {
            // Deleting data is never silent: each file is named in the log.
            tracing::info!(
                file = %f.path.display(),
                bytes = f.bytes,
                reason = if by_time { "time" } else { "size" },
                "retention deleted an hour file"
            );
            total -= f.bytes;
            out.bytes_deleted += f.bytes;
            if by_time {
                out.deleted_by_time += 1;
            } else {
                out.deleted_by_size += 1;
            }
        }
    }
    // Empty target directories untouched for a day go too.
    let day_ago = SystemTime::now() - Duration::from_secs(86_400);
    for dir in target_dirs {
        let empty = std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        let old = std::fs::metadata(&dir)
            .and_then(|m| m.modified())
            .map(|t| t < day_ago)
            .unwrap_or(false);
        if empty && old && std::fs::remove_dir(&dir).is_ok() {
            out.dirs_removed += 1;
        }
    }
    out.store_bytes = total;
    out
}

/// Sizes as Prometheus's `--storage.tsdb.retention.size` reads them: `B`, `KB`, `MB`, `GB`,
/// `TB`, `PB` in powers of two (`KiB`… accepted too); `0` turns the limit off.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "0" {
        return Some(0);
    }
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = t.split_at(split);
    let n: u64 = number.parse().ok()?;
    let shift = match unit.trim() {
        "B" => 0,
        "KB" | "KiB" => 10,
        "MB" | "MiB" => 20,
        "GB" | "GiB" => 30,
        "TB" | "TiB" => 40,
        "PB" | "PiB" => 50,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("100GB"), Some(100 << 30));
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("10"), None);
        assert_eq!(parse_size("ten GB"), None);
    }
}
