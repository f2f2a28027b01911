//! What the web configuration file enforces on every request: basic authentication, the rate
//! limit and the response headers; and the file's reloading. The accept loop reads the same
//! current configuration for TLS, so a rotated certificate is served from the next handshake.
//!
//! The file and every file it names are watched (size, modification time, inode: a Kubernetes
//! secret swaps a symlink, which changes the target's inode). A change is read and checked in
//! full; a bad one keeps the previous configuration, says so in the log and sets
//! `janus_web_config_last_reload_successful` to 0.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::auth::web_config::WebConfig;
use crate::telemetry::Metrics;

/// How often the files are looked at for changes.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Paths answered without credentials (or an identity): a liveness or readiness probe cannot
/// send them, and they tell nothing about the data.
pub const OPEN_PATHS: &[&str] = &["/-/healthy", "/-/ready"];

/// Verified credentials remembered at most (then forgotten all at once).
const MAX_REMEMBERED: usize = 1024;

/// bcrypt checks running at once: each takes a core for tens of milliseconds by design, so a
/// flood of wrong passwords waits here instead of taking every blocking thread.
const BCRYPT_AT_ONCE: usize = 2;

/// A hash checked when the user is unknown, so that a wrong user name takes as long as a
/// wrong password (no user enumeration by timing). Made once, on first need.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| bcrypt::hash("janus: no user has this password", 10).unwrap_or_default())
}

/// Identity of a file's content for change detection.
type Stamp = Vec<Option<(u64, SystemTime, u64)>>;

fn stamp(sources: &[PathBuf]) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    sources
        .iter()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.len(), m.modified().ok()?, m.ino()))
        })
        .collect()
}

/// The current web configuration and what enforcing it needs.
pub struct WebGuard {
    path: Option<PathBuf>,
    current: RwLock<Arc<WebConfig>>,
    stamp: Mutex<Stamp>,
    /// SHA-256 of user, hash and password of credentials bcrypt accepted.
    verified: Mutex<HashSet<[u8; 32]>>,
    bcrypt_slots: tokio::sync::Semaphore,
    bucket: Mutex<Bucket>,
    metrics: Arc<Metrics>,
}

/// A token bucket (exporter-toolkit's `rate_limit`).
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl WebGuard {
    /// `path`: the file, when one was given; `initial`: what it held at start-up.
    pub fn new(path: Option<PathBuf>, initial: WebConfig, metrics: Arc<Metrics>) -> Self {
        let burst = initial.rate_limit.map_or(0.0, |l| f64::from(l.burst));
        metrics.web_config_reload_ok.set(1);
        WebGuard {
            stamp: Mutex::new(stamp(&initial.sources)),
            path,
            current: RwLock::new(Arc::new(initial)),
            verified: Mutex::new(HashSet::new()),
            bcrypt_slots: tokio::sync::Semaphore::new(BCRYPT_AT_ONCE),
            bucket: Mutex::new(Bucket {
                tokens: burst,
                at: Instant::now(),
            }),
            metrics,
        }
    }

    pub fn current(&self) -> Arc<WebConfig> {
        match self.current.read() {
            Ok(c) => Arc::clone(&c),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Reads the file again if it or a file it names changed. Blocking (file system).
    pub fn reload_if_changed(&self) {
        let Some(path) = &self.path else { return };
        let sources = self.current().sources.clone();
        let now = stamp(&sources);
        {
            let Ok(mut last) = self.stamp.lock() else {
                return;
            };
            if *last == now {
                return;
            }
            *last = now;
        }
        let previous = self.current();
        match WebConfig::load(path).and_then(|new| same_transport(path, &previous, new)) {
            Ok(new) => {
                // New files may be named: watch them from now on.
                if let Ok(mut last) = self.stamp.lock() {
                    *last = stamp(&new.sources);
                }
                if let Ok(mut current) = self.current.write() {
                    *current = Arc::new(new);
                }
                if let Ok(mut verified) = self.verified.lock() {
                    verified.clear();
                }
                self.metrics.web_config_reload_ok.set(1);
                self.metrics.web_config_reloads.inc();
                tracing::info!(file = %path.display(), "web configuration reloaded");
            }
            Err(e) => {
                self.metrics.web_config_reload_ok.set(0);
                self.metrics.web_config_reload_failures.inc();
                tracing::error!(error = %e, "web configuration not reloaded; the previous one stays in force");
            }
        }
    }

    /// The configured user whose basic-auth credentials the request holds, if any.
    async fn authenticated(
        &self,
        config: &WebConfig,
        header: Option<&http::HeaderValue>,
    ) -> Option<String> {
        let (user, password) = header.and_then(basic_credentials)?;
        let known = config.users.get(&user);
        let hash = match known {
            Some(hash) => hash.clone(),
            None => tokio::task::spawn_blocking(dummy_hash)
                .await
                .unwrap_or_default()
                .to_string(),
        };
        let key = remembered_key(&user, &hash, &password);
        if known.is_some() && self.verified.lock().is_ok_and(|v| v.contains(&key)) {
            return Some(user);
        }
        let _slot = self.bcrypt_slots.acquire().await.ok()?;
        let matches =
            tokio::task::spawn_blocking(move || bcrypt::verify(&password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        let ok = matches && known.is_some();
        if ok {
            if let Ok(mut verified) = self.verified.lock() {
                if verified.len() >= MAX_REMEMBERED {
                    verified.clear();
                }
                verified.insert(key);
            }
        }
        ok.then_some(user)
    }

    /// Takes a token from the bucket, if the configuration limits the rate.
    fn admit(&self, config: &WebConfig) -> bool {
        let Some(limit) = config.rate_limit else {
            return true;
        };
        let Ok(mut bucket) = self.bucket.lock() else {
            return true;
        };
        let now = Instant::now();
        let refill = now.duration_since(bucket.at).as_secs_f64() / limit.interval.as_secs_f64();
        bucket.tokens = (bucket.tokens + refill).min(f64::from(limit.burst.max(1)));
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Turning TLS on or off changes what the port speaks: that needs a restart, as in Prometheus.
fn same_transport(
    path: &std::path::Path,
    previous: &WebConfig,
    new: WebConfig,
) -> Result<WebConfig, crate::auth::web_config::WebConfigError> {
    if previous.tls.is_some() != new.tls.is_some() {
        return Err(
            crate::auth::settings_file::SettingsFile::new("--web.config.file", path)
                .error("tls_server_config", "turning TLS on or off needs a restart"),
        );
    }
    Ok(new)
}

fn remembered_key(user: &str, hash: &str, password: &str) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [user, hash, password] {
        context.update(&(part.len() as u64).to_le_bytes());
        context.update(part.as_bytes());
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(context.finish().as_ref());
    key
}

/// User and password of an `Authorization: Basic …` header.
fn basic_credentials(header: &http::HeaderValue) -> Option<(String, String)> {
    use base64::Engine;
    let text = header.to_str().ok()?;
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The middleware: rate limit, then credentials, then the configured response headers (on
/// refusals too).
pub async fn guard(State(web): State<Arc<WebGuard>>, mut request: Request, next: Next) -> Response {
    let config = web.current();
    let mut response = if !web.admit(&config) {
        (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n").into_response()
    } else if config.users.is_empty() || OPEN_PATHS.contains(&request.uri().path()) {
        next.run(request).await
    } else {
        let header = request.headers().get(http::header::AUTHORIZATION);
        match web.authenticated(&config, header).await {
            Some(user) => {
                // Who the tenants file may know the request as.
                request.extensions_mut().insert(VerifiedUser(user));
                next.run(request).await
            }
            None => (
                StatusCode::UNAUTHORIZED,
                [(http::header::WWW_AUTHENTICATE, "Basic")],
                "Unauthorized\n",
            )
                .into_response(),
        }
    };
    for (name, value) in &config.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

/// The user basic auth verified, for the tenants file to know the request by.
#[derive(Debug, Clone)]
pub struct VerifiedUser(pub String);

/// The client's address, as the accept loop saw it (a proxy's, behind one).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::SocketAddr);

/// Looks at the files every [`RELOAD_CHECK_INTERVAL`].
pub fn spawn_reloader(guard: Arc<WebGuard>) {
    if guard.path.is_none() {
        return;
    }
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(RELOAD_CHECK_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let g = Arc::clone(&guard);
            let _ = tokio::task::spawn_blocking(move || g.reload_if_changed()).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_as_browsers_send_them() {
        let header = http::HeaderValue::from_static("Basic YWxpY2U6czNjcjN0Og==");
        assert_eq!(
            basic_credentials(&header),
            Some(("alice".into(), "s3cr3t:".into()))
        );
        for bad in ["Bearer x", "Basic !!!", "Basic YWxpY2U=", "Basic"] {
            let header = http::HeaderValue::from_static(bad);
            assert_eq!(basic_credentials(&header), None, "{bad}");
        }
    }

    #[test]
    fn the_dummy_hash_is_a_hash_no_password_matches() {
        assert!(!bcrypt::verify("", dummy_hash()).unwrap_or(true));
        assert!(!bcrypt::verify("admin", dummy_hash()).unwrap_or(true));
    }
}
