//! The `janus` binary: flags → config → logging → serve.

use std::process::ExitCode;

use clap::Parser;
use janus::config::{Config, Flags};
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
    let config = match Config::load(flags) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("janus: {e}");
            return ExitCode::from(2);
        }
    };
    logging::init(&config);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("janus: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
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
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        // A store that cannot be used is a configuration problem, as a bad flag is.
        Err(e @ server::ServeError::Start(janus::api::StartError::Store(_))) => {
            eprintln!("janus: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("janus: {e}");
            ExitCode::FAILURE
        }
    }
}
