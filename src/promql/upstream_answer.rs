//! Reading an upstream's query answer into step-aligned values as it streams in. The answer of
//! a pushed-down part can be hundreds of megabytes of JSON; it is never buffered whole nor
//! turned into a `serde_json::Value` tree. Each series costs a value cell per step plus its
//! labels (counted in 16-byte units, a cell's size: an instant answer of a million series is
//! mostly labels), and the cost is counted against the sample budget as the series arrive:
//! past the budget decoding stops and the query is refused (422), in Prometheus's words.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;

use super::value::{Labels, Series, Steps, Value};

/// What an upstream answered.
#[derive(Debug)]
pub enum Answer {
    Success { value: Value, warnings: Vec<String> },
    Error { error_type: String, message: String },
}

/// Why an answer could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    #[error("the upstream's answer could not be read: {0}")]
    Invalid(String),
}

/// How to read one answer.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub steps: Steps,
    /// The part is a scalar expression (a range query answers it as a one-series matrix).
    pub scalar: bool,
    /// Value cells (series × steps) the answer may fill.
    pub max_samples: usize,
}

const TOO_MANY: &str = "\u{0}too many samples";

/// Decodes an answer from a reader (the caller feeds it the streamed body).
pub fn decode(reader: impl std::io::Read, shape: Shape) -> Result<Answer, DecodeError> {
    let mut de =
        serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(64 * 1024, reader));
    let answer = EnvelopeSeed(shape).deserialize(&mut de).map_err(|e| {
        if e.to_string().starts_with(TOO_MANY) {
            DecodeError::TooManySamples
        } else {
            DecodeError::Invalid(e.to_string())
        }
    })?;
    Ok(answer)
}

struct EnvelopeSeed(Shape);

impl<'de> DeserializeSeed<'de> for EnvelopeSeed {
    type Value = Answer;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Answer, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EnvelopeSeed {
    type Value = Answer;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Prometheus API answer")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Answer, A::Error> {
        let mut status: Option<String> = None;
        let mut value = None;
        let mut warnings = Vec::new();
        let mut error_type = None;
        let mut message = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "status" => status = Some(map.next_value()?),
                "data" => value = Some(map.next_value_seed(DataSeed(self.0))?),
                "warnings" => warnings = map.next_value()?,
                "errorType" => error_type = Some(map.next_value()?),
                "error" => message = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        match (status.as_deref(), value) {
            (Some("success"), Some(value)) => Ok(Answer::Success { value, warnings }),
            (Some("success"), None) => Err(A::Error::custom("a success without data")),
            _ => Ok(Answer::Error {
                error_type: error_type.unwrap_or_default(),
                message: message.unwrap_or_else(|| "upstream error".into()),
            }),
        }
    }
}

struct DataSeed(Shape);

impl<'de> DeserializeSeed<'de> for DataSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for DataSeed {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("{\"resultType\": …, \"result\": …}")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let shape = self.0;
        let mut result_type: Option<String> = None;
        let mut result = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "resultType" => result_type = Some(map.next_value()?),
                "result" => result = Some(map.next_value_seed(ResultSeed(shape))?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let result = result.ok_or_else(|| A::Error::custom("no result"))?;
        match (result_type.as_deref(), result) {
            (Some("scalar"), Items::Scalar(v)) => Ok(Value::Scalar(vec![v; shape.steps.count])),
            (Some("vector" | "matrix"), Items::Series(series)) if shape.scalar => {
                // A scalar part of a range query comes back as a one-series matrix.
                let points = series
                    .first()
                    .map(|s| s.points.iter().map(|p| p.unwrap_or(f64::NAN)).collect())
                    .unwrap_or_else(|| vec![f64::NAN; shape.steps.count]);
                Ok(Value::Scalar(points))
            }
            (Some("vector" | "matrix"), Items::Series(series)) => Ok(Value::Vector(series)),
            (other, _) => Err(A::Error::custom(format!(
                "unexpected result type {}",
                other.unwrap_or("(none)")
            ))),
        }
    }
}

enum Items {
    Scalar(f64),
    Series(Vec<Series>),
}

struct ResultSeed(Shape);

impl<'de> DeserializeSeed<'de> for ResultSeed {
    type Value = Items;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Items, D::Error> {
        d.deserialize_seq(self)
    }
}

/// One element of `result`: a series object, or a part of a scalar's `[time, "value"]`.
enum Element {
    Series(Series),
    Time,
    Number(f64),
}

impl<'de> Visitor<'de> for ResultSeed {
    type Value = Items;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of series or a scalar")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Items, A::Error> {
        let shape = self.0;
        let mut series = Vec::new();
        let mut scalar = None;
        let mut cells = 0usize;
        while let Some(element) = seq.next_element_seed(ElementSeed { shape, cells })? {
            match element {
                Element::Series(s) => {
                    cells = cells
                        .saturating_add(shape.steps.count)
                        .saturating_add(label_cost(&s.labels));
                    if cells > shape.max_samples {
                        return Err(A::Error::custom(TOO_MANY));
                    }
                    series.push(s);
                }
                Element::Time => {}
                Element::Number(v) => scalar = Some(v),
            }
        }
        match scalar {
            Some(v) => Ok(Items::Scalar(v)),
            None => Ok(Items::Series(series)),
        }
    }
}

struct ElementSeed {
    shape: Shape,
    /// Cells already allocated by earlier series.
    cells: usize,
}

impl<'de> DeserializeSeed<'de> for ElementSeed {
    type Value = Element;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Element, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ElementSeed {
    type Value = Element;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a series or a scalar's time and value")
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Element, E> {
        Ok(Element::Time)
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Element, E> {
        Ok(Element::Time)
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Element, E> {
        Ok(Element::Time)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Element, E> {
        parse_value(v)
            .map(Element::Number)
            .ok_or_else(|| E::custom(format!("bad sample value {v:?}")))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Element, A::Error> {
        let steps = self.shape.steps;
        if self.cells.saturating_add(steps.count) > self.shape.max_samples {
            return Err(A::Error::custom(TOO_MANY));
        }
        let mut labels = Labels::new();
        let mut points = vec![None; steps.count];
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "metric" => labels = map.next_value::<BTreeMap<String, String>>()?,
                "value" => {
                    let (t, v): (f64, String) = map.next_value()?;
                    place(&mut points, &steps, t, &v).map_err(A::Error::custom)?;
                }
                "values" => map.next_value_seed(PointsSeed {
                    points: &mut points,
                    steps,
                })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Element::Series(Series { labels, points }))
    }
}

struct PointsSeed<'p> {
    points: &'p mut Vec<Option<f64>>,
    steps: Steps,
}

impl<'de> DeserializeSeed<'de> for PointsSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for PointsSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of [time, \"value\"]")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some((t, v)) = seq.next_element::<(f64, String)>()? {
            place(self.points, &self.steps, t, &v).map_err(A::Error::custom)?;
        }
        Ok(())
    }
}

/// A series' labels in cell-sized (16-byte) units: their bytes plus the map's and strings'
/// own overhead.
pub fn label_cost(labels: &Labels) -> usize {
    let bytes: usize = labels.iter().map(|(k, v)| k.len() + v.len() + 96).sum();
    (bytes + 64).div_ceil(16)
}

fn parse_value(v: &str) -> Option<f64> {
    match v {
        "NaN" => Some(f64::NAN),
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

/// Puts a sample at its step; samples off the grid are dropped (they cannot be asked for).
fn place(points: &mut [Option<f64>], steps: &Steps, t: f64, v: &str) -> Result<(), String> {
    let value = parse_value(v).ok_or_else(|| format!("bad sample value {v:?}"))?;
    let ns = (t * 1e9).round() as i64;
    let k = if steps.count == 1 {
        0
    } else {
        let k = ((ns as f64 - steps.start as f64) / steps.step as f64).round();
        if !(0.0..steps.count as f64).contains(&k) {
            return Ok(());
        }
        k as usize
    };
    if let Some(slot) = points.get_mut(k) {
        *slot = Some(value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(count: usize, max_samples: usize) -> Shape {
        Shape {
            steps: Steps {
                start: 1_000_000_000_000,
                step: 60_000_000_000,
                count,
            },
            scalar: false,
            max_samples,
        }
    }

    #[test]
    fn matrices_vectors_scalars_and_errors() {
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{"job":"a"},"values":[[1000,"1"],[1060,"NaN"],[1120,"+Inf"]]}]},"warnings":["w"]}"#;
        let Answer::Success { value, warnings } = decode(&matrix[..], shape(3, 100)).unwrap()
        else {
            panic!("not a success");
        };
        assert_eq!(warnings, vec!["w".to_string()]);
        let Value::Vector(series) = value else {
            panic!("not a vector")
        };
        assert_eq!(series[0].labels["job"], "a");
        assert_eq!(series[0].points[0], Some(1.0));
        assert!(series[0].points[1].is_some_and(f64::is_nan));
        assert_eq!(series[0].points[2], Some(f64::INFINITY));

        let scalar =
            br#"{"status":"success","data":{"resultType":"scalar","result":[1000,"2.5"]}}"#;
        let Answer::Success { value, .. } = decode(&scalar[..], shape(3, 100)).unwrap() else {
            panic!("not a success");
        };
        assert_eq!(value, Value::Scalar(vec![2.5; 3]));

        let error = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        let Answer::Error {
            error_type,
            message,
        } = decode(&error[..], shape(1, 100)).unwrap()
        else {
            panic!("not an error");
        };
        assert_eq!(
            (error_type.as_str(), message.as_str()),
            ("bad_data", "parse error")
        );
        assert!(matches!(
            decode(&b"<html>"[..], shape(1, 100)),
            Err(DecodeError::Invalid(_))
        ));
    }

    #[test]
    fn the_budget_stops_decoding_before_allocating() {
        let series: Vec<String> = (0..50)
            .map(|i| format!(r#"{{"metric":{{"i":"{i}"}},"values":[[1000,"1"]]}}"#))
            .collect();
        let body = format!(
            r#"{{"status":"success","data":{{"resultType":"matrix","result":[{}]}}}}"#,
            series.join(",")
        );
        let per_series = 10 + label_cost(&Labels::from([("i".to_string(), "10".to_string())]));
        assert!(decode(body.as_bytes(), shape(10, 50 * per_series)).is_ok());
        assert!(matches!(
            decode(body.as_bytes(), shape(10, 40 * per_series)),
            Err(DecodeError::TooManySamples)
        ));
    }
}
