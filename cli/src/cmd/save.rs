//! `rbuild save -o x.tar IMAGE...`: write images to an archive.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use rbuild_core::export::Saved;
use rbuild_core::image::ImageFormat;

use super::pull::TransferProgressArgs;
use super::store::StoreArgs;
use crate::progress::{ProgressMode, Reporter};

/// `rbuild save`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbuild save -o myapp.tar myapp:latest
  rbuild save --format oci -o myapp-oci.tar myapp:latest myapp:debug
  rbuild save --platform linux/arm64 myapp:latest | docker load")]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    progress: TransferProgressArgs,
    /// The archive to write; `-` or none: standard output (never a terminal)
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// `docker` (docker load-able, with the OCI layout inside) or `oci` (OCI layout)
    #[arg(long, default_value = "docker")]
    format: ImageFormat,
    /// Save only this platform's image of each image (`OS/ARCH[/VARIANT]`); without it an
    /// image of several platforms is saved whole, its index and every platform's image
    #[arg(long, value_name = "PLATFORM", value_parser = super::platform_arg::platform_arg)]
    platform: Option<rbuild_dockerfile::Platform>,
    /// Images, by name or image id
    #[arg(required = true)]
    images: Vec<String>,
}

/// Runs `rbuild save`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = args.store.open()?;
    let mut images = Vec::new();
    for reference in &args.images {
        let (found, saved) = match &args.platform {
            Some(platform) => {
                let (found, image) = super::platform_arg::image_for(&store, reference, platform)?;
                (found, Saved::Image(image))
            }
            None => {
                let found = store
                    .resolve(reference)
                    .with_context(|| format!("finding image {reference}"))?;
                let saved = Saved::load(&store, &found.descriptor)
                    .with_context(|| format!("reading image {reference}"))?;
                (found, saved)
            }
        };
        // An image asked for by id is saved without a name, as docker does.
        let by_name = reference.parse::<rbuild_core::ImageName>().ok() == Some(found.name.clone());
        let names = if by_name {
            vec![found.name]
        } else {
            Vec::new()
        };
        images.push((saved, names));
    }
    let output = args
        .output
        .unwrap_or_else(|| PathBuf::from(rbuild_core::export::DEST_STDOUT));
    if output == Path::new(rbuild_core::export::DEST_STDOUT) && std::io::stdout().is_terminal() {
        anyhow::bail!(
            "refusing to write an image archive to a terminal: give -o FILE, or redirect \
             standard output (rbuild save IMAGE > image.tar, rbuild save IMAGE | docker load)"
        );
    }
    if args.format == ImageFormat::Docker {
        if let Some(warning) = rbuild_core::export::zstd_docker_archive_warning(
            images.iter().flat_map(|(s, _)| s.images()),
        ) {
            eprintln!("warning: {warning}");
        }
    }
    // docker save prints nothing; so does rbuild save unless progress can be drawn on a
    // terminal or was asked for.
    let mode = match args.progress.mode() {
        ProgressMode::Plain if args.progress.progress == ProgressMode::Auto => ProgressMode::Quiet,
        mode => mode,
    };
    let reporter = Reporter::for_transfers(mode);
    let saved = rbuild_core::export::save_images(&store, &output, &images, args.format, &reporter);
    reporter.end();
    saved.with_context(|| {
        if output == Path::new(rbuild_core::export::DEST_STDOUT) {
            "saving to standard output".to_owned()
        } else {
            format!("saving to {}", output.display())
        }
    })?;
    Ok(ExitCode::SUCCESS)
}
