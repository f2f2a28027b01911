//! The series of the log store: its streams as label sets (`__name__` is the kind), chosen by
//! log selectors. The Prometheus face merges them with the upstream's; the Loki face answers
//! them alone.

use std::collections::BTreeMap;

use crate::logql::{LogKind, LogQuery};
use crate::logstore::{LogStore, ScanStop};

/// Label sets of the store's streams selected by `selectors` (or every stream when `None`).
pub fn store_series(
    store: &dyn LogStore,
    selectors: Option<&[LogQuery]>,
    lo: i64,
    hi: i64,
) -> Result<Vec<BTreeMap<String, String>>, ScanStop> {
    let mut out = Vec::new();
    for kind in [LogKind::Pod, LogKind::Node] {
        let chosen: Vec<&LogQuery> = match selectors {
            Some(s) => s.iter().filter(|q| q.kind == kind).collect(),
            None => Vec::new(),
        };
        if selectors.is_some() && chosen.is_empty() {
            continue;
        }
        let keep = |name: &str| chosen.is_empty() || chosen.iter().any(|q| q.target_matches(name));
        let (streams, _) = store.streams(kind, &keep, lo, hi)?;
        for values in streams {
            let selected = chosen.is_empty()
                || chosen.iter().any(|q| {
                    q.targets.iter().all(|m| m.is_match(&values[0]))
                        && q.fields.iter().all(|f| f.matches(&values[f.field]))
                });
            if selected {
                let mut labels: BTreeMap<String, String> = kind
                    .labels()
                    .iter()
                    .map(|l| l.to_string())
                    .zip(values)
                    .collect();
                labels.insert("__name__".into(), kind.name().into());
                out.push(labels);
            }
        }
    }
    Ok(out)
}

/// The store's part of `label/<name>/values` or `labels` when no selector narrows it, answered
/// from the layout where the backend can (the target labels: `namespace` of pod logs, `node` of
/// node logs, and which kinds hold any logs): `None` when the streams must be listed.
pub fn layout_answer(
    store: &dyn LogStore,
    label: Option<&str>,
    lo: i64,
    hi: i64,
) -> Result<Option<Vec<String>>, ScanStop> {
    match label {
        Some(name) => {
            let kind = match name {
                "namespace" => LogKind::Pod,
                "node" => LogKind::Node,
                _ => return Ok(None),
            };
            store.targets_in(kind, lo, hi)
        }
        None => {
            let mut names = std::collections::BTreeSet::new();
            for kind in [LogKind::Pod, LogKind::Node] {
                match store.targets_in(kind, lo, hi)? {
                    None => return Ok(None),
                    Some(targets) if !targets.is_empty() => {
                        names.insert("__name__".to_string());
                        names.extend(kind.labels().iter().map(|l| l.to_string()));
                    }
                    Some(_) => {}
                }
            }
            Ok(Some(names.into_iter().collect()))
        }
    }
}
