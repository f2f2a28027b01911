//! Serving: bind, serve the router, and shut down gracefully on SIGTERM/SIGINT.

use std::future::Future;
use std::io;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::config::Config;
use crate::duration;

/// Errors that stop the server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot create the HTTP client for --upstream.url: {0}")]
    Client(#[from] reqwest::Error),
    #[error("cannot listen on {address} (--web.listen-address): {source}")]
    Bind { address: String, source: io::Error },
    #[error("serving: {0}")]
    Io(#[from] io::Error),
}

/// Prepares the store root; a failure is logged and reported by `/-/ready`, not fatal, so the
/// operator can see the reason on a running instance.
fn prepare_store(config: &Config) {
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
    let grace = config.shutdown_timeout;
    let state = AppState::new(config)?;
    state.upstream.spawn_health_probe();
    // Build the time indexes of the last day's log files before queries ask for them.
    let store = std::sync::Arc::clone(&state.store);
    tokio::task::spawn_blocking(move || store.warm_recent(24));
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
    let app = api::router(state);

    let (stopping_tx, mut stopping_rx) = tokio::sync::watch::channel(false);
    let signalled = async move {
        shutdown.await;
        tracing::info!(grace = %duration::format(grace), "shutting down: no new connections, finishing in-flight requests");
        let _ = stopping_tx.send(true);
    };
    // Answers are often written as a head and then body chunks; Nagle's algorithm would hold the
    // chunks back waiting for an ACK.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(signalled);
    let grace_over = async move {
        while !*stopping_rx.borrow() {
            if stopping_rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = server => served?,
        _ = grace_over => tracing::warn!("shutdown grace period over; dropping requests still in flight"),
    }
    tracing::info!("stopped");
    Ok(())
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
