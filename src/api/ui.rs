//! The query page (`/graph`) and its assets (`/ui/<file>`), compiled into the binary so that
//! Janus needs nothing beside itself to show a person its two faces: no files to deploy, no
//! network to fetch a script from, the same TLS, credentials and tenants as every other path.
//!
//! The page is plain HTML, CSS and JavaScript talking to Janus's own APIs (the Prometheus API
//! for PromQL and LetheQL, the Loki API for LogQL); the only library is uPlot, vendored with its
//! licence under `assets/ui/`.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// One entry of [`ASSETS`]: a file of `assets/ui/`, its name in URLs and its type.
macro_rules! asset {
    ($name:literal, $path:literal, $content_type:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            bytes: include_bytes!(concat!("../../assets/ui/", $path)),
        }
    };
}

/// Every file the page loads. `/graph` is `graph.html`; the rest are served under `/ui/`.
const ASSETS: &[Asset] = &[
    asset!("graph.html", "graph.html", "text/html; charset=utf-8"),
    asset!("graph.js", "graph.js", "text/javascript; charset=utf-8"),
    asset!("janus.css", "janus.css", "text/css; charset=utf-8"),
    asset!(
        "uPlot.iife.min.js",
        "vendor/uPlot.iife.min.js",
        "text/javascript; charset=utf-8"
    ),
    asset!(
        "uPlot.min.css",
        "vendor/uPlot.min.css",
        "text/css; charset=utf-8"
    ),
    asset!(
        "LICENSE-uPlot.txt",
        "vendor/LICENSE-uPlot.txt",
        "text/plain; charset=utf-8"
    ),
];

/// The page may load only Janus's own files and talk only to Janus; uPlot sizes its elements
/// through the style properties, which `style-src 'unsafe-inline'` allows.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// What each asset costs on the wire, computed once: its validator and its gzip form.
struct Prepared {
    etag: HeaderValue,
    gzip: Option<Vec<u8>>,
}

fn prepared() -> &'static [Prepared] {
    static PREPARED: OnceLock<Vec<Prepared>> = OnceLock::new();
    PREPARED.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| Prepared {
                etag: etag_of(a.bytes),
                gzip: gzip(a.bytes),
            })
            .collect()
    })
}

/// A strong validator from the bytes (FNV-1a, 64 bits): the files change only with the binary.
fn etag_of(bytes: &[u8]) -> HeaderValue {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    HeaderValue::from_str(&format!("\"{hash:016x}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// The gzip form when it is smaller (everything but already-dense files).
fn gzip(bytes: &[u8]) -> Option<Vec<u8>> {
    use std::io::Write as _;
    let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    w.write_all(bytes).ok()?;
    let packed = w.finish().ok()?;
    (packed.len() < bytes.len()).then_some(packed)
}

/// `GET /graph`: the page. Its state lives in the query string, in Prometheus's link format
/// (`g0.expr`, `g0.tab`, `g0.range_input`, …), read by the script.
pub async fn graph(headers: HeaderMap) -> Response {
    serve(0, &headers)
}

/// `GET /ui/{file}`: the page's scripts, styles and uPlot's licence.
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS
        .iter()
        .position(|a| a.name == file && a.name != "graph.html")
    {
        Some(i) => serve(i, &headers),
        None => (StatusCode::NOT_FOUND, "404 page not found\n").into_response(),
    }
}

fn serve(i: usize, headers: &HeaderMap) -> Response {
    let asset = &ASSETS[i];
    let prepared = &prepared()[i];
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == prepared.etag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        // Both forms live as long as the process: sent without a copy.
        match (prepared.gzip.as_deref(), accepts_gzip(headers)) {
            (Some(packed), true) => {
                let mut r = packed.into_response();
                r.headers_mut()
                    .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                r
            }
            _ => asset.bytes.into_response(),
        }
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::ETAG, prepared.etag.clone());
    // Revalidated on every load (a 304 costs one round trip): a new binary's page is never
    // mixed with an old script.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.name == "graph.html" {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    response
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| matches!(p.trim(), "q=0" | "q=0.0" | "q=0.00" | "q=0.000"));
            name.eq_ignore_ascii_case("gzip") && !refused
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes of the page and everything it loads, as sent (gzip where smaller) and as stored.
    fn page_weight() -> (usize, usize) {
        let raw = ASSETS
            .iter()
            .filter(|a| !a.name.starts_with("LICENSE"))
            .map(|a| a.bytes.len())
            .sum();
        let sent = ASSETS
            .iter()
            .zip(prepared())
            .filter(|(a, _)| !a.name.starts_with("LICENSE"))
            .map(|(a, p)| p.gzip.as_ref().map_or(a.bytes.len(), Vec::len))
            .sum();
        (sent, raw)
    }

    #[test]
    fn gzip_is_offered_only_when_accepted() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, "br, gzip;q=0.8".parse().unwrap());
        assert!(accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, "gzip;q=0, br".parse().unwrap());
        assert!(!accepts_gzip(&h));
    }

    #[test]
    fn every_asset_is_served_with_its_type_and_a_validator() {
        let plain = HeaderMap::new();
        for (i, a) in ASSETS.iter().enumerate() {
            let r = serve(i, &plain);
            assert_eq!(r.status(), StatusCode::OK, "{}", a.name);
            assert_eq!(r.headers()[header::CONTENT_TYPE], a.content_type);
            let etag = r.headers()[header::ETAG].clone();
            let mut again = HeaderMap::new();
            again.insert(header::IF_NONE_MATCH, etag);
            assert_eq!(serve(i, &again).status(), StatusCode::NOT_MODIFIED);
        }
    }

    #[test]
    fn the_page_stays_small() {
        let (sent, raw) = page_weight();
        // uPlot is ~51 KB of it; the page's own script, styles and markup the rest.
        assert!(sent < raw, "gzip must pay: {sent} of {raw}");
        assert!(sent < 80_000, "the page weighs {sent} bytes on the wire");
    }
}
