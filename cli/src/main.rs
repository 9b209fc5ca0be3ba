//! `rbuild`: a daemonless container image builder with `docker build`'s command line.
//!
//! This binary only parses arguments, renders progress and maps errors to exit codes;
//! the work is done by `rbuild-core` and `rbuild-dockerfile`.

mod cmd;
mod escape;
mod limits;
mod progress;
mod template;

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
    /// docker's image verbs: ls, rm, inspect, history, prune, save, load, tag, ...
    Image(cmd::image::Args),
    /// Show the steps that made an image.
    History(cmd::history::Args),
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
    /// Disk use of the store (`system df`), and `system prune`.
    System(cmd::system::Args),
    /// The build cache: `builder prune`.
    Builder(cmd::system::BuilderArgs),
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

impl Command {
    /// Whether the command uses the store or runs steps, which an unprivileged user does
    /// in a user namespace; the others (help, parsing, credentials, completion) run as
    /// they are, even where user namespaces are unavailable.
    fn needs_user_namespace(&self) -> bool {
        !matches!(
            self,
            Command::Version
                | Command::Debug(_)
                | Command::Graph(_)
                | Command::Login(_)
                | Command::Logout(_)
                | Command::Completion(_)
                | Command::Man(_)
        )
    }
}

/// The words that name a subcommand.
fn is_subcommand(word: &str) -> bool {
    use clap::CommandFactory;
    Cli::command()
        .get_subcommands()
        .any(|c| c.get_name() == word || c.get_all_aliases().any(|a| a == word))
        || matches!(word, "help" | "-h" | "--help" | "-V" | "--version")
}

/// Options every subcommand that opens the store takes, which docker users also put
/// before the subcommand (`rbuild --root S images`): moved after it.
const GLOBAL_OPTIONS: &[&str] = &["--root"];

/// docker commands about long-lived containers, which rbuild does not have.
const CONTAINER_VERBS: &[&str] = &[
    "ps",
    "container",
    "exec",
    "start",
    "stop",
    "restart",
    "kill",
    "logs",
    "attach",
    "create",
    "rm",
    "top",
    "stats",
    "wait",
    "pause",
    "unpause",
    "cp",
    "commit",
    "port",
    "rename",
    "update",
    "diff",
    "export",
];

/// `rbuild -t x .` is `rbuild build -t x .`: `build` is inserted when the line names no
/// subcommand and starts with an option or a build context (a path, `-`, a URL); global
/// options before the subcommand move after it. Any other first word is an unknown
/// command: the error names it and what the user may have meant.
fn with_default_subcommand(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let mut globals = Vec::new();
    let mut k = 1;
    while let Some(word) = args.get(k).and_then(|a| a.to_str()) {
        if GLOBAL_OPTIONS.contains(&word) && args.len() > k + 1 {
            globals.extend_from_slice(&args[k..k + 2]);
            k += 2;
        } else if GLOBAL_OPTIONS
            .iter()
            .any(|g| word.starts_with(&format!("{g}=")))
        {
            globals.push(args[k].clone());
            k += 1;
        } else {
            break;
        }
    }
    let mut out = vec![args.first().cloned().unwrap_or_else(|| "rbuild".into())];
    let rest = &args[k.min(args.len())..];
    match rest.first().map(|w| w.to_string_lossy().into_owned()) {
        Some(word) if is_subcommand(&word) => {
            // After the innermost subcommand: `system df`, `image ls`, `store verify`
            // take `--root`, `system` alone does not.
            let depth = subcommand_depth(rest);
            out.extend_from_slice(&rest[..depth]);
            // `rbuild --root S help images` is help, which takes no store.
            if !matches!(word.as_str(), "help" | "-h" | "--help" | "-V" | "--version") {
                out.extend(globals);
            }
            out.extend_from_slice(&rest[depth..]);
        }
        Some(word) if word.starts_with('-') || names_a_context(&word) => {
            out.push("build".into());
            out.extend(globals);
            out.extend_from_slice(rest);
        }
        Some(word) => return Err(unknown_command(&word)),
        None if globals.is_empty() => {}
        None => {
            out.push("build".into());
            out.extend(globals);
        }
    }
    Ok(out)
}

/// How many of `words` (the first naming a subcommand) name a subcommand and its nested
/// subcommands (`image ls` is 2, `images -q` is 1).
fn subcommand_depth(words: &[OsString]) -> usize {
    use clap::CommandFactory;
    let mut command = Cli::command();
    let mut depth = 0;
    while let Some(word) = words.get(depth).and_then(|w| w.to_str()) {
        let Some(sub) = command
            .get_subcommands()
            .find(|c| c.get_name() == word || c.get_all_aliases().any(|a| a == word))
            .cloned()
        else {
            break;
        };
        command = sub;
        depth += 1;
    }
    depth.max(1)
}

/// Whether a first word that is no subcommand is a build context: `-`, a path that
/// exists or looks like one, or a URL.
fn names_a_context(word: &str) -> bool {
    word == "-"
        || word.contains('/')
        || word.starts_with('.')
        || word.contains("://")
        || std::path::Path::new(word).exists()
}

/// The error for an unknown first word, with what the user may have meant.
fn unknown_command(word: &str) -> String {
    use clap::CommandFactory;
    let mut message = format!(
        "unknown command {:?} for \"rbuild\"",
        escape::printable(word)
    );
    if CONTAINER_VERBS.contains(&word) {
        message.push_str(
            "\nrbuild keeps no containers: `rbuild run IMAGE [COMMAND]` runs one that is \
             removed when its command ends; images are listed with `rbuild images`",
        );
    }
    let names: Vec<String> = Cli::command()
        .get_subcommands()
        .flat_map(|c| {
            std::iter::once(c.get_name().to_owned()).chain(c.get_all_aliases().map(str::to_owned))
        })
        .collect();
    let mut close: Vec<(f64, &String)> = names
        .iter()
        .map(|n| (strsim::jaro_winkler(word, n), n))
        .filter(|(score, _)| *score > 0.8)
        .collect();
    close.sort_by(|a, b| b.0.total_cmp(&a.0));
    if let Some((_, best)) = close.first().filter(|_| !CONTAINER_VERBS.contains(&word)) {
        message.push_str(&format!("\n\nDid you mean this?\n\t{best}"));
    }
    message.push_str(
        "\n\nA build is `rbuild build [OPTIONS] CONTEXT` (or `rbuild -t NAME .`); \
         run `rbuild --help` for every command",
    );
    message
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
    // The command of an ssh-agent a build started (see build_ssh::lifeline).
    if std::env::var_os(cmd::build_ssh::LIFELINE_ENV).is_some() {
        return cmd::build_ssh::lifeline();
    }
    restore_sigpipe();
    let args = match with_default_subcommand(std::env::args_os().collect()) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            let code = if err.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    if let Err(message) = limits::http_deadline() {
        eprintln!("error: {message}");
        return ExitCode::from(EXIT_USAGE);
    }
    // Still one thread: as an unprivileged user, become root of a user namespace of our
    // own (see rbuild_core::rootless), so that mounts for COPY, RUN and `run` work.
    if cli.command.needs_user_namespace() {
        match rbuild_core::rootless::enter_user_namespace() {
            Ok(_) => {}
            // Denied (a container whose seccomp profile forbids namespaces, as a pod's
            // does, or a host that turned them off): carry on as the caller, as with
            // RBUILD_SKIP_USERNS=1; what then needs root says so when it comes.
            Err(err @ rbuild_core::rootless::RootlessError::Unshare { .. }) => {
                eprintln!(
                    "notice: {}; carrying on without one",
                    escape::printable(&format!("{err}"))
                );
            }
            Err(err) => {
                eprintln!("error: {}", escape::printable(&format!("{err:#}")));
                return ExitCode::from(EXIT_FAILURE);
            }
        }
    }
    let result = match cli.command {
        Command::Build(args) => cmd::build::run(*args),
        Command::Version => cmd::version::run(),
        Command::Debug(args) => cmd::debug::run(args),
        Command::Graph(args) => cmd::graph::run(args),
        // storage: image commands
        Command::Images(args) => cmd::images::run(args),
        Command::Image(args) => cmd::image::run(args),
        Command::History(args) => cmd::history::run(args),
        Command::Tag(args) => cmd::tag::run(args),
        Command::Rmi(args) => cmd::rmi::run(args),
        Command::Inspect(args) => cmd::inspect::run(args),
        Command::Save(args) => cmd::save::run(args),
        Command::Load(args) => cmd::load::run(args),
        Command::Import(args) => cmd::import::run(args),
        Command::Prune(args) => cmd::prune::run(args),
        Command::Store(args) => cmd::store::run(args),
        Command::System(args) => cmd::system::run(args),
        Command::Builder(args) => cmd::system::run_builder(args),
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
