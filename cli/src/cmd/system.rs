//! `rbuild system df|prune` and `rbuild builder prune`: docker's names for the store's
//! disk use and its clean-up.

use std::process::ExitCode;

use anyhow::Context;

use super::images::human_size;
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
    #[command(after_help = "Examples:
  rbuild system df
  rbuild system df --format json")]
    Df {
        #[command(flatten)]
        store: StoreArgs,
        /// `table` or `json` (one object a line)
        #[arg(long, default_value = "table")]
        format: String,
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
        SystemCommand::Df { store, format } => df(&store, &format),
        SystemCommand::Prune(args) => prune::run(args),
    }
}

/// Runs `rbuild builder`.
pub fn run_builder(args: BuilderArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        BuilderCommand::Prune(args) => prune::run(args),
    }
}

fn df(store: &StoreArgs, format: &str) -> anyhow::Result<ExitCode> {
    let store = store.open()?;
    let usage = rbuild_core::disk_usage(&store).context("measuring the store")?;
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
        }
        other => anyhow::bail!("unknown format {other:?}: expected table or json"),
    }
    Ok(ExitCode::SUCCESS)
}
