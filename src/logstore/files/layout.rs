//! The on-disk layout, read-only: `<root>/{pod,node}/<target>/YYYY-MM-DD_HH.log`.
//!
//! Targets and files are found by listing directories and matching their *names*; a label value
//! from a query is never joined into a path. Symbolic links are not followed, so nothing outside
//! the root is ever opened, whatever the matchers say.

use std::fs;
use std::path::{Path, PathBuf};

use crate::logql::LogKind;
use crate::logstore::line::days_from_civil;

/// Nanoseconds in an hour: one hour file's span.
pub const HOUR_NANOS: i64 = 3_600_000_000_000;

/// A target directory: a namespace (pod logs) or a node (node logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The directory name: the target (namespace or node) the lines belong to.
    pub name: String,
    /// Where the directory is.
    pub path: PathBuf,
}

/// An hour file of a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourFile {
    /// The file name, `YYYY-MM-DD_HH.log`.
    pub name: String,
    /// Where the file is.
    pub path: PathBuf,
    /// Start of the hour its name promises, in nanoseconds.
    pub hour_start: i64,
}

/// What listing passed over (odd names, links, unreadable entries).
#[derive(Debug, Default, Clone, Copy)]
pub struct Skipped {
    /// Entries skipped while listing (links, bad names): counted, never followed.
    pub entries: u64,
}

/// The directory of one kind of log (`pod/` or `node/`) under the store root.
pub fn kind_dir(root: &Path, kind: LogKind) -> PathBuf {
    root.join(kind.name())
}

/// Target directories of `kind` whose names satisfy `keep`, sorted by name.
pub fn targets(
    root: &Path,
    kind: LogKind,
    keep: impl Fn(&str) -> bool,
    skipped: &mut Skipped,
) -> Vec<Target> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(kind_dir(root, kind)) else {
        return out;
    };
    for entry in entries {
        let Ok(entry) = entry else {
            skipped.entries += 1;
            continue;
        };
        let Ok(file_type) = entry.file_type() else {
            skipped.entries += 1;
            continue;
        };
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            skipped.entries += 1;
            continue;
        };
        // `file_type` does not follow links: a link to elsewhere is not a target.
        if !file_type.is_dir() || name.starts_with('.') {
            skipped.entries += 1;
            continue;
        }
        if keep(&name) {
            out.push(Target {
                path: entry.path(),
                name,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The hour files of a target, sorted by name; files with odd names are skipped and counted.
pub fn hour_files(target: &Target, skipped: &mut Skipped) -> Vec<HourFile> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(&target.path) else {
        return out;
    };
    for entry in entries {
        let Ok(entry) = entry else {
            skipped.entries += 1;
            continue;
        };
        let is_file = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        let name = entry.file_name().to_str().map(str::to_string);
        match (is_file, name.as_deref().and_then(hour_of_name)) {
            (true, Some(hour_start)) => out.push(HourFile {
                path: entry.path(),
                name: name.unwrap_or_default(),
                hour_start,
            }),
            _ => skipped.entries += 1,
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Whether a target holds a non-empty hour file overlapping `[lo, hi]`, read from the names
/// alone (its first such entry ends the listing): what label values of the layout need.
pub fn has_hour_in(target: &Target, lo: i64, hi: i64) -> bool {
    let Ok(entries) = fs::read_dir(&target.path) else {
        return false;
    };
    entries.flatten().any(|entry| {
        let overlaps = entry
            .file_name()
            .to_str()
            .and_then(hour_of_name)
            .is_some_and(|start| hour_overlaps(start, lo, hi));
        // Only then the (cheaper than reading, dearer than the name) type and size.
        overlaps
            && entry
                .metadata()
                .is_ok_and(|m| m.file_type().is_file() && m.len() > 0)
    })
}

/// `YYYY-MM-DD_HH.log` → start of that hour in nanoseconds; `None` for any other name.
pub fn hour_of_name(name: &str) -> Option<i64> {
    let b = name.as_bytes();
    if b.len() != 17 || &name[13..] != ".log" || b[4] != b'-' || b[7] != b'-' || b[10] != b'_' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        name.get(r)
            .filter(|s| s.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
    };
    let (year, month, day, hour) = (num(0..4)?, num(5..7)?, num(8..10)?, num(11..13)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > crate::logstore::line::days_in_month(year, month)
        || hour > 23
    {
        return None;
    }
    Some((days_from_civil(year, month, day) * 24 + hour) * HOUR_NANOS)
}

/// The file name of the hour holding `ts` (used by the writer and by tests).
pub fn name_of_hour(ts: i64) -> String {
    let secs = ts.div_euclid(1_000_000_000);
    let t = chrono::DateTime::<chrono::Utc>::from_timestamp(secs, 0).unwrap_or_default();
    t.format("%Y-%m-%d_%H.log").to_string()
}

/// Whether an hour file may hold lines of `[lo, hi]`, judged by its name (as Lethe does).
pub fn hour_overlaps(hour_start: i64, lo: i64, hi: i64) -> bool {
    hour_start <= hi && hour_start.saturating_add(HOUR_NANOS) > lo
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hour_names() {
        assert_eq!(hour_of_name("1970-01-01_01.log"), Some(HOUR_NANOS));
        assert_eq!(
            hour_of_name("2009-11-10_21.log"),
            Some(1_257_886_800 * 1_000_000_000)
        );
        for bad in [
            "0000-00-00_00.log",
            "2009-11-10_24.log",
            "2009-11-10_21.txt",
            "x.log",
            "2009-13-10_21.log",
        ] {
            assert_eq!(hour_of_name(bad), None, "{bad}");
        }
        assert_eq!(
            name_of_hour(1_257_886_800 * 1_000_000_000 + 5),
            "2009-11-10_21.log"
        );
    }

    #[test]
    fn overlap_by_name() {
        let h = 10 * HOUR_NANOS;
        assert!(hour_overlaps(h, h - 5, h));
        assert!(hour_overlaps(h, h + HOUR_NANOS - 1, h + HOUR_NANOS * 3));
        assert!(!hour_overlaps(h, h + HOUR_NANOS, h + HOUR_NANOS * 3));
        assert!(!hour_overlaps(h, 0, h - 1));
    }
}
