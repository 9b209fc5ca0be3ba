//! `rbuild load -i x.tar`: load an OCI layout tar or a docker archive.

use std::fs::File;
use std::io::IsTerminal as _;
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::store::StoreArgs;

/// `rbuild load`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbuild load -i myapp.tar
  rbuild load -i alpine-rootfs-image.tar.zst
  docker save alpine:3.20 | rbuild load")]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    /// The archive to read (may be gzip or zstd compressed); `-` or none: standard input
    #[arg(short, long)]
    input: Option<PathBuf>,
}

/// Runs `rbuild load`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = args.store.open()?;
    let from_stdin = args.input.as_deref().is_none_or(|p| p == Path::new("-"));
    let (loaded, label) = if from_stdin {
        if args.input.is_none() && std::io::stdin().is_terminal() {
            anyhow::bail!(
                "no archive to load: give -i FILE, or pipe one in (docker save IMAGE | rbuild load)"
            );
        }
        let stdin = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .context("reading standard input")?;
        let label = PathBuf::from("standard input");
        let loaded = rbuild_core::export::load_archive_from(&store, File::from(stdin), &label)
            .context("loading the archive on standard input")?;
        (loaded, label)
    } else {
        let input = args.input.clone().unwrap_or_default();
        let loaded = rbuild_core::export::load_archive(&store, &input)
            .with_context(|| format!("loading {}", input.display()))?;
        (loaded, input)
    };
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
            label.display(),
            unnamed.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}
