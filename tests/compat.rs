//! The compatibility suite: every request of `compat-tests/corpus.jsonl` sent straight to a real
//! upstream and through Janus must come back with the same status, `Content-Type`,
//! `Content-Encoding` and body bytes. Real clients (promtool, prometheus-api-client) are run
//! against Janus as well.

mod support;

use std::process::Command;

use serde::Deserialize;
use support::{raw_client, required_env, start_janus};

#[derive(Debug, Deserialize)]
struct Case {
    method: String,
    path: String,
    params: Vec<(String, String)>,
    gzip: bool,
    #[serde(default)]
    compare: Option<String>,
    /// Set when only that upstream answers the request reproducibly.
    #[serde(default)]
    only: Option<String>,
}

fn corpus() -> Vec<Case> {
    let text = include_str!("../compat-tests/corpus.jsonl");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("corpus line {}: {e}", i + 1))
        })
        .collect()
}

#[derive(Debug, PartialEq)]
struct Answer {
    status: u16,
    content_type: Option<String>,
    content_encoding: Option<String>,
    body: Vec<u8>,
}

async fn send(client: &reqwest::Client, base: &str, case: &Case) -> Answer {
    let url = format!("{base}{}", case.path);
    let encoded = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(case.params.iter())
        .finish();
    let mut request = if case.method == "POST" {
        client
            .post(&url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(encoded)
    } else if encoded.is_empty() {
        client.get(&url)
    } else {
        client.get(format!("{url}?{encoded}"))
    };
    request = request.header(
        "Accept-Encoding",
        if case.gzip { "gzip" } else { "identity" },
    );
    let response = request.send().await.expect("request sent");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .map(|v| v.to_str().unwrap_or("<binary>").to_string())
    };
    Answer {
        status: response.status().as_u16(),
        content_type: header("content-type"),
        content_encoding: header("content-encoding"),
        body: response.bytes().await.expect("body").to_vec(),
    }
}

/// Same JSON keys at every level; for answers whose values legitimately change between calls.
fn same_shape(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value::*;
    match (a, b) {
        (Object(x), Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_shape(v, w)))
        }
        (Array(_), Array(_)) => true,
        (x, y) => std::mem::discriminant(x) == std::mem::discriminant(y),
    }
}

/// How strictly answers through Janus must match the direct ones.
#[derive(Clone, Copy, PartialEq)]
enum Strictness {
    /// Byte for byte: Prometheus answers the same request with the same bytes.
    Bytes,
    /// Answers written by Janus's results cache: the same status, content type and encoding,
    /// and after decoding the same bytes (Janus's gzip is not Go's, byte for byte).
    Decoded,
    /// VictoriaMetrics itself is not byte-deterministic: it sums floats in parallel (last digits
    /// vary between two direct calls) and echoes the client's address in errors. Equal after
    /// decoding, with the address masked and numbers within 1e-9 relative.
    UpstreamNoise,
}

fn decoded_text(a: &Answer) -> String {
    let raw = if a.content_encoding.as_deref() == Some("gzip") {
        use std::io::Read;
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&a.body[..])
            .read_to_end(&mut out)
            .expect("valid gzip");
        out
    } else {
        a.body.clone()
    };
    let mut text = String::from_utf8_lossy(&raw).to_string();
    let marker = "remoteAddr: \"";
    if let Some(start) = text.find(marker) {
        let rest = start + marker.len();
        if let Some(len) = text[rest..].find('"') {
            text.replace_range(rest..rest + len, "ADDR");
        }
    }
    text
}

fn equivalent(direct: &Answer, through: &Answer, strictness: Strictness) -> bool {
    if direct == through {
        return true;
    }
    let heads_equal = (
        direct.status,
        &direct.content_type,
        &direct.content_encoding,
    ) == (
        through.status,
        &through.content_type,
        &through.content_encoding,
    );
    if strictness == Strictness::Decoded {
        return heads_equal && decoded_text(direct) == decoded_text(through);
    }
    if strictness == Strictness::Bytes
        || (
            direct.status,
            &direct.content_type,
            &direct.content_encoding,
        ) != (
            through.status,
            &through.content_type,
            &through.content_encoding,
        )
    {
        return false;
    }
    let (a, b) = (decoded_text(direct), decoded_text(through));
    match (
        serde_json::from_str::<serde_json::Value>(&a),
        serde_json::from_str::<serde_json::Value>(&b),
    ) {
        (Ok(x), Ok(y)) => support::close_json(&x, &y),
        _ => a == b,
    }
}

/// The corpus through Janus against `upstream`; with `Strictness::Bytes` the results cache is
/// off (every answer is the upstream's own bytes on the wire), otherwise on, and the corpus is
/// asked twice (cold, then from what the cache kept).
async fn run_corpus(upstream: &str, strictness: Strictness) -> usize {
    let janus = start_janus(upstream, |c| {
        if strictness == Strictness::Bytes {
            c.results_cache.max_bytes = 0;
        }
    })
    .await;
    let rounds = if strictness == Strictness::Bytes {
        1
    } else {
        2
    };
    let mut checked = 0;
    for _ in 0..rounds {
        checked = corpus_round(&janus, upstream, strictness).await;
    }
    janus.stop().await;
    checked
}

async fn corpus_round(janus: &support::TestJanus, upstream: &str, strictness: Strictness) -> usize {
    let client = raw_client();
    let cases = corpus();
    let mut failures = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let upstream_name = match strictness {
            Strictness::Bytes | Strictness::Decoded => "prometheus",
            Strictness::UpstreamNoise => "victoriametrics",
        };
        if case
            .only
            .as_deref()
            .is_some_and(|only| only != upstream_name)
        {
            continue;
        }
        let direct = send(&client, upstream, case).await;
        let through = send(&client, &janus.url, case).await;
        let parse = |b: &[u8]| serde_json::from_slice::<serde_json::Value>(b).ok();
        let mut same = match (
            case.compare.as_deref(),
            parse(&direct.body),
            parse(&through.body),
        ) {
            (Some("shape"), Some(a), Some(b)) => {
                direct.status == through.status
                    && direct.content_type == through.content_type
                    && same_shape(&a, &b)
            }
            _ => equivalent(&direct, &through, strictness),
        };
        // An upstream that orders series or error details differently from call to call (both
        // do for some functions), or whose freshly imported data is still settling: the answer
        // through Janus must be one the upstream itself gives, now or asked again side by side.
        if !same {
            for _ in 0..20 {
                let again = send(&client, upstream, case).await;
                if equivalent(&again, &through, strictness)
                    || equivalent(&again, &send(&client, &janus.url, case).await, strictness)
                {
                    same = true;
                    break;
                }
            }
        }
        if !same {
            failures.push(format!(
                "line {}: {} {} {:?}\n  direct:  {} {:?} {:?} {}\n  through: {} {:?} {:?} {}",
                i + 1,
                case.method,
                case.path,
                case.params,
                direct.status,
                direct.content_type,
                direct.content_encoding,
                String::from_utf8_lossy(&direct.body[..direct.body.len().min(300)]),
                through.status,
                through.content_type,
                through.content_encoding,
                String::from_utf8_lossy(&through.body[..through.body.len().min(300)]),
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus requests differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    cases.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_is_byte_identical_through_janus_for_prometheus() {
    let n = run_corpus(&required_env("JANUS_TEST_PROMETHEUS"), Strictness::Bytes).await;
    assert!(
        n >= 150,
        "the corpus must hold at least 150 requests, has {n}"
    );
}

/// With the results cache on, answered cold and then warm: the same answers after decoding.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_is_identical_through_the_results_cache_for_prometheus() {
    run_corpus(&required_env("JANUS_TEST_PROMETHEUS"), Strictness::Decoded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_is_byte_identical_through_janus_for_victoriametrics() {
    run_corpus(
        &required_env("JANUS_TEST_VICTORIAMETRICS"),
        Strictness::UpstreamNoise,
    )
    .await;
}

/// MetricsQL and PromQL dialect that promql-parser refuses: Janus must not narrow the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialects_the_parser_refuses_still_reach_the_upstream() {
    let vm = required_env("JANUS_TEST_VICTORIAMETRICS");
    let janus = start_janus(&vm, |_| {}).await;
    let client = raw_client();
    let queries = [
        r#"WITH (shop = {namespace="shop"}) sum(rate(http_requests_total{shop}[5m]))"#,
        r#"sum(rate(http_requests_total[5m])) by (namespace) keep_metric_names"#,
        r#"range_median(cpu_usage_ratio)"#,
        r#"rollup_candlestick(cpu_usage_ratio[1h])"#,
        r#"median_over_time(cpu_usage_ratio[10m])"#,
        r#"cpu_usage_ratio default 0"#,
        r#"rate(http_requests_total)"#,
        r#"label_set(up, "env", "test")"#,
        r#"up{job=~`a\.p.`}"#,
        r#"sum(up[1h:5m] offset -10m)"#,
    ];
    let mut accepted = 0;
    for q in queries {
        for method in ["GET", "POST"] {
            let case = Case {
                method: method.into(),
                path: "/api/v1/query".into(),
                params: vec![
                    ("query".into(), q.into()),
                    ("time".into(), "1704078000".into()),
                ],
                gzip: method == "POST",
                compare: None,
                only: None,
            };
            let direct = send(&client, &vm, &case).await;
            let through = send(&client, &janus.url, &case).await;
            let mut same = equivalent(&direct, &through, Strictness::UpstreamNoise);
            for _ in 0..8 {
                if same {
                    break;
                }
                same = equivalent(
                    &send(&client, &vm, &case).await,
                    &through,
                    Strictness::UpstreamNoise,
                );
            }
            assert!(
                same,
                "{method} {q}: {} vs {}",
                decoded_text(&direct),
                decoded_text(&through)
            );
            accepted += usize::from(direct.status == 200);
        }
    }
    // The dialect really is the upstream's: it accepts what Janus's parser would refuse.
    assert!(
        accepted >= 16,
        "VictoriaMetrics accepted only {accepted} of 20"
    );
    janus.stop().await;
}

/// Paths Janus has no route for are the upstream's, answered untouched: Prometheus's federation,
/// VictoriaMetrics' export, any path the upstream does not know (its own 404). Only Janus's own
/// namespaces (`/loki/…`, `/-/…`) answer 404 from Janus.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_without_a_route_reach_the_upstream_untouched() {
    let client = raw_client();
    for (upstream, path) in [
        (
            required_env("JANUS_TEST_PROMETHEUS"),
            "/federate?match[]=up",
        ),
        (
            required_env("JANUS_TEST_PROMETHEUS"),
            "/api/v1/parse_query?query=up",
        ),
        (
            required_env("JANUS_TEST_PROMETHEUS"),
            "/api/v1/notifications",
        ),
        (required_env("JANUS_TEST_PROMETHEUS"), "/no/such/path"),
        (
            required_env("JANUS_TEST_VICTORIAMETRICS"),
            "/api/v1/export?match[]=up&start=1704078000&end=1704078060",
        ),
    ] {
        let janus = start_janus(&upstream, |_| {}).await;
        let get = |base: &str| {
            let url = format!("{base}{path}");
            let client = client.clone();
            async move {
                let r = client.get(url).send().await.expect("answer");
                (r.status().as_u16(), r.bytes().await.expect("body"))
            }
        };
        // (VictoriaMetrics exports series in no fixed order: compared as sets of lines.)
        let lines = |body: &[u8]| {
            let mut lines: Vec<Vec<u8>> = body.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
            lines.sort();
            lines
        };
        let (direct, through) = (get(&upstream).await, get(&janus.url).await);
        assert_eq!(direct.0, through.0, "{path}");
        assert_eq!(lines(&direct.1), lines(&through.1), "{path}");
        janus.stop().await;
    }
    let janus = start_janus(&required_env("JANUS_TEST_PROMETHEUS"), |_| {}).await;
    for path in ["/loki/api/v1/nothing", "/-/nothing"] {
        let r = client
            .get(format!("{}{path}", janus.url))
            .send()
            .await
            .expect("answer");
        assert_eq!(r.status(), 404, "{path}");
    }
    janus.stop().await;
}

/// Janus's own parameter layer words its refusals exactly as the real Prometheus does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_parameter_errors_match_prometheus_wording() {
    use axum::response::IntoResponse;
    use http_body_util::BodyExt;
    use janus::api::params::{Params, Timestamp};

    let prometheus = required_env("JANUS_TEST_PROMETHEUS");
    let client = raw_client();
    let range_cases = [
        "query=up&start=1&end=0&step=1",
        "query=up&start=0&end=1&step=0",
        "query=up&start=0&end=1&step=-5",
        "query=up&start=0&end=100000&step=1",
        "query=up&start=0&end=100&step=abc",
        "query=up&start=x&end=100&step=1",
        "query=up&end=100&step=1",
        "query=up&start=0&end=100",
        "query=up&start=0&end=1&step=1e300",
        "query=up&start=0&end=100&step=1&timeout=abc",
        "query=up&start=0&end=100&step=1&timeout=-1s",
    ];
    let instant_cases = [
        "query=up&time=abc",
        "query=up&time=2024-13-01T00:00:00Z",
        "time=1",
        "query=&time=1",
        "query=up&time=1&timeout=x",
    ];
    async fn body_of(e: janus::api::error::ApiError) -> (u16, Vec<u8>) {
        let response = e.into_response();
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, body.to_vec())
    }
    for (path, cases, range) in [
        ("query_range", &range_cases[..], true),
        ("query", &instant_cases[..], false),
    ] {
        for case in cases {
            let direct = client
                .get(format!("{prometheus}/api/v1/{path}?{case}"))
                .send()
                .await
                .expect("prometheus answers");
            let status = direct.status().as_u16();
            let expected = direct.bytes().await.expect("body").to_vec();
            let params = Params::parse(Some(case), None);
            let ours = if range {
                params
                    .range()
                    .and_then(|_| params.timeout())
                    .and_then(|_| params.query().map(|_| ()))
            } else {
                params
                    .time_or("time", Timestamp(0))
                    .and_then(|_| params.timeout())
                    .and_then(|_| params.query().map(|_| ()))
            };
            let error = ours.expect_err(case);
            let (our_status, ours) = body_of(error).await;
            assert_eq!(
                (our_status, String::from_utf8_lossy(&ours)),
                (status, String::from_utf8_lossy(&expected)),
                "{path}?{case}"
            );
        }
    }
}

fn promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new("promtool")
        .args(args)
        .output()
        .expect("promtool runs (compat-tests/run installs it)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_sees_the_same_answers() {
    let prometheus = required_env("JANUS_TEST_PROMETHEUS");
    let janus = start_janus(&prometheus, |_| {}).await;
    let url = janus.url.clone();
    let calls: Vec<Vec<&str>> = vec![
        vec![
            "query",
            "instant",
            "--time=1704078000",
            "URL",
            "sum by (namespace) (rate(http_requests_total[5m]))",
        ],
        vec!["query", "instant", "--time=1704078000", "URL", "up == 1"],
        vec![
            "query",
            "range",
            "--start=1704070800",
            "--end=1704074400",
            "--step=5m",
            "URL",
            "avg(cpu_usage_ratio)",
        ],
        vec![
            "query",
            "series",
            "--match=up",
            "--start=1704067200",
            "--end=1704088800",
            "URL",
        ],
        vec![
            "query",
            "labels",
            "--start=1704067200",
            "--end=1704088800",
            "URL",
            "namespace",
        ],
        vec!["query", "instant", "--time=1704078000", "URL", "sum(up"],
    ];
    let prom = prometheus.clone();
    tokio::task::spawn_blocking(move || {
        for call in calls {
            let with = |base: &str| -> Vec<String> {
                call.iter()
                    .map(|a| {
                        if *a == "URL" {
                            base.to_string()
                        } else {
                            a.to_string()
                        }
                    })
                    .collect()
            };
            let direct_args = with(&prom);
            let through_args = with(&url);
            let direct = promtool(&direct_args.iter().map(String::as_str).collect::<Vec<_>>());
            let through = promtool(&through_args.iter().map(String::as_str).collect::<Vec<_>>());
            assert_eq!(direct, through, "promtool {call:?}");
            assert!(
                !direct.1.trim().is_empty(),
                "promtool printed nothing for {call:?}"
            );
        }
    })
    .await
    .expect("promtool checks");
    janus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_api_client_works_through_janus() {
    let prometheus = required_env("JANUS_TEST_PROMETHEUS");
    let python = required_env("JANUS_TEST_PYTHON");
    let janus = start_janus(&prometheus, |_| {}).await;
    let url = janus.url.clone();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/compat-tests/clients/prometheus_api_client_check.py"
    );
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .arg(url)
            .output()
            .expect("python runs")
    })
    .await
    .expect("joined");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "prometheus-api-client check failed:\n{text}"
    );
    assert!(text.contains("all checks passed"), "{text}");
    janus.stop().await;
}
