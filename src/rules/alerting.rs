//! One alerting rule's state, moved by each evaluation's result exactly as Prometheus moves it
//! (`rules/alerting.go`): a new series is pending from `activeAt`, firing once it has been for
//! `for`; a pending alert that disappears is dropped, a firing one resolves (unless
//! `keep_firing_for` holds it) and is kept 15 minutes so that its resolution is sent. Times
//! are Unix milliseconds; nothing here reads a clock or does I/O.

use std::collections::BTreeMap;

use super::file::RuleSpec;
use super::template::RuleTemplate;

pub type Labels = BTreeMap<String, String>;

/// How long a resolved alert is kept (and its resolution re-sent).
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert of a rule: one series of its result.
#[derive(Debug, Clone)]
pub struct Alert {
    pub labels: Labels,
    pub annotations: Labels,
    pub value: f64,
    pub state: AlertState,
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    pub last_sent_at: Option<i64>,
    pub valid_until: i64,
    pub keep_firing_since: Option<i64>,
}

impl Alert {
    /// Prometheus's `needsSending`: firing or resolved alerts, when resolved since the last
    /// send or when the resend delay has passed.
    pub fn needs_sending(&self, now: i64, resend_delay_ms: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        match (self.resolved_at, self.last_sent_at) {
            (_, None) => true,
            (Some(resolved), Some(sent)) if resolved > sent => true,
            (_, Some(sent)) => sent + resend_delay_ms <= now,
        }
    }
}

/// Renders a rule's templates for one sample.
pub trait Expand {
    fn expand(&self, template: &RuleTemplate, labels: &Labels, value: f64) -> String;
}

/// The alerts of one rule.
#[derive(Debug, Default, Clone)]
pub struct AlertingState {
    pub active: BTreeMap<Labels, Alert>,
}

/// The series an evaluation makes: `ALERTS` and `ALERTS_FOR_STATE`.
pub type Samples = Vec<(Labels, f64)>;

impl AlertingState {
    /// The alert labels of one result sample: its labels without `__name__`, the rule's labels
    /// (templated) over them, `alertname` last.
    pub fn alert_labels(
        spec: &RuleSpec,
        sample: &Labels,
        value: f64,
        expand: &dyn Expand,
    ) -> Labels {
        let mut labels = sample.clone();
        labels.remove("__name__");
        for (k, v) in &spec.labels {
            let v = match spec.label_templates.iter().find(|(name, _)| name == k) {
                Some((_, t)) => expand.expand(t, sample, value),
                None => v.clone(),
            };
            if v.is_empty() {
                labels.remove(k);
            } else {
                labels.insert(k.clone(), v);
            }
        }
        labels.insert("alertname".into(), spec.name.clone());
        labels
    }

    /// Moves the state by one evaluation's result at `now`. An error (duplicate label sets,
    /// the group's limit) clears nothing but the rule's alerts, as Prometheus does.
    pub fn apply(
        &mut self,
        spec: &RuleSpec,
        now: i64,
        result: &[(Labels, f64)],
        limit: usize,
        expand: &dyn Expand,
    ) -> Result<Samples, String> {
        let for_ms = i64::try_from(spec.for_.as_millis()).unwrap_or(i64::MAX);
        let keep_ms = i64::try_from(spec.keep_firing_for.as_millis()).unwrap_or(i64::MAX);
        let mut seen: BTreeMap<Labels, (Labels, f64)> = BTreeMap::new();
        for (sample, value) in result {
            let labels = Self::alert_labels(spec, sample, *value, expand);
            if seen.insert(labels, (sample.clone(), *value)).is_some() {
                return Err(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .into(),
                );
            }
        }
        for (labels, (sample, value)) in &seen {
            let annotations: Labels = spec
                .annotations
                .iter()
                .map(|(k, v)| {
                    let text = match spec.annotation_templates.iter().find(|(n, _)| n == k) {
                        Some((_, t)) => expand.expand(t, sample, *value),
                        None => v.clone(),
                    };
                    (k.clone(), text)
                })
                .collect();
            match self.active.get_mut(labels) {
                Some(alert) if alert.state != AlertState::Inactive => {
                    alert.value = *value;
                    alert.annotations = annotations;
                }
                _ => {
                    self.active.insert(
                        labels.clone(),
                        Alert {
                            labels: labels.clone(),
                            annotations,
                            value: *value,
                            state: AlertState::Pending,
                            active_at: now,
                            fired_at: None,
                            resolved_at: None,
                            last_sent_at: None,
                            valid_until: 0,
                            keep_firing_since: None,
                        },
                    );
                }
            }
        }
        let mut gone = Vec::new();
        for (labels, alert) in self.active.iter_mut() {
            if !seen.contains_key(labels) {
                if alert.state == AlertState::Pending
                    || alert
                        .resolved_at
                        .is_some_and(|r| now - r > RESOLVED_RETENTION_MS)
                {
                    gone.push(labels.clone());
                    continue;
                }
                if keep_ms > 0 && alert.state == AlertState::Firing {
                    let since = *alert.keep_firing_since.get_or_insert(now);
                    if now - since < keep_ms {
                        continue;
                    }
                }
                if alert.state != AlertState::Inactive {
                    alert.state = AlertState::Inactive;
                    alert.resolved_at = Some(now);
                }
                continue;
            }
            alert.keep_firing_since = None;
            if alert.state == AlertState::Pending && now - alert.active_at >= for_ms {
                alert.state = AlertState::Firing;
                alert.fired_at = Some(now);
            }
        }
        for labels in gone {
            self.active.remove(&labels);
        }
        let live = self
            .active
            .values()
            .filter(|a| a.state != AlertState::Inactive)
            .count();
        if limit > 0 && live > limit {
            self.active.clear();
            return Err(format!("exceeded limit of {limit} with {live} alerts"));
        }
        Ok(self.series())
    }

    /// `ALERTS` and `ALERTS_FOR_STATE` of the pending and firing alerts.
    pub fn series(&self) -> Samples {
        let mut out = Vec::new();
        for alert in self.active.values() {
            if alert.state == AlertState::Inactive {
                continue;
            }
            let mut alerts = alert.labels.clone();
            alerts.insert("__name__".into(), "ALERTS".into());
            alerts.insert("alertstate".into(), alert.state.as_str().into());
            out.push((alerts, 1.0));
            let mut for_state = alert.labels.clone();
            for_state.insert("__name__".into(), "ALERTS_FOR_STATE".into());
            out.push((for_state, alert.active_at as f64 / 1000.0));
        }
        out
    }

    /// After a restart: alerts that were active since `since` (read back from the durable
    /// data) take that as their `activeAt`, and fire at once when `for` has passed.
    pub fn restore(&mut self, spec: &RuleSpec, now: i64, since: &BTreeMap<Labels, i64>) -> usize {
        let for_ms = i64::try_from(spec.for_.as_millis()).unwrap_or(i64::MAX);
        let mut restored = 0;
        for alert in self.active.values_mut() {
            if alert.state != AlertState::Pending {
                continue;
            }
            if let Some(&at) = since.get(&alert.labels) {
                if at < alert.active_at {
                    alert.active_at = at;
                    restored += 1;
                }
                if now - alert.active_at >= for_ms {
                    alert.state = AlertState::Firing;
                    alert.fired_at = Some(now);
                }
            }
        }
        restored
    }

    /// The rule's state for the APIs: the worst of its alerts.
    pub fn state(&self) -> AlertState {
        let mut state = AlertState::Inactive;
        for a in self.active.values() {
            match a.state {
                AlertState::Firing => return AlertState::Firing,
                AlertState::Pending => state = AlertState::Pending,
                AlertState::Inactive => {}
            }
        }
        state
    }
}

/// A recording rule's result: renamed, its labels set; duplicates and the limit refused.
pub fn record(spec: &RuleSpec, result: &[(Labels, f64)], limit: usize) -> Result<Samples, String> {
    let mut out: BTreeMap<Labels, f64> = BTreeMap::new();
    for (sample, value) in result {
        let mut labels = sample.clone();
        labels.insert("__name__".into(), spec.name.clone());
        for (k, v) in &spec.labels {
            if v.is_empty() {
                labels.remove(k);
            } else {
                labels.insert(k.clone(), v.clone());
            }
        }
        if out.insert(labels, *value).is_some() {
            return Err(
                "vector contains metrics with the same labelset after applying rule labels".into(),
            );
        }
    }
    if limit > 0 && out.len() > limit {
        return Err(format!(
            "exceeded limit of {limit} with {} series",
            out.len()
        ));
    }
    Ok(out.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::file::parse;

    struct Plain;
    impl Expand for Plain {
        fn expand(&self, t: &RuleTemplate, labels: &Labels, value: f64) -> String {
            let none = Labels::new();
            t.render(
                &crate::rules::template::Data {
                    labels,
                    value,
                    external_labels: &none,
                    external_url: "",
                },
                None,
            )
        }
    }

    fn spec(extra: &str) -> RuleSpec {
        let text = format!("groups:\n- name: g\n  rules:\n  - alert: HighErrors\n    expr: up == 0\n{extra}    labels:\n      severity: page\n    annotations:\n      summary: \"{{{{ $labels.job }}}} down ({{{{ $value }}}})\"\n");
        parse("t.yml", &text)
            .unwrap()
            .groups
            .remove(0)
            .rules
            .remove(0)
    }

    fn sample(job: &str) -> (Labels, f64) {
        (
            Labels::from([("__name__".into(), "up".into()), ("job".into(), job.into())]),
            0.0,
        )
    }

    #[test]
    fn pending_then_firing_then_resolved_then_forgotten() {
        let spec = spec("    for: 2m\n");
        let mut s = AlertingState::default();
        let m = 60_000;
        s.apply(&spec, 0, &[sample("a")], 0, &Plain).unwrap();
        let a = s.active.values().next().unwrap();
        assert_eq!((a.state, a.active_at), (AlertState::Pending, 0));
        assert_eq!(a.labels["alertname"], "HighErrors");
        assert_eq!(a.labels["severity"], "page");
        assert!(!a.labels.contains_key("__name__"));
        assert_eq!(a.annotations["summary"], "a down (0)");
        s.apply(&spec, m, &[sample("a")], 0, &Plain).unwrap();
        assert_eq!(s.state(), AlertState::Pending);
        let series = s.apply(&spec, 2 * m, &[sample("a")], 0, &Plain).unwrap();
        assert_eq!(s.state(), AlertState::Firing);
        assert!(series
            .iter()
            .any(|(l, v)| l["__name__"] == "ALERTS" && l["alertstate"] == "firing" && *v == 1.0));
        assert!(series
            .iter()
            .any(|(l, v)| l["__name__"] == "ALERTS_FOR_STATE" && *v == 0.0));
        s.apply(&spec, 3 * m, &[], 0, &Plain).unwrap();
        let a = s.active.values().next().unwrap();
        assert_eq!(
            (a.state, a.resolved_at),
            (AlertState::Inactive, Some(3 * m))
        );
        assert!(a.needs_sending(3 * m, m));
        s.apply(&spec, 19 * m, &[], 0, &Plain).unwrap();
        assert!(s.active.is_empty());
    }

    #[test]
    fn a_pending_alert_that_disappears_is_dropped_and_keep_firing_for_holds() {
        let spec_ = spec("    for: 5m\n");
        let mut s = AlertingState::default();
        s.apply(&spec_, 0, &[sample("a")], 0, &Plain).unwrap();
        s.apply(&spec_, 60_000, &[], 0, &Plain).unwrap();
        assert!(s.active.is_empty());
        let spec_ = spec("    keep_firing_for: 2m\n");
        s.apply(&spec_, 0, &[sample("a")], 0, &Plain).unwrap();
        assert_eq!(s.state(), AlertState::Firing);
        s.apply(&spec_, 60_000, &[], 0, &Plain).unwrap();
        assert_eq!(s.state(), AlertState::Firing);
        s.apply(&spec_, 180_000, &[], 0, &Plain).unwrap();
        assert_eq!(s.state(), AlertState::Inactive);
    }

    #[test]
    fn duplicates_and_the_limit_are_errors() {
        let spec = spec("");
        let mut s = AlertingState::default();
        let two = [
            sample("a"),
            (Labels::from([("job".into(), "a".into())]), 1.0),
        ];
        assert!(s
            .apply(&spec, 0, &two, 0, &Plain)
            .unwrap_err()
            .contains("same labelset"));
        let err = s
            .apply(&spec, 0, &[sample("a"), sample("b")], 1, &Plain)
            .unwrap_err();
        assert_eq!(err, "exceeded limit of 1 with 2 alerts");
        assert!(s.active.is_empty());
    }

    #[test]
    fn restoring_keeps_for_progress() {
        let spec = spec("    for: 10m\n");
        let mut s = AlertingState::default();
        let now = 3_600_000;
        s.apply(&spec, now, &[sample("a"), sample("b")], 0, &Plain)
            .unwrap();
        let a_labels = s.active.keys().next().unwrap().clone();
        let since = BTreeMap::from([(a_labels.clone(), now - 600_000)]);
        assert_eq!(s.restore(&spec, now, &since), 1);
        assert_eq!(s.active[&a_labels].state, AlertState::Firing);
        assert_eq!(
            s.active
                .values()
                .filter(|a| a.state == AlertState::Pending)
                .count(),
            1
        );
    }
}
