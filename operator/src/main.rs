use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = atoll_operator::cli::Cli::parse();
    match atoll_operator::cli::run(cli, &mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("atoll-operator: {error}");
            ExitCode::FAILURE
        }
    }
}
