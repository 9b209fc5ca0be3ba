//! `rbuild`: a daemonless container image builder with `docker build`'s command line.
//!
//! This binary only parses arguments, renders progress and maps errors to exit codes;
//! the work is done by `rbuild-core` and `rbuild-dockerfile`.

mod cmd;
mod escape;
mod progress;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for a usage error, as docker uses it.
const EXIT_USAGE: u8 = 2;
/// Exit code for a failed operation.
const EXIT_FAILURE: u8 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "rbuild",
    version,
    about = "A daemonless container image builder"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build an image from a Dockerfile (the default subcommand: `rbuild -t app .`).
    Build(Box<cmd::build::Args>),
    /// Print version information.
    #[command(after_help = "Examples:\n  rbuild version")]
    Version,
    /// Inspect how rbuild reads a Dockerfile.
    Debug(cmd::debug::DebugArgs),
    /// Print the build graph a Dockerfile lowers to.
    Graph(cmd::graph::GraphArgs),
    // storage: image commands
    /// List images.
    Images(cmd::images::Args),
    /// Give an image another name.
    Tag(cmd::tag::Args),
    /// Remove image names.
    Rmi(cmd::rmi::Args),
    /// Show an image's config and manifest as JSON.
    Inspect(cmd::inspect::Args),
    /// Save images to an archive (docker or OCI).
    Save(cmd::save::Args),
    /// Load images from an archive (docker or OCI).
    Load(cmd::load::Args),
    /// Create an image from a rootfs tarball.
    Import(cmd::import::Args),
    /// Remove blobs and unpacked layers no image needs.
    Prune(cmd::prune::Args),
    /// Content store maintenance.
    Store(cmd::store::Args),
    // registry: pull, push, login, logout
    /// Download an image from a registry.
    Pull(cmd::pull::Args),
    /// Upload an image to a registry.
    Push(cmd::push::Args),
    /// Log in to a registry (saves credentials in docker's config.json).
    Login(cmd::login::Args),
    /// Log out from a registry.
    Logout(cmd::logout::Args),
    // containers: run a stored image
    /// Run a command in a throw-away container of an image (host network).
    Run(cmd::run::Args),
    // completion and manual pages, generated from these definitions
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completion(cmd::completion::Args),
    /// Print the manual page, or write one page per subcommand into a directory.
    Man(cmd::man::Args),
}

/// The words that name a subcommand; anything else first on the line means `build`.
fn is_subcommand(word: &str) -> bool {
    use clap::CommandFactory;
    Cli::command()
        .get_subcommands()
        .any(|c| c.get_name() == word || c.get_all_aliases().any(|a| a == word))
        || matches!(word, "help" | "-h" | "--help" | "-V" | "--version")
}

/// `rbuild -t x .` is `rbuild build -t x .`: insert `build` when no subcommand is named.
fn with_default_subcommand(mut args: Vec<OsString>) -> Vec<OsString> {
    let first = args.get(1).and_then(|a| a.to_str()).map(str::to_owned);
    match first {
        Some(word) if is_subcommand(&word) => {}
        Some(_) => args.insert(1, OsString::from("build")),
        None => {}
    }
    args
}

/// Restores the default action of SIGPIPE, which Rust's runtime sets to "ignore": a
/// reader that closes early (`rbuild images | head -1`) then ends rbuild quietly, as it
/// ends docker, instead of every print panicking on EPIPE. Processes rbuild spawns get
/// the default action either way.
fn restore_sigpipe() {
    // SAFETY: called first thing in main, before any thread exists; SIG_DFL is a valid
    // disposition for SIGPIPE and no handler code runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> ExitCode {
    restore_sigpipe();
    let args = with_default_subcommand(std::env::args_os().collect());
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    if let Err(message) = rbuild_core::http_deadline() {
        eprintln!("error: {message}");
        return ExitCode::from(EXIT_USAGE);
    }
    let result = match cli.command {
        Command::Build(args) => cmd::build::run(*args),
        Command::Version => cmd::version::run(),
        Command::Debug(args) => cmd::debug::run(args),
        Command::Graph(args) => cmd::graph::run(args),
        // storage: image commands
        Command::Images(args) => cmd::images::run(args),
        Command::Tag(args) => cmd::tag::run(args),
        Command::Rmi(args) => cmd::rmi::run(args),
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::Save(args) => cmd::save::run(args),
        Command::Load(args) => cmd::load::run(args),
        Command::Import(args) => cmd::import::run(args),
        Command::Prune(args) => cmd::prune::run(args),
        Command::Store(args) => cmd::store::run(args),
        // registry: pull, push, login, logout
        Command::Pull(args) => cmd::pull::run(args),
        Command::Push(args) => cmd::push::run(args),
        Command::Login(args) => cmd::login::run(args),
        Command::Logout(args) => cmd::logout::run(args),
        // containers: run a stored image
        Command::Run(args) => cmd::run::run(args),
        // completion and manual pages, generated from these definitions
        Command::Completion(args) => {
            cmd::completion::run(args, <Cli as clap::CommandFactory>::command())
        }
        Command::Man(args) => cmd::man::run(args, <Cli as clap::CommandFactory>::command()),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // Errors quote input (entry names, paths, image names): never let its
            // control bytes reach the terminal.
            eprintln!("error: {}", escape::printable(&format!("{err:#}")));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
