//! The engine without HTTP: a store, limits and a metric source that answers from memory are all
//! it needs. Log metrics mixed with metrics, lines, and each part's errors come back typed.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use janus::engine::{
    prepare, Engine, EngineError, Limits, LineSearch, MetricAnswer, MetricQuery, MetricSource,
    Prepared, SourceErrorKind,
};
use janus::logstore::files::Store;
use janus::logstore::Keep;
use janus::promql::value::{Labels, Series, Steps, Value};
use janus::telemetry::Metrics;

const NS: i64 = 1_000_000_000;
/// 2009-11-10T23:00:00Z: the end of the hour Lethe's sample lines are in.
const T: i64 = 1_257_894_000 * NS;

/// Answers every metric part with one series per namespace, valued 2, and remembers what it
/// was asked.
#[derive(Default)]
struct Constant {
    asked: AtomicUsize,
    texts: std::sync::Mutex<Vec<String>>,
}

impl MetricSource for Constant {
    fn query<'a>(&'a self, query: MetricQuery<'a>) -> janus::engine::source::MetricFuture<'a> {
        Box::pin(async move {
            self.asked.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut texts) = self.texts.lock() {
                texts.push(query.text.to_string());
            }
            if query.text.contains("refused") {
                return Err(EngineError::Source {
                    kind: SourceErrorKind::BadData,
                    message: "refused by the source".into(),
                });
            }
            let series = ["namespace01", "namespace02"]
                .map(|ns| Series {
                    labels: Labels::from([("namespace".to_string(), ns.to_string())]),
                    points: vec![Some(2.0); query.steps.count],
                })
                .to_vec();
            Ok(MetricAnswer {
                value: Value::Vector(series),
                warnings: vec![],
            })
        })
    }
}

fn engine(evaluate_metric_queries: bool) -> Engine {
    let metrics = Arc::new(Metrics::new());
    let store = Arc::new(Store::new(support::lethe_testdata(), Arc::clone(&metrics)));
    Engine::new(
        store,
        Limits {
            max_samples: 1_000_000,
            max_series: 1000,
            evaluate_metric_queries,
        },
        metrics,
    )
}

async fn prepared(engine: &Engine, text: &str) -> Result<Prepared, EngineError> {
    let tokens = prepare::route(text, engine.limits().evaluate_metric_queries)
        .expect("Janus answers this query");
    engine
        .prepare(text, tokens, janus::logql::lexer::Dialect::Prometheus)
        .await
}

fn deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(30)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_metrics_mixed_with_metrics_from_any_source() {
    let engine = engine(false);
    let source = Constant::default();
    let text = r#"sum by (namespace) (count_over_time(pod{namespace=~"namespace0.*"}[1h])) * on (namespace) metric_from_memory"#;
    let Prepared::Expression(expression) = prepared(&engine, text).await.expect("parses") else {
        panic!("an expression");
    };
    assert!(expression.reads_metrics());
    let steps = Steps {
        start: T,
        step: 1,
        count: 1,
    };
    let answer = engine
        .evaluate(&expression, steps, &source, deadline())
        .await
        .expect("answers");
    let Value::Vector(series) = answer.value else {
        panic!("a vector");
    };
    let by_namespace: Vec<(String, f64)> = series
        .iter()
        .map(|s| {
            (
                s.labels["namespace"].clone(),
                s.points[0].unwrap_or(f64::NAN),
            )
        })
        .collect();
    // Lines of each namespace in the hour before T, times the source's 2.
    let lines = |ns: &str| -> f64 {
        let dir = support::lethe_testdata().join("pod").join(ns);
        let text = std::fs::read_to_string(dir.join("2009-11-10_22.log")).unwrap_or_default();
        text.lines().count() as f64
    };
    assert_eq!(
        by_namespace,
        vec![
            ("namespace01".to_string(), 2.0 * lines("namespace01")),
            ("namespace02".to_string(), 2.0 * lines("namespace02")),
        ]
    );
    assert_eq!(source.asked.load(Ordering::Relaxed), 1);
    assert_eq!(
        source.texts.lock().unwrap().as_slice(),
        ["metric_from_memory"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_but_selectors_is_evaluated_in_the_engine_under_the_switch() {
    let engine = engine(true);
    let source = Constant::default();
    let text = "max_over_time((sum(a) + scalar(sum(b)))[10m:1m]) / 4";
    let Prepared::Expression(expression) = prepared(&engine, text).await.expect("parses") else {
        panic!("an expression");
    };
    let steps = Steps {
        start: T,
        step: 60 * NS,
        count: 3,
    };
    let answer = engine
        .evaluate(&expression, steps, &source, deadline())
        .await
        .expect("answers");
    // sum(a) = 4, scalar(sum(b)) = 4: (4 + 4) / 4 at every step.
    assert_eq!(
        answer.value,
        Value::Vector(vec![Series {
            labels: Labels::new(),
            points: vec![Some(2.0); 3],
        }])
    );
    let mut texts = source.texts.lock().unwrap().clone();
    texts.sort();
    texts.dedup();
    assert_eq!(texts, ["a", "b"], "only the selectors were asked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_and_typed_errors() {
    let engine = engine(false);
    let Prepared::Lines(Ok(query)) =
        prepared(&engine, r#"pod{namespace="namespace01"} |= "hello""#)
            .await
            .expect("parses")
    else {
        panic!("lines");
    };
    let (found, ()) = engine
        .search_lines(
            LineSearch {
                query,
                lo: T - 3600 * NS,
                hi: T,
                limit: 3,
                keep: Keep::Newest,
            },
            deadline(),
            (),
        )
        .await
        .expect("found");
    assert_eq!(found.lines.len(), 3);
    assert!(found.truncated);

    // Each part's error comes back as itself.
    assert!(matches!(
        prepared(&engine, r#"pod{namespace="x"} |~ "(""#).await,
        Err(EngineError::Syntax(_))
    ));
    // Lines have no offset: refused in the lines parser's words, after the parameters.
    assert!(matches!(
        prepared(&engine, r#"pod{namespace="x"} offset 5m"#).await,
        Ok(Prepared::Lines(Err(_)))
    ));
    assert!(matches!(
        prepared(&engine, r#"rate(pod{namespace="x"}[5m]) +"#).await,
        Err(EngineError::Syntax(_))
    ));
    let Prepared::Expression(expression) = prepared(
        &engine,
        r#"count_over_time(pod{namespace="namespace01"}[1h]) + refused_metric"#,
    )
    .await
    .expect("parses") else {
        panic!("an expression");
    };
    let steps = Steps {
        start: T,
        step: 1,
        count: 1,
    };
    let refused = engine
        .evaluate(&expression, steps, &Constant::default(), deadline())
        .await;
    assert!(
        matches!(&refused, Err(EngineError::Source { kind: SourceErrorKind::BadData, message }) if message == "refused by the source"),
        "{refused:?}"
    );
    let Prepared::Expression(expression) = prepared(
        &engine,
        r#"count_over_time(pod{namespace="namespace01"}[1h]) + on () group_left count_over_time(pod{namespace=~"namespace0.*"}[1h])"#,
    )
    .await
    .expect("parses") else {
        panic!("an expression");
    };
    let many = engine
        .evaluate(&expression, steps, &Constant::default(), deadline())
        .await;
    assert!(
        matches!(&many, Err(EngineError::Eval(janus::promql::EvalError::Execution(m))) if m.contains("many-to-many")),
        "{many:?}"
    );
}

/// Janus's own log functions parse and answer (promql-parser is taught them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_of_log_lines() {
    let engine = engine(false);
    let steps = Steps {
        start: T,
        step: 1,
        count: 1,
    };
    let text = std::fs::read_to_string(
        support::lethe_testdata().join("pod/namespace01/2009-11-10_22.log"),
    )
    .expect("sample file");
    let bytes: usize = text
        .lines()
        .map(|l| l.split_once("] ").map_or(0, |(_, message)| message.len()))
        .sum();
    for (query, expected) in [
        (
            r#"sum(bytes_over_time(pod{namespace="namespace01"}[1h]))"#,
            bytes as f64,
        ),
        (
            r#"sum(bytes_rate(pod{namespace="namespace01"}[1h]))"#,
            bytes as f64 / 3600.0,
        ),
    ] {
        let Prepared::Expression(expression) = prepared(&engine, query).await.expect("parses")
        else {
            panic!("an expression");
        };
        let answer = engine
            .evaluate(&expression, steps, &Constant::default(), deadline())
            .await
            .expect("answers");
        let Value::Vector(series) = answer.value else {
            panic!("a vector");
        };
        let got = series[0].points[0].expect("a value");
        assert!(
            (got - expected).abs() <= 1e-12 * expected,
            "{query}: {got} vs {expected}"
        );
    }
}

/// A second backend behind the log store seam: the file store's answers, but it says it cannot
/// run regular expressions. The engine asks it through the same trait; what it can run answers
/// as from the file store, and a query that needs a regex is refused naming what is missing,
/// never answered without it.
struct LiteralsOnly(Store);

use janus::logstore::write::{Batch, RetentionOutcome, RetentionPolicy, WriteError, Written};

impl janus::logstore::LogStore for LiteralsOnly {
    fn capabilities(&self) -> janus::logstore::Capabilities {
        janus::logstore::Capabilities {
            regex_filters: false,
            ..self.0.capabilities()
        }
    }
    fn search(
        &self,
        s: &janus::logstore::Search<'_>,
    ) -> Result<janus::logstore::Found, janus::logstore::ScanStop> {
        janus::logstore::LogStore::search(&self.0, s)
    }
    fn buckets(
        &self,
        count: &janus::logstore::Count<'_>,
        bounds: &[i64],
    ) -> Result<janus::logstore::StreamBuckets, janus::logstore::ScanStop> {
        self.0.buckets(count, bounds)
    }
    fn samples(
        &self,
        count: &janus::logstore::Count<'_>,
        lo: i64,
        hi: i64,
    ) -> Result<janus::logstore::SeriesSamples, janus::logstore::ScanStop> {
        self.0.samples(count, lo, hi)
    }
    fn chunk_count(
        &self,
        query: &janus::logql::LogQuery,
        lo: i64,
        hi: i64,
    ) -> Result<usize, janus::logstore::ScanStop> {
        self.0.chunk_count(query, lo, hi)
    }
    fn target_names(
        &self,
        kind: janus::logql::LogKind,
    ) -> Result<Vec<String>, janus::logstore::ScanStop> {
        janus::logstore::LogStore::target_names(&self.0, kind)
    }
    fn streams(
        &self,
        kind: janus::logql::LogKind,
        keep: &dyn Fn(&str) -> bool,
        lo: i64,
        hi: i64,
    ) -> Result<(std::collections::BTreeSet<Vec<String>>, bool), janus::logstore::ScanStop> {
        janus::logstore::LogStore::streams(&self.0, kind, keep, lo, hi)
    }
    fn newest_line(
        &self,
        kind: janus::logql::LogKind,
        target: &str,
    ) -> Result<Option<i64>, janus::logstore::ScanStop> {
        janus::logstore::LogStore::newest_line(&self.0, kind, target)
    }
    fn warm_recent(&self, hours: i64) {
        janus::logstore::LogStore::warm_recent(&self.0, hours)
    }
    fn forget_deleted(&self) {
        janus::logstore::LogStore::forget_deleted(&self.0)
    }
    fn push(&self, batch: &Batch<'_>) -> Result<Written, WriteError> {
        janus::logstore::LogStore::push(&self.0, batch)
    }
    fn recover(&self) -> Result<Option<String>, String> {
        janus::logstore::LogStore::recover(&self.0)
    }
    fn sync(&self) -> Result<f64, String> {
        janus::logstore::LogStore::sync(&self.0)
    }
    fn close_idle(&self, all: bool) {
        janus::logstore::LogStore::close_idle(&self.0, all)
    }
    fn enforce_retention(&self, policy: &RetentionPolicy, now: i64) -> RetentionOutcome {
        janus::logstore::LogStore::enforce_retention(&self.0, policy, now)
    }
    fn problem(&self) -> Option<String> {
        janus::logstore::LogStore::problem(&self.0)
    }
    fn describe(&self) -> String {
        janus::logstore::LogStore::describe(&self.0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_cannot_run_regexes_is_asked_through_the_seam() {
    use janus::logstore::LogStore;
    let metrics = Arc::new(Metrics::new());
    let store = LiteralsOnly(Store::new(support::lethe_testdata(), Arc::clone(&metrics)));
    assert!(!store.capabilities().regex_filters);
    let engine = Engine::new(
        Arc::new(store),
        Limits {
            max_samples: 1_000_000,
            max_series: 1000,
            evaluate_metric_queries: false,
        },
        metrics,
    );
    let search = |query| LineSearch {
        query,
        lo: T - 3600 * NS,
        hi: T,
        limit: 3,
        keep: Keep::Newest,
    };
    let Ok(Prepared::Lines(Ok(query))) =
        prepared(&engine, r#"pod{namespace="namespace01"} |= "hello""#).await
    else {
        panic!("lines");
    };
    let (found, ()) = engine
        .search_lines(search(query), deadline(), ())
        .await
        .expect("literal filters run on this backend");
    assert_eq!((found.lines.len(), found.truncated), (3, true));
    let Ok(Prepared::Lines(Ok(query))) =
        prepared(&engine, r#"pod{namespace="namespace01"} |~ "hel+o""#).await
    else {
        panic!("lines");
    };
    match engine.search_lines(search(query), deadline(), ()).await {
        Err(EngineError::Eval(janus::promql::EvalError::Execution(message))) => {
            assert_eq!(
                message,
                "the log store backend cannot run regular expressions"
            )
        }
        Err(other) => panic!("refused otherwise: {other}"),
        Ok(_) => panic!("answered without running the regex"),
    }
}
