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
#[derive(Clone)]
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
        let found = self.by_handler.read().ok().and_then(|map| {
            map.get(handler)?
                .iter()
                .find(|m| m.code == code && m.face == face)
                .cloned()
        });
        let meters = match found {
            Some(meters) => meters,
            None => {
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
                if let Ok(mut map) = self.by_handler.write() {
                    let known = map.entry(handler.into()).or_default();
                    if !known.iter().any(|m| m.code == code && m.face == face) {
                        known.push(meters.clone());
                    }
                }
                meters
            }
        };
        meters.requests.inc();
        meters.duration.observe(seconds);
    }

    /// Observes the time an upstream took to its response head.
    pub fn record_upstream(
        &self,
        family: &HistogramFamily<UpstreamLabels>,
        handler: &str,
        seconds: f64,
    ) {
        let found = self
            .upstream_by_handler
            .read()
            .ok()
            .and_then(|map| map.get(handler).cloned());
        let histogram = match found {
            Some(histogram) => histogram,
            None => {
                let histogram = family
                    .get_or_create(&UpstreamLabels {
                        handler: handler.to_string(),
                    })
                    .clone();
                if let Ok(mut map) = self.upstream_by_handler.write() {
                    map.entry(handler.into())
                        .or_insert_with(|| histogram.clone());
                }
                histogram
            }
        };
        histogram.observe(seconds);
    }
}
