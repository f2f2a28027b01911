//! The Loki tail (`/loki/api/v1/tail`) over a real WebSocket: history since `start`, then new
//! lines as they are pushed, each once and in order; the pipeline applies; bad requests are
//! refused before the upgrade; the connection limit holds.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use serde_json::{json, Value};
use support::{closed_port_url, push_json, raw_client, start_janus, TestJanus};
use tokio_tungstenite::tungstenite::Message;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

async fn push_lines(janus: &TestJanus, pod: &str, lines: &[(i64, String)]) {
    let values: Vec<Value> = lines
        .iter()
        .map(|(ts, line)| json!([ts.to_string(), line]))
        .collect();
    push_json(
        janus,
        &json!({"streams": [{"stream": {"namespace": "tail", "pod": pod, "container": "app"}, "values": values}]}),
    )
    .await;
}

fn tail_url(janus: &TestJanus, query: &str, start: i64) -> String {
    let ws = janus.url.replacen("http://", "ws://", 1);
    let q: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", query)
        .append_pair("start", &start.to_string())
        .append_pair("limit", "100")
        .finish();
    format!("{ws}/loki/api/v1/tail?{q}")
}

/// Lines received (stream labels, time, line) until `want` arrived or `wait` passed.
async fn receive(
    socket: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    want: usize,
    wait: Duration,
) -> Vec<(Value, String, String)> {
    let mut got = Vec::new();
    let until = tokio::time::Instant::now() + wait;
    while got.len() < want {
        let Ok(Some(Ok(message))) = tokio::time::timeout_at(until, socket.next()).await else {
            break;
        };
        let Message::Text(text) = message else {
            continue;
        };
        let v: Value = serde_json::from_str(&text).expect("a JSON message");
        for stream in v["streams"].as_array().expect("streams") {
            for value in stream["values"].as_array().expect("values") {
                got.push((
                    stream["stream"].clone(),
                    value[0].as_str().unwrap().to_string(),
                    value[1].as_str().unwrap().to_string(),
                ));
            }
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_sends_history_then_new_lines_once_each() {
    let janus = start_janus(&closed_port_url().await, |_| {}).await;
    let t0 = now_ns() - 30_000_000_000;
    let old: Vec<(i64, String)> = (0..5)
        .map(|i| (t0 + i * 1_000_000_000, format!("level=info n={i} keep")))
        .collect();
    push_lines(&janus, "a", &old).await;
    push_lines(&janus, "b", &[(t0, "level=info other drop".to_string())]).await;

    let (mut socket, _) = tokio_tungstenite::connect_async(tail_url(
        &janus,
        r#"{namespace="tail"} |= "keep" | logfmt"#,
        t0 - 1_000_000_000,
    ))
    .await
    .expect("the tail opens");
    let history = receive(&mut socket, 5, Duration::from_secs(10)).await;
    assert_eq!(history.len(), 5, "{history:?}");
    assert_eq!(history[0].2, "level=info n=0 keep");
    assert_eq!(
        history[0].0,
        json!({"namespace": "tail", "pod": "a", "container": "app", "level": "info", "n": "0"})
    );
    // New lines, some sharing one nanosecond: each arrives once, in order.
    let t1 = now_ns();
    let new: Vec<(i64, String)> = (0..4)
        .map(|i| (t1 + (i / 2) * 1000, format!("level=warn m={i} keep")))
        .collect();
    push_lines(&janus, "a", &new).await;
    let fresh = receive(&mut socket, 4, Duration::from_secs(10)).await;
    let lines: Vec<&str> = fresh.iter().map(|(_, _, l)| l.as_str()).collect();
    assert_eq!(
        lines,
        [
            "level=warn m=0 keep",
            "level=warn m=1 keep",
            "level=warn m=2 keep",
            "level=warn m=3 keep"
        ]
    );
    // Nothing more: no line is sent twice.
    let more = receive(&mut socket, 1, Duration::from_millis(2500)).await;
    assert!(more.is_empty(), "{more:?}");
    socket.close(None).await.ok();
    janus.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_refusals_and_the_connection_limit() {
    let janus = start_janus(&closed_port_url().await, |_| {}).await;
    let get = |params: Vec<(&'static str, String)>| {
        let url = format!("{}/loki/api/v1/tail", janus.url);
        async move {
            let r = raw_client()
                .get(url)
                .query(&params)
                .send()
                .await
                .expect("answer");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    for (params, words) in [
        (
            vec![("query", r#"{namespace="tail"}"#.to_string())],
            "needs a WebSocket",
        ),
        (
            vec![("query", r#"{namespace="tail""#.to_string())],
            "parse error",
        ),
        (
            vec![(
                "query",
                r#"count_over_time({namespace="tail"}[1m])"#.to_string(),
            )],
            "takes a log query",
        ),
        (
            vec![
                ("query", r#"{namespace="tail"}"#.to_string()),
                ("delay_for", "6".to_string()),
            ],
            "delay_for can't be greater than 5",
        ),
        (
            vec![("query", r#"{app="x"}"#.to_string())],
            "must name a target",
        ),
    ] {
        let (status, body) = get(params.clone()).await;
        assert_eq!(status, 400, "{params:?}: {body}");
        assert!(body.contains(words), "{params:?}: {body}");
    }
    // Every tail slot taken: the next is refused before the upgrade, with Loki's words.
    let mut open = Vec::new();
    for _ in 0..janus::api::loki::tail::MAX_TAILS {
        let (socket, _) =
            tokio_tungstenite::connect_async(tail_url(&janus, r#"{namespace="tail"}"#, now_ns()))
                .await
                .expect("a tail opens");
        open.push(socket);
    }
    let refused =
        tokio_tungstenite::connect_async(tail_url(&janus, r#"{namespace="tail"}"#, now_ns())).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429);
        }
        other => panic!("expected 429, got {:?}", other.map(|_| ())),
    }
    // A tail closed frees its slot.
    if let Some(mut socket) = open.pop() {
        socket.close(None).await.ok();
    }
    let mut reopened = None;
    for _ in 0..50 {
        if let Ok((socket, _)) =
            tokio_tungstenite::connect_async(tail_url(&janus, r#"{namespace="tail"}"#, now_ns()))
                .await
        {
            reopened = Some(socket);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened.is_some(), "a slot frees when a tail closes");
    drop(open);
    janus.stop().await;
}
