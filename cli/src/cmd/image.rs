//! `rbuild image VERB`: docker's `docker image ...` names for the image commands.

use std::process::ExitCode;

use super::{build, history, images, import, inspect, load, prune, pull, push, rmi, save, tag};

/// `rbuild image`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbuild image ls
  rbuild image rm myapp:old
  rbuild image history myapp:latest")]
pub struct Args {
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ImageCommand {
    /// List images (`rbuild images`).
    #[command(alias = "list")]
    #[command(after_help = "Examples:\n  rbuild image ls
  rbuild image ls -q busybox")]
    Ls(images::Args),
    /// Remove image names (`rbuild rmi`).
    #[command(alias = "remove")]
    #[command(after_help = "Examples:\n  rbuild image rm myapp:old")]
    Rm(rmi::Args),
    /// Show images as JSON (`rbuild inspect`).
    #[command(after_help = "Examples:\n  rbuild image inspect myapp:latest")]
    Inspect(inspect::Args),
    /// Show the steps that made an image (`rbuild history`).
    #[command(after_help = "Examples:\n  rbuild image history myapp:latest")]
    History(history::Args),
    /// Remove what no named image needs (`rbuild prune`).
    #[command(after_help = "Examples:\n  rbuild image prune")]
    Prune(prune::Args),
    /// Save images to an archive (`rbuild save`).
    #[command(after_help = "Examples:\n  rbuild image save -o myapp.tar myapp:latest")]
    Save(save::Args),
    /// Load images from an archive (`rbuild load`).
    #[command(after_help = "Examples:\n  rbuild image load -i myapp.tar")]
    Load(load::Args),
    /// Give an image another name (`rbuild tag`).
    #[command(after_help = "Examples:\n  rbuild image tag myapp:latest myapp:1.0")]
    Tag(tag::Args),
    /// Download an image (`rbuild pull`).
    #[command(after_help = "Examples:\n  rbuild image pull alpine:3.20")]
    Pull(pull::Args),
    /// Upload an image (`rbuild push`).
    #[command(after_help = "Examples:\n  rbuild image push localhost:5000/myapp:1.0")]
    Push(push::Args),
    /// Create an image from a rootfs tarball (`rbuild import`).
    #[command(after_help = "Examples:\n  rbuild image import rootfs.tar myapp:base")]
    Import(import::Args),
    /// Build an image (`rbuild build`).
    #[command(after_help = "Examples:\n  rbuild image build -t myapp .")]
    Build(Box<build::Args>),
}

/// Runs `rbuild image`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        ImageCommand::Ls(args) => images::run(args),
        ImageCommand::Rm(args) => rmi::run(args),
        ImageCommand::Inspect(args) => inspect::run(args),
        ImageCommand::History(args) => history::run(args),
        ImageCommand::Prune(args) => prune::run(args),
        ImageCommand::Save(args) => save::run(args),
        ImageCommand::Load(args) => load::run(args),
        ImageCommand::Tag(args) => tag::run(args),
        ImageCommand::Pull(args) => pull::run(args),
        ImageCommand::Push(args) => push::run(args),
        ImageCommand::Import(args) => import::run(args),
        ImageCommand::Build(args) => build::run(*args),
    }
}
