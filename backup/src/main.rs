//! `atoll-backup`: see [`atoll_backup::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    atoll_backup::cli::main()
}
