//! The ruler: alerting and recording rules over everything Janus evaluates — PromQL over the
//! upstream, log metrics over the store, and expressions that mix them — evaluated as
//! Prometheus evaluates rules, with alerts sent to Alertmanager and series written to a
//! Prometheus remote-write receiver.
//!
//! Read top to bottom: [`file`] (rule files, checked) → [`expr`] (each expression parsed once)
//! → [`manager`] (groups scheduled, reloads) → [`group`] (one evaluation) → [`alerting`] (the
//! alert state machine) → [`notifier`] and [`remote_write`] (what leaves Janus).
//! [`unit_test`] runs promtool's rule unit tests, with log lines as input too, offline.

pub mod alerting;
pub mod expr;
pub mod file;
pub mod group;
pub mod manager;
pub mod notifier;
pub mod outbox;
pub mod querier;
pub mod remote_write;
pub mod series_source;
pub mod template;
pub mod unit_test;

pub use manager::{Ruler, Settings};
