//! Janus: one PromQL endpoint for metrics and logs.
//!
//! The request path reads top to bottom: [`api`] (HTTP routes and the observing middleware) →
//! [`params`] (Prometheus's parameter rules) → [`upstream`] (faithful forwarding) → the answer,
//! with every refusal an [`error::ApiError`] mapped to HTTP in one place.

pub mod api;
pub mod auth;
pub mod config;
pub mod engine;
pub mod ingest;
pub mod logql;
pub mod logstore;
pub mod promql;
pub mod results_cache;
pub mod rules;
pub mod server;
pub mod telemetry;
pub mod time;
pub mod upstream;
