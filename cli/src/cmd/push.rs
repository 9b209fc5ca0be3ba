//! `rbuild push NAME [DEST]`: upload an image from the store to a registry.

use std::process::ExitCode;

use anyhow::Context;
use rbuild_core::{ImageName, registry::PushOptions};

use super::pull::{RegistryArgs, TransferProgressArgs};
use super::store::StoreArgs;
use crate::progress::Reporter;

/// `rbuild push`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbuild push registry.example.com/team/app:1.0
  rbuild push myapp:latest localhost:5000/myapp:latest
  rbuild push --progress plain localhost:5000/myapp:latest")]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    progress: TransferProgressArgs,
    /// The image in the store: a name or an image id
    name: String,
    /// Where to push it [default: NAME]
    dest: Option<String>,
}

/// Runs `rbuild push`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = args.store.open()?;
    let dest_text = args.dest.as_deref().unwrap_or(&args.name);
    let dest: ImageName = dest_text
        .parse()
        .with_context(|| format!("parsing destination {dest_text}"))?;
    // An image pulled from another repository of the same registry has its blobs there:
    // mount them instead of uploading.
    let mount_from = args
        .name
        .parse::<ImageName>()
        .ok()
        .filter(|src| src.registry() == dest.registry() && src.repository() != dest.repository())
        .map(|src| src.repository().to_owned());
    let client = args.registry.client(dest.registry())?;
    if args.progress.shows_text() {
        eprintln!("The push refers to repository [{}]", dest.full_repository());
    }
    let reporter = Reporter::for_transfers(args.progress.mode());
    let digest = rbuild_core::registry::push(
        &client,
        &store,
        &args.name,
        &dest,
        &PushOptions::default().with_mount_from(mount_from),
        &reporter,
    );
    reporter.end();
    let digest = digest.with_context(|| format!("pushing {} to {dest}", args.name))?;
    println!("{dest}: digest: {digest}");
    Ok(ExitCode::SUCCESS)
}
