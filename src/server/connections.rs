//! Accepting connections with bounds: at most `--web.max-connections` open at once (more are
//! closed at once, logged and counted, as Prometheus's limit listener bounds its own), a client
//! must send a request's head within `--web.read-header-timeout` (slowloris), and a connection
//! with nothing in flight and no traffic for `--web.idle-timeout` is closed. Without these a few
//! hundred idle sockets use up the file descriptors and every query and push stops, silently.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Sleep;

use crate::telemetry::Metrics;

/// The bounds of the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub read_header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// Raises the soft limit of open files to the hard limit, as Go programs (Prometheus) do at
/// start-up: a service's default soft limit (1024) is far below what a gateway needs.
pub fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct passed by reference only.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 || limit.rlim_cur >= limit.rlim_max
        {
            return;
        }
        let wanted = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
            tracing::debug!(
                from = limit.rlim_cur,
                to = limit.rlim_max,
                "raised the open files limit"
            );
        }
    }
}

/// The soft limit of open files now (`None` when it cannot be read or is unlimited).
pub fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct passed by reference only.
    let read = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (read == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// What a connection speaks: TLS when the web configuration has it (read per connection, so
/// a reloaded certificate serves the next handshake), HTTP/2 unless the configuration says no.
pub struct Transport {
    pub web: Arc<crate::auth::web_guard::WebGuard>,
    pub http2: bool,
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets open connections finish
/// for up to `grace`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    transport: Transport,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    if !transport.http2 {
        builder = builder.http1_only();
    }
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_header_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut last_refusal_log: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of descriptors (EMFILE) or the like: wait a little instead of spinning.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            metrics.connections_refused.inc();
            if last_refusal_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                tracing::warn!(
                    limit = limits.max_connections,
                    "refusing connections: --web.max-connections are open"
                );
                last_refusal_log = Some(Instant::now());
            }
            drop(tcp);
            continue;
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let busy = Arc::new(AtomicUsize::new(0));
        let io = IdleIo::new(tcp, Arc::clone(&busy), limits.idle_timeout);
        let service = InFlight {
            inner: app.clone(),
            busy,
            peer,
        };
        let service = hyper_util::service::TowerToHyperService::new(service);
        let metrics = Arc::clone(&metrics);
        metrics.connections_open.inc();
        match transport.web.current().tls.as_ref() {
            None => {
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(io), service)
                    .into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                    metrics.connections_open.dec();
                    drop(permit);
                });
            }
            Some(tls) => {
                let acceptor = tokio_rustls::TlsAcceptor::from(Arc::clone(&tls.server));
                let builder = builder.clone();
                let watcher = graceful.watcher();
                // The handshake is part of the request's head: a client that stalls in it is
                // dropped after the same timeout.
                let handshake_timeout = limits.read_header_timeout;
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(io)).await {
                        Ok(Ok(stream)) => {
                            let connection = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                                .into_owned();
                            let _ = watcher.watch(connection).await;
                        }
                        Ok(Err(e)) => {
                            metrics.tls_handshake_failures.inc();
                            tracing::debug!(error = %e, "TLS handshake failed");
                        }
                        Err(_) => {
                            metrics.tls_handshake_failures.inc();
                            tracing::debug!("TLS handshake timed out");
                        }
                    }
                    metrics.connections_open.dec();
                    drop(permit);
                });
            }
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!("shutdown grace period over; dropping requests still in flight");
        }
    }
}

/// Counts the requests of one connection between their arrival and their response head, so
/// that a connection waiting on a slow query is not taken for an idle one.
#[derive(Clone)]
struct InFlight {
    inner: Router,
    busy: Arc<AtomicUsize>,
    /// The client's address, given to the request (a proxy's identity header is believed
    /// only from configured addresses).
    peer: std::net::SocketAddr,
}

struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl tower::Service<http::Request<hyper::body::Incoming>> for InFlight {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<hyper::body::Incoming>) -> Self::Future {
        self.busy.fetch_add(1, Ordering::Relaxed);
        let busy = Busy(Arc::clone(&self.busy));
        let mut router = self.inner.clone();
        let mut request = request.map(axum::body::Body::new);
        request
            .extensions_mut()
            .insert(crate::auth::web_guard::PeerAddr(self.peer));
        Box::pin(async move {
            let response = tower::Service::call(&mut router, request).await;
            drop(busy);
            response
        })
    }
}

/// A socket that fails with `TimedOut` once it has been idle — no bytes either way and no
/// request in flight — for the idle timeout.
struct IdleIo {
    inner: TcpStream,
    busy: Arc<AtomicUsize>,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
}

impl IdleIo {
    fn new(inner: TcpStream, busy: Arc<AtomicUsize>, idle: Duration) -> Self {
        IdleIo {
            inner,
            busy,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn touch(&mut self) {
        let at = tokio::time::Instant::now() + self.idle;
        self.timer.as_mut().reset(at);
    }

    /// Called when an operation would wait: is the connection idle for too long?
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        if self.busy.load(Ordering::Relaxed) > 0 {
            self.touch();
            return false;
        }
        self.timer.as_mut().poll(cx).is_ready()
    }
}

impl AsyncRead for IdleIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending => {
                if this.expired(cx) {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "connection idle past --web.idle-timeout",
                    )));
                }
                Poll::Pending
            }
            ready => {
                this.touch();
                ready
            }
        }
    }
}

impl AsyncWrite for IdleIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if polled.is_ready() {
            this.touch();
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if polled.is_ready() {
            this.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
