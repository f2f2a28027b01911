//! The counters and histograms every request touches, found without allocating. A metric
//! family's `get_or_create` takes an owned label set (three `String`s per request) and hashes it
//! under the family's lock; here each handler's meters are looked up by `&str` once made, so the
//! passthrough path pays a hash of its route template and nothing else.

use std::collections::HashMap;
use std::sync::RwLock;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use super::{HandlerLabels, HistogramFamily, RequestLabels, UpstreamLabels};
use prometheus_client::metrics::family::Family;

/// One handler's meters for one status code and face.
struct Meters {
    code: u16,
    face: &'static str,
    requests: Counter,
    duration: Histogram,
}

/// The handles already made, by route template; a handful of codes per template.
#[derive(Default)]
pub struct RequestMeters {
    by_handler: RwLock<HashMap<Box<str>, Vec<Meters>>>,
    upstream_by_handler: RwLock<HashMap<Box<str>, Histogram>>,
}

impl RequestMeters {
    /// Counts a request and observes its time to the response head.
    pub fn record(
        &self,
        families: (
            &Family<RequestLabels, Counter>,
            &HistogramFamily<HandlerLabels>,
        ),
        handler: &str,
        code: u16,
        face: &'static str,
        seconds: f64,
    ) {
        // The usual case: the handles exist; counted under the read lock, nothing cloned.
        if let Ok(map) = self.by_handler.read() {
            let known = map
                .get(handler)
                .and_then(|all| all.iter().find(|m| m.code == code && m.face == face));
            if let Some(m) = known {
                m.requests.inc();
                m.duration.observe(seconds);
                return;
            }
        }
        let (requests, durations) = families;
        let code_text = code.to_string();
        let meters = Meters {
            code,
            face,
            requests: requests
                .get_or_create(&RequestLabels {
                    handler: handler.to_string(),
                    code: code_text.clone(),
                    face: face.to_string(),
                })
                .clone(),
            duration: durations
                .get_or_create(&HandlerLabels {
                    handler: handler.to_string(),
                    code: code_text,
                })
                .clone(),
        };
        meters.requests.inc();
        meters.duration.observe(seconds);
        if let Ok(mut map) = self.by_handler.write() {
            let known = map.entry(handler.into()).or_default();
            if !known.iter().any(|m| m.code == code && m.face == face) {
                known.push(meters);
            }
        }
    }

    /// Observes the time an upstream took to its response head.
    pub fn record_upstream(
        &self,
        family: &HistogramFamily<UpstreamLabels>,
        handler: &str,
        seconds: f64,
    ) {
        if let Ok(map) = self.upstream_by_handler.read() {
            if let Some(histogram) = map.get(handler) {
                histogram.observe(seconds);
                return;
            }
        }
        let histogram = family
            .get_or_create(&UpstreamLabels {
                handler: handler.to_string(),
            })
            .clone();
        histogram.observe(seconds);
        if let Ok(mut map) = self.upstream_by_handler.write() {
            map.entry(handler.into()).or_insert(histogram);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_count_into_their_familys_children() {
        let requests = Family::<RequestLabels, Counter>::default();
        let durations: HistogramFamily<HandlerLabels> =
            Family::new_with_constructor(super::super::latency_histogram);
        let upstream: HistogramFamily<UpstreamLabels> =
            Family::new_with_constructor(super::super::latency_histogram);
        let meters = RequestMeters::default();
        for _ in 0..3 {
            meters.record(
                (&requests, &durations),
                "/api/v1/query",
                200,
                "metric",
                0.001,
            );
        }
        meters.record(
            (&requests, &durations),
            "/api/v1/query",
            503,
            "metric",
            0.002,
        );
        let count = |code: &str| {
            requests
                .get_or_create(&RequestLabels {
                    handler: "/api/v1/query".into(),
                    code: code.into(),
                    face: "metric".into(),
                })
                .get()
        };
        assert_eq!((count("200"), count("503")), (3, 1));
        meters.record_upstream(&upstream, "/api/v1/query", 0.001);
        meters.record_upstream(&upstream, "/api/v1/query", 0.001);
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("up", "upstream", upstream);
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains("up_count{handler=\"/api/v1/query\"} 2"),
            "{text}"
        );
    }
}
