//! Log metrics on the file store: lines and bytes per stream between bucket bounds, and the
//! values `| unwrap` reads, in one pass over the window's lines on every core; settled files'
//! counts remembered in the results cache (`file_bins`).

use super::*;
use crate::logstore::series_keys::{
    key_labels, pairs_labels, stream_key, KeyPlan, MAX_BUCKET_COPIES,
};

impl Store {
    /// [`LogStore::buckets`]: one pass over the window's lines, on every core.
    pub(super) fn count_buckets(
        &self,
        count: &Count<'_>,
        bounds: &[i64],
    ) -> Result<StreamBuckets, ScanStop> {
        let Count {
            query,
            deadline,
            cancelled,
            max_series: max_streams,
            grouping,
            ..
        } = *count;
        let (Some(&first), Some(&last)) = (bounds.first(), bounds.last()) else {
            return Ok(BTreeMap::new());
        };
        let (lo, hi) = (first.saturating_add(1), last);
        let (files, mut request) = self.metric_files(query, lo, hi, deadline, cancelled)?;
        // Files whose counts for this query are remembered are not read; files that no longer
        // change are also counted into bins, read whole, and remembered (`file_bins`).
        let remembering = self.remembering(query, grouping, bounds, files);
        let files = remembering.scan;
        if let Some((a, b)) = remembering.span {
            request.lo = request.lo.min(a);
            request.hi = request.hi.max(b);
        }
        let (roles, grid) = (&remembering.roles, remembering.grid);
        let gave_up = AtomicBool::new(false);
        type Counts = rustc_hash::FxHashMap<crate::logql::short_eq::Key, Vec<(u64, u64)>>;
        // Each new stream costs a bucket array: past the limit the scan stops (the caller
        // answers 422), so memory stays bounded by streams × buckets.
        let too_many = AtomicBool::new(false);
        let too_big = AtomicBool::new(false);
        let bucket_arrays = std::sync::atomic::AtomicUsize::new(0);
        let max_bucket_arrays = max_streams.saturating_mul(MAX_BUCKET_COPIES);
        let plan = KeyPlan::new(query.kind, grouping);
        let bytes_read = std::sync::atomic::AtomicUsize::new(0);
        let states = scan::for_each_match(
            &files,
            &request,
            &self.workers,
            &too_many,
            &bytes_read,
            || {
                (
                    Counts::default(),
                    crate::logql::short_eq::Key::default(),
                    0usize,
                    file_bins::Fine::default(),
                    file_bins::Added::default(),
                )
            },
            |(counts, key, key_bytes, fine, fine_cost), file_index, _file, line, extracted| {
                let j = bounds.partition_point(|&b| b < line.ts);
                let in_window = j != 0 && j < bounds.len();
                let remember = match (grid, roles.get(file_index)) {
                    (Some(grid), Some(Some(_))) => Some(grid),
                    _ => None,
                };
                if !in_window && remember.is_none() {
                    return;
                }
                match (grouping, extracted) {
                    (None, None) => stream_key(&mut key.0, line),
                    _ => plan.labels_key(&mut key.0, line, extracted),
                }
                // Bytes of the line as the pipeline leaves it (Loki counts the same).
                let message = extracted.map_or(line.message, |o| o.message(line.message));
                let remember =
                    remember.filter(|_| !gave_up.load(std::sync::atomic::Ordering::Relaxed));
                if let Some(grid) = remember {
                    if fine_cost.bins < file_bins::MAX_BINS_PER_WORKER
                        && fine_cost.key_bytes < file_bins::MAX_KEY_BYTES_PER_WORKER
                    {
                        let added = file_bins::add(
                            fine,
                            file_index,
                            key,
                            grid.bin_end(line.ts),
                            message.len() as u64,
                        );
                        fine_cost.bins += added.bins;
                        fine_cost.key_bytes += added.key_bytes;
                    } else {
                        // Past the bound nothing is remembered; what was counted is dropped.
                        gave_up.store(true, std::sync::atomic::Ordering::Relaxed);
                        fine.clear();
                    }
                }
                if !in_window {
                    return;
                }
                let slot = match counts.get_mut(key) {
                    Some(slot) => slot,
                    None => {
                        // One worker alone over the limit means the answer is too: stop every
                        // worker before the next stream's buckets are allocated.
                        // All workers' bucket arrays together: each worker keeps its own
                        // array for a stream it meets, so without a shared bound a query could
                        // hold the limit's buckets once per core.
                        let held = bucket_arrays.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if counts.len() >= max_streams || held >= max_bucket_arrays {
                            too_many.store(true, std::sync::atomic::Ordering::Relaxed);
                            return;
                        }
                        // Labels made by templates can be large: their bytes are bounded too.
                        *key_bytes += key.0.len();
                        if *key_bytes > MAX_LABEL_BYTES {
                            too_big.store(true, std::sync::atomic::Ordering::Relaxed);
                            too_many.store(true, std::sync::atomic::Ordering::Relaxed);
                            return;
                        }
                        counts
                            .entry(key.clone())
                            .or_insert_with(|| vec![(0, 0); bounds.len()])
                    }
                };
                slot[j].0 += 1;
                slot[j].1 += message.len() as u64;
            },
        );
        self.metrics
            .store_bytes_scanned
            .inc_by(bytes_read.into_inner() as u64);
        if too_big.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(ScanStop::LabelsTooLarge(MAX_LABEL_BYTES));
        }
        if too_many.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(ScanStop::TooManyStreams(max_streams));
        }
        let states = states?;
        let labels_of = |key: &[u8]| {
            if grouping.is_none() && query.pipeline.is_empty() {
                key_labels(query.kind, key)
            } else {
                pairs_labels(key)
            }
        };
        let mut merged = StreamBuckets::new();
        let mut fines = Vec::with_capacity(states.len());
        for (counts, _, _, fine, _) in states {
            for (key, buckets) in counts {
                let labels = labels_of(&key.0);
                if merged.len() >= max_streams && !merged.contains_key(&labels) {
                    return Err(ScanStop::TooManyStreams(max_streams));
                }
                let slot = merged
                    .entry(labels)
                    .or_insert_with(|| vec![(0, 0); bounds.len()]);
                for (s, b) in slot.iter_mut().zip(buckets) {
                    s.0 += b.0;
                    s.1 += b.1;
                }
            }
            fines.push(fine);
        }
        if let Some(cache) = self
            .results
            .as_ref()
            .filter(|_| !gave_up.load(std::sync::atomic::Ordering::Relaxed))
        {
            for (file_index, role) in roles.iter().enumerate() {
                let Some(key) = role else { continue };
                let bins = file_bins::collect(&mut fines, file_index, &labels_of);
                cache.insert(
                    key.clone(),
                    crate::results_cache::Value::Held {
                        bytes: bins.bytes(),
                        value: Arc::new(bins),
                    },
                );
            }
        }
        for bins in &remembering.remembered {
            file_bins::add_into(bins, bounds, &mut merged, max_streams)
                .map_err(ScanStop::TooManyStreams)?;
        }
        Ok(merged)
    }

    /// Which of `files` a log metric reads, which of those it also remembers, and the
    /// remembered counts that stand for the others (see `file_bins`).
    fn remembering(
        &self,
        query: &LogQuery,
        grouping: Option<&crate::logql::pipeline::Grouping>,
        bounds: &[i64],
        files: Vec<ScanFile>,
    ) -> file_bins::Remembering {
        let grid = file_bins::Grid::of(bounds);
        let (Some(cache), Some(grid)) = (self.results.as_ref(), grid) else {
            return file_bins::Remembering::none(files);
        };
        let freshness = i64::try_from(cache.settings.max_freshness.as_nanos()).unwrap_or(i64::MAX);
        let settled_before = crate::time::timestamp::Timestamp::now()
            .0
            .saturating_sub(freshness);
        let query_text = format!("{query:?}\n{grouping:?}");
        let mut out = file_bins::Remembering::none(Vec::new());
        out.grid = Some(grid);
        for file in files {
            // Lines' times from the index; a file read whole without one (its hour lies inside
            // the window) is settled when its hour is, and is read whole anyway.
            let times = match (file.index.min_ts(), file.index.max_ts()) {
                (Some(a), Some(b)) if a != i64::MIN && b != i64::MAX => Some((a, b)),
                _ => None,
            };
            let settled = match times {
                Some((_, newest)) => newest < settled_before,
                None => {
                    file.index.blocks.iter().all(|b| b.min_ts == i64::MIN)
                        && file.hour_start.saturating_add(layout::HOUR_NANOS) <= settled_before
                }
            };
            if !settled {
                out.roles.push(None);
                out.scan.push(file);
                continue;
            }
            let key = file_bins::key(&query_text, &file.target, &file.index, grid);
            let remembered = match cache.get(&key) {
                Some(crate::results_cache::Value::Held { value, .. }) => {
                    value.downcast::<file_bins::FileBins>().ok()
                }
                _ => None,
            };
            match remembered {
                Some(bins) => out.remembered.push(bins),
                None => {
                    if let Some((oldest, newest)) = times {
                        out.span = Some(match out.span {
                            Some((a, b)) => (a.min(oldest), b.max(newest)),
                            None => (oldest, newest),
                        });
                    }
                    out.roles.push(Some(key));
                    out.scan.push(file);
                }
            }
        }
        out
    }

    /// [`LogStore::samples`]: per series, its labels are those `grouping` keeps, without the
    /// unwrapped label. Past `max_series` series or `max_samples` values the scan stops
    /// (answered 422).
    pub(super) fn unwrapped_samples(
        &self,
        count: &Count<'_>,
        lo: i64,
        hi: i64,
    ) -> Result<SeriesSamples, ScanStop> {
        let Count {
            query,
            deadline,
            cancelled,
            max_series,
            max_samples,
            grouping,
        } = *count;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (files, request) = self.metric_files(query, lo, hi, deadline, cancelled)?;
        type Values = rustc_hash::FxHashMap<crate::logql::short_eq::Key, Vec<(i64, f64)>>;
        let halt = AtomicBool::new(false);
        let held = AtomicUsize::new(0);
        let key_bytes = AtomicUsize::new(0);
        let plan = KeyPlan::new(query.kind, grouping);
        let bytes_read = AtomicUsize::new(0);
        let states = scan::for_each_match(
            &files,
            &request,
            &self.workers,
            &halt,
            &bytes_read,
            || (Values::default(), crate::logql::short_eq::Key::default()),
            |(values, key), _, _file, line, outcome| {
                let Some(outcome) = outcome else { return };
                // A marked line's key keeps `__error__` whatever the grouping (`labels_key`).
                plan.labels_key(&mut key.0, line, Some(outcome));
                if held.fetch_add(1, Ordering::Relaxed) >= max_samples {
                    halt.store(true, Ordering::Relaxed);
                    return;
                }
                let sample = (line.ts, outcome.sample.unwrap_or(f64::NAN));
                let full = values.len() >= max_series;
                match values.get_mut(key) {
                    Some(series) => series.push(sample),
                    None if full => halt.store(true, Ordering::Relaxed),
                    None => {
                        if key_bytes.fetch_add(key.0.len(), Ordering::Relaxed) > MAX_LABEL_BYTES {
                            halt.store(true, Ordering::Relaxed);
                            return;
                        }
                        values.insert(key.clone(), vec![sample]);
                    }
                }
            },
        );
        self.metrics
            .store_bytes_scanned
            .inc_by(bytes_read.into_inner() as u64);
        let states = states?;
        if halt.load(Ordering::Relaxed) {
            return Err(if key_bytes.load(Ordering::Relaxed) > MAX_LABEL_BYTES {
                ScanStop::LabelsTooLarge(MAX_LABEL_BYTES)
            } else if held.load(Ordering::Relaxed) > max_samples {
                ScanStop::TooManySamples(max_samples)
            } else {
                ScanStop::TooManyStreams(max_series)
            });
        }
        let mut merged = SeriesSamples::new();
        for (values, _) in states {
            for (key, series) in values {
                let labels = pairs_labels(&key.0);
                if merged.len() >= max_series && !merged.contains_key(&labels) {
                    return Err(ScanStop::TooManyStreams(max_series));
                }
                merged.entry(labels).or_default().extend(series);
            }
        }
        for series in merged.values_mut() {
            series.sort_by_key(|s| s.0);
        }
        Ok(merged)
    }

    /// The hour files a log metric over `[lo, hi]` reads, opened, and the search over them.
    /// Log metrics read every matching line of the window: hours it covers need no index.
    fn metric_files<'q>(
        &self,
        query: &'q LogQuery,
        lo: i64,
        hi: i64,
        deadline: Instant,
        cancelled: &'q AtomicBool,
    ) -> Result<(Vec<ScanFile>, Search<'q>), ScanStop> {
        let candidates = self.candidates(
            &[query.kind],
            |name| query.target_matches(name),
            |file| layout::hour_overlaps(file.hour_start, lo, hi),
        );
        let mut warnings = Vec::new();
        let stop = || scan::interrupted(deadline, cancelled).is_some();
        let whole = |file: &layout::HourFile| covers_hour(file, lo, hi);
        let files = self.open_and_index(candidates, &mut warnings, &stop, &whole);
        if let Some(why) = scan::interrupted(deadline, cancelled) {
            return Err(why);
        }
        let search = Search {
            query,
            lo,
            hi,
            limit: 0,
            keep: Keep::Oldest,
            deadline,
            cancelled,
        };
        Ok((files, search))
    }
}
