//! Command line of `atoll-operator`.

use std::io::Write;

use clap::{Parser, Subcommand};

/// Reconciles Atoll Tenants into dedicated orchestration instances.
#[derive(Debug, Parser)]
#[command(name = "atoll-operator", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the Tenant CustomResourceDefinition as YAML.
    Crd,
}

/// Errors the command line reports before exiting non-zero.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The CRD could not be rendered.
    #[error("rendering the CRD as YAML: {0}")]
    RenderCrd(#[from] serde_norway::Error),
    /// Standard output could not be written.
    #[error("writing to standard output: {0}")]
    WriteOutput(#[from] std::io::Error),
}

/// Runs the parsed command.
pub fn run(cli: Cli, out: &mut impl Write) -> Result<(), CliError> {
    match cli.command {
        Command::Crd => out.write_all(crate::crd::crd_yaml()?.as_bytes())?,
    }
    Ok(())
}
