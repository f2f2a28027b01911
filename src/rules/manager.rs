//! The ruler: loads the rule files (globs expanded), runs each group on its own schedule,
//! hands alerts to the notifier and series to the remote writer, and reloads on demand
//! (SIGHUP, `POST /-/reload`). A reload that finds any problem keeps the rules that run and
//! says so (`janus_rules_last_reload_successful 0`); one that succeeds carries the alerts of
//! unchanged rules over.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use super::alerting::Labels;
use super::file::{self, Problem, RuleFile};
use super::group::{Context, GroupRuntime};
use super::notifier::Notifier;
use super::querier::Querier;
use super::remote_write::RemoteWriter;
use crate::telemetry::{Metrics, RuleGroupLabels};

/// The most rule files the patterns may name.
pub const MAX_FILES: usize = 10_000;

/// What the ruler is configured with.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// File paths or globs.
    pub files: Vec<String>,
    pub evaluation_interval: Duration,
    pub external_labels: Labels,
    /// Janus's URL as users reach it (alert links point to its query page).
    pub external_url: String,
    pub alertmanagers: Vec<reqwest::Url>,
    pub remote_write: Option<reqwest::Url>,
}

struct Running {
    file: String,
    name: String,
    runtime: Arc<tokio::sync::Mutex<GroupRuntime>>,
    snapshot: Arc<RwLock<Arc<GroupRuntime>>>,
    task: tokio::task::AbortHandle,
}

pub struct Ruler {
    pub settings: Settings,
    context: Arc<Context>,
    notifier: Option<Arc<Notifier>>,
    remote: Option<Arc<RemoteWriter>>,
    groups: RwLock<Vec<Running>>,
    reloading: tokio::sync::Mutex<()>,
    metrics: Arc<Metrics>,
}

/// Expands the patterns into files, sorted, each once.
pub fn expand(patterns: &[String]) -> Result<Vec<std::path::PathBuf>, Vec<Problem>> {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for pattern in patterns {
        match glob::glob(pattern) {
            Ok(paths) => {
                let mut found: Vec<_> = paths
                    .filter_map(Result::ok)
                    .filter(|p| p.is_file())
                    .collect();
                if found.is_empty() && !pattern.contains(['*', '?', '[']) {
                    // A plain path that is missing is a mistake worth naming.
                    found.push(std::path::PathBuf::from(pattern));
                }
                found.sort();
                files.extend(found);
            }
            Err(e) => problems.push(Problem {
                file: pattern.clone(),
                line: 0,
                group: None,
                rule: None,
                message: format!("bad pattern: {e}"),
            }),
        }
    }
    files.dedup();
    if files.len() > MAX_FILES {
        problems.push(Problem {
            file: patterns.join(","),
            line: 0,
            group: None,
            rule: None,
            message: format!("names {} files, more than {MAX_FILES}", files.len()),
        });
    }
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(problems)
    }
}

/// Loads every file the patterns name: all of them, or every problem found.
pub fn load_all(patterns: &[String]) -> Result<Vec<RuleFile>, Vec<Problem>> {
    let paths = expand(patterns)?;
    let mut files = Vec::new();
    let mut problems = Vec::new();
    for path in paths {
        match file::load(&path) {
            Ok(f) => files.push(f),
            Err(p) => problems.extend(p),
        }
    }
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(problems)
    }
}

fn now_ms() -> i64 {
    crate::time::timestamp::Timestamp::now().0 / 1_000_000
}

/// Prometheus spreads groups over their interval by a hash of the group: the first evaluation
/// at or after `now` on the group's own grid.
fn next_slot(now: i64, interval: i64, offset: i64) -> i64 {
    let base = now - offset;
    let slot = base.div_euclid(interval) * interval + offset;
    if slot >= now {
        slot
    } else {
        slot + interval
    }
}

impl Ruler {
    pub fn new(
        settings: Settings,
        querier: Arc<dyn Querier>,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Ruler>, String> {
        let notifier = if settings.alertmanagers.is_empty() {
            None
        } else {
            Some(
                Notifier::new(
                    settings.alertmanagers.clone(),
                    settings.external_labels.clone(),
                    Arc::clone(&metrics),
                )
                .map_err(|e| e.to_string())?,
            )
        };
        let remote = match &settings.remote_write {
            Some(url) => Some(
                RemoteWriter::new(
                    url.clone(),
                    settings.external_labels.clone(),
                    Arc::clone(&metrics),
                )
                .map_err(|e| e.to_string())?,
            ),
            None => None,
        };
        Ok(Arc::new(Ruler {
            context: Arc::new(Context {
                querier,
                external_labels: settings.external_labels.clone(),
                external_url: settings.external_url.clone(),
            }),
            settings,
            notifier,
            remote,
            groups: RwLock::new(Vec::new()),
            reloading: tokio::sync::Mutex::new(()),
            metrics,
        }))
    }

    /// Starts the notifier and the remote writer, then loads the rules.
    pub async fn start(self: &Arc<Self>) -> Result<usize, String> {
        if let Some(n) = &self.notifier {
            n.spawn();
        }
        if let Some(r) = &self.remote {
            r.spawn();
        }
        self.reload().await
    }

    /// The groups as last evaluated, in file order.
    pub fn groups(&self) -> Vec<Arc<GroupRuntime>> {
        self.groups
            .read()
            .map(|g| {
                g.iter()
                    .filter_map(|r| r.snapshot.read().ok().map(|s| Arc::clone(&s)))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn alertmanagers(&self) -> &[reqwest::Url] {
        &self.settings.alertmanagers
    }

    /// Reads the files again; on any problem the running rules stay.
    pub async fn reload(self: &Arc<Self>) -> Result<usize, String> {
        let _one_at_a_time = self.reloading.lock().await;
        let patterns = self.settings.files.clone();
        let loaded = tokio::task::spawn_blocking(move || load_all(&patterns))
            .await
            .map_err(|e| e.to_string())?;
        let files = match loaded {
            Ok(files) => files,
            Err(problems) => {
                self.metrics.rules.last_reload_successful.set(0);
                let text = problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                tracing::error!(problems = %text, "loading the rule files failed; the rules loaded before keep running");
                return Err(text);
            }
        };
        let old: Vec<Running> = match self.groups.write() {
            Ok(mut g) => std::mem::take(&mut *g),
            Err(_) => return Err("the ruler's state is poisoned".into()),
        };
        let mut old = old;
        let mut running = Vec::new();
        for spec in files.into_iter().flat_map(|f| f.groups) {
            let mut runtime = GroupRuntime::new(spec, self.settings.evaluation_interval);
            if let Some(i) = old
                .iter()
                .position(|o| o.file == runtime.file && o.name == runtime.name)
            {
                let before = old.swap_remove(i);
                before.task.abort();
                let state = before.runtime.lock().await;
                runtime.adopt(&state);
            }
            running.push(self.spawn_group(runtime));
        }
        for gone in old {
            gone.task.abort();
            self.metrics
                .rules
                .group_rules
                .get_or_create(&RuleGroupLabels {
                    rule_group: format!("{};{}", gone.file, gone.name),
                })
                .set(0);
        }
        let count = running.len();
        if let Ok(mut g) = self.groups.write() {
            *g = running;
        }
        self.metrics.rules.last_reload_successful.set(1);
        self.metrics
            .rules
            .last_reload_success_timestamp
            .set(now_ms() / 1000);
        tracing::info!(groups = count, "rule files loaded");
        Ok(count)
    }

    fn spawn_group(self: &Arc<Self>, runtime: GroupRuntime) -> Running {
        let file = runtime.file.clone();
        let name = runtime.name.clone();
        let labels = RuleGroupLabels {
            rule_group: format!("{file};{name}"),
        };
        self.metrics
            .rules
            .group_rules
            .get_or_create(&labels)
            .set(runtime.rules.len() as i64);
        // As Prometheus does, a group's counters exist from its start (at 0), so rates and
        // alerts over them see the group before its first failure or missed iteration.
        let _ = self
            .metrics
            .rules
            .evaluation_failures
            .get_or_create(&labels);
        let _ = self.metrics.rules.iterations_missed.get_or_create(&labels);
        let _ = self.metrics.rules.evaluations.get_or_create(&labels);
        let interval = i64::try_from(runtime.interval.as_millis())
            .unwrap_or(i64::MAX)
            .max(1);
        let mut hasher = DefaultHasher::new();
        (&file, &name).hash(&mut hasher);
        let offset = i64::try_from(hasher.finish() % interval as u64).unwrap_or(0);
        let snapshot = Arc::new(RwLock::new(Arc::new(runtime.clone())));
        let runtime = Arc::new(tokio::sync::Mutex::new(runtime));
        let (me, state, published) = (
            Arc::downgrade(self),
            Arc::clone(&runtime),
            Arc::clone(&snapshot),
        );
        let task = tokio::spawn(async move {
            let mut next = next_slot(now_ms(), interval, offset);
            loop {
                let wait = u64::try_from(next - now_ms()).unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                let Some(ruler) = me.upgrade() else { return };
                ruler.metrics.rules.iterations.get_or_create(&labels).inc();
                let outcome = {
                    let mut group = state.lock().await;
                    let outcome = group.evaluate(&ruler.context, next).await;
                    if let Ok(mut s) = published.write() {
                        *s = Arc::new(group.clone());
                    }
                    ruler
                        .metrics
                        .rules
                        .group_duration
                        .get_or_create(&labels)
                        .set(group.evaluation_seconds);
                    outcome
                };
                let m = &ruler.metrics.rules;
                m.evaluations
                    .get_or_create(&labels)
                    .inc_by(outcome.evaluations);
                m.evaluation_failures
                    .get_or_create(&labels)
                    .inc_by(outcome.failures);
                m.group_last_evaluation
                    .get_or_create(&labels)
                    .set(next as f64 / 1000.0);
                if let Some(n) = &ruler.notifier {
                    n.send(outcome.notifications);
                }
                if let Some(r) = &ruler.remote {
                    r.push(outcome.samples);
                }
                let behind = (now_ms() - next).div_euclid(interval);
                if behind > 1 {
                    m.iterations_missed
                        .get_or_create(&labels)
                        .inc_by(u64::try_from(behind - 1).unwrap_or(0));
                }
                next += interval * behind.max(1);
            }
        });
        Running {
            file,
            name,
            runtime,
            snapshot,
            task: task.abort_handle(),
        }
    }
}

impl Ruler {
    /// Stops every group's evaluations (at shutdown: no alert is sent once Janus stops serving).
    pub fn stop(&self) {
        if let Ok(g) = self.groups.read() {
            for r in g.iter() {
                r.task.abort();
            }
        }
    }
}

impl Drop for Ruler {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_keep_their_slot_on_the_grid() {
        assert_eq!(next_slot(1_000, 60_000, 5_000), 5_000);
        assert_eq!(next_slot(5_000, 60_000, 5_000), 5_000);
        assert_eq!(next_slot(5_001, 60_000, 5_000), 65_000);
        assert_eq!(next_slot(130_000, 60_000, 0), 180_000);
    }
}
