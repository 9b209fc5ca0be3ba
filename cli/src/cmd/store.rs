//! `rbuild store verify`, and the `--root` option every image command shares.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use rbuild_core::ContentStore;

/// Where the content store lives.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// Store root [default: /var/lib/rbuild as root, else $XDG_DATA_HOME/rbuild]
    #[arg(long, env = "RBUILD_ROOT", value_name = "DIR")]
    pub root: Option<PathBuf>,
}

impl StoreArgs {
    /// Opens (creating if needed) the store, unpacking archives within the limits of
    /// the environment (`RBUILD_ARCHIVE_*`).
    pub fn open(&self) -> anyhow::Result<ContentStore> {
        let limits = crate::limits::archive()?;
        let root = self
            .root
            .clone()
            .unwrap_or_else(rbuild_core::store::default_root);
        let store = ContentStore::open(&root)
            .with_context(|| format!("opening store {}", root.display()))?;
        Ok(store.with_archive_limits(limits))
    }
}

/// The image `reference` names (a name or an image ID) in `store`, with its index entry,
/// each failure saying which reference it was.
pub fn find_image(
    store: &ContentStore,
    reference: &str,
) -> anyhow::Result<(rbuild_core::store::NamedImage, rbuild_core::image::Image)> {
    let found = store
        .resolve(reference)
        .with_context(|| format!("finding image {reference}"))?;
    let image = rbuild_core::image::load_image(store, &found.descriptor)
        .with_context(|| format!("reading image {reference}"))?;
    Ok((found, image))
}

/// `rbuild store ...`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbuild store verify
  RBUILD_ROOT=/srv/rbuild rbuild store verify")]
pub struct Args {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, clap::Subcommand)]
enum StoreCommand {
    /// Re-hash every blob and check every image's references.
    #[command(after_help = "Examples:
  rbuild store verify
  rbuild store verify --deep --repair
  rbuild store verify --root /srv/rbuild")]
    Verify {
        #[command(flatten)]
        store: StoreArgs,
        /// Also compare each unpacked layer (<root>/layers/<chain_id>) with its blob,
        /// unpacking the blob again (slow: as long as unpacking every image)
        #[arg(long)]
        deep: bool,
        /// With --deep: remove each unpacked layer that differs from its blob (it is
        /// unpacked again from the verified blob when needed; waits for other users of
        /// the store to finish)
        #[arg(long, requires = "deep")]
        repair: bool,
    },
}

/// Runs `rbuild store`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        StoreCommand::Verify {
            store,
            deep,
            repair,
        } => {
            let store = store.open()?;
            let mut problems = rbuild_core::image::verify(&store).context("verifying the store")?;
            for p in &problems {
                eprintln!("{p}");
            }
            if deep {
                let check = rbuild_core::image::verify_layers(&store, repair)
                    .context("comparing unpacked layers with their blobs")?;
                for p in &check.problems {
                    eprintln!("{p}");
                }
                for diff_id in &check.removed {
                    eprintln!(
                        "removed unpacked layer {diff_id}: it is unpacked again from its blob when needed"
                    );
                }
                if !check.problems.is_empty() && !repair {
                    eprintln!(
                        "run `rbuild store verify --deep --repair` to remove the unpacked layers that differ"
                    );
                }
                println!(
                    "{} unpacked layer(s) compared with their blobs",
                    check.checked
                );
                if !repair {
                    problems.extend(check.problems);
                }
            }
            if problems.is_empty() {
                println!("store {} is consistent", store.root().display());
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("{} problem(s) found", problems.len());
                Ok(ExitCode::FAILURE)
            }
        }
    }
}
