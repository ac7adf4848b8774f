//! `atoll-instance`: one tenant's orchestration engine. Configured from the
//! environment (see the `config` module).

use std::process::ExitCode;

use atoll_instance::config::{self, Config, Invocation};
use atoll_instance::server;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> ExitCode {
    match config::invocation(std::env::args().skip(1)) {
        Invocation::Run => {}
        Invocation::Help => {
            print!("{}", config::USAGE);
            return ExitCode::SUCCESS;
        }
        Invocation::Version => {
            println!("atoll-instance {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        // A task pod's file helper: no configuration, no server.
        Invocation::TaskFiles(args) => return atoll_instance::task_files::main(args).await,
        Invocation::Unknown(arg) => {
            eprintln!(
                "atoll-instance: unexpected argument {arg:?}: it takes none and is configured by its environment (see atoll-instance --help)"
            );
            return ExitCode::from(2);
        }
    }
    // The configuration first: it sets the log level (RUST_LOG still wins).
    let config = Config::from_env();
    let rust_log = std::env::var("RUST_LOG").ok();
    let filter = match &config {
        Ok(config) => config.log_filter(rust_log.as_deref()),
        Err(_) => Config::default().log_filter(rust_log.as_deref()),
    };
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = match config {
        Ok(config) => config,
        Err(err) => {
            tracing::error!(error = %err, "invalid configuration");
            return ExitCode::FAILURE;
        }
    };
    // Commands tasks run as this process's user: they must not read its
    // memory or its environment (the database URL, mapped-in secrets).
    if let Err(err) = server::protect_process() {
        tracing::error!(error = %err, "cannot mark the process non-dumpable");
        return ExitCode::FAILURE;
    }
    let shutdown = CancellationToken::new();
    server::cancel_on_signal(shutdown.clone());
    match server::run(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "stopped");
            ExitCode::FAILURE
        }
    }
}
