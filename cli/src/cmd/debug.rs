//! `rbuild debug`: look inside the front end.
//!
//! `rbuild debug ast [-f FILE]` prints the Dockerfile's syntax tree in BuildKit's AST
//! dump format (the format of BuildKit's parser test vectors), one line per
//! instruction. `rbuild debug instructions [-f FILE]` prints the typed stages as JSON.
//! A parse error is printed with its source line and exits with 1.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

/// Arguments of `rbuild debug`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbuild debug ast -f Dockerfile
  rbuild debug instructions | jq '.stages[0]'")]
pub struct DebugArgs {
    #[command(subcommand)]
    command: DebugCommand,
}

#[derive(Debug, clap::Subcommand)]
enum DebugCommand {
    /// Print the Dockerfile's syntax tree (BuildKit AST dump format).
    #[command(after_help = "Examples:
  rbuild debug ast
  rbuild debug ast -f docker/Dockerfile.dev
  echo 'FROM alpine' | rbuild debug ast -f -")]
    Ast {
        /// The Dockerfile to read; `-` reads standard input.
        #[arg(short = 'f', long = "file", default_value = "Dockerfile")]
        file: PathBuf,
    },
    /// Print the Dockerfile's typed instructions, grouped into stages, as JSON.
    #[command(after_help = "Examples:
  rbuild debug instructions
  rbuild debug instructions -f docker/Dockerfile | jq '.stages | length'")]
    Instructions {
        /// The Dockerfile to read; `-` reads standard input.
        #[arg(short = 'f', long = "file", default_value = "Dockerfile")]
        file: PathBuf,
    },
    /// Replay a recorded build's progress (`--progress rawjson` output) in any mode.
    #[command(hide = true)]
    ProgressReplay(crate::progress::replay::ReplayArgs),
}

/// Runs `rbuild debug ...`.
pub fn run(args: DebugArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DebugCommand::Ast { file } => ast(&file),
        DebugCommand::Instructions { file } => instructions(&file),
        DebugCommand::ProgressReplay(args) => crate::progress::replay::run(args),
    }
}

fn read_source(file: &PathBuf) -> anyhow::Result<String> {
    Ok(if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading Dockerfile from standard input")?;
        text
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    })
}

fn ast(file: &PathBuf) -> anyhow::Result<ExitCode> {
    let source = read_source(file)?;
    match rbuild_dockerfile::parse_syntax(&source) {
        Ok(tree) => {
            print!("{}", rbuild_dockerfile::dump(&tree));
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprint!("{}", err.render(&file.display().to_string(), &source));
            Ok(ExitCode::FAILURE)
        }
    }
}

fn instructions(file: &PathBuf) -> anyhow::Result<ExitCode> {
    let source = read_source(file)?;
    match rbuild_dockerfile::parse(&source) {
        Ok(dockerfile) => {
            let json = serde_json::to_string_pretty(&dockerfile)
                .context("serializing the instructions as JSON")?;
            println!("{json}");
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprint!("{}", err.render(&file.display().to_string(), &source));
            Ok(ExitCode::FAILURE)
        }
    }
}
