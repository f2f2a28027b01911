//! Malformed log queries and parameters: every one a 400 `bad_data` with a message, never a 500;
//! label values never reach the file system as paths, and links out of the store are not followed.

mod support;

use support::{closed_port_url, raw_client, start_janus, temp_dir};

const RANGE: [(&str, &str); 2] = [
    ("start", "2024-01-01T00:00:00Z"),
    ("end", "2024-01-01T06:00:00Z"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_queries_and_parameters_are_bad_data() {
    let store = temp_dir("bad-store");
    std::fs::create_dir_all(store.join("pod/shop")).expect("mkdir");
    std::fs::write(
        store.join("pod/shop/2024-01-01_00.log"),
        "2024-01-01T00:00:01Z[shop|web-1|nginx] GET / 200\n",
    )
    .expect("write");
    let data = store.clone();
    let janus = start_janus(&closed_port_url().await, move |c| c.storage_path = data).await;
    let ok = r#"pod{namespace="shop"}"#;
    let queries: &[&str] = &[
        r#"pods{namespace="shop"} |= "x""#,
        r#"pod{nmspace="shop"}"#,
        r#"pod{namespace="shop", host="a"}"#,
        r#"pod{namespace="shop", node="a"}"#,
        r#"node{node="n", container="c"}"#,
        r#"pod{pod="web-1"}"#,
        r#"pod{}"#,
        r#"node{process="kubelet"}"#,
        r#"up |= "x""#,
        r#"sum(up) |~ "x""#,
        r#"pod{namespace="shop"} |= 5"#,
        r#"pod{namespace="shop"} |= shop"#,
        r#"pod{namespace="shop"} |="#,
        r#"pod{namespace="shop"} |~ "(""#,
        r#"pod{namespace="shop"} !~ "[a-""#,
        r#"pod{namespace="shop"} |~ "a{2,1}""#,
        r#"pod{namespace="shop"} |= "unterminated"#,
        r#"pod{namespace="shop} |= "x""#,
        r#"pod{namespace="shop""#,
        r#"pod{namespace=~"("}"#,
        r#"pod{namespace="shop"} + 1"#,
        r#"pod{namespace="shop"} offset 5m"#,
        r#"pod{namespace="shop"}[5x]"#,
        r#"pod{namespace="shop"}[0s]"#,
        r#"pod{namespace="shop"}[5m] |= "x""#,
        r#"pod{namespace="shop"}[5m][5m]"#,
        r#"pod{namespace="shop"} |= "a" "b""#,
        r#"count(pod{namespace="shop"})"#,
        r#"rate(pod{namespace="shop"}[5m]) |= "x""#,
        r#"pod{namespace="shop"} |= "\q""#,
        r#"pod{__name__="x", namespace="shop"}"#,
        r#"pod{namespace="shop" or namespace="x"}"#,
    ];
    let mut cases: Vec<(&str, Vec<(&str, &str)>)> = queries
        .iter()
        .map(|q| {
            (
                "/api/v1/query_range",
                vec![("query", *q), RANGE[0], RANGE[1]],
            )
        })
        .collect();
    let params: Vec<Vec<(&str, &str)>> = vec![
        vec![("query", ok), ("time", "abc")],
        vec![("query", ok), ("time", "2024-13-01T00:00:00Z")],
        vec![("query", ok), ("timeout", "soon")],
        vec![("query", ok), ("timeout", "-1s")],
        vec![("query", ok), ("limit", "-1")],
        vec![("query", ok), ("limit", "lots")],
        vec![("query", ok), ("limit", "1000001")],
        vec![("query", ok), ("direction", "sideways")],
        vec![("query", ok), ("format", "xml")],
    ];
    for p in &params {
        cases.push(("/api/v1/query", p.clone()));
    }
    let range_params: Vec<Vec<(&str, &str)>> = vec![
        vec![("query", ok), ("end", "2024-01-01T06:00:00Z")],
        vec![("query", ok), ("start", "2024-01-01T00:00:00Z")],
        vec![("query", ok), ("start", "x"), RANGE[1]],
        vec![
            ("query", ok),
            ("start", "2024-01-01T06:00:00Z"),
            ("end", "2024-01-01T00:00:00Z"),
        ],
        vec![("query", ok), RANGE[0], RANGE[1], ("step", "0")],
        vec![("query", ok), RANGE[0], RANGE[1], ("step", "-1m")],
        vec![("query", ok), RANGE[0], RANGE[1], ("step", "often")],
    ];
    for p in &range_params {
        cases.push(("/api/v1/query_range", p.clone()));
    }
    cases.push((
        "/api/v1/series",
        vec![("match[]", r#"pod{namespace="shop"} |= "x""#)],
    ));
    cases.push((
        "/api/v1/series",
        vec![("match[]", r#"pod{nmspace="shop"}"#)],
    ));
    cases.push(("/api/v1/labels", vec![("match[]", r#"node{}"#)]));
    assert!(cases.len() >= 40, "{} cases", cases.len());

    let client = raw_client();
    for (path, params) in &cases {
        for method in ["GET", "POST"] {
            let encoded = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params.iter())
                .finish();
            let request = if method == "GET" {
                client.get(format!("{}{path}?{encoded}", janus.url))
            } else {
                client
                    .post(format!("{}{path}", janus.url))
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(encoded)
            };
            let answer = request.send().await.expect("answer");
            let status = answer.status().as_u16();
            let body = answer.text().await.expect("body");
            assert_eq!(status, 400, "{method} {path} {params:?}: {body}");
            let v: serde_json::Value = serde_json::from_str(&body).expect("json");
            assert_eq!(v["errorType"], "bad_data", "{body}");
            assert!(v["error"].as_str().is_some_and(|e| e.len() > 10), "{body}");
        }
    }
    janus.stop().await;
    let _ = std::fs::remove_dir_all(store);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_values_never_become_paths() {
    // A secret outside the store, reachable by `..` or a link if anything joined paths.
    let outside = temp_dir("outside");
    std::fs::create_dir_all(outside.join("etc")).expect("mkdir");
    std::fs::write(
        outside.join("etc/2024-01-01_00.log"),
        "2024-01-01T00:00:01Z[etc|secret|c] TOP SECRET\n",
    )
    .expect("write");
    let store = outside.join("store");
    std::fs::create_dir_all(store.join("pod/shop")).expect("mkdir");
    std::fs::write(
        store.join("pod/shop/2024-01-01_00.log"),
        "2024-01-01T00:00:02Z[shop|web-1|nginx] hello\n",
    )
    .expect("write");
    // A link inside the store pointing out of it: never a target, never opened.
    std::os::unix::fs::symlink(outside.join("etc"), store.join("pod/linked")).expect("symlink");
    std::os::unix::fs::symlink(
        outside.join("etc/2024-01-01_00.log"),
        store.join("pod/shop/2024-01-01_01.log"),
    )
    .expect("symlink");
    let data = store.clone();
    let janus = start_janus(&closed_port_url().await, move |c| c.storage_path = data).await;
    let client = raw_client();
    let selectors = [
        r#"pod{namespace="../etc"}"#,
        r#"pod{namespace="../../etc"}"#,
        r#"pod{namespace="/etc"}"#,
        r#"pod{namespace=".."}"#,
        r#"pod{namespace="."}"#,
        r#"pod{namespace="linked"}"#,
        r#"pod{namespace=~"\\.\\..*"}"#,
        r#"pod{namespace=~".*/.*"}"#,
        r#"pod{namespace=~"\\.\\./etc|linked"}"#,
        r#"pod{namespace=~".*"} |= "SECRET""#,
        r#"node{node=~".*"} |= "SECRET""#,
    ];
    for selector in selectors {
        let answer = client
            .get(format!("{}/api/v1/query_range", janus.url))
            .query(&[
                ("query", selector),
                ("start", "2024-01-01T00:00:00Z"),
                ("end", "2024-01-01T02:00:00Z"),
            ])
            .send()
            .await
            .expect("answer");
        assert_eq!(answer.status(), 200, "{selector}");
        let body = answer.text().await.expect("body");
        assert!(!body.contains("SECRET"), "{selector}: {body}");
        assert!(
            body.starts_with(r#"{"status":"success","data":{"resultType":"logs","result":[]"#),
            "{selector}: {body}"
        );
    }
    // The store itself still answers.
    let answer = client
        .get(format!("{}/api/v1/query_range", janus.url))
        .query(&[
            ("query", r#"pod{namespace=~".*"}"#),
            ("start", "2024-01-01T00:00:00Z"),
            ("end", "2024-01-01T02:00:00Z"),
        ])
        .send()
        .await
        .expect("answer");
    let body = answer.text().await.expect("body");
    assert!(body.contains("\"log\":\"hello\""), "{body}");
    assert!(!body.contains("SECRET"), "{body}");
    janus.stop().await;
    let _ = std::fs::remove_dir_all(outside);
}
