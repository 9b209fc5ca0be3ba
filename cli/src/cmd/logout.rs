//! `rbuild logout [SERVER]`: forget the credentials saved for a registry.

use std::process::ExitCode;

use anyhow::Context;
use rbuild_core::registry::DockerConfig;

use super::login::server_host;

/// `rbuild logout`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbuild logout registry.example.com
  rbuild logout")]
pub struct Args {
    /// The registry [default: docker.io]
    server: Option<String>,
}

/// Runs `rbuild logout`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let registry = server_host(args.server.as_deref());
    let mut config = DockerConfig::load()?;
    let removed = config
        .remove_credentials(&registry)
        .with_context(|| format!("removing credentials from {}", config.path().display()))?;
    if removed {
        println!("Removing login credentials for {registry}");
    } else {
        println!("Not logged in to {registry}");
    }
    Ok(ExitCode::SUCCESS)
}
