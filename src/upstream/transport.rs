//! The connection pool to the upstream: hyper's client with rustls, set up once from the
//! configuration. A passthrough request crosses it with nothing else in the way: no URL parsing,
//! no redirect policy, no stream adapters (a proxy passes redirects on; bodies are bytes).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The pooled client every upstream request goes through.
pub type UpstreamClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Why the client could not be set up (a configuration problem, reported at start).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("upstream CA certificates: {0}")]
    Certificates(String),
    #[error("upstream TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// What the pool needs to know.
pub struct TransportConfig<'a> {
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    /// PEM bundle trusted besides the public roots (`ca_file`).
    pub ca_pem: Option<&'a [u8]>,
    /// `insecure_skip_verify`: signatures are still checked, the chain and name are not.
    pub insecure_skip_verify: bool,
}

/// Builds the pool: TCP_NODELAY, the connect timeout, HTTP/1.1 or HTTP/2 (by ALPN) over TLS.
pub fn build(config: &TransportConfig<'_>) -> Result<UpstreamClient, TransportError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let tls = if config.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(SignaturesOnly { provider }))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(pem) = config.ca_pem {
            for cert in CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| TransportError::Certificates(e.to_string()))?;
                roots
                    .add(cert)
                    .map_err(|e| TransportError::Certificates(e.to_string()))?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(config.connect_timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(config.idle_timeout)
        .pool_timer(TokioTimer::new())
        .build(connector))
}

/// `insecure_skip_verify`, as Prometheus's HTTP client config means it: any certificate and name
/// are accepted, but the handshake's signatures must still be made by the certificate's key.
#[derive(Debug)]
struct SignaturesOnly {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for SignaturesOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
