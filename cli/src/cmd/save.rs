//! `rbuild save -o x.tar IMAGE...`: write images to an archive.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use rbuild_core::{ImageFormat, load_image};

use super::store::StoreArgs;

/// `rbuild save`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbuild save -o myapp.tar myapp:latest
  rbuild save --format oci -o myapp-oci.tar myapp:latest myapp:debug")]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    /// The archive to write
    #[arg(short, long)]
    output: PathBuf,
    /// `docker` (docker load-able, with the OCI layout inside) or `oci` (OCI layout)
    #[arg(long, default_value = "docker")]
    format: ImageFormat,
    /// Images, by name or image id
    #[arg(required = true)]
    images: Vec<String>,
}

/// Runs `rbuild save`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = args.store.open()?;
    let mut images = Vec::new();
    for reference in &args.images {
        let found = store
            .resolve(reference)
            .with_context(|| format!("finding image {reference}"))?;
        let image = load_image(&store, &found.descriptor)
            .with_context(|| format!("reading image {reference}"))?;
        // An image asked for by id is saved without a name, as docker does.
        let by_name = reference.parse::<rbuild_core::ImageName>().ok() == Some(found.name.clone());
        let names = if by_name {
            vec![found.name]
        } else {
            Vec::new()
        };
        images.push((image, names));
    }
    rbuild_core::save_images(&store, &args.output, &images, args.format)
        .with_context(|| format!("saving to {}", args.output.display()))?;
    Ok(ExitCode::SUCCESS)
}
