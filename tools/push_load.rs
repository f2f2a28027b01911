//! Load generator for the Loki push API: realistic batches (1,000 lines of ~200 bytes, several
//! pods) pushed with a given concurrency, optionally paced to a target rate; reports lines/s and
//! latency percentiles. Also measures the limit: the same lines rendered and written with a plain
//! buffered file writer.
//!
//! usage: push_load URL SECONDS CONCURRENCY [LINES_PER_SECOND (0 = as fast as possible)] [json|protobuf]
//!        push_load --baseline FILE LINES

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use janus::ingest::decode::{EntryAdapter, ProtoTimestamp, PushRequest, StreamAdapter};
use prost::Message;

const BATCH: usize = 1000;

fn message(i: u64) -> String {
    format!(
        "10.0.{}.{} - - \"GET /api/v1/orders/{} HTTP/1.1\" 200 {} \"-\" \"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36\" rt=0.{:03}",
        i % 256,
        (i / 256) % 256,
        i,
        i % 50_000,
        i % 1000
    )
}

fn batch(worker: u64, n: u64, json: bool) -> (Vec<u8>, &'static str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as i64;
    let pods = 4u64;
    let per_pod = BATCH as u64 / pods;
    if json {
        let streams: Vec<serde_json::Value> = (0..pods)
            .map(|p| {
                let values: Vec<serde_json::Value> = (0..per_pod)
                    .map(|i| serde_json::json!([(now + i as i64).to_string(), message(n * 1000 + i)]))
                    .collect();
                serde_json::json!({"stream": {"namespace": format!("load-{}", worker % 4), "pod": format!("web-{worker}-{p}"), "container": "app"}, "values": values})
            })
            .collect();
        (
            serde_json::json!({ "streams": streams })
                .to_string()
                .into_bytes(),
            "application/json",
        )
    } else {
        let request = PushRequest {
            streams: (0..pods)
                .map(|p| StreamAdapter {
                    labels: format!(
                        r#"{{namespace="load-{}", pod="web-{worker}-{p}", container="app"}}"#,
                        worker % 4
                    ),
                    entries: (0..per_pod)
                        .map(|i| {
                            let t = now + i as i64;
                            EntryAdapter {
                                timestamp: Some(ProtoTimestamp {
                                    seconds: t / 1_000_000_000,
                                    nanos: (t % 1_000_000_000) as i32,
                                }),
                                line: message(n * 1000 + i).into_bytes().into(),
                                structured_metadata: vec![],
                            }
                        })
                        .collect(),
                    hash: 0,
                })
                .collect(),
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .unwrap_or_default();
        (body, "application/x-protobuf")
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn baseline(path: &str, lines: u64) -> std::io::Result<()> {
    let started = Instant::now();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    for i in 0..lines {
        writeln!(
            out,
            "2024-01-01T00:00:00.{:09}Z[load-0|web-0-0|app] {}",
            i % 1_000_000_000,
            message(i)
        )?;
    }
    out.flush()?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "baseline lines={lines} seconds={secs:.3} lines_per_second={:.0}",
        lines as f64 / secs
    );
    Ok(())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--baseline") {
        let path = args
            .get(2)
            .cloned()
            .unwrap_or_else(|| "/tmp/janus-baseline.log".into());
        let lines = args
            .get(3)
            .and_then(|n| n.parse().ok())
            .unwrap_or(2_000_000);
        if let Err(e) = baseline(&path, lines) {
            eprintln!("baseline failed: {e}");
            std::process::exit(1);
        }
        return;
    }
    if args.len() < 4 {
        eprintln!("usage: push_load URL SECONDS CONCURRENCY [LINES_PER_SECOND] [json|protobuf]");
        std::process::exit(2);
    }
    let url = format!("{}/loki/api/v1/push", args[1]);
    let seconds: u64 = args[2].parse().unwrap_or(10);
    let concurrency: u64 = args[3].parse().unwrap_or(8);
    let rate: u64 = args.get(4).and_then(|r| r.parse().ok()).unwrap_or(0);
    let json = args.get(5).map(String::as_str) == Some("json");
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let lines = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let started = Instant::now();
    for worker in 0..concurrency {
        let (client, url, lines, errors) = (
            client.clone(),
            url.clone(),
            Arc::clone(&lines),
            Arc::clone(&errors),
        );
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            // Paced: each worker sends a batch every `interval`.
            let interval = (rate > 0)
                .then(|| Duration::from_secs_f64(BATCH as f64 * concurrency as f64 / rate as f64));
            let mut next = Instant::now();
            let mut n = 0u64;
            while Instant::now() < deadline {
                if let Some(interval) = interval {
                    let now = Instant::now();
                    if next > now {
                        tokio::time::sleep(next - now).await;
                    }
                    next += interval;
                }
                let (body, content_type) = batch(worker, n, json);
                n += 1;
                let sent = Instant::now();
                match client
                    .post(&url)
                    .header("Content-Type", content_type)
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) if r.status() == 204 => {
                        latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                        lines.fetch_add(BATCH as u64, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort_by(|a, b| a.total_cmp(b));
    println!(
        "lines={} seconds={secs:.2} lines_per_second={:.0} requests={} errors={} p50_ms={:.2} p99_ms={:.2} max_ms={:.2}",
        lines.load(Ordering::Relaxed),
        lines.load(Ordering::Relaxed) as f64 / secs,
        all.len(),
        errors.load(Ordering::Relaxed),
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or(0.0)
    );
}
