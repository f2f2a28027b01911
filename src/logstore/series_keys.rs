//! Series keys while counting: a stream's fields (or its labels, extracted ones and a grouping's
//! choice) as one byte string per line, cheap to hash, turned back into labels once per series.

use std::collections::BTreeMap;

use crate::logql::LogKind;
use crate::logstore::line;

/// The first byte of every series key. A key is never empty: comparing two empty vectors
/// (whose pointers dangle) costs a masked vector load that the CPU must fault-suppress, which
/// made hash-map probes of `sum(count_over_time(…))` (one empty key) 40 % of the scan.
const KEY_START: u8 = b'k';

/// Bucket arrays one log metric may hold across its scan workers, in units of its streams
/// limit: a stream met by several workers is counted by each (each holds an array for it).
pub(crate) const MAX_BUCKET_COPIES: usize = 2;

/// A stream's key while counting (no parser, no grouping): its fields joined by `|` (a field
/// never holds one).
pub(crate) fn stream_key(key: &mut Vec<u8>, line: &line::Line<'_>) {
    key.clear();
    key.push(KEY_START);
    for (n, field) in line.fields[..line.field_count].iter().enumerate() {
        if n > 0 {
            key.push(b'|');
        }
        key.extend_from_slice(field);
    }
}

/// How a metric's series keys are made: which stream fields the grouping keeps is asked once
/// per query, not once per line.
pub(crate) struct KeyPlan<'g> {
    kind: LogKind,
    fields_kept: [bool; 3],
    grouping: Option<&'g crate::logql::pipeline::Grouping>,
}

impl<'g> KeyPlan<'g> {
    pub(crate) fn new(
        kind: LogKind,
        grouping: Option<&'g crate::logql::pipeline::Grouping>,
    ) -> Self {
        let mut fields_kept = [false; 3];
        for (kept, name) in fields_kept.iter_mut().zip(kind.labels()) {
            *kept = grouping.is_none_or(|g| g.keeps(name));
        }
        KeyPlan {
            kind,
            fields_kept,
            grouping,
        }
    }

    /// A stream's key as its labels — fields and extracted ones, those the grouping keeps —
    /// each as length-prefixed name and value.
    pub(crate) fn labels_key(
        &self,
        key: &mut Vec<u8>,
        line: &line::Line<'_>,
        extracted: Option<&crate::logql::pipeline::Outcome>,
    ) {
        key.clear();
        key.push(KEY_START);
        let mut put = |name: &str, value: &[u8]| {
            for part in [name.as_bytes(), value] {
                key.extend_from_slice(&(part.len() as u32).to_le_bytes());
                key.extend_from_slice(part);
            }
        };
        let fields = self
            .kind
            .labels()
            .iter()
            .zip(&line.fields[..line.field_count])
            .zip(self.fields_kept);
        for ((name, value), kept) in fields {
            if kept && extracted.is_none_or(|o| o.shows_stream_label(name)) {
                put(name, value);
            }
        }
        // A marked line keeps its mark through any grouping (Loki's `GroupedLabels`): the
        // engine refuses metrics over marked lines.
        for (name, value) in extracted.iter().flat_map(|o| o.labels.iter()) {
            if name == "__error__" || self.grouping.is_none_or(|g| g.keeps(name)) {
                put(name, value.as_bytes());
            }
        }
    }
}

/// The labels of a key made by [`KeyPlan::labels_key`] (a sorted map: extracted labels may come after
/// the fields in any order).
pub(crate) fn pairs_labels(key: &[u8]) -> BTreeMap<String, String> {
    let mut key = key.get(1..).unwrap_or_default();
    let mut labels = BTreeMap::new();
    let take = |rest: &mut &[u8]| -> Option<String> {
        let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
        let part = rest.get(4..4 + len)?;
        let text = String::from_utf8_lossy(part).into_owned();
        *rest = &rest[4 + len..];
        Some(text)
    };
    while let (Some(name), Some(value)) = (take(&mut key), take(&mut key)) {
        labels.entry(name).or_insert(value);
    }
    labels
}

/// The labels of a stream key made by [`stream_key`].
pub(crate) fn key_labels(kind: LogKind, key: &[u8]) -> BTreeMap<String, String> {
    kind.labels()
        .iter()
        .zip(key.get(1..).unwrap_or_default().split(|&b| b == b'|'))
        .map(|(name, v)| (name.to_string(), String::from_utf8_lossy(v).into_owned()))
        .collect()
}
