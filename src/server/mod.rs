//! Serving: bind, serve the router, and shut down gracefully on SIGTERM/SIGINT.

pub mod connections;
pub mod logging;
pub mod memory;

use std::future::Future;
use std::io;

use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::config::Config;

/// Errors that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Start(#[from] crate::api::StartError),
    #[error("cannot listen on {address} (--web.listen-address): {source}")]
    Bind { address: String, source: io::Error },
    #[error("serving: {0}")]
    Io(#[from] io::Error),
}

/// Prepares the store root; a failure is logged and reported by `/-/ready`, not fatal, so the
/// operator can see the reason on a running instance.
fn prepare_store(config: &Config) {
    if config.storage_clickhouse.is_some() {
        // Nothing is written under --storage.path.
        return;
    }
    if let Err(e) = std::fs::create_dir_all(&config.storage_path) {
        tracing::warn!(path = %config.storage_path.display(), error = %e, "storage path unusable");
    }
}

/// Binds the configured address.
pub async fn bind(config: &Config) -> Result<TcpListener, ServeError> {
    TcpListener::bind(config.listen_address)
        .await
        .map_err(|source| ServeError::Bind {
            address: config.listen_address.to_string(),
            source,
        })
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish for up to
/// `--web.shutdown-timeout` before returning.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    prepare_store(&config);
    crate::server::connections::raise_open_files_limit();
    let mut config = config;
    // Appenders take at most a quarter of the descriptors: connections and scans need the rest.
    if let Some(n) = crate::server::connections::open_files_limit() {
        config.storage_max_open_files = config
            .storage_max_open_files
            .min(usize::try_from(n / 4).unwrap_or(usize::MAX));
    }
    let grace = config.shutdown_timeout;
    // Making the state may talk to the log store (ClickHouse's schema): off the async threads.
    let state = tokio::task::spawn_blocking(move || AppState::new(config))
        .await
        .map_err(io::Error::other)??;
    // Lines a killed predecessor was half-way through writing were never acknowledged: cut them
    // off before anything is appended after them.
    let store = std::sync::Arc::clone(&state.store);
    let recovered = tokio::task::spawn_blocking(move || store.recover())
        .await
        .unwrap_or_else(|e| Err(e.to_string()));
    match recovered {
        Ok(Some(done)) => tracing::warn!("{done}"),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "recovering the store failed"),
    }
    state.upstream.spawn_health_probe();
    spawn_storage_tasks(&state);
    // Rule files with problems stop Janus at start, as a bad flag does; later, a bad reload
    // keeps the rules that run.
    state
        .ruler
        .start()
        .await
        .map_err(|e| crate::api::StartError::Ruler(format!("rule files: {e}")))?;
    spawn_reload_on_hangup(std::sync::Arc::clone(&state.ruler));
    let ruler = std::sync::Arc::clone(&state.ruler);
    // Build the time indexes of the last day's log files before queries ask for them.
    // Then, at the lowest priority, index what is at rest and was never indexed (persisted, so
    // once per file): five minutes after the start (a short-lived instance, a test, a query
    // right after a start keep the cores), then every ten minutes for files sealed since.
    let store = std::sync::Arc::clone(&state.store);
    tokio::spawn(async move {
        let warm = std::sync::Arc::clone(&store);
        let _ = tokio::task::spawn_blocking(move || warm.warm_recent(24)).await;
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + AT_REST_FIRST_DELAY,
            AT_REST_INTERVAL,
        );
        loop {
            ticker.tick().await;
            // A thread of its own: the pass lowers its thread's priority, which a pooled
            // blocking thread would keep for the queries it runs next.
            let store = std::sync::Arc::clone(&store);
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            let spawned = std::thread::Builder::new()
                .name("janus-at-rest".into())
                .spawn(move || {
                    let _ = done_tx.send(store.prepare_at_rest(&|| false));
                });
            let done = match spawned {
                Ok(_) => done_rx.await.unwrap_or(0),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the pass over files at rest");
                    0
                }
            };
            if done > 0 {
                tracing::info!(files = done, "indexed hour files at rest");
            }
        }
    });
    // Drop the indexes of files that retention (or anyone) deleted.
    let store = std::sync::Arc::clone(&state.store);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(std::time::Duration::from_secs(300));
        loop {
            ticker.tick().await;
            let store = std::sync::Arc::clone(&store);
            let _ = tokio::task::spawn_blocking(move || store.forget_deleted()).await;
        }
    });
    let store = std::sync::Arc::clone(&state.store);
    let metrics = std::sync::Arc::clone(&state.metrics);
    let limits = crate::server::connections::Limits {
        max_connections: state.config.web_max_connections,
        read_header_timeout: state.config.web_read_header_timeout,
        idle_timeout: state.config.web_idle_timeout,
    };
    spawn_memory_trim();
    let web = std::sync::Arc::clone(&state.web);
    crate::auth::web_guard::spawn_reloader(std::sync::Arc::clone(&web));
    let http2 = state.config.web.http2;
    let app = api::router(state);
    let signalled = async move {
        shutdown.await;
        tracing::info!(grace = %promql_parser::util::display_duration(&grace), "shutting down: no new connections, finishing in-flight requests");
    };
    let transport = crate::server::connections::Transport { web, http2 };
    crate::server::connections::serve(listener, app, limits, transport, metrics, signalled, grace)
        .await;
    ruler.stop();
    let _ = tokio::task::spawn_blocking(move || store.close_idle(true)).await;
    tracing::info!("stopped");
    Ok(())
}

/// When the first pass over files at rest starts, and how often it runs again.
const AT_REST_FIRST_DELAY: std::time::Duration = std::time::Duration::from_secs(300);
const AT_REST_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

/// SIGHUP reads the rule files again (as Prometheus does).
fn spawn_reload_on_hangup(ruler: std::sync::Arc<crate::rules::Ruler>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hangups) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; POST /-/reload reloads the rules");
            return;
        };
        while hangups.recv().await.is_some() {
            // A failure is logged and counted by the reload itself.
            let _ = ruler.reload().await;
        }
    });
}

/// Hands free heap memory back to the kernel now and then (`memory`).
fn spawn_memory_trim() {
    tokio::spawn(async {
        let mut ticker = tokio::time::interval(crate::server::memory::TRIM_INTERVAL);
        loop {
            ticker.tick().await;
            let _ = tokio::task::spawn_blocking(crate::server::memory::trim).await;
        }
    });
}

/// Background work on the store: batch fsync, closing idle appenders, retention.
fn spawn_storage_tasks(state: &api::SharedState) {
    use std::sync::Arc;
    use std::time::Duration;
    if state.config.storage_fsync == crate::logstore::files::writer::FsyncMode::Batch {
        let s = Arc::clone(state);
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(s.config.storage_fsync_interval);
            loop {
                ticker.tick().await;
                let w = Arc::clone(&s);
                match tokio::task::spawn_blocking(move || w.store.sync()).await {
                    Ok(Ok(seconds)) if seconds > 0.0 => s.metrics.fsync_duration.observe(seconds),
                    Ok(Err(e)) => tracing::error!(error = %e, "fsync of log files failed"),
                    _ => {}
                }
            }
        });
    }
    let s = Arc::clone(state);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(30));
        loop {
            ticker.tick().await;
            let w = Arc::clone(&s);
            let _ = tokio::task::spawn_blocking(move || w.store.close_idle(false)).await;
        }
    });
    let s = Arc::clone(state);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(s.config.retention_interval);
        loop {
            ticker.tick().await;
            let w = Arc::clone(&s);
            let outcome = tokio::task::spawn_blocking(move || {
                let policy = crate::logstore::write::RetentionPolicy {
                    max_age: w.config.retention_time,
                    max_bytes: w.config.retention_size,
                };
                w.store
                    .enforce_retention(&policy, crate::time::timestamp::Timestamp::now().0)
            })
            .await;
            if let Ok(o) = outcome {
                s.metrics
                    .store_size
                    .set(i64::try_from(o.store_bytes).unwrap_or(i64::MAX));
                for (reason, n) in [("time", o.deleted_by_time), ("size", o.deleted_by_size)] {
                    if n > 0 {
                        s.metrics
                            .retention_deleted
                            .get_or_create(&crate::telemetry::ReasonLabels {
                                reason: reason.into(),
                            })
                            .inc_by(n);
                    }
                }
                if o.deleted_by_time + o.deleted_by_size > 0 {
                    tracing::info!(
                        by_time = o.deleted_by_time,
                        by_size = o.deleted_by_size,
                        bytes = o.bytes_deleted,
                        "retention deleted hour files"
                    );
                }
            }
        }
    });
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(signal) => signal,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops Janus");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
