//! The `janus` binary: flags → config → logging → serve.

use std::process::ExitCode;

use clap::Parser;
use janus::config::{CheckCommand, Command, Config, Flags, TestCommand};
use janus::server::{self, logging};

fn main() -> ExitCode {
    janus::server::memory::configure();
    let flags = match Flags::try_parse() {
        Ok(flags) => flags,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One line is what a crash-looping pod's log shows; clap's usage block follows it.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            eprintln!("janus: {}", first.trim_start_matches("error: "));
            return ExitCode::from(2);
        }
    };
    let mut flags = flags;
    let command = flags.command.take();
    // Checking and testing files needs no configuration.
    match command {
        Some(Command::Check {
            what: CheckCommand::Config,
        }) => return check_config(flags),
        Some(Command::Check {
            what: CheckCommand::Rules { files },
        }) => return check_rules(&files),
        Some(Command::Test {
            what: TestCommand::Rules { files },
        }) => return test_rules(&files),
        _ => {}
    }
    let config = match Config::load(flags) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("janus: {e}");
            return ExitCode::from(2);
        }
    };
    logging::init(&config);
    if let Some(Command::Import {
        from,
        progress_file,
    }) = command
    {
        return import(&config, &from, &progress_file);
    }

    let runtime = match runtime(None) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let outcome = runtime.block_on(async {
        let listener = server::bind(&config).await?;
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            listen = %config.listen_address,
            upstream = %config.upstream_url,
            storage = %match &config.storage_clickhouse {
                Some(c) => c.connection.url.clone(),
                None => config.storage_path.display().to_string(),
            },
            "Janus started"
        );
        server::serve(config, listener, server::shutdown_signal()).await
    });
    // The grace period is over: work still running on blocking threads (a scan its client left,
    // a parse) is not waited for — dropping the runtime would wait for it without bound.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    logging::flush();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // A store that cannot be used is a configuration problem, as a bad flag is.
        Err(
            e @ server::ServeError::Start(
                janus::api::StartError::Store(_) | janus::api::StartError::Ruler(_),
            ),
        ) => {
            eprintln!("janus: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("janus: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The multi-threaded runtime (rule templates' `query` blocks a worker in place).
fn runtime(workers: Option<usize>) -> Result<tokio::runtime::Runtime, ExitCode> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    builder.enable_all().build().map_err(|e| {
        eprintln!("janus: cannot start the async runtime: {e}");
        ExitCode::FAILURE
    })
}

/// `janus check config`: loads the configuration as a start would (every file it names read
/// and checked, rule files parsed), says what it found, and exits 1 on any problem.
fn check_config(flags: Flags) -> ExitCode {
    let source = flags
        .config_file
        .as_ref()
        .map_or_else(|| "flags".to_string(), |p| p.display().to_string());
    println!("Checking {source}");
    let config = match Config::load(flags) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("  FAILED: {e}");
            return ExitCode::from(1);
        }
    };
    let rules = match janus::rules::manager::load_all(&config.rules.files) {
        Ok(files) => files.iter().map(|f| f.groups.len()).sum::<usize>(),
        Err(problems) => {
            eprintln!("  FAILED: rule files:");
            for p in problems {
                eprintln!("{p}");
            }
            return ExitCode::from(1);
        }
    };
    // URLs without any password they carry: the output goes to CI logs.
    let shown = |url: &str| match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "(unparsable URL)".to_string(),
    };
    let store = match &config.storage_clickhouse {
        Some(c) => format!("ClickHouse {}", shown(c.connection.url.as_str())),
        None => format!("files under {}", config.storage_path.display()),
    };
    println!(
        "  SUCCESS: listen {}, upstream {}, logs in {store}, {rules} rule groups",
        config.listen_address,
        shown(config.upstream_url.as_str())
    );
    ExitCode::SUCCESS
}

/// `janus check rules`: each file's problems, as promtool prints them; exit 1 on any.
fn check_rules(files: &[std::path::PathBuf]) -> ExitCode {
    let mut failed = false;
    for path in files {
        println!("Checking {}", path.display());
        match janus::rules::file::load(path) {
            Ok(file) => {
                let rules: usize = file.groups.iter().map(|g| g.rules.len()).sum();
                println!("  SUCCESS: {rules} rules found");
            }
            Err(problems) => {
                failed = true;
                eprintln!("  FAILED:");
                for p in problems {
                    eprintln!("{p}");
                }
            }
        }
        println!();
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `janus test rules`: each test file run offline; exit 1 on any failure.
fn test_rules(files: &[std::path::PathBuf]) -> ExitCode {
    let runtime = match runtime(Some(2)) {
        Ok(runtime) => runtime,
        Err(code) => return code,
    };
    let mut failed = false;
    for path in files {
        println!("Unit Testing:  {}", path.display());
        match runtime.block_on(janus::rules::unit_test::run_file(path)) {
            Ok(failures) if failures.is_empty() => println!("  SUCCESS"),
            Ok(failures) => {
                failed = true;
                eprintln!("  FAILED:");
                for f in failures {
                    eprintln!("    {f}");
                }
            }
            Err(e) => {
                failed = true;
                eprintln!("  FAILED:\n    {e}");
            }
        }
        println!();
    }
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// `janus import`: the tree at `from` into the configured backend, with a progress line on
/// stderr every second and a summary at the end.
fn import(config: &Config, from: &std::path::Path, progress_file: &std::path::Path) -> ExitCode {
    let Some(settings) = &config.storage_clickhouse else {
        eprintln!("janus: import needs a log store to import into: set --storage.clickhouse.url");
        return ExitCode::from(2);
    };
    if !from.join("pod").is_dir() && !from.join("node").is_dir() {
        eprintln!(
            "janus: import: {} holds neither pod/ nor node/: not a Lethe or Janus tree",
            from.display()
        );
        return ExitCode::from(2);
    }
    let metrics = std::sync::Arc::new(janus::telemetry::Metrics::new());
    let store = match janus::logstore::clickhouse::ClickHouse::open(settings, metrics) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("janus: log store: {e}");
            return ExitCode::from(2);
        }
    };
    let mut last = std::time::Instant::now();
    let mut report = |p: &janus::logstore::import::Progress| {
        if last.elapsed() >= std::time::Duration::from_secs(1) {
            last = std::time::Instant::now();
            eprintln!("{}", progress_line(p));
        }
    };
    match janus::logstore::import::import(from, &store, progress_file, &mut report) {
        Ok(p) => {
            eprintln!("{}", progress_line(&p));
            println!(
                "imported {} lines from {} hour files ({} bytes) in {:.1} s ({:.0} lines/s); {} lines were not log lines and were skipped",
                p.lines,
                p.files,
                p.bytes_done,
                p.seconds,
                p.lines as f64 / p.seconds.max(1e-9),
                p.skipped_lines
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!(
                "janus: import stopped: {e}; what was imported is recorded in {}: run the same command again to go on",
                progress_file.display()
            );
            ExitCode::FAILURE
        }
    }
}

fn progress_line(p: &janus::logstore::import::Progress) -> String {
    let percent = if p.bytes == 0 {
        100.0
    } else {
        p.bytes_done as f64 * 100.0 / p.bytes as f64
    };
    format!(
        "[{percent:5.1}%] files {}/{}, {} MB of {} MB, {} lines this run ({:.0} lines/s)",
        p.files_done,
        p.files,
        p.bytes_done >> 20,
        p.bytes >> 20,
        p.lines,
        p.lines as f64 / p.seconds.max(1e-9)
    )
}
