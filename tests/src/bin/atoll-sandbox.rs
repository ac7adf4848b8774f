//! A simulated Kubernetes cluster running Atoll on this machine.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = atoll_testkit::sandbox::Args::parse();
    let mut out = std::io::stdout();
    let shutdown = atoll_testkit::sandbox::shutdown_signal();
    match atoll_testkit::sandbox::run(args, &mut out, shutdown).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("atoll-sandbox: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
