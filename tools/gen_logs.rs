//! Writes a realistic Lethe-layout log tree for benchmarks: many namespaces and pods, hours of
//! mostly ordered lines (a few late ones), with a rare token and a regex-able phrase at known
//! rates, plus one large hour in namespace `bighour`.
//!
//! usage: cargo run --release --example gen_logs -- OUT_DIR TREE_MB BIG_HOUR_MB

use std::io::{BufWriter, Write};
use std::path::Path;

const BASE: i64 = 1_704_067_200; // 2024-01-01T00:00:00Z
const HOURS: i64 = 12;
const NAMESPACES: usize = 24;
const PODS_PER_NAMESPACE: u64 = 12;

/// A small deterministic generator (xorshift), so every run writes the same tree.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const PATHS: [&str; 6] = [
    "/api/v1/orders",
    "/api/v1/cart",
    "/healthz",
    "/api/v1/users/42",
    "/static/app.js",
    "/login",
];
const LEVELS: [&str; 4] = ["INFO", "INFO", "WARN", "DEBUG"];

fn message(rng: &mut Rng, out: &mut String) {
    use std::fmt::Write as _;
    out.clear();
    match rng.below(4) {
        0 => {
            let _ = write!(
                out,
                "10.{}.{}.{} - - \"GET {} HTTP/1.1\" {} {} \"-\" \"Mozilla/5.0 (X11; Linux x86_64)\" rt={}.{:03}",
                rng.below(256),
                rng.below(256),
                rng.below(256),
                PATHS[rng.below(6) as usize],
                [200, 200, 200, 304, 404, 500][rng.below(6) as usize],
                rng.below(50_000),
                rng.below(3),
                rng.below(1000)
            );
        }
        1 => {
            let _ = write!(
                out,
                "{{\"level\":\"{}\",\"msg\":\"processed order\",\"order_id\":{},\"items\":{},\"duration_ms\":{},\"trace_id\":\"{:016x}\"}}",
                LEVELS[rng.below(4) as usize].to_lowercase(),
                rng.below(10_000_000),
                rng.below(20),
                rng.below(900),
                rng.next()
            );
        }
        2 => {
            let _ = write!(
                out,
                "I0525 20:00:{:02}.{:06} {:5} reconciler.go:{}] \"Reconciled object\" kind=Deployment name=web-{} generation={}",
                rng.below(60),
                rng.below(1_000_000),
                rng.below(30_000),
                rng.below(400),
                rng.below(100),
                rng.below(1000)
            );
        }
        _ => {
            let _ = write!(
                out,
                "{} [worker-{}] cache refresh finished: {} keys, {} evicted, hit ratio 0.{:03}",
                LEVELS[rng.below(4) as usize],
                rng.below(16),
                rng.below(100_000),
                rng.below(1000),
                rng.below(1000)
            );
        }
    }
    // About one line in a thousand has the regex phrase, one in a hundred thousand the rare token.
    if rng.below(1000) == 0 {
        let _ = write!(out, " upstream timeout after {}ms", rng.below(30_000));
    }
    if rng.below(100_000) == 0 {
        out.push_str(" XYZZY-rare-token");
    }
}

fn timestamp(ns: i64) -> String {
    let t = chrono::DateTime::<chrono::Utc>::from_timestamp(
        ns.div_euclid(1_000_000_000),
        ns.rem_euclid(1_000_000_000) as u32,
    )
    .unwrap_or_default();
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Writes one hour file of about `bytes` bytes.
fn write_hour(
    dir: &Path,
    namespace: &str,
    hour: i64,
    bytes: u64,
    rng: &mut Rng,
) -> std::io::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let start = (BASE + hour * 3600) * 1_000_000_000;
    let name = chrono::DateTime::<chrono::Utc>::from_timestamp(BASE + hour * 3600, 0)
        .unwrap_or_default()
        .format("%Y-%m-%d_%H.log")
        .to_string();
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(dir.join(name))?);
    let mut msg = String::new();
    let mut written = 0u64;
    while written < bytes {
        // Time advances with the bytes written, so the hour is filled evenly; mostly ordered,
        // one line in ten thousand arrives up to two minutes late.
        let progress = (written as f64 / bytes as f64 * 3_600_000_000_000.0) as i64;
        let mut ts = start + progress + rng.below(1_000_000) as i64;
        if rng.below(10_000) == 0 {
            ts -= rng.below(120_000_000_000) as i64;
        }
        let ts = ts.clamp(start, start + 3_599_999_999_999);
        message(rng, &mut msg);
        // A stable set of pods per namespace, as a Deployment has: their names do not change
        // from line to line.
        let pod = rng.below(PODS_PER_NAMESPACE);
        let hash = namespace
            .bytes()
            .fold(pod.wrapping_mul(0x9E37_79B9), |h, b| {
                h.wrapping_mul(31).wrapping_add(u64::from(b))
            })
            & 0xf_ffff;
        let line = format!(
            "{}[{}|{}-{:05x}-{}|{}] {}\n",
            timestamp(ts),
            namespace,
            ["web", "api", "worker", "cache"][(pod % 4) as usize],
            hash,
            pod,
            ["app", "sidecar"][rng.below(2) as usize],
            msg
        );
        out.write_all(line.as_bytes())?;
        written += line.len() as u64;
    }
    out.flush()?;
    Ok(written)
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        eprintln!("usage: gen_logs OUT_DIR TREE_MB BIG_HOUR_MB");
        std::process::exit(2);
    }
    let root = Path::new(&args[1]);
    let tree_mb: u64 = args[2].parse().unwrap_or(2048);
    let big_mb: u64 = args[3].parse().unwrap_or(1024);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let per_file = tree_mb * (1 << 20) / (NAMESPACES as u64 * HOURS as u64);
    let mut total = 0;
    for n in 0..NAMESPACES {
        let namespace = format!("team-{n:02}");
        for hour in 0..HOURS {
            total += write_hour(
                &root.join("pod").join(&namespace),
                &namespace,
                hour,
                per_file,
                &mut rng,
            )?;
        }
    }
    if big_mb > 0 {
        total += write_hour(
            &root.join("pod/bighour"),
            "bighour",
            HOURS,
            big_mb << 20,
            &mut rng,
        )?;
    }
    println!("{total}");
    Ok(())
}
