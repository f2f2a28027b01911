//! Sending alerts to Alertmanager (API v2, `POST /api/v2/alerts`), as Prometheus's notifier
//! does: a bounded queue (the oldest dropped and counted when full), batches of up to 256 sent
//! to every Alertmanager, external labels added to alerts that lack them.

use std::sync::Arc;
use std::time::Duration;

use super::alerting::Labels;
use super::group::Notification;
use super::outbox::Outbox;
use crate::telemetry::Metrics;

/// Alerts waiting to be sent, at most.
pub const QUEUE_CAPACITY: usize = 10_000;

/// Alerts per request.
pub const MAX_BATCH: usize = 256;

/// How long one request to an Alertmanager may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Notifier {
    queue: Arc<Outbox<Notification>>,
    alertmanagers: Vec<reqwest::Url>,
    external_labels: Labels,
    client: reqwest::Client,
    metrics: Arc<Metrics>,
}

impl Notifier {
    pub fn new(
        alertmanagers: Vec<reqwest::Url>,
        external_labels: Labels,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Notifier>, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(SEND_TIMEOUT)
            .user_agent(concat!("Janus/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Arc::new(Notifier {
            queue: Outbox::new(QUEUE_CAPACITY),
            alertmanagers,
            external_labels,
            client,
            metrics,
        }))
    }

    /// Queues alerts; when the queue is full the oldest are dropped (and counted).
    pub fn send(&self, alerts: Vec<Notification>) {
        if alerts.is_empty() || self.alertmanagers.is_empty() {
            return;
        }
        let dropped = self.queue.put(alerts);
        if dropped > 0 {
            self.metrics.rules.notifications_dropped.inc_by(dropped);
        }
        self.metrics
            .rules
            .notifications_queue_length
            .set(self.queue.len() as i64);
    }

    /// Sends what is queued, batch by batch, for as long as the process runs.
    pub fn spawn(self: &Arc<Self>) {
        let me = Arc::clone(self);
        self.queue.spawn_drain(MAX_BATCH, move |batch| {
            let me = Arc::clone(&me);
            async move {
                me.metrics
                    .rules
                    .notifications_queue_length
                    .set(me.queue.len() as i64);
                me.post(&batch).await;
            }
        });
    }

    fn body(&self, batch: &[Notification]) -> Vec<u8> {
        let alerts: Vec<serde_json::Value> = batch
            .iter()
            .map(|n| {
                let mut labels = n.labels.clone();
                for (k, v) in &self.external_labels {
                    labels.entry(k.clone()).or_insert_with(|| v.clone());
                }
                serde_json::json!({
                    "labels": labels,
                    "annotations": n.annotations,
                    "startsAt": rfc3339(n.starts_at),
                    "endsAt": rfc3339(n.ends_at),
                    "generatorURL": n.generator_url,
                })
            })
            .collect();
        serde_json::to_vec(&alerts).unwrap_or_default()
    }

    async fn post(&self, batch: &[Notification]) {
        let body = bytes::Bytes::from(self.body(batch));
        let sends = self.alertmanagers.iter().map(|am| {
            let body = body.clone();
            async move {
                let url = alerts_endpoint(am);
                let labels = crate::telemetry::AlertmanagerLabels {
                    alertmanager: url.clone(),
                };
                let sent = self
                    .client
                    .post(&url)
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => {
                        self.metrics
                            .rules
                            .notifications_sent
                            .get_or_create(&labels)
                            .inc_by(batch.len() as u64);
                    }
                    Ok(r) => {
                        tracing::warn!(alertmanager = %url, status = %r.status(), "Alertmanager refused alerts");
                        self.metrics.rules.notifications_errors.get_or_create(&labels).inc_by(batch.len() as u64);
                    }
                    Err(e) => {
                        tracing::warn!(alertmanager = %url, error = %e, "could not send alerts");
                        self.metrics.rules.notifications_errors.get_or_create(&labels).inc_by(batch.len() as u64);
                    }
                }
            }
        });
        futures_util::future::join_all(sends).await;
    }
}

/// Unix ms as RFC 3339 with milliseconds, in UTC.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// Where alerts are posted on an Alertmanager (API v2), as `/api/v1/alertmanagers` lists it.
pub fn alerts_endpoint(am: &reqwest::Url) -> String {
    format!("{}/api/v2/alerts", am.as_str().trim_end_matches('/'))
}
