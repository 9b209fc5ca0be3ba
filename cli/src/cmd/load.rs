//! `rbuild load -i x.tar`: load an OCI layout tar or a docker archive.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::store::StoreArgs;

/// `rbuild load`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbuild load -i myapp.tar
  rbuild load -i alpine-rootfs-image.tar.zst")]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    /// The archive to read (may be gzip or zstd compressed)
    #[arg(short, long)]
    input: PathBuf,
}

/// Runs `rbuild load`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = args.store.open()?;
    let loaded = rbuild_core::load_archive(&store, &args.input)
        .with_context(|| format!("loading {}", args.input.display()))?;
    for (image, names) in loaded {
        if names.is_empty() {
            println!("Loaded image ID: {}", image.config_digest);
        }
        for name in names {
            println!("Loaded image: {}", name.familiar());
        }
    }
    Ok(ExitCode::SUCCESS)
}
