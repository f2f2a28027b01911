//! Janus: one PromQL endpoint for metrics and logs.
//!
//! The request path reads top to bottom: [`api`] (HTTP routes and the observing middleware) →
//! [`params`] (Prometheus's parameter rules) → [`upstream`] (faithful forwarding) → the answer,
//! with every refusal an [`error::ApiError`] mapped to HTTP in one place.

pub mod api;
pub mod config;
pub mod confined_texts;
pub mod connections;
pub mod duration;
pub mod engine;
pub mod error;
pub mod ingest;
pub mod limits;
pub mod logging;
pub mod logql;
pub mod memory;
pub mod params;
pub mod promql;
pub mod results_cache;
pub mod server;
pub mod settings_file;
pub mod short_eq;
pub mod store;
pub mod telemetry;
pub mod tenant_limits;
pub mod tenants;
pub mod upstream;
pub mod web_config;
pub mod web_guard;
