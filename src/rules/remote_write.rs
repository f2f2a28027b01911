//! Recorded series and alert series to `--rules.remote-write.url`: Prometheus remote write 1.0
//! (a protobuf `WriteRequest` in a snappy block), so that what a rule records over logs becomes
//! a real metric in the upstream. A bounded queue (the oldest dropped and counted when full),
//! batches, retries with backoff on 5xx, 429 and network errors; a 4xx is final.

use std::sync::Arc;
use std::time::Duration;

use prost::Message;

use super::alerting::Labels;
use super::outbox::Outbox;
use crate::telemetry::Metrics;

/// Samples waiting to be written, at most.
pub const QUEUE_CAPACITY: usize = 100_000;

/// Samples per request.
pub const MAX_BATCH: usize = 2_000;

/// Tries per batch before it is given up (and counted as failed).
const MAX_TRIES: u32 = 5;

const SEND_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

pub struct RemoteWriter {
    url: reqwest::Url,
    external_labels: Labels,
    queue: Arc<Outbox<(Labels, f64, i64)>>,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
}

/// The snappy-compressed `WriteRequest` of `samples` (labels sorted by name, as the protocol
/// requires; a `BTreeMap` keeps them so).
pub fn encode(samples: &[(Labels, f64, i64)]) -> Result<Vec<u8>, snap::Error> {
    let request = WriteRequest {
        timeseries: samples
            .iter()
            .map(|(labels, value, t)| TimeSeries {
                labels: labels
                    .iter()
                    .map(|(k, v)| Label {
                        name: k.clone(),
                        value: v.clone(),
                    })
                    .collect(),
                samples: vec![Sample {
                    value: *value,
                    timestamp: *t,
                }],
            })
            .collect(),
    };
    snap::raw::Encoder::new().compress_vec(&request.encode_to_vec())
}

impl RemoteWriter {
    pub fn new(
        url: reqwest::Url,
        external_labels: Labels,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<RemoteWriter>, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .user_agent(concat!("Janus/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Arc::new(RemoteWriter {
            url,
            external_labels,
            queue: Outbox::new(QUEUE_CAPACITY),
            client,
            metrics,
        }))
    }

    pub fn push(&self, samples: Vec<(Labels, f64, i64)>) {
        if samples.is_empty() {
            return;
        }
        let external = &self.external_labels;
        let dropped = self
            .queue
            .put(samples.into_iter().map(|(mut labels, v, t)| {
                for (k, ev) in external {
                    labels.entry(k.clone()).or_insert_with(|| ev.clone());
                }
                (labels, v, t)
            }));
        if dropped > 0 {
            self.metrics.rules.remote_write_dropped.inc_by(dropped);
        }
    }

    pub fn spawn(self: &Arc<Self>) {
        let me = Arc::clone(self);
        self.queue.spawn_drain(MAX_BATCH, move |batch| {
            let me = Arc::clone(&me);
            async move { me.write(&batch).await }
        });
    }

    async fn write(&self, batch: &[(Labels, f64, i64)]) {
        let body = match encode(batch) {
            Ok(body) => bytes::Bytes::from(body),
            Err(e) => {
                tracing::error!(error = %e, "could not compress a remote-write batch");
                self.metrics
                    .rules
                    .remote_write_failed
                    .inc_by(batch.len() as u64);
                return;
            }
        };
        let mut backoff = Duration::from_millis(100);
        for attempt in 1..=MAX_TRIES {
            let sent = self
                .client
                .post(self.url.clone())
                .header("Content-Encoding", "snappy")
                .header("Content-Type", "application/x-protobuf")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                .body(body.clone())
                .send()
                .await;
            let retry = match sent {
                Ok(r) if r.status().is_success() => {
                    self.metrics
                        .rules
                        .remote_write_samples
                        .inc_by(batch.len() as u64);
                    return;
                }
                Ok(r) => {
                    let status = r.status();
                    let text = r.text().await.unwrap_or_default();
                    tracing::warn!(url = %self.url, %status, answer = %text.chars().take(200).collect::<String>(), "remote write refused");
                    status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                }
                Err(e) => {
                    tracing::warn!(url = %self.url, error = %e, attempt, "remote write failed");
                    true
                }
            };
            if !retry || attempt == MAX_TRIES {
                break;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        self.metrics
            .rules
            .remote_write_failed
            .inc_by(batch.len() as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_request_decodes_back() {
        let labels = Labels::from([("__name__".into(), "x".into()), ("a".into(), "b".into())]);
        let body = encode(&[(labels, 1.5, 1000)]).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let back = WriteRequest::decode(raw.as_slice()).unwrap();
        assert_eq!(back.timeseries[0].labels[0].name, "__name__");
        assert_eq!(
            back.timeseries[0].samples[0],
            Sample {
                value: 1.5,
                timestamp: 1000
            }
        );
    }
}
