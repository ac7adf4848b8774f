//! HTTP server that nodesim's tests run as a container.

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let args = atoll_testkit::nodesim::testserver::Args::parse();
    match atoll_testkit::nodesim::testserver::serve(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("atoll-testserver: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
