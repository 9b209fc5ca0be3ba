//! `rbuild system df|prune` and `rbuild builder prune`: docker's names for the store's
//! disk use and its clean-up.

use std::process::ExitCode;

use anyhow::Context;

use std::collections::{BTreeMap, BTreeSet};

use rbuild_core::{ContentStore, image::load_image};

use super::images::{content_size, human_size, layer_size};
use super::prune;
use super::store::StoreArgs;
use crate::template::align;

/// `rbuild system`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbuild system df
  rbuild system prune --all")]
pub struct Args {
    #[command(subcommand)]
    command: SystemCommand,
}

#[derive(Debug, clap::Subcommand)]
enum SystemCommand {
    /// Show what the store holds: images, build cache, unpacked layers, cache mounts.
    #[command(
        long_about = "Show what the store holds, as `docker system df` does. Images: SIZE is \
the content of the named images unpacked (uncompressed layers and configs), each layer counted \
once however many images share it; `rbuild images` shows the same measure per image, shared \
layers counted in each, so the row is at most the sum of that column (with -v: SIZE, SHARED \
SIZE and UNIQUE SIZE per image). Build Cache: the blobs no named image references and the \
cache's records, as stored (compressed). Unpacked Layers: the layers unpacked on disk for \
builds and runs. Cache Mounts: RUN --mount=type=cache directories.",
        after_help = "Examples:
  rbuild system df
  rbuild system df -v
  rbuild system df --format json"
    )]
    Df {
        #[command(flatten)]
        store: StoreArgs,
        /// `table` or `json` (one object a line)
        #[arg(long, default_value = "table")]
        format: String,
        /// Also list each image with its size, the part it shares with other images and
        /// the part only it has
        #[arg(short = 'v', long)]
        verbose: bool,
    },
    /// Remove what no named image needs (the same as `rbuild prune`).
    #[command(
        after_help = "Examples:\n  rbuild system prune\n  rbuild system prune --all --cache-mounts"
    )]
    Prune(prune::Args),
}

/// `rbuild builder`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbuild builder prune
  rbuild builder prune --all --cache-mounts")]
pub struct BuilderArgs {
    #[command(subcommand)]
    command: BuilderCommand,
}

#[derive(Debug, clap::Subcommand)]
enum BuilderCommand {
    /// Remove the build cache: blobs no named image needs and the cache's records (the
    /// same as `rbuild prune`).
    #[command(
        after_help = "Examples:\n  rbuild builder prune\n  rbuild builder prune --cache-mounts"
    )]
    Prune(prune::Args),
}

/// Runs `rbuild system`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        SystemCommand::Df {
            store,
            format,
            verbose,
        } => df(&store, &format, verbose),
        SystemCommand::Prune(args) => prune::run(args),
    }
}

/// Runs `rbuild builder`.
pub fn run_builder(args: BuilderArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        BuilderCommand::Prune(args) => prune::run(args),
    }
}

/// One named image's sizes for `system df -v`, docker's columns.
struct ImageUsage {
    repository: String,
    tag: String,
    id: String,
    size: u64,
    shared: u64,
}

/// The content size of the named images with each layer and config counted once (the
/// Images row), and each image's own sizes: `images`'s SIZE, and the part of it in
/// layers another image (by image ID) also has.
fn image_usage(store: &ContentStore) -> anyhow::Result<(u64, Vec<ImageUsage>)> {
    let mut rows = Vec::new();
    // Blob digest -> (its unpacked size, the image IDs holding it).
    let mut blobs: BTreeMap<String, (u64, BTreeSet<String>)> = BTreeMap::new();
    let mut parts_of = Vec::new();
    for named in store.images().context("reading index.json")? {
        let image = load_image(store, &named.descriptor)
            .with_context(|| format!("reading image {}", named.name))?;
        let id = store.image_id(&named)?.to_string();
        let config = image.manifest.config();
        let mut own = vec![(config.digest().to_string(), config.size())];
        for layer in image.manifest.layers() {
            own.push((layer.digest().to_string(), layer_size(store, layer)));
        }
        for (digest, size) in &own {
            blobs
                .entry(digest.clone())
                .or_insert_with(|| (*size, BTreeSet::new()))
                .1
                .insert(id.clone());
        }
        rows.push(ImageUsage {
            repository: named.name.familiar_repository(),
            tag: named.name.tag().unwrap_or("<none>").to_owned(),
            id,
            size: content_size(store, &image),
            shared: 0,
        });
        parts_of.push(own);
    }
    for (row, own) in rows.iter_mut().zip(&parts_of) {
        row.shared = own
            .iter()
            .filter(|(digest, _)| blobs.get(digest).is_some_and(|(_, ids)| ids.len() > 1))
            .map(|(_, size)| size)
            .sum();
    }
    let total = blobs.values().map(|(size, _)| size).sum();
    Ok((total, rows))
}

fn df(store: &StoreArgs, format: &str, verbose: bool) -> anyhow::Result<ExitCode> {
    let store = store.open()?;
    let mut usage = rbuild_core::image::disk_usage(&store).context("measuring the store")?;
    let (images_bytes, per_image) = image_usage(&store)?;
    usage.images.bytes = images_bytes;
    let rows = [
        ("Images", &usage.images),
        ("Build Cache", &usage.build_cache),
        ("Unpacked Layers", &usage.unpacked_layers),
        ("Cache Mounts", &usage.cache_mounts),
    ];
    let percent = |part: u64, whole: u64| {
        (part * 100)
            .checked_div(whole)
            .map_or_else(String::new, |p| format!(" ({p}%)"))
    };
    match format {
        "json" => {
            for (kind, u) in rows {
                let obj = serde_json::json!({
                    "Type": kind,
                    "TotalCount": u.total,
                    "Active": u.active,
                    "Size": human_size(u.bytes),
                    "Reclaimable": format!("{}{}", human_size(u.reclaimable), percent(u.reclaimable, u.bytes)),
                    "Bytes": u.bytes,
                    "ReclaimableBytes": u.reclaimable,
                });
                println!("{obj}");
            }
            if verbose {
                for row in &per_image {
                    let obj = serde_json::json!({
                        "Type": "Image",
                        "Repository": row.repository,
                        "Tag": row.tag,
                        "ID": row.id,
                        "Size": human_size(row.size),
                        "SharedSize": human_size(row.shared),
                        "UniqueSize": human_size(row.size.saturating_sub(row.shared)),
                        "Bytes": row.size,
                        "SharedBytes": row.shared,
                    });
                    println!("{obj}");
                }
            }
        }
        "table" => {
            let mut lines = vec!["TYPE\tTOTAL\tACTIVE\tSIZE\tRECLAIMABLE".to_owned()];
            for (kind, u) in rows {
                lines.push(format!(
                    "{kind}\t{}\t{}\t{}\t{}{}",
                    u.total,
                    u.active,
                    human_size(u.bytes),
                    human_size(u.reclaimable),
                    percent(u.reclaimable, u.bytes)
                ));
            }
            for line in align(&lines) {
                println!("{line}");
            }
            if verbose {
                println!("\nImages space usage:\n");
                let mut lines =
                    vec!["REPOSITORY\tTAG\tIMAGE ID\tSIZE\tSHARED SIZE\tUNIQUE SIZE".to_owned()];
                for row in &per_image {
                    let short = row.id.trim_start_matches("sha256:");
                    lines.push(format!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        row.repository,
                        row.tag,
                        short.get(..12).unwrap_or(short),
                        human_size(row.size),
                        human_size(row.shared),
                        human_size(row.size.saturating_sub(row.shared)),
                    ));
                }
                for line in align(&lines) {
                    println!("{line}");
                }
            }
        }
        other => anyhow::bail!("unknown format {other:?}: expected table or json"),
    }
    Ok(ExitCode::SUCCESS)
}
