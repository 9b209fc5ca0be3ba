//! `rbuild login [SERVER]`: check credentials against a registry and save them.

use std::io::{IsTerminal as _, Read};
use std::process::ExitCode;

use anyhow::{Context, bail};
use rbuild_core::registry::{DockerConfig, RegistryCredentials};

use super::pull::RegistryArgs;

/// The registry `login` and `logout` use when none is named.
const DEFAULT_SERVER: &str = "docker.io";

/// `rbuild login`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbuild login registry.example.com
  echo \"$TOKEN\" | rbuild login -u ci --password-stdin registry.example.com")]
pub struct Args {
    #[command(flatten)]
    registry: RegistryArgs,
    /// User name (asked for on the terminal when not given)
    #[arg(short, long)]
    username: Option<String>,
    /// Password (prefer --password-stdin)
    #[arg(short, long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from standard input
    #[arg(long)]
    password_stdin: bool,
    /// The registry [default: docker.io]
    server: Option<String>,
}

/// `https://host/v1/` or `host/` as docker accepts it, reduced to `host[:port]`.
pub fn server_host(server: Option<&str>) -> String {
    let s = server.unwrap_or(DEFAULT_SERVER);
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "index.docker.io" | "registry-1.docker.io" | "" => DEFAULT_SERVER.to_owned(),
        h => h.to_owned(),
    }
}

/// Runs `rbuild login`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let registry = server_host(args.server.as_deref());
    let username = match args.username {
        Some(u) => u,
        // As docker: asked on the terminal, unless the password comes on standard input.
        None if std::io::stdin().is_terminal() && !args.password_stdin => {
            eprint!("Username: ");
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("reading the user name")?;
            line.trim().to_owned()
        }
        None => bail!("give a user name with -u (standard input is not a terminal to ask on)"),
    };
    if username.is_empty() {
        bail!("the user name is empty");
    }
    let password = match (args.password, args.password_stdin) {
        (Some(p), _) => {
            // As docker: the password is in the shell's history and other users' `ps`.
            eprintln!(
                "warning: using --password on the command line is insecure (it shows in the shell history and in the process list): use --password-stdin"
            );
            p
        }
        (None, true) => {
            let mut p = String::new();
            std::io::stdin()
                .read_to_string(&mut p)
                .context("reading the password from standard input")?;
            p.trim_end_matches(['\n', '\r']).to_owned()
        }
        (None, false) if std::io::stdin().is_terminal() => {
            rpassword::prompt_password("Password: ").context("reading the password")?
        }
        (None, false) => bail!(
            "give a password with --password-stdin (standard input is not a terminal to ask on)"
        ),
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    let credentials = RegistryCredentials { username, password };
    let options = args.registry.options()?;
    let client = rbuild_core::registry::RegistryClient::with_credentials(
        &registry,
        Some(credentials.clone()),
        options,
    );
    client
        .ping(&[])
        .with_context(|| format!("logging in to {registry}"))?;
    let mut config = DockerConfig::load()?;
    config
        .store_credentials(&registry, &credentials)
        .with_context(|| format!("saving credentials to {}", config.path().display()))?;
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}
