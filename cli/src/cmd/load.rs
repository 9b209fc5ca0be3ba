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
    // The store reaches images only by name: an image the archive gives no full name
    // (none, or a bare tag such as skopeo's `oci-archive:F:v1` writes) would be stored
    // where nothing finds it, and pruned. Say so rather than report a load.
    let mut unnamed = Vec::new();
    for (image, names) in &loaded {
        if names.is_empty() {
            unnamed.push(image.digest().map(|d| d.to_string()).unwrap_or_default());
        }
        for name in names {
            println!("Loaded image: {}", name.familiar());
        }
    }
    if !unnamed.is_empty() {
        anyhow::bail!(
            "loading {}: the archive gives image {} no full name (io.containerd.image.name, \
             a RepoTags entry, or an org.opencontainers.image.ref.name with a repository; \
             a bare tag such as \"v1\" names no repository), and the store keeps only named \
             images: write the archive with a full name (skopeo: oci-archive:FILE:registry/repo:tag)",
            args.input.display(),
            unnamed.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
