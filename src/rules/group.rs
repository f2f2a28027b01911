//! One rule group at run time: its rules in file order, each evaluated at the group's
//! evaluation time (less `query_offset`, for late logs), their alerts moved, the alerts due for
//! sending picked, the recorded series and `ALERTS` series collected. After a restart, alerts
//! with `for` resume where they were: the expression is evaluated again over the last `for` of
//! durable data (the logs on disk, the upstream's metrics), as Loki's ruler does, and each
//! alert's `activeAt` is the start of its unbroken run.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::alerting::{record, AlertState, AlertingState, Expand, Labels};
use super::expr::RuleExpr;
use super::file::{GroupSpec, RuleKind, RuleSpec};
use super::querier::Querier;
use super::template::{Data, QueryFn, RuleTemplate};

/// Alertmanager's resend delay: firing alerts are sent again this often.
pub const RESEND_DELAY_MS: i64 = 60_000;

/// The most steps the restoring evaluation takes (the step grows for a long `for`).
const MAX_RESTORE_STEPS: i64 = 1_000;

/// What every group's evaluation shares.
pub struct Context {
    pub querier: Arc<dyn Querier>,
    pub external_labels: Labels,
    pub external_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Ok,
    Err,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Err => "err",
        }
    }
}

/// A rule and what its evaluations left.
#[derive(Debug, Clone)]
pub struct RuleRuntime {
    pub spec: RuleSpec,
    pub alerting: AlertingState,
    pub health: Health,
    pub last_error: String,
    /// Unix ms of the last evaluation.
    pub last_evaluation: Option<i64>,
    pub evaluation_seconds: f64,
    /// Alerts with `for` still to be restored from the durable data.
    pub needs_restore: bool,
}

/// A group and what its evaluations left.
#[derive(Debug, Clone)]
pub struct GroupRuntime {
    pub name: String,
    pub file: String,
    pub interval: Duration,
    pub query_offset: Duration,
    pub limit: usize,
    pub rules: Vec<RuleRuntime>,
    pub last_evaluation: Option<i64>,
    pub evaluation_seconds: f64,
}

/// An alert to send to Alertmanager.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub labels: Labels,
    pub annotations: Labels,
    pub starts_at: i64,
    pub ends_at: i64,
    pub generator_url: String,
}

/// What one evaluation of a group made.
#[derive(Debug, Default)]
pub struct Outcome {
    pub notifications: Vec<Notification>,
    /// Recorded and `ALERTS` series, with their time (ms).
    pub samples: Vec<(Labels, f64, i64)>,
    pub evaluations: u64,
    pub failures: u64,
}

impl GroupRuntime {
    pub fn new(spec: GroupSpec, default_interval: Duration) -> Self {
        GroupRuntime {
            interval: spec.interval.unwrap_or(default_interval),
            name: spec.name,
            file: spec.file,
            query_offset: spec.query_offset,
            limit: spec.limit,
            rules: spec
                .rules
                .into_iter()
                .map(|spec| RuleRuntime {
                    needs_restore: spec.kind == RuleKind::Alert && !spec.for_.is_zero(),
                    spec,
                    alerting: AlertingState::default(),
                    health: Health::Unknown,
                    last_error: String::new(),
                    last_evaluation: None,
                    evaluation_seconds: 0.0,
                })
                .collect(),
            last_evaluation: None,
            evaluation_seconds: 0.0,
        }
    }

    /// Takes over the state of the same rules (same kind, name, expression and labels) from
    /// the group as it was before a reload: their alerts go on, nothing is restored again.
    pub fn adopt(&mut self, old: &GroupRuntime) {
        for rule in &mut self.rules {
            if let Some(before) = old.rules.iter().find(|r| {
                r.spec.kind == rule.spec.kind
                    && r.spec.name == rule.spec.name
                    && r.spec.expr.text == rule.spec.expr.text
                    && r.spec.labels == rule.spec.labels
            }) {
                rule.alerting = before.alerting.clone();
                rule.health = before.health;
                rule.last_error = before.last_error.clone();
                rule.last_evaluation = before.last_evaluation;
                rule.evaluation_seconds = before.evaluation_seconds;
                rule.needs_restore = before.needs_restore;
            }
        }
        self.last_evaluation = old.last_evaluation;
        self.evaluation_seconds = old.evaluation_seconds;
    }

    fn interval_ms(&self) -> i64 {
        i64::try_from(self.interval.as_millis())
            .unwrap_or(i64::MAX)
            .max(1)
    }

    /// Evaluates every rule at `now` (Unix ms).
    pub async fn evaluate(&mut self, ctx: &Context, now: i64) -> Outcome {
        let started = std::time::Instant::now();
        let query_at = now - i64::try_from(self.query_offset.as_millis()).unwrap_or(0);
        let interval_ms = self.interval_ms();
        let limit = self.limit;
        let mut outcome = Outcome::default();
        for rule in &mut self.rules {
            let rule_started = std::time::Instant::now();
            outcome.evaluations += 1;
            let result = ctx
                .querier
                .instant(&rule.spec.expr.expression, query_at)
                .await;
            let expander = Expander {
                external_labels: &ctx.external_labels,
                external_url: &ctx.external_url,
                query: Some(query_fn(Arc::clone(&ctx.querier), query_at)),
            };
            let applied = result.and_then(|samples| match rule.spec.kind {
                RuleKind::Record => record(&rule.spec, &samples, limit),
                RuleKind::Alert => tokio::task::block_in_place(|| {
                    rule.alerting
                        .apply(&rule.spec, now, &samples, limit, &expander)
                }),
            });
            match applied {
                Ok(series) => {
                    rule.health = Health::Ok;
                    rule.last_error.clear();
                    outcome
                        .samples
                        .extend(series.into_iter().map(|(l, v)| (l, v, query_at)));
                }
                Err(e) => {
                    rule.health = Health::Err;
                    rule.last_error = e;
                    outcome.failures += 1;
                }
            }
            if rule.needs_restore && rule.health == Health::Ok {
                rule.needs_restore = false;
                restore(ctx, rule, now, query_at, interval_ms, &expander).await;
            }
            if rule.spec.kind == RuleKind::Alert {
                let generator_url = generator_url(&ctx.external_url, &rule.spec.expr.text);
                for alert in rule.alerting.active.values_mut() {
                    if !alert.needs_sending(now, RESEND_DELAY_MS) {
                        continue;
                    }
                    alert.last_sent_at = Some(now);
                    alert.valid_until = now + 4 * interval_ms.max(RESEND_DELAY_MS);
                    outcome.notifications.push(Notification {
                        labels: alert.labels.clone(),
                        annotations: alert.annotations.clone(),
                        starts_at: alert.fired_at.unwrap_or(alert.active_at),
                        ends_at: alert.resolved_at.unwrap_or(alert.valid_until),
                        generator_url: generator_url.clone(),
                    });
                }
            }
            rule.last_evaluation = Some(now);
            rule.evaluation_seconds = rule_started.elapsed().as_secs_f64();
        }
        self.last_evaluation = Some(now);
        self.evaluation_seconds = started.elapsed().as_secs_f64();
        outcome
    }

    /// Alerts that are pending or firing.
    pub fn live_alerts(&self) -> impl Iterator<Item = (&RuleRuntime, &super::alerting::Alert)> {
        self.rules.iter().flat_map(|r| {
            r.alerting
                .active
                .values()
                .filter(|a| a.state != AlertState::Inactive)
                .map(move |a| (r, a))
        })
    }
}

/// Where an alert's `generatorURL` points: Janus's query page, in Prometheus's link format.
pub fn generator_url(external_url: &str, expr: &str) -> String {
    let encoded: String = form_urlencoded::byte_serialize(expr.as_bytes()).collect();
    format!(
        "{}/graph?g0.expr={encoded}&g0.tab=1",
        external_url.trim_end_matches('/')
    )
}

/// Re-reads the last `for` of data to give the rule's pending alerts back their `activeAt`.
async fn restore(
    ctx: &Context,
    rule: &mut RuleRuntime,
    now: i64,
    query_at: i64,
    interval_ms: i64,
    expander: &Expander<'_>,
) {
    let for_ms = i64::try_from(rule.spec.for_.as_millis()).unwrap_or(i64::MAX);
    let step = interval_ms.max(for_ms / MAX_RESTORE_STEPS).max(1);
    let count = for_ms / step + 1;
    let start = query_at - (count - 1) * step;
    let range = ctx
        .querier
        .range(
            &rule.spec.expr.expression,
            start,
            step,
            usize::try_from(count).unwrap_or(1),
        )
        .await;
    let series = match range {
        Ok(series) => series,
        Err(e) => {
            tracing::warn!(rule = %rule.spec.name, error = %e, "could not restore the alerts' for state");
            return;
        }
    };
    let mut since = BTreeMap::new();
    tokio::task::block_in_place(|| {
        for (labels, points) in &series {
            let Some(&(last_t, last_v)) = points.last() else {
                continue;
            };
            if last_t != query_at {
                continue;
            }
            let mut earliest = last_t;
            for pair in points.windows(2).rev() {
                if pair[1].0 - pair[0].0 != step {
                    break;
                }
                earliest = pair[0].0;
            }
            let alert_labels = AlertingState::alert_labels(&rule.spec, labels, last_v, expander);
            since.insert(alert_labels, earliest + (now - query_at));
        }
    });
    let restored = rule.alerting.restore(&rule.spec, now, &since);
    if restored > 0 {
        tracing::info!(rule = %rule.spec.name, alerts = restored, "restored the for state of alerts");
    }
}

/// The `query` a template may call: an instant query at the evaluation's time.
fn query_fn(querier: Arc<dyn Querier>, at: i64) -> Arc<QueryFn> {
    Arc::new(move |text: &str| {
        let expr = RuleExpr::compile(text)?;
        let handle = tokio::runtime::Handle::try_current().map_err(|e| e.to_string())?;
        handle.block_on(querier.instant(&expr.expression, at))
    })
}

struct Expander<'a> {
    external_labels: &'a Labels,
    external_url: &'a str,
    query: Option<Arc<QueryFn>>,
}

impl Expand for Expander<'_> {
    fn expand(&self, template: &RuleTemplate, labels: &Labels, value: f64) -> String {
        template.render(
            &Data {
                labels,
                value,
                external_labels: self.external_labels,
                external_url: self.external_url,
            },
            self.query.clone(),
        )
    }
}
