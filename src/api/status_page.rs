//! The status page (`/`): what a person checks first — build, upstream, log store, results
//! cache, rules — in cards, with the way to the query page.

use std::fmt::Write as _;

use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};

use super::status::store_problem;
use super::SharedState;

/// The status page: what a person checks first (build, upstream, store, cache, rules), and the
/// way to the query page. Client libraries (prometheus-api-client's connection check) only need
/// a 200 here, so a restricted tenant gets one too, but without the upstream's address, the
/// store's path and the rules, which are not its business.
pub async fn root(State(state): State<SharedState>, request: axum::extract::Request) -> Response {
    if let Some(tenant) = super::tenancy::tenant_of(request.extensions()) {
        if let Some(scope) = &tenant.scope {
            let card = card(
                "Signed in",
                &[
                    ("Tenant", escape(&tenant.name)),
                    (
                        "Sees",
                        format!(
                            "metrics and logs of namespaces matching <code>{}</code>{}",
                            escape(&scope.namespaces.matcher_value()),
                            if scope.node_logs {
                                ", and node logs"
                            } else {
                                ""
                            }
                        ),
                    ),
                ],
            );
            return Html(page(&[build_card(&state), card])).into_response();
        }
    }
    let health = state.upstream.health();
    let (upstream_class, upstream_word) = match health.up {
        None => ("", "not probed yet"),
        Some(true) => ("ok", "up"),
        Some(false) => ("bad", "down"),
    };
    let checked = health
        .checked_at
        .map(|t| {
            chrono::DateTime::<chrono::Utc>::from(t)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
        .unwrap_or_else(|| "never".into());
    let upstream = card(
        "Upstream (metrics)",
        &[
            ("URL", escape(state.upstream.base_url())),
            (
                "Health",
                format!(
                    "<span class=\"{upstream_class}\">{upstream_word}</span> {}",
                    escape(&health.detail)
                ),
            ),
            ("Checked", escape(&checked)),
        ],
    );
    let store_state = match store_problem(&state).await {
        None => "<span class=\"ok\">usable</span>".to_string(),
        Some(problem) => format!("<span class=\"bad\">{}</span>", escape(&problem)),
    };
    let store = card(
        "Log store",
        &[
            ("Where", escape(&state.store.describe())),
            ("State", store_state),
        ],
    );
    let cache = match state.results_cache.clone() {
        None => card("Results cache", &[("State", "off".to_string())]),
        Some(cache) => {
            let held = tokio::task::spawn_blocking(move || cache.weighted_size())
                .await
                .unwrap_or(0);
            card(
                "Results cache",
                &[
                    ("Holds", bytes(held)),
                    ("Of at most", bytes(state.config.results_cache.max_bytes)),
                ],
            )
        }
    };
    Html(page(&[
        build_card(&state),
        upstream,
        store,
        cache,
        rules_card(&state),
    ]))
    .into_response()
}

fn build_card(state: &SharedState) -> String {
    let started = chrono::DateTime::<chrono::Utc>::from(state.started);
    let up = state.started.elapsed().map(|d| d.as_secs()).unwrap_or(0);
    card(
        "Build",
        &[
            ("Version", env!("CARGO_PKG_VERSION").to_string()),
            (
                "Revision",
                escape(option_env!("JANUS_REVISION").unwrap_or("unknown")),
            ),
            (
                "Started",
                format!(
                    "{} (up {}h {}m)",
                    started.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    up / 3600,
                    up % 3600 / 60
                ),
            ),
        ],
    )
}

fn rules_card(state: &SharedState) -> String {
    use crate::rules::alerting::AlertState;
    let groups = state.ruler.groups();
    let rules: usize = groups.iter().map(|g| g.rules.len()).sum();
    let failing = groups
        .iter()
        .flat_map(|g| &g.rules)
        .filter(|r| !r.last_error.is_empty())
        .count();
    let alerts = groups
        .iter()
        .flat_map(|g| &g.rules)
        .flat_map(|r| r.alerting.active.values());
    let (mut firing, mut pending) = (0, 0);
    for a in alerts {
        match a.state {
            AlertState::Firing => firing += 1,
            AlertState::Pending => pending += 1,
            AlertState::Inactive => {}
        }
    }
    let firing = if firing > 0 {
        format!("<span class=\"bad\">{firing} firing</span>, {pending} pending")
    } else {
        format!("<span class=\"ok\">none firing</span>, {pending} pending")
    };
    let failing = if failing > 0 {
        format!("<span class=\"bad\">{failing} failing</span>")
    } else {
        "none failing".to_string()
    };
    card(
        "Rules",
        &[
            (
                "Groups",
                format!("{} ({rules} rules, {failing})", groups.len()),
            ),
            ("Alerts", firing),
            (
                "Alertmanagers",
                state.ruler.alertmanagers().len().to_string(),
            ),
            (
                "Lists",
                "<a href=\"api/v1/rules\">rules</a> · <a href=\"api/v1/alerts\">alerts</a>"
                    .to_string(),
            ),
        ],
    )
}

/// Bytes as a person reads them (binary units, as the flags take them).
fn bytes(n: u64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} bytes")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// A card of the status page; the values are HTML already escaped by the caller.
fn card(title: &str, rows: &[(&str, String)]) -> String {
    let mut out = format!("<section class=\"card\"><h2>{}</h2><dl>", escape(title));
    for (name, value) in rows {
        let _ = write!(out, "<dt>{}</dt><dd>{value}</dd>", escape(name));
    }
    out.push_str("</dl></section>");
    out
}

fn page(cards: &[String]) -> String {
    let mut out = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"color-scheme\" content=\"light dark\"><title>Janus</title>\
         <link rel=\"stylesheet\" href=\"ui/janus.css\"></head><body>\
         <header class=\"bar\"><a class=\"brand\" href=\"./\">Janus</a><nav aria-label=\"Pages\">\
         <a href=\"graph\">Query</a><a href=\"./\" aria-current=\"page\">Status</a></nav></header>\
         <main><p>One PromQL endpoint for metrics and logs: the Prometheus HTTP API at this URL, \
         metric queries answered by the upstream, log queries by the log store. \
         <a href=\"graph\">Query metrics and logs</a>.</p><div class=\"cards\">",
    );
    for c in cards {
        out.push_str(c);
    }
    out.push_str(
        "</div><p class=\"links\"><a href=\"metrics\">/metrics</a><a href=\"-/ready\">/-/ready</a>\
         <a href=\"api/v1/status/buildinfo\">/api/v1/status/buildinfo</a></p></main></body></html>\n",
    );
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
