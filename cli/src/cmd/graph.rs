//! `rbuild graph`: print the build graph a Dockerfile lowers to.
//!
//! `rbuild graph [-f FILE] [--target T] [--build-arg K=V]... [--format text|dot|json]`
//! parses the Dockerfile, resolves build arguments and stage references as `build`
//! would, and prints the stages the target needs with their steps: as text, as
//! Graphviz DOT (`| dot -Tsvg > graph.svg`), or as JSON. Errors are printed with their
//! source line and exit with 1.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use rbuild_dockerfile::{Environment, LowerOptions};

/// Output formats of `rbuild graph`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// A readable listing.
    Text,
    /// Graphviz DOT, one cluster per stage.
    Dot,
    /// The whole graph as JSON.
    Json,
}

/// Arguments of `rbuild graph`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbuild graph
  rbuild graph -f docker/Dockerfile --target runtime --build-arg VERSION=1.4
  rbuild graph --format dot | dot -Tsvg > graph.svg")]
pub struct GraphArgs {
    /// The Dockerfile to read; `-` reads standard input.
    #[arg(short = 'f', long = "file", default_value = "Dockerfile")]
    file: PathBuf,
    /// The stage to build (default: the last one).
    #[arg(long)]
    target: Option<String>,
    /// A build argument, `NAME=VALUE`, or `NAME` to take the value from the environment.
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    build_args: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// Runs `rbuild graph`.
pub fn run(args: GraphArgs) -> anyhow::Result<ExitCode> {
    let source = if args.file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading Dockerfile from standard input")?;
        text
    } else {
        std::fs::read_to_string(&args.file)
            .with_context(|| format!("reading {}", args.file.display()))?
    };
    let file_name = args.file.display().to_string();
    let mut build_args = Environment::new();
    for arg in &args.build_args {
        match arg.split_once('=') {
            Some((name, value)) => build_args.set(name, value),
            // As docker: a bare name takes its value from the environment, if set.
            None => {
                if let Ok(value) = std::env::var(arg) {
                    build_args.set(arg.as_str(), value);
                }
            }
        }
    }
    let options = LowerOptions {
        target: args.target,
        build_args,
        ..LowerOptions::default()
    };
    let dockerfile = match rbuild_dockerfile::parse(&source) {
        Ok(dockerfile) => dockerfile,
        Err(err) => {
            eprint!("{}", err.render(&file_name, &source));
            return Ok(ExitCode::FAILURE);
        }
    };
    let graph = match rbuild_dockerfile::lower(&dockerfile, &options) {
        Ok(graph) => graph,
        Err(err) => {
            eprint!("{}", err.render(&file_name, &source));
            return Ok(ExitCode::FAILURE);
        }
    };
    match args.format {
        Format::Text => print!("{}", graph.to_text()),
        Format::Dot => print!("{}", graph.to_dot()),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&graph).context("serializing the build graph")?
        ),
    }
    Ok(ExitCode::SUCCESS)
}
