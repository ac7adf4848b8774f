use std::io::IsTerminal;
use std::process::ExitCode;

use atoll_identity::config::Config;
use atoll_identity::server::{self, AdminPasswordPolicy, Identity};

#[tokio::main]
async fn main() -> ExitCode {
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
