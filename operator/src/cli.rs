//! Command line of `atoll-operator`.

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::OperatorConfig;
use crate::render::{self, RenderError};

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
    /// Print the CustomResourceDefinitions as YAML: all of them (for
    /// `kubectl apply -f -`), or the one named (`tenants.atoll.dev`,
    /// `tenantbackups.atoll.dev`; how the chart's copies are generated).
    Crd {
        /// The CRD to print; all of them when unset.
        name: Option<String>,
    },
    /// Print every object a Tenant produces (for review; secrets are
    /// placeholders), after checking the Tenant as the operator would.
    Render(RenderArgs),
    /// Run the operator: reconcile Tenants until SIGTERM or Ctrl-C.
    Run(Box<crate::run::RunArgs>),
    /// Run the wake gate: serve the hosts of sleeping and suspended
    /// tenants, wake them on the first request and forward the requests
    /// it held once they answer (until SIGTERM or Ctrl-C).
    WakeGate(crate::gate::GateArgs),
}

/// Arguments of `render`.
#[derive(Debug, clap::Args)]
pub struct RenderArgs {
    /// The Tenant YAML file, or - for standard input.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    /// Settings the objects depend on.
    #[command(flatten)]
    pub config: Box<OperatorConfig>,
}

/// Errors the command line reports before exiting non-zero.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The CRD could not be rendered.
    #[error("rendering the CRD as YAML: {0}")]
    RenderCrd(#[from] serde_norway::Error),
    /// `crd NAME` named no Atoll CRD.
    #[error("{name} is not an Atoll CRD (known: {known})")]
    UnknownCrd {
        /// The name asked for.
        name: String,
        /// The CRDs there are.
        known: String,
    },
    /// A file could not be read.
    #[error("reading {path}: {source}")]
    ReadFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The Tenant could not be rendered.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The operator stopped with an error.
    #[error(transparent)]
    Run(#[from] crate::run::RunError),
    /// The wake gate stopped with an error.
    #[error(transparent)]
    Gate(#[from] crate::gate::GateError),
    /// The async runtime could not start.
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// Standard output could not be written.
    #[error("writing to standard output: {0}")]
    WriteOutput(#[from] std::io::Error),
}

/// Runs the parsed command.
pub fn run(cli: Cli, out: &mut impl Write) -> Result<(), CliError> {
    match cli.command {
        Command::Crd { name: None } => out.write_all(crate::crd::crd_yaml()?.as_bytes())?,
        Command::Crd { name: Some(name) } => match crate::crd::named_crd_yaml(&name) {
            Some(yaml) => out.write_all(yaml?.as_bytes())?,
            None => {
                return Err(CliError::UnknownCrd {
                    name,
                    known: crate::crd::crd_names().join(", "),
                });
            }
        },
        Command::Render(RenderArgs { file, config }) => {
            let path = file.display().to_string();
            let text = read_input(&file).map_err(|source| CliError::ReadFile {
                path: path.clone(),
                source,
            })?;
            let tenant = render::parse_tenant(&path, &text)?;
            out.write_all(render::render(&path, tenant, &config)?.as_bytes())?;
        }
        Command::Run(args) => {
            init_tracing();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(CliError::Runtime)?;
            runtime.block_on(crate::run::run(*args))?;
        }
        Command::WakeGate(args) => {
            init_tracing();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(CliError::Runtime)?;
            runtime.block_on(crate::gate::run(args))?;
        }
    }
    Ok(())
}

/// JSON logs to stderr; `RUST_LOG` filters (default info).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn read_input(file: &PathBuf) -> std::io::Result<String> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(file)
    }
}
