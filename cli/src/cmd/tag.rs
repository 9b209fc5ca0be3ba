//! `rbuild tag SOURCE TARGET`: give an image another name.

use std::process::ExitCode;

use anyhow::Context;
use rbuild_core::ImageName;

use super::store::StoreArgs;

/// `rbuild tag`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbuild tag alpine:3.20 registry.example.com/base/alpine:3.20
  rbuild tag myapp:latest myapp:1.2.0")]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    /// The image: a name, or an image id
    source: String,
    /// The new name
    target: String,
}

/// Runs `rbuild tag`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = args.store.open()?;
    let found = store
        .resolve(&args.source)
        .with_context(|| format!("finding image {}", args.source))?;
    let name: ImageName = args.target.parse()?;
    let mut desc = found.descriptor.clone();
    desc.set_annotations(None);
    store
        .tag(&name, &desc)
        .with_context(|| format!("tagging {} as {name}", args.source))?;
    Ok(ExitCode::SUCCESS)
}
