//! Janus: one PromQL endpoint for metrics and logs.
//!
//! The request path reads top to bottom: [`api`] (HTTP routes and the observing middleware) →
//! [`params`] (Prometheus's parameter rules) → [`upstream`] (faithful forwarding) → the answer,
//! with every refusal an [`error::ApiError`] mapped to HTTP in one place.

pub mod api;
pub mod auth;
pub mod config;
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
pub mod short_eq;
pub mod store;
pub mod telemetry;
pub mod timestamp;
pub mod upstream;
