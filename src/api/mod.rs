//! The HTTP API: one table of routes (the contract, mirrored by `api-spec/openapi.yaml`), the
//! shared state, and the observing middleware every request passes through.

pub mod error;
pub mod limits;
pub mod params;

mod body_budget;
mod envelope;
mod log_encode;
mod log_stream;
pub mod loki;
mod observe;
pub mod prometheus;
mod request;
mod ruler;
mod status;
mod status_page;
pub mod tenancy;
mod ui;

use std::sync::Arc;
use std::time::SystemTime;

use axum::routing::{on, MethodFilter};
use axum::Router;

use crate::api::limits::QueryLimiter;
use crate::config::Config;
use crate::engine::{Engine, Limits};
use crate::logstore::LogStore;
use crate::telemetry::Metrics;
use crate::upstream::Upstream;

/// Which face answered a request; set by handlers as a response extension, read by the access
/// log and `janus_http_requests_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Face {
    Metric,
    Log,
    Janus,
}

impl Face {
    /// Marks a response as answered by this face.
    pub fn mark(self, mut response: axum::response::Response) -> axum::response::Response {
        response.extensions_mut().insert(self);
        response
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Face::Metric => "metric",
            Face::Log => "log",
            Face::Janus => "janus",
        }
    }
}

pub struct AppState {
    pub config: Config,
    pub upstream: Arc<Upstream>,
    pub metrics: Arc<Metrics>,
    /// Slots for requests that wait on the upstream (forwarded queries, merged endpoints).
    pub limiter: QueryLimiter,
    /// Slots for queries Janus answers itself (lines, log metrics, mixed expressions): a slow
    /// upstream holding every upstream slot never starves the log face.
    pub log_limiter: QueryLimiter,
    pub store: Arc<dyn LogStore>,
    /// Janus's own queries: lines and numbers.
    pub engine: Arc<Engine>,
    /// Alerting and recording rules (none without rule files).
    pub ruler: Arc<crate::rules::Ruler>,
    /// KiB that log answers being sent may hold together ([`ANSWER_BYTES_IN_FLIGHT`]).
    pub answer_budget: Arc<tokio::sync::Semaphore>,
    /// KiB that pushes in flight may hold (--ingest.max-bytes-in-flight).
    pub push_budget: Arc<tokio::sync::Semaphore>,
    /// KiB that other request bodies may hold ([`body_budget::REQUEST_BYTES_IN_FLIGHT`]).
    pub request_budget: Arc<tokio::sync::Semaphore>,
    /// Loki tails open at once ([`loki::tail::MAX_TAILS`]).
    pub tails: Arc<tokio::sync::Semaphore>,
    /// What --web.config.file enforces (credentials, rate limit, headers, TLS), kept current.
    pub web: Arc<crate::auth::web_guard::WebGuard>,
    /// Answers that can no longer change (`None`: --query.cache-size=0).
    pub results_cache: Option<Arc<crate::results_cache::ResultsCache>>,
    pub started: SystemTime,
}

pub type SharedState = Arc<AppState>;

/// Why the state could not be made: Janus does not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create the HTTP client for --upstream.url: {0}")]
    Client(#[from] crate::upstream::UpstreamSetupError),
    /// The log store backend is unusable (ClickHouse unreachable, its tables wrong).
    #[error("log store: {0}")]
    Store(String),
    /// The ruler's HTTP clients (Alertmanager, remote write) could not be made.
    #[error("ruler: {0}")]
    Ruler(String),
}

/// What log answers being sent may hold in memory together: their lines' positions, their
/// open files and a chunk each. A query waits (until its deadline) for room.
pub const ANSWER_BYTES_IN_FLIGHT: usize = 256 << 20;

impl AppState {
    pub fn new(config: Config) -> Result<SharedState, StartError> {
        let metrics = Arc::new(Metrics::new());
        let upstream = Arc::new(Upstream::new(&config, Arc::clone(&metrics))?);
        let limiter = QueryLimiter::new(config.query_max_concurrency, Arc::clone(&metrics));
        let log_limiter = QueryLimiter::new(config.query_max_concurrency, Arc::clone(&metrics));
        let results_cache =
            crate::results_cache::ResultsCache::new(config.results_cache, Arc::clone(&metrics))
                .map(Arc::new);
        let store: Arc<dyn crate::logstore::LogStore> = match &config.storage_clickhouse {
            Some(settings) => Arc::new(
                crate::logstore::clickhouse::ClickHouse::open(settings, Arc::clone(&metrics))
                    .map_err(StartError::Store)?,
            ),
            None => Arc::new(
                crate::logstore::files::Store::new(
                    config.storage_path.clone(),
                    Arc::clone(&metrics),
                )
                .remembering_in(results_cache.clone())
                .writing(config.storage_fsync, config.storage_max_open_files),
            ),
        };
        let engine = Arc::new(Engine::new(
            Arc::clone(&store),
            Limits {
                max_samples: config.query_max_samples,
                max_series: config.query_max_series,
                evaluate_metric_queries: config.evaluate_metric_queries,
            },
            Arc::clone(&metrics),
        ));
        let querier = crate::rules::querier::EngineQuerier {
            engine: Arc::clone(&engine),
            source: Arc::new(crate::upstream::metric_source::UpstreamMetrics {
                upstream: Arc::clone(&upstream),
                headers: http::HeaderMap::new(),
                budget: config.query_timeout,
            }),
            shared: crate::engine::shared_leaves::SharedLeaves::new(),
            timeout: config.query_timeout,
        };
        let ruler = crate::rules::Ruler::new(
            config.rules.clone(),
            Arc::new(querier),
            Arc::clone(&metrics),
        )
        .map_err(StartError::Ruler)?;
        let push_budget = Arc::new(tokio::sync::Semaphore::new(
            config.ingest_budget_kib() as usize
        ));
        let web = Arc::new(crate::auth::web_guard::WebGuard::new(
            config.web_config_file.clone(),
            config.web.clone(),
            Arc::clone(&metrics),
        ));
        Ok(Arc::new(AppState {
            web,
            results_cache,
            config,
            upstream,
            metrics,
            limiter,
            log_limiter,
            store,
            engine,
            ruler,
            push_budget,
            request_budget: Arc::new(tokio::sync::Semaphore::new(
                body_budget::REQUEST_BYTES_IN_FLIGHT >> 10,
            )),
            answer_budget: Arc::new(tokio::sync::Semaphore::new(ANSWER_BYTES_IN_FLIGHT >> 10)),
            tails: Arc::new(tokio::sync::Semaphore::new(loki::tail::MAX_TAILS)),
            started: SystemTime::now(),
        }))
    }
}

/// What answers a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// Instant and range queries: routed to the log face or the upstream.
    Query,
    QueryRange,
    /// Forwarded to the upstream.
    Upstream,
    /// The Loki push API.
    Push,
    /// The Loki read API.
    LokiQuery,
    LokiQueryRange,
    LokiLabels,
    LokiLabelValues,
    LokiSeries,
    LokiBuildinfo,
    LokiVolume,
    LokiVolumeRange,
    LokiTail,
    LokiIndexStats,
    LokiDetectedLabels,
    LokiDetectedFields,
    LokiDetectedFieldValues,
    LokiFormatQuery,
    /// Answered by both faces, merged.
    Labels,
    LabelValues,
    Series,
    Metadata,
    Targets,
    Root,
    /// The query page and its embedded assets.
    Graph,
    UiAsset,
    Healthy,
    Ready,
    Metrics,
    /// `POST /api/v1/admin/cache/clear`: drops the results cache.
    CacheClear,
    /// The ruler: rules and alerts on both faces, Loki's rules listing, reloads.
    Rules,
    Alerts,
    /// Janus's Alertmanagers, then the upstream's.
    Alertmanagers,
    LokiFaceRules,
    LokiFaceAlerts,
    LokiRules,
    LokiRulesNamespace,
    LokiRulesGroup,
    Reload,
}

pub struct Route {
    pub path: &'static str,
    pub methods: &'static [&'static str],
    pub handler: Handler,
}

const GET: &[&str] = &["GET"];
const GET_POST: &[&str] = &["GET", "POST"];
const POST: &[&str] = &["POST"];

/// Every route Janus serves. `tests/api_spec.rs` checks this table against the OpenAPI file.
#[rustfmt::skip]
pub const ROUTES: &[Route] = &[
    Route { path: "/", methods: GET, handler: Handler::Root },
    Route { path: "/graph", methods: GET, handler: Handler::Graph },
    Route { path: "/ui/{file}", methods: GET, handler: Handler::UiAsset },
    Route { path: "/-/healthy", methods: GET, handler: Handler::Healthy },
    Route { path: "/-/ready", methods: GET, handler: Handler::Ready },
    Route { path: "/-/reload", methods: POST, handler: Handler::Reload },
    Route { path: "/metrics", methods: GET, handler: Handler::Metrics },
    Route { path: "/api/v1/query", methods: GET_POST, handler: Handler::Query },
    Route { path: "/api/v1/query_range", methods: GET_POST, handler: Handler::QueryRange },
    Route { path: "/api/v1/query_exemplars", methods: GET_POST, handler: Handler::Upstream },
    Route { path: "/api/v1/format_query", methods: GET_POST, handler: Handler::Upstream },
    Route { path: "/api/v1/series", methods: GET_POST, handler: Handler::Series },
    Route { path: "/api/v1/labels", methods: GET_POST, handler: Handler::Labels },
    Route { path: "/api/v1/label/{name}/values", methods: GET, handler: Handler::LabelValues },
    Route { path: "/api/v1/metadata", methods: GET, handler: Handler::Metadata },
    Route { path: "/api/v1/targets", methods: GET, handler: Handler::Targets },
    Route { path: "/api/v1/targets/metadata", methods: GET, handler: Handler::Upstream },
    Route { path: "/api/v1/rules", methods: GET, handler: Handler::Rules },
    Route { path: "/api/v1/alerts", methods: GET, handler: Handler::Alerts },
    Route { path: "/api/v1/alertmanagers", methods: GET, handler: Handler::Alertmanagers },
    Route { path: "/api/v1/status/buildinfo", methods: GET, handler: Handler::Upstream },
    Route { path: "/api/v1/status/runtimeinfo", methods: GET, handler: Handler::Upstream },
    Route { path: "/api/v1/status/flags", methods: GET, handler: Handler::Upstream },
    Route { path: "/api/v1/status/config", methods: GET, handler: Handler::Upstream },
    Route { path: "/api/v1/status/tsdb", methods: GET, handler: Handler::Upstream },
    Route { path: "/api/v1/status/walreplay", methods: GET, handler: Handler::Upstream },
    Route { path: "/api/v1/admin/cache/clear", methods: POST, handler: Handler::CacheClear },
    Route { path: "/loki/api/v1/push", methods: POST, handler: Handler::Push },
    Route { path: "/loki/api/v1/query", methods: GET_POST, handler: Handler::LokiQuery },
    Route { path: "/loki/api/v1/query_range", methods: GET_POST, handler: Handler::LokiQueryRange },
    Route { path: "/loki/api/v1/labels", methods: GET_POST, handler: Handler::LokiLabels },
    Route { path: "/loki/api/v1/label/{name}/values", methods: GET, handler: Handler::LokiLabelValues },
    Route { path: "/loki/api/v1/series", methods: GET_POST, handler: Handler::LokiSeries },
    Route { path: "/loki/api/v1/status/buildinfo", methods: GET, handler: Handler::LokiBuildinfo },
    Route { path: "/loki/api/v1/index/volume", methods: GET_POST, handler: Handler::LokiVolume },
    Route { path: "/loki/api/v1/index/volume_range", methods: GET_POST, handler: Handler::LokiVolumeRange },
    Route { path: "/loki/api/v1/tail", methods: GET, handler: Handler::LokiTail },
    Route { path: "/loki/api/v1/index/stats", methods: GET_POST, handler: Handler::LokiIndexStats },
    Route { path: "/loki/api/v1/detected_labels", methods: GET, handler: Handler::LokiDetectedLabels },
    Route { path: "/loki/api/v1/detected_fields", methods: GET, handler: Handler::LokiDetectedFields },
    Route { path: "/loki/api/v1/detected_field/{name}/values", methods: GET, handler: Handler::LokiDetectedFieldValues },
    Route { path: "/loki/api/v1/format_query", methods: GET_POST, handler: Handler::LokiFormatQuery },
    Route { path: "/loki/api/v1/rules", methods: GET, handler: Handler::LokiRules },
    Route { path: "/loki/api/v1/rules/{namespace}", methods: GET, handler: Handler::LokiRulesNamespace },
    Route { path: "/loki/api/v1/rules/{namespace}/{group}", methods: GET, handler: Handler::LokiRulesGroup },
    Route { path: "/prometheus/api/v1/rules", methods: GET, handler: Handler::LokiFaceRules },
    Route { path: "/prometheus/api/v1/alerts", methods: GET, handler: Handler::LokiFaceAlerts },
];

fn method_filter(methods: &[&str]) -> MethodFilter {
    methods
        .iter()
        .map(|m| match *m {
            "POST" => MethodFilter::POST,
            _ => MethodFilter::GET,
        })
        .reduce(MethodFilter::or)
        .unwrap_or(MethodFilter::GET)
}

/// Any other path: Janus's own namespaces (`/loki/…`, `/-/…`) answer 404 as Loki and Prometheus
/// do; everything else is the upstream's — `/api/v1/parse_query`, `/federate`,
/// VictoriaMetrics' `/api/v1/export` … — forwarded untouched, so Janus hides nothing of it.
async fn unrouted(
    state: axum::extract::State<SharedState>,
    request: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = request.uri().path();
    if path.starts_with("/loki/") || path.starts_with("/-/") {
        return (axum::http::StatusCode::NOT_FOUND, "404 page not found\n").into_response();
    }
    prometheus::proxy::handler(state, request).await
}

/// Builds the application: every route of `ROUTES`, observed by one middleware; any other path
/// as [`unrouted`] says.
pub fn router(state: SharedState) -> Router {
    let mut router = Router::new();
    for route in ROUTES {
        let filter = method_filter(route.methods);
        let method_router = match route.handler {
            Handler::Query => on(filter, prometheus::query::instant),
            Handler::QueryRange => on(filter, prometheus::query::range),
            Handler::Upstream => on(filter, prometheus::proxy::handler),
            Handler::Labels => on(filter, prometheus::merged::labels),
            Handler::LabelValues => on(filter, prometheus::merged::label_values),
            Handler::Series => on(filter, prometheus::merged::series),
            Handler::Metadata => on(filter, prometheus::metadata::metadata),
            Handler::Targets => on(filter, prometheus::targets::targets),
            Handler::Push => on(filter, loki::push::push),
            Handler::LokiQuery => on(filter, loki::query),
            Handler::LokiQueryRange => on(filter, loki::query_range),
            Handler::LokiLabels => on(filter, loki::labels),
            Handler::LokiLabelValues => on(filter, loki::label_values),
            Handler::LokiSeries => on(filter, loki::series),
            Handler::LokiBuildinfo => on(filter, loki::buildinfo),
            Handler::LokiVolume => on(filter, loki::volume),
            Handler::LokiVolumeRange => on(filter, loki::volume_range),
            Handler::LokiTail => on(filter, loki::tail::tail),
            Handler::LokiIndexStats => on(filter, loki::meta::index_stats),
            Handler::LokiDetectedLabels => on(filter, loki::meta::detected_labels),
            Handler::LokiDetectedFields => on(filter, loki::meta::detected_fields),
            Handler::LokiDetectedFieldValues => on(filter, loki::meta::detected_field_values),
            Handler::LokiFormatQuery => on(filter, loki::meta::format_query),
            Handler::Root => on(filter, status_page::root),
            Handler::Graph => on(filter, ui::graph),
            Handler::UiAsset => on(filter, ui::asset),
            Handler::Healthy => on(filter, status::healthy),
            Handler::Ready => on(filter, status::ready),
            Handler::Metrics => on(filter, status::metrics),
            Handler::CacheClear => on(filter, status::clear_cache),
            Handler::Rules => on(filter, ruler::rules),
            Handler::Alerts => on(filter, ruler::alerts),
            Handler::Alertmanagers => on(filter, ruler::alertmanagers),
            Handler::LokiFaceRules => on(filter, ruler::loki_face_rules),
            Handler::LokiFaceAlerts => on(filter, ruler::loki_face_alerts),
            Handler::LokiRules => on(filter, ruler::loki_rules),
            Handler::LokiRulesNamespace => on(filter, ruler::loki_rules_namespace),
            Handler::LokiRulesGroup => on(filter, ruler::loki_rules_group),
            Handler::Reload => on(filter, ruler::reload),
        };
        router = router.route(route.path, method_router);
    }
    // The web configuration's checks run inside the observer, so refusals are counted too;
    // then who the request is (tenants), once its credentials are known; then the room its
    // body takes, so that only identified requests hold any.
    router
        .fallback(unrouted)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            body_budget::body_budget,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            tenancy::tenancy,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.web),
            crate::auth::web_guard::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            observe::observe,
        ))
        .with_state(state)
}
