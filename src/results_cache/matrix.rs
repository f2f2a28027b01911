//! Range-query answers in Prometheus's matrix shape, held as the upstream printed them.
//!
//! A cached answer must be byte-identical to the upstream's answer for the whole query, so
//! nothing here re-formats a number: each point (`[1704067200,"0.5"]`) and each series' `metric`
//! object are kept as the upstream's text, pieces are cut and joined on point boundaries, and the
//! envelope is written exactly as Prometheus writes a matrix. An answer in any other shape
//! (warnings, infos, native histograms, statistics, another server's extra fields) is not
//! understood here: the caller then passes the whole query through uncached.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::value::RawValue;

/// One series over a stretch of the step grid: its points' times (milliseconds) and texts.
#[derive(Debug, Clone)]
pub struct Series {
    /// The `metric` object as the upstream printed it (its identity across pieces).
    pub metric: Arc<str>,
    times: Vec<i64>,
    /// `text[starts[i]..ends[i]]` is point `i`.
    ends: Vec<u32>,
    text: String,
}

impl Series {
    fn start_of(&self, i: usize) -> usize {
        if i == 0 {
            0
        } else {
            self.ends[i - 1] as usize + 1
        }
    }

    /// Points with times in `[from, to]`, as one comma-joined text (empty when none).
    fn slice(&self, from: i64, to: i64) -> Option<&str> {
        let a = self.times.partition_point(|&t| t < from);
        let b = self.times.partition_point(|&t| t <= to);
        (a < b).then(|| &self.text[self.start_of(a)..self.ends[b - 1] as usize])
    }

    /// The same series cut to `[from, to]`; `None` when it has no point there.
    fn cut(&self, from: i64, to: i64) -> Option<Series> {
        let a = self.times.partition_point(|&t| t < from);
        let b = self.times.partition_point(|&t| t <= to);
        if a >= b {
            return None;
        }
        let base = self.start_of(a);
        let text = self.text[base..self.ends[b - 1] as usize].to_string();
        Some(Series {
            metric: Arc::clone(&self.metric),
            times: self.times[a..b].to_vec(),
            ends: self.ends[a..b].iter().map(|&e| e - base as u32).collect(),
            text,
        })
    }

    fn bytes(&self) -> usize {
        self.metric.len() + self.times.len() * 12 + self.text.len() + 64
    }
}

/// A matrix answer over the grid points `[from, to]` (milliseconds, both included).
#[derive(Debug, Clone)]
pub struct Extent {
    pub from: i64,
    pub to: i64,
    pub series: Vec<Series>,
}

impl Extent {
    /// What the extent holds, in bytes, for the cache's weigher.
    pub fn bytes(&self) -> usize {
        self.series.iter().map(Series::bytes).sum::<usize>() + 64
    }

    /// The extent cut to `[from, to]` (series without points there dropped).
    pub fn cut(&self, from: i64, to: i64) -> Extent {
        Extent {
            from: from.max(self.from),
            to: to.min(self.to),
            series: self.series.iter().filter_map(|s| s.cut(from, to)).collect(),
        }
    }

    /// Two extents that meet or overlap as one (`newer`'s points win where both have some).
    pub fn join(&self, newer: &Extent) -> Extent {
        let mut by_metric: BTreeMap<Arc<str>, Vec<Series>> = BTreeMap::new();
        let before = self
            .series
            .iter()
            .filter_map(|s| s.cut(i64::MIN, newer.from - 1));
        let after = self
            .series
            .iter()
            .filter_map(|s| s.cut(newer.to + 1, i64::MAX));
        for s in before.chain(newer.series.iter().cloned()).chain(after) {
            by_metric.entry(Arc::clone(&s.metric)).or_default().push(s);
        }
        let series = by_metric
            .into_values()
            .map(|parts| concat(&parts))
            .collect();
        Extent {
            from: self.from.min(newer.from),
            to: self.to.max(newer.to),
            series,
        }
    }
}

/// Parts of one series, in time order, as one.
fn concat(parts: &[Series]) -> Series {
    let mut out = Series {
        metric: Arc::clone(&parts[0].metric),
        times: Vec::new(),
        ends: Vec::new(),
        text: String::new(),
    };
    for part in parts {
        let base = if out.text.is_empty() {
            0
        } else {
            out.text.push(',');
            out.text.len()
        };
        out.text.push_str(&part.text);
        out.times.extend_from_slice(&part.times);
        out.ends.extend(part.ends.iter().map(|&e| e + base as u32));
    }
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer<'a> {
    #[serde(borrow)]
    status: &'a str,
    #[serde(borrow)]
    data: Data<'a>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Data<'a> {
    #[serde(rename = "resultType", borrow)]
    result_type: &'a str,
    #[serde(borrow)]
    result: Vec<SeriesText<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeriesText<'a> {
    #[serde(borrow)]
    metric: &'a RawValue,
    #[serde(borrow)]
    values: Vec<&'a RawValue>,
}

/// A point's time as Prometheus prints it (seconds with at most three decimals), in
/// milliseconds; anything else is not understood.
fn point_time(point: &str) -> Option<i64> {
    let inner = point.strip_prefix('[')?;
    let (t, _) = inner.split_once(',')?;
    let (whole, frac) = match t.split_once('.') {
        Some((w, f)) if !f.is_empty() && f.len() <= 3 && f.bytes().all(|b| b.is_ascii_digit()) => {
            (w, f)
        }
        Some(_) => return None,
        None => (t, ""),
    };
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds: i64 = whole.parse().ok()?;
    let millis: i64 = format!("{frac:0<3}").parse().ok()?;
    seconds.checked_mul(1000)?.checked_add(millis)
}

/// Reads a successful matrix answer covering the grid points `[from, to]`; `None` for anything
/// else (an error, warnings, histograms, another shape, series not in label order).
pub fn parse(body: &[u8], from: i64, to: i64) -> Option<Extent> {
    let answer: Answer<'_> = serde_json::from_slice(body).ok()?;
    if answer.status != "success" || answer.data.result_type != "matrix" {
        return None;
    }
    let mut series: Vec<Series> = Vec::with_capacity(answer.data.result.len());
    let mut previous: Option<BTreeMap<String, String>> = None;
    for s in answer.data.result {
        // Prometheus sorts a range query's series by their labels; an upstream that does not
        // (VictoriaMetrics, for some expressions) writes answers pieces cannot reproduce.
        let these = labels(s.metric.get());
        if previous
            .as_ref()
            .is_some_and(|p| compare(p, &these) != Ordering::Less)
        {
            return None;
        }
        previous = Some(these);
        let mut times = Vec::with_capacity(s.values.len());
        let mut ends = Vec::with_capacity(s.values.len());
        let mut text = String::new();
        for point in s.values {
            let point = point.get();
            let t = point_time(point)?;
            if times.last().is_some_and(|&last| last >= t) || !(from..=to).contains(&t) {
                return None;
            }
            if !text.is_empty() {
                text.push(',');
            }
            text.push_str(point);
            times.push(t);
            ends.push(u32::try_from(text.len()).ok()?);
        }
        // Held until evicted: no spare capacity, so the weigher's count is what is held.
        text.shrink_to_fit();
        series.push(Series {
            metric: Arc::from(s.metric.get()),
            times,
            ends,
            text,
        });
    }
    Some(Extent { from, to, series })
}

/// The labels of a `metric` object, for ordering series as Prometheus does.
fn labels(metric: &str) -> BTreeMap<String, String> {
    serde_json::from_str(metric).unwrap_or_default()
}

/// Prometheus's `labels.Compare`: label by label (sorted by name), name then value.
fn compare(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Ordering {
    a.iter().cmp(b.iter())
}

/// The answer for the whole query from its parts, in time order (disjoint, chronological):
/// each series' points joined across parts, series sorted by their labels (Prometheus sorts
/// a range query's matrix so), written as Prometheus writes a matrix.
pub fn encode(parts: &[&Extent], from: i64, to: i64) -> Vec<u8> {
    let mut by_metric: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for part in parts {
        for s in &part.series {
            if let Some(points) = s.slice(from, to) {
                by_metric.entry(&s.metric).or_default().push(points);
            }
        }
    }
    let mut series: Vec<(BTreeMap<String, String>, &str, Vec<&str>)> = by_metric
        .into_iter()
        .map(|(metric, points)| (labels(metric), metric, points))
        .collect();
    series.sort_by(|a, b| compare(&a.0, &b.0));
    let size: usize = series
        .iter()
        .map(|(_, m, p)| m.len() + p.iter().map(|t| t.len() + 1).sum::<usize>() + 24)
        .sum();
    let mut out = Vec::with_capacity(size + 64);
    out.extend_from_slice(br#"{"status":"success","data":{"resultType":"matrix","result":["#);
    for (i, (_, metric, points)) in series.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"metric":"#);
        out.extend_from_slice(metric.as_bytes());
        out.extend_from_slice(br#","values":["#);
        for (j, p) in points.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.extend_from_slice(p.as_bytes());
        }
        out.extend_from_slice(b"]}");
    }
    out.extend_from_slice(b"]}}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHOLE: &str = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a"},"values":[[1000,"1"],[1060,"0.5"],[1120,"2"]]},{"metric":{"__name__":"up","job":"b"},"values":[[1120,"NaN"]]}]}}"#;

    #[test]
    fn pieces_join_into_the_whole_answer_byte_for_byte() {
        let first = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a"},"values":[[1000,"1"],[1060,"0.5"]]}]}}"#;
        let second = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a"},"values":[[1120,"2"]]},{"metric":{"__name__":"up","job":"b"},"values":[[1120,"NaN"]]}]}}"#;
        let a = parse(first.as_bytes(), 1_000_000, 1_060_000).expect("first");
        let b = parse(second.as_bytes(), 1_120_000, 1_120_000).expect("second");
        let joined = encode(&[&a, &b], 1_000_000, 1_120_000);
        assert_eq!(String::from_utf8_lossy(&joined), WHOLE);
        // Cut and joined again (an extent grown by a later fetch), the same.
        let whole = parse(WHOLE.as_bytes(), 1_000_000, 1_120_000).expect("whole");
        let grown = whole
            .cut(1_000_000, 1_000_000)
            .join(&whole.cut(1_060_000, 1_120_000));
        assert_eq!(encode(&[&grown], 1_000_000, 1_120_000), WHOLE.as_bytes());
        // A window of the whole: only its points, series without any left out.
        let window = encode(&[&whole], 1_060_000, 1_060_000);
        assert_eq!(
            String::from_utf8_lossy(&window),
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"__name__":"up","job":"a"},"values":[[1060,"0.5"]]}]}}"#
        );
    }

    #[test]
    fn fractional_times_and_unknown_shapes() {
        assert_eq!(
            point_time(r#"[1704067200.500,"1"]"#),
            Some(1_704_067_200_500)
        );
        assert_eq!(point_time(r#"[1704067200.5,"1"]"#), Some(1_704_067_200_500));
        assert_eq!(point_time(r#"[1e9,"1"]"#), None);
        assert_eq!(point_time(r#"[-5,"1"]"#), None);
        for other in [
            r#"{"status":"success","data":{"resultType":"matrix","result":[]},"warnings":["w"]}"#,
            r#"{"status":"success","isPartial":false,"data":{"resultType":"matrix","result":[]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"histograms":[]}]}}"#,
            r#"{"status":"error","errorType":"bad_data","error":"x"}"#,
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
            r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"a":"2"},"values":[]},{"metric":{"a":"1"},"values":[]}]}}"#,
        ] {
            assert!(parse(other.as_bytes(), 0, i64::MAX).is_none(), "{other}");
        }
        // A point outside the grid range asked for is not the answer to that question.
        assert!(parse(WHOLE.as_bytes(), 1_000_000, 1_060_000).is_none());
        let empty = parse(
            br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#,
            0,
            10,
        )
        .expect("empty");
        assert_eq!(
            encode(&[&empty], 0, 10),
            br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#
        );
    }
}
