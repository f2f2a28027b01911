//! Mixed expressions end to end: log lines pushed with known counts, metrics backfilled in the
//! real Prometheus with known values, answers checked by hand.

mod support;

use support::{required_env, start_janus, TestJanus};

const MID: i64 = 1_704_078_000; // 2024-01-01T03:00:00Z; sum(up) is 3 there

async fn push_lines(janus: &TestJanus) {
    // 30 "timeout" lines and 10 others in the 5 minutes before MID, from two pods.
    let mut values_a = Vec::new();
    let mut values_b = Vec::new();
    for i in 0..40i64 {
        let ts = ((MID - 290 + i * 7) * 1_000_000_000).to_string();
        let line = if i % 4 == 3 {
            format!("ok {i}")
        } else {
            format!("upstream timeout {i}")
        };
        if i % 2 == 0 {
            values_a.push(serde_json::json!([ts, line]));
        } else {
            values_b.push(serde_json::json!([ts, line]));
        }
    }
    let body = serde_json::json!({"streams": [
        {"stream": {"namespace": "shop", "pod": "web-a", "container": "app"}, "values": values_a},
        {"stream": {"namespace": "shop", "pod": "web-b", "container": "app"}, "values": values_b},
    ]});
    support::push_json(janus, &body).await;
}

async fn query(janus: &TestJanus, params: &[(&str, &str)], path: &str) -> (u16, serde_json::Value) {
    let (status, _, body) = support::get(janus, path, params).await;
    (status, serde_json::from_str(&body).expect("json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_metrics_combined_with_real_metrics() {
    let prometheus = required_env("JANUS_TEST_PROMETHEUS");
    let janus = start_janus(&prometheus, |_| {}).await;
    push_lines(&janus).await;
    let at = MID.to_string();

    // 30 timeout lines per 3 targets up.
    let (status, v) = query(
        &janus,
        &[
            (
                "query",
                r#"sum(count_over_time(pod{namespace="shop"} |= "timeout" [5m])) / sum(up)"#,
            ),
            ("time", &at),
        ],
        "/api/v1/query",
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v["data"]["result"],
        serde_json::json!([{"metric": {}, "value": [MID, "10"]}])
    );

    // The error ratio as a dashboard draws it: rate per second over 5m, per pod, times a scalar.
    let (_, v) = query(&janus, &[("query", r#"sum by (pod) (rate(pod{namespace="shop"} |= "timeout" [5m])) * scalar(count(up))"#), ("time", &at)], "/api/v1/query").await;
    assert_eq!(
        v["data"]["result"],
        serde_json::json!([
            // web-a: 20 timeout lines; web-b: 10 (its other 10 are "ok"); / 300 s * 3 targets.
            {"metric": {"pod": "web-a"}, "value": [MID, "0.2"]},
            {"metric": {"pod": "web-b"}, "value": [MID, "0.1"]}
        ]),
        "{v}"
    );

    // Lines without the filter: 20 per pod; group_left brings the metric side's count in.
    let (_, v) = query(
        &janus,
        &[
            (
                "query",
                r#"count_over_time(pod{namespace="shop"}[5m]) + on () group_left count(up)"#,
            ),
            ("time", &at),
        ],
        "/api/v1/query",
    )
    .await;
    let values: Vec<(String, String)> = v["data"]["result"]
        .as_array()
        .expect("result")
        .iter()
        .map(|s| {
            (
                s["metric"]["pod"].as_str().unwrap_or_default().to_string(),
                s["value"][1].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        values,
        [
            ("web-a".to_string(), "23".to_string()),
            ("web-b".to_string(), "23".to_string())
        ]
    );

    // A range query: steps line up with the upstream's.
    let start = (MID - 600).to_string();
    let (_, v) = query(
        &janus,
        &[
            (
                "query",
                r#"sum(count_over_time(pod{namespace="shop"}[5m])) / sum(up)"#,
            ),
            ("start", &start),
            ("end", &at),
            ("step", "300"),
        ],
        "/api/v1/query_range",
    )
    .await;
    assert_eq!(v["data"]["resultType"], "matrix");
    assert_eq!(
        v["data"]["result"][0]["values"],
        serde_json::json!([[MID, "13.333333333333334"]]),
        "{v}"
    );

    // absent_over_time for a pod that logged nothing.
    let (_, v) = query(
        &janus,
        &[
            (
                "query",
                r#"absent_over_time(pod{namespace="shop", pod="web-z"}[5m])"#,
            ),
            ("time", &at),
        ],
        "/api/v1/query",
    )
    .await;
    assert_eq!(
        v["data"]["result"],
        serde_json::json!([{"metric": {"namespace": "shop", "pod": "web-z"}, "value": [MID, "1"]}])
    );

    // Subqueries over log metrics: per-minute counts are 8, 8, 9, 8, 7 in the last five minutes.
    for (q, expected) in [
        (
            r#"max_over_time(sum(count_over_time(pod{namespace="shop"}[1m]))[10m:1m])"#,
            "9",
        ),
        (
            r#"sum_over_time(sum(count_over_time(pod{namespace="shop"}[1m]))[10m:1m])"#,
            "40",
        ),
        (
            r#"min_over_time(sum(count_over_time(pod{namespace="shop"}[1m]))[5m:1m])"#,
            "7",
        ),
        (
            r#"count_over_time(sum(count_over_time(pod{namespace="shop"}[1m]))[10m:1m]) * on () group_left count(up)"#,
            "15",
        ),
    ] {
        let (status, v) = query(&janus, &[("query", q), ("time", &at)], "/api/v1/query").await;
        assert_eq!(status, 200, "{q}: {v}");
        assert_eq!(v["data"]["result"][0]["value"][1], expected, "{q}: {v}");
    }

    // An upstream error inside a mixed expression comes back as that error.
    let (status, v) = query(
        &janus,
        &[("query", r#"sum(count_over_time(pod{namespace="shop"}[5m])) + on () group_left sum(http_requests_total + on (namespace) cpu_usage_ratio)"#), ("time", &at)],
        "/api/v1/query",
    )
    .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["errorType"], "execution");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("duplicate series"),
        "{v}"
    );
    janus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_log_metrics_are_refused() {
    let prometheus = required_env("JANUS_TEST_PROMETHEUS");
    let janus = start_janus(&prometheus, |_| {}).await;
    let cases = [
        (r#"max_over_time(pod{namespace="shop"}[5m])"#, 400),
        (r#"rate(pod{namespace="shop"})"#, 400),
        (r#"sum(pod{namespace="shop"})"#, 400),
        (r#"pod{namespace="shop"} + 1"#, 400),
        (r#"rate(pod{namespace="shop"}[5m]) + "text""#, 400),
        (r#"count_over_time(pod{nmspace="shop"}[5m])"#, 400),
        (r#"count_over_time(pod{namespace="shop"} |~ "(" [5m])"#, 400),
        (r#"rate(pod{namespace="shop"}[5m])[30m:1m]"#, 400),
        // (rate over a subquery is PromQL Janus evaluates; bytes_rate reads log lines only)
        (
            r#"bytes_rate(rate(pod{namespace="shop"}[5m])[30m:1m])"#,
            400,
        ),
        (
            r#"quantile_over_time(scalar(up), rate(pod{namespace="shop"}[5m])[30m:1m])"#,
            400,
        ),
        (r#"rate(pod{namespace="shop"}[5m]) |= "x""#, 400),
        (r#"bytes_rate(up[5m])"#, 400),
    ];
    for (q, status) in cases {
        let (got, v) = query(
            &janus,
            &[("query", q), ("time", "1704078000")],
            "/api/v1/query",
        )
        .await;
        assert_eq!(got, status, "{q}: {v}");
        assert_eq!(v["status"], "error", "{q}");
    }
    // Too many points, worded as Prometheus words it.
    let (got, v) = query(
        &janus,
        &[
            ("query", r#"rate(pod{namespace="shop"}[5m])"#),
            ("start", "0"),
            ("end", "100000"),
            ("step", "1"),
        ],
        "/api/v1/query_range",
    )
    .await;
    assert_eq!(got, 400);
    assert_eq!(v["error"], "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)");
    janus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_budget_is_enforced() {
    let prometheus = required_env("JANUS_TEST_PROMETHEUS");
    let janus = start_janus(&prometheus, |c| c.query_max_samples = 5).await;
    let (status, v) = query(
        &janus,
        &[("query", r#"count_over_time(pod{namespace="shop"}[5m]) or sum(rate(http_requests_total[5m])) by (pod)"#), ("time", "1704078000")],
        "/api/v1/query",
    )
    .await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(
        v["error"],
        "query processing would load too many samples into memory in query execution"
    );
    janus.stop().await;
}
