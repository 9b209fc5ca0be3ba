//! `rbuild version`.

use std::process::ExitCode;

/// Prints the version of rbuild and of the OCI specs it writes.
pub fn run() -> anyhow::Result<ExitCode> {
    println!("rbuild {}", env!("CARGO_PKG_VERSION"));
    Ok(ExitCode::SUCCESS)
}
