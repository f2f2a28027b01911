//! The evaluator against the real Prometheus: with the testing switch on, Janus pushes down only
//! the smallest sub-expressions (selectors, range functions over them) and evaluates everything
//! above them itself. Both answers must agree: result type, label sets, timestamps, and values
//! within 1e-9 relative (1e-12 absolute near zero, where Go's and Rust's math libraries may
//! differ in the last bit).
//!
//! Two corpora: hand-written expressions (the edge cases each rule has), and a generated one —
//! every function of Janus's function table, every operator and every aggregation, with and
//! without grouping, over a gauge, a counter with a reset, a histogram, series that come and go,
//! NaN, and an empty input — plus errors that must fail.

mod support;

use std::collections::BTreeMap;

use support::{raw_client, required_env, start_janus};

const MID: &str = "1704078000";
const RANGE: [(&str, &str); 3] = [
    ("start", "1704070800"),
    ("end", "1704074400"),
    ("step", "60"),
];

const EXPRESSIONS: &[&str] = &[
    // histograms (classic `le` buckets)
    "histogram_quantile(0.9, rate(request_duration_seconds_bucket[5m]))",
    "histogram_quantile(0.5, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
    "histogram_quantile(0.99, sum by (le, namespace) (rate(request_duration_seconds_bucket[5m])))",
    "histogram_quantile(0, rate(request_duration_seconds_bucket[5m]))",
    "histogram_quantile(1, rate(request_duration_seconds_bucket[5m]))",
    "histogram_quantile(-1, rate(request_duration_seconds_bucket[5m]))",
    "histogram_quantile(2, rate(request_duration_seconds_bucket[5m]))",
    "histogram_quantile(0.9, request_duration_seconds_bucket)",
    "histogram_quantile(0.9, request_duration_seconds_bucket{le!=\"+Inf\"})",
    "histogram_quantile(0.9, sum by (le) (request_duration_seconds_bucket{le=~\"0.1|\\\\+Inf\"}))",
    "histogram_quantile(0.5, up)",
    "histogram_quantile(0.5, nonexistent_bucket)",
    // subqueries evaluated in Janus
    "max_over_time(cpu_usage_ratio[10m:1m])",
    "min_over_time(rate(http_requests_total[5m])[30m:5m])",
    // (a subquery without a step uses the upstream's evaluation interval, 1h in this
    // Prometheus's config, which Janus cannot know: it uses Prometheus's default, 1m)
    "avg_over_time(sum by (namespace) (cpu_usage_ratio)[1h:10m])",
    "sum_over_time(up[5m:30s])",
    "count_over_time(temperature_celsius[20m:1m])",
    "last_over_time(temperature_celsius[10m:1m])",
    "present_over_time(temperature_celsius[10m:1m])",
    "stddev_over_time(cpu_usage_ratio[30m:1m])",
    "stdvar_over_time(cpu_usage_ratio[30m:1m])",
    "quantile_over_time(0.9, cpu_usage_ratio[30m:1m])",
    "max_over_time(cpu_usage_ratio[10m:1m] offset 5m)",
    "max_over_time(max_over_time(cpu_usage_ratio[10m:1m])[30m:5m])",
    "rate(http_requests_total[5m:1m])",
    "increase(http_requests_total[10m:1m])",
    "delta(cpu_usage_ratio[10m:1m])",
    "irate(http_requests_total[5m:1m])",
    "idelta(cpu_usage_ratio[5m:1m])",
    "deriv(cpu_usage_ratio[10m:1m])",
    "predict_linear(cpu_usage_ratio[10m:1m], 3600)",
    "changes(cpu_usage_ratio[30m:1m])",
    "resets(http_requests_total[30m:1m])",
    "holt_winters(cpu_usage_ratio[10m:1m], 0.5, 0.5)",
    "holt_winters(temperature_celsius[20m:1m], 0.3, 0.7)",
    "holt_winters(cpu_usage_ratio[10m:1m], 1.5, 0.5)",
    "holt_winters(cpu_usage_ratio[10m], 0.5, 0.5)",
    "sum(holt_winters(cpu_usage_ratio[10m], 0.5, 0.5))",
    "rate(sum by (namespace) (http_requests_total)[10m:2m])",
    "sum(rate(http_requests_total[10m:1m] offset 5m))",
    "deriv(temperature_celsius[20m:1m])",
    "changes(temperature_celsius[1h:1m])",
    // timestamps: of samples (pushed down whole) and of evaluated values (the evaluation time)
    "timestamp(up)",
    "timestamp((up))",
    "timestamp(sum(up))",
    "timestamp(up > 0)",
    "timestamp(vector(1))",
    // absence
    "absent(nonexistent_metric)",
    "absent(nonexistent_metric{job=\"x\", a=~\"y\"})",
    "absent(nonexistent_metric{job=\"x\", job=\"z\"})",
    "absent(up)",
    "absent(sum(nonexistent_metric))",
    "absent(up{job=\"api\"} > 5)",
    // trigonometry
    "sin(cpu_usage_ratio)",
    "cos(cpu_usage_ratio * pi())",
    "tan(cpu_usage_ratio)",
    "asin(cpu_usage_ratio)",
    "acos(cpu_usage_ratio)",
    "atan(temperature_celsius)",
    "sinh(cpu_usage_ratio)",
    "cosh(cpu_usage_ratio)",
    "tanh(temperature_celsius)",
    "asinh(temperature_celsius)",
    "acosh(temperature_celsius)",
    "atanh(cpu_usage_ratio)",
    "deg(cpu_usage_ratio)",
    "rad(temperature_celsius)",
    "pi()",
    "asin(temperature_celsius)",
    // dates, of the evaluation time and of values
    "hour()",
    "minute()",
    "month()",
    "year()",
    "day_of_month()",
    "day_of_week()",
    "days_in_month()",
    "day_of_year()",
    "day_of_year(vector(1709251199))",
    "hour(vector(1709251199))",
    "day_of_week(vector(1709251199))",
    "days_in_month(vector(1709251200))",
    "days_in_month(vector(1706745600))",
    "year(vector(-86400))",
    "month(http_requests_total)",
    "minute(up * 1704078000)",
    // labels
    "label_replace(up, \"host\", \"$1\", \"instance\", \"(.*):.*\")",
    "label_replace(up, \"job\", \"\", \"job\", \".*\")",
    "label_join(up, \"both\", \"/\", \"job\", \"instance\")",
    "label_replace(up, \"instance\", \"x\", \"job\", \".*\")",
    // aggregations
    "sum(http_requests_total)",
    "sum by (namespace) (rate(http_requests_total[5m]))",
    "sum without (pod, method) (rate(http_requests_total[5m]))",
    "avg by (code) (rate(http_requests_total[5m]))",
    "min(cpu_usage_ratio)",
    "max by (namespace) (cpu_usage_ratio)",
    "count(http_requests_total)",
    "count by (namespace) (cpu_usage_ratio > 0.5)",
    "group by (job) (up)",
    "stddev(cpu_usage_ratio)",
    "stdvar by (namespace) (cpu_usage_ratio)",
    "topk(3, rate(http_requests_total[5m]))",
    "bottomk(2, cpu_usage_ratio)",
    "topk by (namespace) (1, cpu_usage_ratio)",
    "quantile(0.9, cpu_usage_ratio)",
    "quantile by (namespace) (0.5, cpu_usage_ratio)",
    "quantile(0, cpu_usage_ratio)",
    "quantile(1, cpu_usage_ratio)",
    "count_values(\"value\", up)",
    "sum(sum by (namespace, pod) (rate(http_requests_total[5m])))",
    "avg(temperature_celsius)",
    "max(temperature_celsius)",
    "min(temperature_celsius)",
    "sum by (sensor) (temperature_celsius)",
    "count(temperature_celsius)",
    "sum(nonexistent_metric)",
    "count(nonexistent_metric)",
    // arithmetic with scalars
    "http_requests_total / 2",
    "2 * cpu_usage_ratio",
    "cpu_usage_ratio - 0.5",
    "1 - cpu_usage_ratio",
    "cpu_usage_ratio ^ 2",
    "2 ^ cpu_usage_ratio",
    "http_requests_total % 7",
    "-cpu_usage_ratio",
    "-(cpu_usage_ratio * 2)",
    "(cpu_usage_ratio + 1) * (2 - 1)",
    "1 + 2 * 3",
    "10 / 4",
    "2 ^ 10",
    "cpu_usage_ratio / 0",
    "-cpu_usage_ratio / 0",
    "0 / cpu_usage_ratio * 0",
    "temperature_celsius + 1",
    "cpu_usage_ratio atan2 0.5",
    // comparisons
    "cpu_usage_ratio > 0.5",
    "cpu_usage_ratio > bool 0.5",
    "0.5 < cpu_usage_ratio",
    "0.5 < bool cpu_usage_ratio",
    "up == 1",
    "up != bool 1",
    "http_requests_total >= 1000",
    "cpu_usage_ratio <= 0.3",
    "1 > bool 2",
    "1 < bool 2",
    // vector matching
    "cpu_usage_ratio * on (namespace, pod) group_left (code) http_requests_total{method=\"GET\",code=\"200\"}",
    "sum by (namespace) (rate(http_requests_total{code=\"500\"}[5m])) / sum by (namespace) (rate(http_requests_total[5m]))",
    "rate(rpc_latency_seconds_sum[5m]) / rate(rpc_latency_seconds_count[5m])",
    "cpu_usage_ratio - ignoring (job) cpu_usage_ratio",
    "cpu_usage_ratio * on (namespace, pod) sum by (namespace, pod) (rate(http_requests_total[5m]))",
    "sum by (namespace, pod) (rate(http_requests_total[5m])) / on (namespace, pod) cpu_usage_ratio",
    "sum by (namespace) (cpu_usage_ratio) + on (namespace) group_right sum by (namespace, code) (rate(http_requests_total[5m]))",
    "rate(http_requests_total[5m]) / on (namespace) group_left sum by (namespace) (rate(http_requests_total[5m]))",
    "cpu_usage_ratio > on (namespace, pod) sum by (namespace, pod) (rate(http_requests_total[5m])) / 100",
    "cpu_usage_ratio == bool on (namespace, pod, job) cpu_usage_ratio",
    "up + up",
    "up - on (instance) up",
    "up * ignoring (instance) group_left up{instance=\"10.0.0.3:9100\"}",
    // set operations
    "up and on (job) up{job=\"api\"}",
    "up and up == 0",
    "cpu_usage_ratio{namespace=\"shop\"} or cpu_usage_ratio{namespace=\"auth\"}",
    "up unless on (instance) up{instance=\"10.0.0.3:9100\"}",
    "up unless up",
    "up or vector(1)",
    "vector(1) and on () up",
    "temperature_celsius or on (sensor) temperature_celsius",
    "(cpu_usage_ratio > 0.7) or (cpu_usage_ratio < 0.2)",
    // functions
    "abs(cpu_usage_ratio - 0.5)",
    "ceil(cpu_usage_ratio * 10)",
    "floor(cpu_usage_ratio * 10)",
    "round(cpu_usage_ratio, 0.1)",
    "round(http_requests_total / 7)",
    "sqrt(cpu_usage_ratio)",
    "exp(cpu_usage_ratio)",
    "ln(cpu_usage_ratio)",
    "log2(cpu_usage_ratio)",
    "log10(cpu_usage_ratio)",
    "sgn(cpu_usage_ratio - 0.5)",
    "clamp(cpu_usage_ratio, 0.2, 0.8)",
    "clamp(cpu_usage_ratio, 0.8, 0.2)",
    "clamp_min(cpu_usage_ratio, 0.5)",
    "clamp_max(cpu_usage_ratio, 0.5)",
    "scalar(sum(up))",
    "scalar(up)",
    "vector(3)",
    "vector(scalar(sum(up)))",
    "time()",
    "time() - 1704067200",
    "sort(cpu_usage_ratio)",
    "sort_desc(sum by (namespace) (cpu_usage_ratio))",
    "sum(up) * scalar(count(up))",
    "cpu_usage_ratio * scalar(up{instance=\"10.0.0.3:9100\"})",
    "label_replace(up, \"host\", \"$1\", \"instance\", \"(.*):.*\")",
    "label_replace(cpu_usage_ratio, \"pod\", \"\", \"pod\", \".*\")",
    "label_replace(sum by (namespace) (cpu_usage_ratio), \"ns\", \"x-${1}\", \"namespace\", \"(s.*)\")",
    "label_join(up, \"id\", \"-\", \"job\", \"instance\")",
    "label_join(cpu_usage_ratio, \"namespace\", \"\", \"missing\")",
    // functions Janus pushes down as a whole around its own operators
    "histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket{namespace=\"shop\"}[5m]))) * 1000",
    "label_replace(up, \"host\", \"$1\", \"instance\", \"(.*):.*\") * 2",
    "sum(max_over_time(cpu_usage_ratio[10m]))",
    "sum(increase(http_requests_total[1h])) / 3600",
    "avg(avg_over_time(cpu_usage_ratio[1h:5m]))",
    "sum(rate(http_requests_total[5m] offset 30m))",
    "sum(http_requests_total @ 1704070800)",
    "count(absent(nonexistent_metric))",
    "sum(delta(cpu_usage_ratio[10m])) + sum(deriv(cpu_usage_ratio[10m]))",
    // NaN and edge cases
    "sum(temperature_celsius{sensor=\"s3\"})",
    "temperature_celsius{sensor=\"s3\"} > 0",
    "temperature_celsius{sensor=\"s3\"} * 0",
    "max(temperature_celsius{sensor=\"s3\"}) + min(temperature_celsius{sensor=\"s3\"})",
    "sum(rate(http_requests_total{namespace=\"none\"}[5m]))",
    "sum by (namespace) (rate(http_requests_total[5m])) > 1000000",
];

/// Inputs of every kind the generated corpus applies each function to.
const INPUTS: &[&str] = &[
    // a gauge in [0, 1]
    "cpu_usage_ratio",
    // sensors that stop, start late, and one that reads NaN
    "temperature_celsius",
    // a counter with a reset, as a rate
    "rate(http_requests_total[5m])",
    // nothing at all
    "nonexistent_metric",
];

/// Every function, operator and aggregation over every input, generated from the function table
/// itself so that a function added to the table is checked without being listed here.
fn generated() -> Vec<String> {
    use janus::promql::functions::{Arg, Evaluation, TABLE};
    let mut out = Vec::new();
    for e in TABLE {
        let name = e.name;
        match (e.evaluation, e.args) {
            (Evaluation::Map(_) | Evaluation::Instant, [Arg::Vector]) => {
                for input in INPUTS {
                    out.push(format!("{name}({input})"));
                }
                if e.optional == 1 {
                    out.push(format!("{name}()"));
                }
            }
            (Evaluation::Instant, [Arg::Vector, Arg::Scalar]) => {
                for input in INPUTS {
                    out.push(format!("{name}({input}, 0.3)"));
                }
                if e.optional == 1 {
                    out.push(format!("{name}(cpu_usage_ratio)"));
                }
            }
            (Evaluation::Instant, [Arg::Vector, Arg::Scalar, Arg::Scalar]) => {
                for input in INPUTS {
                    out.push(format!("{name}({input}, 0.2, 0.8)"));
                }
            }
            (Evaluation::Instant, [Arg::Scalar]) => {
                for input in INPUTS {
                    out.push(format!("{name}(scalar(sum({input})))"));
                }
            }
            (Evaluation::Instant, [Arg::Scalar, Arg::Vector]) => {
                for phi in ["0.25", "0.9", "NaN"] {
                    out.push(format!(
                        "{name}({phi}, rate(request_duration_seconds_bucket[5m]))"
                    ));
                    out.push(format!(
                        "{name}({phi}, sum by (le) (request_duration_seconds_bucket))"
                    ));
                }
            }
            (Evaluation::Instant, []) => out.push(format!("{name}()")),
            (Evaluation::Range { .. }, args) => {
                let over = |input: &str| -> String {
                    let sub = format!("{input}[10m:1m]");
                    match (name, args.len()) {
                        ("quantile_over_time", _) => format!("{name}(0.3, {sub})"),
                        ("predict_linear", _) => format!("{name}({sub}, 600)"),
                        // Prometheus 2.42 knows double exponential smoothing by its old name.
                        (_, 3) => format!("holt_winters({sub}, 0.4, 0.6)"),
                        _ => format!("{name}({sub})"),
                    }
                };
                if matches!(
                    name,
                    "bytes_over_time" | "bytes_rate" | "rate_counter" | "first_over_time"
                ) {
                    // Log functions (Janus's and Loki's): not Prometheus 2.42's PromQL.
                    continue;
                }
                for input in INPUTS {
                    out.push(over(input));
                }
                out.push(over("sum by (namespace) (http_requests_total)"));
            }
            _ => {} // label_replace, label_join and the native-histogram functions: listed by hand
        }
    }
    let arithmetic = ["+", "-", "*", "/", "%", "^", "atan2"];
    let comparisons = ["==", "!=", ">", "<", ">=", "<="];
    for op in arithmetic.iter().chain(&comparisons) {
        out.push(format!("cpu_usage_ratio {op} 0.5"));
        out.push(format!("0.5 {op} temperature_celsius"));
        out.push(format!("2 {op} 3"));
        out.push(format!(
            "cpu_usage_ratio {op} on (namespace, pod) cpu_usage_ratio"
        ));
        out.push(format!(
            "rate(http_requests_total[5m]) {op} ignoring (code, method) group_left sum by (namespace, pod, job) (rate(http_requests_total[5m]))"
        ));
        out.push(format!(
            "sum by (namespace) (cpu_usage_ratio) {op} on (namespace) group_right sum by (namespace, code) (rate(http_requests_total[5m]))"
        ));
        out.push(format!(
            "temperature_celsius {op} temperature_celsius offset 1h"
        ));
    }
    for op in comparisons {
        out.push(format!("cpu_usage_ratio {op} bool 0.5"));
        out.push(format!(
            "temperature_celsius {op} bool on (sensor) temperature_celsius offset 2h"
        ));
        out.push(format!("1 {op} bool 1"));
    }
    for op in ["and", "or", "unless"] {
        out.push(format!("cpu_usage_ratio > 0.5 {op} cpu_usage_ratio < 0.8"));
        out.push(format!(
            "temperature_celsius {op} on (sensor) temperature_celsius offset 3h"
        ));
        out.push(format!(
            "up {op} ignoring (instance) up{{instance=\"10.0.0.2:8080\"}} == 0"
        ));
        out.push(format!("nonexistent_metric {op} up"));
    }
    let groupings = ["", " by (namespace)", " without (pod)", " by ()"];
    for agg in [
        "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar",
    ] {
        for grouping in groupings {
            for input in INPUTS {
                out.push(format!("{agg}{grouping} ({input})"));
            }
        }
    }
    for grouping in groupings {
        for (agg, param) in [("topk", "2"), ("bottomk", "1"), ("quantile", "0.75")] {
            for input in [
                "cpu_usage_ratio",
                "temperature_celsius",
                "nonexistent_metric",
            ] {
                out.push(format!("{agg}{grouping} ({param}, {input})"));
            }
        }
        out.push(format!(
            "count_values{grouping} (\"v\", round(cpu_usage_ratio, 0.25))"
        ));
    }
    // Errors that must fail in both.
    out.extend(
        [
            "cpu_usage_ratio + on (namespace) cpu_usage_ratio",
            "sum by (namespace) (cpu_usage_ratio) * on () group_left cpu_usage_ratio",
            "label_replace(cpu_usage_ratio, \"pod\", \"x\", \"pod\", \".*\")",
            "label_replace(up, \"a\", \"b\", \"job\", \"(\")",
            "label_replace(up, \"~invalid\", \"b\", \"job\", \".*\")",
            "label_join(up, \"a-b\", \",\", \"job\")",
            "holt_winters(cpu_usage_ratio[10m:1m], 0, 0.5)",
            "holt_winters(cpu_usage_ratio[10m:1m], 0.5, 1)",
        ]
        .map(String::from),
    );
    out
}

fn close(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => {
            let d = (x - y).abs();
            d <= 1e-9 * x.abs().max(y.abs()) || d <= 1e-12 || (x.is_nan() && y.is_nan())
        }
        _ => false,
    }
}

type Samples = BTreeMap<String, Vec<(String, String)>>;

/// Result as label set → samples, plus the result type.
fn normalise(body: &str) -> Result<(String, Samples), String> {
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("{e}: {body}"))?;
    if v["status"] != "success" {
        return Err(format!("error: {body}"));
    }
    let kind = v["data"]["resultType"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut out = Samples::new();
    let point = |p: &serde_json::Value| {
        (
            p[0].to_string(),
            p[1].as_str().unwrap_or_default().to_string(),
        )
    };
    match kind.as_str() {
        "scalar" => {
            out.insert(String::new(), vec![point(&v["data"]["result"])]);
        }
        "vector" | "matrix" => {
            for s in v["data"]["result"].as_array().into_iter().flatten() {
                let labels = s["metric"].to_string();
                let samples = if kind == "vector" {
                    vec![point(&s["value"])]
                } else {
                    s["values"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(point)
                        .collect()
                };
                if out.insert(labels.clone(), samples).is_some() {
                    return Err(format!("duplicate series {labels}"));
                }
            }
        }
        other => return Err(format!("unexpected result type {other}")),
    }
    Ok((kind, out))
}

/// `None` when both answers agree, else the first difference.
fn difference(expected: &(String, Samples), got: &(String, Samples)) -> Option<String> {
    if expected.0 != got.0 {
        return Some(format!("result type {} vs {}", expected.0, got.0));
    }
    for (labels, samples) in &expected.1 {
        let Some(other) = got.1.get(labels) else {
            return Some(format!("{labels} missing"));
        };
        for (a, b) in samples.iter().zip(other) {
            if a.0 != b.0 || !close(&a.1, &b.1) {
                return Some(format!(
                    "{labels} at {}: {} vs {} at {}",
                    a.0, a.1, b.1, b.0
                ));
            }
        }
        if other.len() != samples.len() {
            return Some(format!(
                "{labels}: {} vs {} samples",
                samples.len(),
                other.len()
            ));
        }
    }
    got.1
        .keys()
        .find(|labels| !expected.1.contains_key(*labels))
        .map(|labels| format!("{labels} extra"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn janus_evaluates_like_prometheus() {
    let prometheus = required_env("JANUS_TEST_PROMETHEUS");
    let janus = start_janus(&prometheus, |c| c.evaluate_metric_queries = true).await;
    let client = raw_client();
    let mut failures = Vec::new();
    let mut compared = 0;
    let generated = generated();
    let corpus: Vec<&str> = EXPRESSIONS
        .iter()
        .copied()
        .chain(generated.iter().map(String::as_str))
        .collect();
    for expr in corpus.iter().filter(|e| !e.is_empty()) {
        for range in [false, true] {
            let (path, mut params): (&str, Vec<(&str, &str)>) = if range {
                ("/api/v1/query_range", RANGE.to_vec())
            } else {
                ("/api/v1/query", vec![("time", MID)])
            };
            params.push(("query", expr));
            let get = |base: String| {
                let client = client.clone();
                let params = params.clone();
                async move {
                    let r = client
                        .get(format!("{base}{path}"))
                        .query(&params)
                        .send()
                        .await
                        .expect("answer");
                    r.text().await.expect("text")
                }
            };
            let direct = get(prometheus.clone()).await;
            let through = get(janus.url.clone()).await;
            let expected = normalise(&direct);
            let got = normalise(&through);
            let differs = match (&expected, &got) {
                (Ok(e), Ok(g)) => difference(e, g),
                // Both refuse (e.g. a scalar where a vector is needed).
                (Err(_), Err(_)) => None,
                _ => Some(format!(
                    "prometheus: {}\n  janus:      {}",
                    &direct[..direct.len().min(300)],
                    &through[..through.len().min(300)]
                )),
            };
            compared += 1;
            if let Some(differs) = differs {
                failures.push(format!(
                    "{expr} ({}):\n  {differs}",
                    if range { "range" } else { "instant" },
                ));
            }
        }
    }
    // The switch really evaluated in Janus: sub-expressions went to the upstream as their own
    // queries, and subqueries were evaluated here.
    let metrics = janus.metrics().await;
    let counter = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}_total ")))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (pushed, subqueries) = (
        counter("janus_query_pushed_parts"),
        counter("janus_query_subqueries_evaluated"),
    );
    eprintln!(
        "{compared} answers compared; {pushed} parts pushed down, {subqueries} subqueries evaluated in Janus"
    );
    assert!(pushed > 0, "nothing was pushed down:\n{metrics}");
    assert!(subqueries > 0, "no subquery was evaluated in Janus");
    assert!(compared >= 2 * (EXPRESSIONS.len() + 500), "{compared}");
    assert!(
        failures.is_empty(),
        "{} of {compared} answers differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
    janus.stop().await;
}

/// Under the testing switch the planner pushes down only what Janus cannot evaluate: selectors,
/// range functions over selectors (the raw samples are the upstream's), `timestamp` of a
/// selector, and the native-histogram functions. Everything else in both corpora is evaluated
/// in Janus.
#[test]
fn only_selectors_and_range_functions_over_them_are_pushed_down() {
    use janus::promql::functions::{Evaluation, Function};
    use janus::promql::plan::{plan, Parsed};
    use promql_parser::parser::Expr;

    fn unparen(mut e: &Expr) -> &Expr {
        while let Expr::Paren(p) = e {
            e = &p.expr;
        }
        e
    }
    fn leaf(e: &Expr) -> bool {
        match unparen(e) {
            Expr::VectorSelector(_) | Expr::MatrixSelector(_) => true,
            Expr::Call(c) => match Function::from_name(c.func.name) {
                Some(Function::Timestamp) => c.args.args.iter().all(|a| leaf(a)),
                Some(f) if matches!(f.evaluation(), Evaluation::Range { .. }) => {
                    c.args.args.iter().all(|a| {
                        matches!(unparen(a), Expr::MatrixSelector(_) | Expr::NumberLiteral(_))
                    })
                }
                Some(f) => matches!(f.evaluation(), Evaluation::Upstream),
                None => false,
            },
            _ => false,
        }
    }
    let generated = generated();
    let (mut expressions, mut pushed) = (0, 0);
    for text in EXPRESSIONS
        .iter()
        .copied()
        .chain(generated.iter().map(String::as_str))
    {
        let rewritten = janus::logql::rewrite::rewrite(text).expect("rewrites");
        // (Expressions both servers refuse are in the corpus too.)
        let Ok(parsed) = Parsed::parse(&rewritten.promql) else {
            continue;
        };
        let plan = plan(&parsed, true).expect("plans");
        for (_, part, _) in &plan.upstream {
            let part_tree = Parsed::parse(part).expect("a pushed part parses");
            assert!(leaf(&part_tree), "{text}: pushed down {part}");
            pushed += 1;
        }
        expressions += 1;
    }
    eprintln!("{expressions} expressions: {pushed} parts pushed down, the rest evaluated in Janus");
    assert!(expressions > 700 && pushed > 0);
}
