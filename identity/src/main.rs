use std::io::IsTerminal;
use std::process::ExitCode;

use atoll_identity::config::{Config, Invocation};
use atoll_identity::server::{self, AdminPasswordPolicy, Identity};

#[tokio::main]
async fn main() -> ExitCode {
    match atoll_identity::config::invocation(std::env::args().skip(1)) {
        Invocation::Run => {}
        Invocation::Help => {
            print!("{}", atoll_identity::config::USAGE);
            return ExitCode::SUCCESS;
        }
        Invocation::Version => {
            println!("atoll-identity {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Invocation::Unknown(arg) => {
            eprintln!(
                "atoll-identity: unexpected argument {arg:?}: it takes none and is configured by its environment (see atoll-identity --help)"
            );
            return ExitCode::from(2);
        }
    }
    atoll_identity::logging::init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %server::error_chain(&*error), "atoll-identity stopped");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = Config::from_env()?;
    let listener = server::bind(&config).await?;
    config.bound_to(listener.local_addr()?);
    // A generated first-admin password is only worth anything if a person
    // sees it; never put it in the log stream.
    let policy = if std::io::stdout().is_terminal() {
        AdminPasswordPolicy::GenerateIfMissing
    } else {
        AdminPasswordPolicy::RequireConfigured
    };
    let identity = Identity::open(config, policy).await?;
    atoll_identity::console::print_welcome(&identity, &mut std::io::stdout().lock())?;
    identity
        .serve(listener, atoll_identity::console::shutdown_signal())
        .await?;
    Ok(())
}
