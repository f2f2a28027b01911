//! `--web.config.file`: the web configuration file of Prometheus's exporter-toolkit (the one
//! Prometheus, Alertmanager and the exporters read), so that an operator's existing file, and
//! what they know about it, carry over: `tls_server_config`, `http_server_config` and
//! `basic_auth_users`.
//!
//! The file is read into [`WebConfig`], every key checked: an unknown key, a file that cannot
//! be read, a certificate that does not parse or a hash that is no bcrypt hash is an error
//! naming the key, so that a bad file stops Janus at start-up (and a bad reload keeps the
//! previous one) rather than serving something other than what the operator wrote.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

/// Why a web configuration file was refused: the key (as a path in the file) and what is wrong.
pub type WebConfigError = crate::auth::settings_file::SettingsFileError;

/// The file as written. Unknown keys are refused, as exporter-toolkit refuses them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFormat {
    #[serde(default)]
    tls_server_config: Option<TlsFormat>,
    #[serde(default)]
    http_server_config: Option<HttpFormat>,
    #[serde(default)]
    basic_auth_users: Option<BTreeMap<String, String>>,
    /// exporter-toolkit's request rate limiter: read so that a file written for it is not
    /// refused, enforced as it documents it (a token bucket over all requests).
    #[serde(default)]
    rate_limit: Option<RateLimitFormat>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFormat {
    cert: Option<String>,
    key: Option<String>,
    client_ca: Option<String>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    client_allowed_sans: Option<Vec<String>>,
    min_version: Option<String>,
    max_version: Option<String>,
    cipher_suites: Option<Vec<String>>,
    prefer_server_cipher_suites: Option<bool>,
    curve_preferences: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpFormat {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitFormat {
    interval: Option<String>,
    burst: Option<u32>,
}

/// How a client must present a certificate (Go's `tls.ClientAuthType`, by its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    NoClientCert,
    RequestClientCert,
    RequireAnyClientCert,
    VerifyClientCertIfGiven,
    RequireAndVerifyClientCert,
}

/// The TLS settings, checked and loaded: a server configuration ready for the accept loop.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub server: Arc<rustls::ServerConfig>,
    pub client_auth: ClientAuth,
}

/// The files a configuration was read from (itself, certificates, keys, CAs): a change to any
/// of them is a reason to read it again.
pub type Sources = Vec<PathBuf>;

/// exporter-toolkit's token bucket: one request per `interval`, `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub interval: std::time::Duration,
    pub burst: u32,
}

/// A checked web configuration; the default is no file: plain HTTP (HTTP/2 allowed), no
/// users, no headers, no rate limit.
#[derive(Debug, Clone)]
pub struct WebConfig {
    pub tls: Option<TlsSettings>,
    /// `http_server_config.http2` (default true); read at start-up only, as in Prometheus.
    pub http2: bool,
    /// Headers added to every response.
    pub headers: Vec<(http::HeaderName, http::HeaderValue)>,
    /// User → bcrypt hash. Empty: no basic authentication.
    pub users: BTreeMap<String, String>,
    pub rate_limit: Option<RateLimit>,
    /// The files this configuration came from.
    pub sources: Sources,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            tls: None,
            http2: true,
            headers: Vec::new(),
            users: BTreeMap::new(),
            rate_limit: None,
            sources: Vec::new(),
        }
    }
}

/// The headers `http_server_config.headers` may set, and the values some of them are limited
/// to (exporter-toolkit's list).
const HEADERS: &[(&str, Option<&[&str]>)] = &[
    ("Content-Security-Policy", None),
    ("X-Frame-Options", Some(&["deny", "sameorigin"])),
    ("X-Content-Type-Options", Some(&["nosniff"])),
    ("X-XSS-Protection", None),
    ("Strict-Transport-Security", None),
];

impl WebConfig {
    /// Reads and checks the file at `path`; relative file names in it are taken from the
    /// file's own directory, as exporter-toolkit takes them.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigError> {
        let file = crate::auth::settings_file::SettingsFile::new("--web.config.file", path);
        let error = |key: &str, message: String| file.error(key, message);
        let format: FileFormat = file.read(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let http = format.http_server_config.unwrap_or_default();
        let http2 = http.http2.unwrap_or(true);
        let mut sources = vec![path.to_path_buf()];
        let tls = match format.tls_server_config {
            Some(tls) => {
                for file in [&tls.cert_file, &tls.key_file, &tls.client_ca_file]
                    .into_iter()
                    .flatten()
                {
                    sources.push(base.join(file));
                }
                let (mut server, client_auth) = tls_settings(tls, base, &error)?;
                server.alpn_protocols = if http2 {
                    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
                } else {
                    vec![b"http/1.1".to_vec()]
                };
                Some(TlsSettings {
                    server: Arc::new(server),
                    client_auth,
                })
            }
            None => None,
        };
        let mut headers = Vec::new();
        for (name, value) in http.headers.unwrap_or_default() {
            let key = format!("http_server_config.headers.{name}");
            let Some((canonical, allowed)) = HEADERS
                .iter()
                .find(|(known, _)| known.eq_ignore_ascii_case(&name))
            else {
                return Err(error(&key, "is not a header Janus may set (Content-Security-Policy, X-Frame-Options, X-Content-Type-Options, X-XSS-Protection, Strict-Transport-Security)".into()));
            };
            if value.is_empty() {
                continue;
            }
            if let Some(allowed) = allowed {
                if !allowed.iter().any(|a| a.eq_ignore_ascii_case(&value)) {
                    return Err(error(
                        &key,
                        format!("{value:?} is not one of {}", allowed.join(", ")),
                    ));
                }
            }
            let value = http::HeaderValue::from_str(&value)
                .map_err(|_| error(&key, format!("{value:?} is not a valid header value")))?;
            headers.push((
                http::HeaderName::from_static(canonical_lower(canonical)),
                value,
            ));
        }
        let users = format.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            let key = format!("basic_auth_users.{user}");
            if user.contains(':') {
                return Err(error(&key, "a user name cannot hold ':'".into()));
            }
            bcrypt_cost(hash).ok_or_else(|| error(&key, "is not a bcrypt hash".into()))?;
        }
        let rate_limit = match format.rate_limit {
            None => None,
            Some(limit) => {
                let interval = match limit.interval.as_deref() {
                    None => std::time::Duration::ZERO,
                    Some(text) => crate::time::duration::parse(text)
                        .map_err(|e| error("rate_limit.interval", format!("{text:?}: {e}")))?,
                };
                (!interval.is_zero()).then_some(RateLimit {
                    interval,
                    burst: limit.burst.unwrap_or(0),
                })
            }
        };
        Ok(WebConfig {
            tls,
            http2,
            headers,
            users,
            rate_limit,
            sources,
        })
    }
}

/// The lower-case static name of a known header (`HeaderName` wants lower case).
fn canonical_lower(name: &str) -> &'static str {
    match name {
        "Content-Security-Policy" => "content-security-policy",
        "X-Frame-Options" => "x-frame-options",
        "X-Content-Type-Options" => "x-content-type-options",
        "X-XSS-Protection" => "x-xss-protection",
        _ => "strict-transport-security",
    }
}

/// The cost of a bcrypt hash (`$2a$`, `$2b$`, `$2x$`, `$2y$`), if it is one.
fn bcrypt_cost(hash: &str) -> Option<u32> {
    let rest = hash.strip_prefix("$2")?;
    let (variant, rest) = rest.split_at_checked(1)?;
    if !matches!(variant, "a" | "b" | "x" | "y") {
        return None;
    }
    let rest = rest.strip_prefix('$')?;
    let (cost, salted) = rest.split_once('$')?;
    let cost: u32 = cost.parse().ok()?;
    ((4..=31).contains(&cost) && salted.len() == 53).then_some(cost)
}

fn tls_settings(
    tls: TlsFormat,
    base: &Path,
    error: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<(rustls::ServerConfig, ClientAuth), WebConfigError> {
    let key_of = |name: &str| format!("tls_server_config.{name}");
    // Inline PEM or a file, never both (exporter-toolkit's rule).
    let pem = |inline: Option<String>,
               file: Option<PathBuf>,
               name: &str,
               file_name: &str|
     -> Result<Option<Vec<u8>>, WebConfigError> {
        match (inline, file) {
            (Some(_), Some(_)) => Err(error(
                &key_of(file_name),
                format!("give {name} or {file_name}, not both"),
            )),
            (Some(text), None) => Ok(Some(text.into_bytes())),
            (None, Some(file)) => {
                let path = base.join(&file);
                std::fs::read(&path).map(Some).map_err(|e| {
                    error(
                        &key_of(file_name),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })
            }
            (None, None) => Ok(None),
        }
    };
    let cert = pem(tls.cert, tls.cert_file, "cert", "cert_file")?
        .ok_or_else(|| error(&key_of("cert_file"), "a certificate is required".into()))?;
    let key = pem(tls.key, tls.key_file, "key", "key_file")?
        .ok_or_else(|| error(&key_of("key_file"), "a key is required".into()))?;
    let client_ca = pem(
        tls.client_ca,
        tls.client_ca_file,
        "client_ca",
        "client_ca_file",
    )?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<_, _>>()
        .map_err(|e| error(&key_of("cert_file"), format!("not a PEM certificate: {e}")))?;
    if chain.is_empty() {
        return Err(error(
            &key_of("cert_file"),
            "holds no PEM certificate".into(),
        ));
    }
    let private = PrivateKeyDer::from_pem_slice(&key)
        .map_err(|e| error(&key_of("key_file"), format!("not a PEM private key: {e}")))?;

    let client_auth = match tls.client_auth_type.as_deref().unwrap_or("NoClientCert") {
        "NoClientCert" => ClientAuth::NoClientCert,
        "RequestClientCert" => ClientAuth::RequestClientCert,
        "RequireAnyClientCert" => ClientAuth::RequireAnyClientCert,
        "VerifyClientCertIfGiven" => ClientAuth::VerifyClientCertIfGiven,
        "RequireAndVerifyClientCert" => ClientAuth::RequireAndVerifyClientCert,
        other => {
            return Err(error(
                &key_of("client_auth_type"),
                format!("{other:?} is not one of NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"),
            ))
        }
    };
    if tls.client_allowed_sans.is_some_and(|s| !s.is_empty()) {
        return Err(error(
            &key_of("client_allowed_sans"),
            "is not supported by Janus: issue client certificates from a CA of their own and use RequireAndVerifyClientCert".into(),
        ));
    }
    let versions = tls_versions(
        tls.min_version.as_deref(),
        tls.max_version.as_deref(),
        error,
    )?;
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(names) = tls.cipher_suites.filter(|n| !n.is_empty()) {
        provider.cipher_suites = cipher_suites(&names, &provider.cipher_suites, error)?;
    }
    if let Some(names) = tls.curve_preferences.filter(|n| !n.is_empty()) {
        provider.kx_groups = curves(&names, &provider.kx_groups, error)?;
    }
    let provider = Arc::new(provider);
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| error(&key_of("cipher_suites"), e.to_string()))?;

    let verifier = client_verifier(client_auth, client_ca, &provider, error)?;
    let mut server = builder
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, private)
        .map_err(|e| {
            error(
                &key_of("key_file"),
                format!("does not go with the certificate: {e}"),
            )
        })?;
    // The server picks among the client's suites in its own order unless told otherwise.
    server.ignore_client_order = tls.prefer_server_cipher_suites.unwrap_or(true);
    Ok((server, client_auth))
}

fn tls_versions(
    min: Option<&str>,
    max: Option<&str>,
    error: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, WebConfigError> {
    // TLS 1.0 and 1.1 are not offered by rustls: asking for them as a minimum still gets
    // 1.2 and above, which is what such a minimum allows; as a maximum it cannot be served.
    let rank = |key: &str, text: &str| -> Result<u8, WebConfigError> {
        match text {
            "TLS10" => Ok(10),
            "TLS11" => Ok(11),
            "TLS12" => Ok(12),
            "TLS13" => Ok(13),
            other => Err(error(
                &format!("tls_server_config.{key}"),
                format!("{other:?} is not one of TLS10, TLS11, TLS12, TLS13"),
            )),
        }
    };
    let min = rank("min_version", min.unwrap_or("TLS12"))?;
    let max = rank("max_version", max.unwrap_or("TLS13"))?;
    if max < 12 {
        return Err(error(
            "tls_server_config.max_version",
            "Janus serves TLS 1.2 and 1.3 only".into(),
        ));
    }
    if min > max {
        return Err(error(
            "tls_server_config.min_version",
            "is above max_version".into(),
        ));
    }
    let mut versions = Vec::new();
    if min <= 12 {
        versions.push(&rustls::version::TLS12);
    }
    versions.push(&rustls::version::TLS13);
    if max == 12 {
        versions.retain(|v| v.version == rustls::ProtocolVersion::TLSv1_2);
    }
    Ok(versions)
}

/// Go's names of the TLS 1.2 suites rustls offers. TLS 1.3 suites are not configurable (as in
/// Go) and are always kept.
const SUITES: &[(&str, rustls::CipherSuite)] = &[
    (
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
        rustls::CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
    (
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        rustls::CipherSuite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ),
];

fn cipher_suites(
    names: &[String],
    available: &[rustls::SupportedCipherSuite],
    error: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<Vec<rustls::SupportedCipherSuite>, WebConfigError> {
    let mut chosen: Vec<rustls::SupportedCipherSuite> = available
        .iter()
        .filter(|s| matches!(s, rustls::SupportedCipherSuite::Tls13(_)))
        .copied()
        .collect();
    for name in names {
        let Some((_, id)) = SUITES.iter().find(|(known, _)| known == name) else {
            return Err(error(
                "tls_server_config.cipher_suites",
                format!(
                    "{name:?} is not a suite Janus offers (TLS 1.2: {})",
                    SUITES
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        // In the order given: it is the server's preference.
        if let Some(suite) = available.iter().find(|s| s.suite() == *id) {
            if !chosen.iter().any(|c| c.suite() == *id) {
                chosen.push(*suite);
            }
        }
    }
    Ok(chosen)
}

/// Go's curve names → rustls key-exchange groups, in the preference order given.
fn curves(
    names: &[String],
    available: &[&'static dyn rustls::crypto::SupportedKxGroup],
    error: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<Vec<&'static dyn rustls::crypto::SupportedKxGroup>, WebConfigError> {
    let mut chosen = Vec::new();
    for name in names {
        let group = match name.as_str() {
            "CurveP256" => rustls::NamedGroup::secp256r1,
            "CurveP384" => rustls::NamedGroup::secp384r1,
            "CurveP521" => rustls::NamedGroup::secp521r1,
            "X25519" => rustls::NamedGroup::X25519,
            other => {
                return Err(error(
                    "tls_server_config.curve_preferences",
                    format!("{other:?} is not one of CurveP256, CurveP384, CurveP521, X25519"),
                ))
            }
        };
        match available.iter().find(|g| g.name() == group) {
            Some(g) => chosen.push(*g),
            None => {
                return Err(error(
                    "tls_server_config.curve_preferences",
                    format!("{name} is not offered by Janus's TLS library"),
                ))
            }
        }
    }
    Ok(chosen)
}

fn client_verifier(
    auth: ClientAuth,
    ca: Option<Vec<u8>>,
    provider: &Arc<rustls::crypto::CryptoProvider>,
    error: &dyn Fn(&str, String) -> WebConfigError,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, WebConfigError> {
    let key = "tls_server_config.client_ca_file";
    let verifies = matches!(
        auth,
        ClientAuth::VerifyClientCertIfGiven | ClientAuth::RequireAndVerifyClientCert
    );
    match (auth, ca) {
        (ClientAuth::NoClientCert, _) => {
            Ok(rustls::server::WebPkiClientVerifier::no_client_auth())
        }
        (_, None) if verifies => Err(error(
            key,
            "client certificates can only be verified against a CA: give client_ca_file".into(),
        )),
        (_, Some(pem)) if verifies => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert =
                    cert.map_err(|e| error(key, format!("not a PEM certificate: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| error(key, format!("not a CA certificate: {e}")))?;
            }
            if roots.is_empty() {
                return Err(error(key, "holds no PEM certificate".into()));
            }
            let builder = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::clone(provider),
            );
            let builder = if auth == ClientAuth::VerifyClientCertIfGiven {
                builder.allow_unauthenticated()
            } else {
                builder
            };
            builder
                .build()
                .map_err(|e| error(key, format!("cannot verify with it: {e}")))
        }
        // RequestClientCert and RequireAnyClientCert take any certificate unverified: rustls
        // has no such mode, and accepting unverified certificates proves nothing.
        _ => Err(error(
            "tls_server_config.client_auth_type",
            "RequestClientCert and RequireAnyClientCert accept unverified certificates, which Janus does not; use RequireAndVerifyClientCert (or VerifyClientCertIfGiven) with client_ca_file".into(),
        )),
    }
}
