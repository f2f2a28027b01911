//! Log-metric counts of hour files that no longer change, remembered.
//!
//! A dashboard's log panel asks `count_over_time`, `rate` or `bytes_over_time` of the same
//! pipeline over the same window every refresh; every hour file but the newest is the same as
//! last time. So each such file's lines are counted once per pipeline into bins on a grid fine
//! enough to rebuild any bucket of the query (the greatest common divisor of the query's bucket
//! bounds, at least [`MIN_WIDTH`]), kept in the results cache, and later queries read the bins
//! instead of the file. A bin `(e − width, e]` lies inside one bucket whenever every bound is on
//! the grid, so sums of bins are exactly what a scan would count.
//!
//! A file's bins are keyed by what its index says of it (device, inode, modification time, the
//! length read, whether a last line without a newline counts), taken before the file is read: a
//! late line, a rewrite or a file deleted and written again makes another key, so an answer is
//! never built from bins of content that is gone. (Not the index's fingerprint of the file's
//! edges: a file read whole without an index has none, and the same file must find the same
//! bins whether or not it has been indexed since.) Only files whose newest line is older than the freshness bound are
//! remembered: a file still being written would change key at every refresh.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::results_cache::key::KeyBuilder;
use crate::results_cache::{CacheFace, Key};

use super::index::FileIndex;

/// The finest grid remembered: 720 bins an hour.
pub const MIN_WIDTH: i64 = 5_000_000_000;

/// Bins one scan worker may open for files being remembered (24 bytes each, plus the map's
/// share): past it nothing is remembered this time, and the answer is the scan's as always.
pub const MAX_BINS_PER_WORKER: usize = 1 << 20;

/// Bytes of stream keys one worker may hold for files being remembered (labels made by
/// templates can be 64 KiB a line), with the same consequence.
pub const MAX_KEY_BYTES_PER_WORKER: usize = 16 << 20;

/// What a log metric reads and what it remembers (see `Store::remembering`).
pub struct Remembering {
    /// The files to read.
    pub scan: Vec<super::scan::ScanFile>,
    /// For each file read: the key its bins are remembered under, if it is remembered.
    pub roles: Vec<Option<Key>>,
    /// Remembered counts standing for files not read.
    pub remembered: Vec<Arc<FileBins>>,
    /// The bins' grid (`None`: nothing is remembered for this query).
    pub grid: Option<Grid>,
    /// Oldest and newest line of the files being remembered: they are read whole.
    pub span: Option<(i64, i64)>,
}

impl Remembering {
    /// Every file read, nothing remembered.
    pub fn none(scan: Vec<super::scan::ScanFile>) -> Self {
        let roles = vec![None; scan.len()];
        Remembering {
            scan,
            roles,
            remembered: Vec::new(),
            grid: None,
            span: None,
        }
    }
}

/// Bin ends are `phase + k·width` (nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// Nanoseconds between bin ends.
    pub width: i64,
    /// Where bin ends fall within `width`.
    pub phase: i64,
}

fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.abs()
}

impl Grid {
    /// The grid every bound lies on; `None` when it would be finer than [`MIN_WIDTH`].
    pub fn of(bounds: &[i64]) -> Option<Grid> {
        let first = *bounds.first()?;
        let width = bounds
            .windows(2)
            .fold(0i64, |g, w| gcd(g, w[1].saturating_sub(w[0])));
        // One bound: any grid through it; take the hour's.
        let width = if width == 0 { 3_600_000_000_000 } else { width };
        (width >= MIN_WIDTH).then(|| Grid {
            width,
            phase: first.rem_euclid(width),
        })
    }

    /// The end of the bin holding time `ts`: the first grid point at or after it.
    pub fn bin_end(&self, ts: i64) -> i64 {
        let k = (ts - self.phase).div_euclid(self.width);
        let on_grid = (ts - self.phase).rem_euclid(self.width) == 0;
        self.phase + (if on_grid { k } else { k + 1 }) * self.width
    }
}

/// `(bin end, lines, message bytes)`.
pub type Bin = (i64, u64, u64);

/// One file's counts: per stream (labels as the query labels them), bins with lines, as
/// `(bin end, lines, message bytes)` in time order.
#[derive(Debug, Default)]
pub struct FileBins {
    /// Each stream's labels and bins.
    pub streams: Vec<(BTreeMap<String, String>, Vec<Bin>)>,
}

impl FileBins {
    /// What the bins hold, for the cache's weigher.
    pub fn bytes(&self) -> usize {
        self.streams
            .iter()
            .map(|(labels, bins)| {
                labels
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 48)
                    .sum::<usize>()
                    + bins.len() * 24
                    + 48
            })
            .sum::<usize>()
            + 64
    }
}

/// The key of a file's bins for one query: the query and grouping as parsed (their debug form
/// names every matcher, filter, stage and label), the grid, and the file's identity.
pub fn key(query: &str, target: &str, index: &FileIndex, grid: Grid) -> Key {
    let mut key = KeyBuilder::new(CacheFace::Log, "file-bins");
    key.part(query.as_bytes())
        .number(grid.width)
        .number(grid.phase)
        .part(target.as_bytes())
        .number(index.dev as i64)
        .number(index.ino as i64)
        .number(index.mtime.0)
        .number(index.mtime.1)
        .number(index.indexed_len as i64)
        .number(i64::from(index.tail.is_some()));
    key.finish()
}

/// Per worker, per file: stream key → bins, appended as lines come (a block's lines are in
/// time order, so most lines add to the last bin).
pub type Fine = Vec<rustc_hash::FxHashMap<crate::logql::short_eq::Key, Vec<(i64, u64, u64)>>>;

/// What counting one line cost: a bin opened, and the bytes of a stream key first seen.
#[derive(Debug, Default, Clone, Copy)]
pub struct Added {
    /// Bins opened.
    pub bins: usize,
    /// Bytes of stream keys first seen.
    pub key_bytes: usize,
}

/// Counts one line into its file's bins.
pub fn add(
    fine: &mut Fine,
    file: usize,
    key: &crate::logql::short_eq::Key,
    bin_end: i64,
    bytes: u64,
) -> Added {
    if fine.len() <= file {
        fine.resize_with(file + 1, Default::default);
    }
    let streams = &mut fine[file];
    let mut added = Added::default();
    let bins = match streams.get_mut(key) {
        Some(bins) => bins,
        None => {
            added.key_bytes = key.0.len();
            streams.entry(key.clone()).or_default()
        }
    };
    match bins.last_mut() {
        Some(last) if last.0 == bin_end => {
            last.1 += 1;
            last.2 += bytes;
        }
        _ => {
            bins.push((bin_end, 1, bytes));
            added.bins = 1;
        }
    }
    added
}

/// Workers' bins of one file's stream, in time order, equal bins added up.
pub fn merge_bins(mut parts: Vec<(i64, u64, u64)>) -> Vec<(i64, u64, u64)> {
    parts.sort_by_key(|b| b.0);
    let mut out: Vec<(i64, u64, u64)> = Vec::with_capacity(parts.len());
    for b in parts {
        match out.last_mut() {
            Some(last) if last.0 == b.0 => {
                last.1 += b.1;
                last.2 += b.2;
            }
            _ => out.push(b),
        }
    }
    out
}

/// One file's bins from every worker's share, each stream labelled as the query labels it.
pub fn collect(
    fines: &mut [Fine],
    file: usize,
    labels_of: &dyn Fn(&[u8]) -> BTreeMap<String, String>,
) -> FileBins {
    let mut by_stream: rustc_hash::FxHashMap<crate::logql::short_eq::Key, Vec<(i64, u64, u64)>> =
        Default::default();
    for fine in fines.iter_mut() {
        if let Some(streams) = fine.get_mut(file) {
            for (key, bins) in streams.drain() {
                by_stream.entry(key).or_default().extend(bins);
            }
        }
    }
    FileBins {
        streams: by_stream
            .into_iter()
            .map(|(key, bins)| (labels_of(&key.0), merge_bins(bins)))
            .collect(),
    }
}

/// A remembered file's bins added into the query's buckets.
pub fn add_into(
    bins: &Arc<FileBins>,
    bounds: &[i64],
    merged: &mut super::StreamBuckets,
    max_streams: usize,
) -> Result<(), usize> {
    for (labels, stream_bins) in &bins.streams {
        let mut slot: Option<&mut Vec<(u64, u64)>> = None;
        for &(end, n, b) in stream_bins {
            let j = bounds.partition_point(|&x| x < end);
            if j == 0 || j >= bounds.len() {
                continue;
            }
            if slot.is_none() {
                if merged.len() >= max_streams && !merged.contains_key(labels) {
                    return Err(max_streams);
                }
                slot = Some(
                    merged
                        .entry(labels.clone())
                        .or_insert_with(|| vec![(0, 0); bounds.len()]),
                );
            }
            if let Some(s) = slot.as_deref_mut() {
                s[j].0 += n;
                s[j].1 += b;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_grid_holds_every_bound_and_bins_fall_inside_buckets() {
        let s = 1_000_000_000;
        let bounds = [100 * s, 400 * s, 160 * s + 300 * s, 700 * s];
        let grid = Grid::of(&bounds).expect("grid");
        assert_eq!(grid.width, 60 * s);
        assert_eq!(grid.phase, (100 * s).rem_euclid(60 * s));
        assert_eq!(grid.bin_end(100 * s), 100 * s);
        assert_eq!(grid.bin_end(100 * s + 1), 160 * s);
        assert!(Grid::of(&[0, s]).is_none());
        assert_eq!(
            merge_bins(vec![(5, 1, 10), (3, 2, 2), (5, 1, 1)]),
            [(3, 2, 2), (5, 2, 11)]
        );
    }
}
