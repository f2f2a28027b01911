//! Writes JSON and logfmt log lines for the parser benchmark: namespace `json` holds one JSON
//! object per line, namespace `logfmt` the same fields as logfmt, over four hours, about MB
//! megabytes each. One line in a hundred is an error, two in a hundred a 5xx status.
//!
//! With `late`, namespaces `json_late` and `logfmt_late` instead: the status comes last, after
//! fields that change on every line (a trace id, a span id, a user, a duration, a quoted
//! message), and in JSON it is nested (`"http":{"status":…}`).
//!
//! usage: cargo run --release --example gen_structured -- OUT_DIR MB [late]

use std::io::{BufWriter, Write};

const BASE: i64 = 1_704_067_200; // 2024-01-01T00:00:00Z
const HOURS: i64 = 4;

/// A small deterministic generator (xorshift), so every run writes the same tree.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(out), Some(mb)) = (args.get(1), args.get(2).and_then(|m| m.parse::<u64>().ok()))
    else {
        eprintln!("usage: gen_structured OUT_DIR MB");
        std::process::exit(2);
    };
    let per_hour = mb * 1_000_000 / HOURS as u64;
    let late = args.get(3).is_some_and(|a| a == "late");
    let namespaces: &[&str] = if late {
        &["json_late", "logfmt_late"]
    } else {
        &["json", "logfmt"]
    };
    for &ns in namespaces {
        let dir = std::path::Path::new(out).join("pod").join(ns);
        std::fs::create_dir_all(&dir)?;
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for hour in 0..HOURS {
            let name = format!("2024-01-01_{hour:02}.log");
            let mut w = BufWriter::with_capacity(1 << 20, std::fs::File::create(dir.join(name))?);
            let mut written = 0u64;
            let mut i = 0u64;
            while written < per_hour {
                let t = BASE + hour * 3600 + (i * 3600 / (per_hour / 200).max(1)) as i64 % 3600;
                let secs = t % 60;
                let mins = (t / 60) % 60;
                let level = match rng.below(100) {
                    0 => "error",
                    1..=9 => "warn",
                    _ => "info",
                };
                let status = match rng.below(100) {
                    0 | 1 => 500 + rng.below(4),
                    2..=9 => 404,
                    _ => 200,
                };
                let took = rng.below(3000);
                let pod = rng.below(8);
                let path =
                    ["/api/v1/orders", "/api/v1/cart", "/healthz", "/login"][rng.below(4) as usize];
                let message = if late {
                    let trace = rng.below(u64::MAX);
                    let span = rng.below(u32::MAX as u64);
                    let user = rng.below(100_000);
                    if ns == "json_late" {
                        format!(
                            r#"{{"trace_id":"{trace:016x}","span_id":"{span:08x}","user_id":{user},"took_ms":{took},"path":"{path}","msg":"handled request {i}","http":{{"method":"GET","status":{status}}}}}"#
                        )
                    } else {
                        format!(
                            r#"trace_id={trace:016x} span_id={span:08x} user_id={user} took={took}ms path={path} msg="handled request {i}" status={status}"#
                        )
                    }
                } else if ns == "json" {
                    format!(
                        r#"{{"level":"{level}","status":{status},"took_ms":{took},"path":"{path}","user":{{"id":{},"region":"eu-{}"}},"msg":"handled request {i}"}}"#,
                        rng.below(100_000),
                        rng.below(3)
                    )
                } else {
                    format!(
                        r#"level={level} status={status} took={took}ms path={path} user_id={} region=eu-{} msg="handled request {i}""#,
                        rng.below(100_000),
                        rng.below(3)
                    )
                };
                let line = format!(
                    "2024-01-01T{hour:02}:{mins:02}:{secs:02}Z[{ns}|api-{pod}|app] {message}\n"
                );
                w.write_all(line.as_bytes())?;
                written += line.len() as u64;
                i += 1;
            }
            w.flush()?;
        }
    }
    Ok(())
}
