//! Encoding log answers: Lethe's `logs` shape (what Venti reads) and Loki's `streams` shape.
//! Key order is fixed by the structs; invalid UTF-8 in stored lines is replaced, never dropped.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Serialize;

use super::logs::Order;
use crate::logql::LogKind;
use crate::store::line;
use crate::store::FoundLine;

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    status: &'static str,
    data: Data<T>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

#[derive(Serialize)]
struct Data<T: Serialize> {
    #[serde(rename = "resultType")]
    result_type: &'static str,
    result: T,
}

#[derive(Serialize)]
struct PodLine<'a> {
    time: Cow<'a, str>,
    namespace: Cow<'a, str>,
    pod: Cow<'a, str>,
    container: Cow<'a, str>,
    log: Cow<'a, str>,
}

#[derive(Serialize)]
struct NodeLine<'a> {
    time: Cow<'a, str>,
    node: Cow<'a, str>,
    process: Cow<'a, str>,
    log: Cow<'a, str>,
}

fn text(b: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(b)
}

fn ordered<'a>(
    lines: &'a [FoundLine],
    order: Order,
) -> Box<dyn Iterator<Item = &'a FoundLine> + 'a> {
    match order {
        Order::Ascending => Box::new(lines.iter()),
        Order::Descending => Box::new(lines.iter().rev()),
    }
}

pub fn lethe(
    kind: LogKind,
    lines: &[FoundLine],
    order: Order,
    warnings: &[String],
) -> serde_json::Result<Vec<u8>> {
    let parsed = ordered(lines, order).filter_map(|l| line::parse(&l.text));
    match kind {
        LogKind::Pod => {
            let result: Vec<PodLine> = parsed
                .map(|l| PodLine {
                    time: text(l.time_text),
                    namespace: text(l.fields[0]),
                    pod: text(l.fields[1]),
                    container: text(l.fields[2]),
                    log: text(l.message),
                })
                .collect();
            encode("logs", result, warnings)
        }
        LogKind::Node => {
            let result: Vec<NodeLine> = parsed
                .map(|l| NodeLine {
                    time: text(l.time_text),
                    node: text(l.fields[0]),
                    process: text(l.fields[1]),
                    log: text(l.message),
                })
                .collect();
            encode("logs", result, warnings)
        }
    }
}

#[derive(Serialize)]
struct Stream<'a> {
    stream: BTreeMap<&'static str, Cow<'a, str>>,
    values: Vec<[Cow<'a, str>; 2]>,
}

/// Loki's shape: one stream per label set (sorted by labels), values in the answer's order.
pub fn streams(
    kind: LogKind,
    lines: &[FoundLine],
    order: Order,
    warnings: &[String],
) -> serde_json::Result<Vec<u8>> {
    let names = kind.labels();
    let mut by_labels: BTreeMap<Vec<Cow<str>>, Vec<[Cow<str>; 2]>> = BTreeMap::new();
    for found in ordered(lines, order) {
        let Some(l) = line::parse(&found.text) else {
            continue;
        };
        let labels: Vec<Cow<str>> = l.fields[..names.len()].iter().map(|f| text(f)).collect();
        by_labels
            .entry(labels)
            .or_default()
            .push([Cow::Owned(found.ts.to_string()), text(l.message)]);
    }
    let result: Vec<Stream> = by_labels
        .into_iter()
        .map(|(labels, values)| Stream {
            stream: names.iter().copied().zip(labels).collect(),
            values,
        })
        .collect();
    encode("streams", result, warnings)
}

fn encode<T: Serialize>(
    result_type: &'static str,
    result: T,
    warnings: &[String],
) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&Envelope {
        status: "success",
        data: Data {
            result_type,
            result,
        },
        warnings,
    })
}
