//! `rbuild prune`: remove what no named image needs.

use std::process::ExitCode;

use anyhow::Context;

use super::images::human_size;
use super::store::StoreArgs;

/// `rbuild prune`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbuild prune
  rbuild prune --all
  rbuild prune --cache-mounts")]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    /// Also remove every unpacked layer (they are unpacked again when needed)
    #[arg(short, long)]
    all: bool,
    /// Also remove every RUN --mount=type=cache directory
    #[arg(long)]
    cache_mounts: bool,
    /// Accepted for docker's `prune -f` (rbuild never asks for confirmation)
    #[arg(short = 'f', long, hide = true)]
    force: bool,
}

/// Runs `rbuild prune`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = args.store.open()?;
    // Prune waits until it is the only process using the store: a running build's
    // blobs, layers and cache entries have no name yet.
    let _exclusive = match store.try_lock_exclusive()? {
        Some(guard) => guard,
        None => {
            eprintln!(
                "waiting for the other rbuild processes using {} to finish",
                store.root().display()
            );
            store.lock_exclusive()?
        }
    };
    let report = rbuild_core::image::prune(&store, args.all).context("pruning the store")?;
    if args.cache_mounts {
        let removed =
            rbuild_core::solver::prune_cache_mounts(&store).context("removing cache mounts")?;
        println!("deleted: {removed} cache mounts");
    }
    for blob in &report.blobs {
        println!("deleted: {blob}");
    }
    println!(
        "Total reclaimed space: {} ({} blobs, {} unpacked layers, {} build cache entries)",
        human_size(report.bytes),
        report.blobs.len(),
        report.layer_dirs,
        report.cache_entries
    );
    Ok(ExitCode::SUCCESS)
}
