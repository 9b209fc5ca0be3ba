//! `rbuild rmi IMAGE...`: remove image names (blobs go with `rbuild prune`).

use std::process::ExitCode;

use rbuild_core::{ContentStore, ImageName, store::StoreError};

use super::store::StoreArgs;

/// `rbuild rmi`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbuild rmi myapp:old
  rbuild rmi myapp:1.0 myapp:1.1
  rbuild rmi 3f2a9c1e        (an image ID: every name of that image, as docker does)")]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    /// Images to remove, by name or image id
    #[arg(required = true)]
    images: Vec<String>,
    /// Remove every name of an image given by ID even when it has several
    #[arg(short, long)]
    force: bool,
}

/// Runs `rbuild rmi`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = args.store.open()?;
    let mut code = ExitCode::SUCCESS;
    for reference in &args.images {
        let result = names_to_remove(&store, reference, args.force).and_then(|names| {
            for name in &names {
                store.untag(name)?;
            }
            Ok(names)
        });
        match result {
            Ok(names) => {
                for name in names {
                    println!("Untagged: {}", name.familiar());
                }
            }
            Err(e) => {
                eprintln!(
                    "error: {:#}",
                    anyhow::Error::new(e).context(format!("removing image {reference}"))
                );
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}

/// The names `rbuild rmi REFERENCE` removes: the name itself, or, for an image ID, every
/// name of that image (several only with `--force`, as docker refuses otherwise).
fn names_to_remove(
    store: &ContentStore,
    reference: &str,
    force: bool,
) -> Result<Vec<ImageName>, StoreError> {
    let found = store.resolve(reference)?;
    if reference.parse::<ImageName>().ok().as_ref() == Some(&found.name) {
        return Ok(vec![found.name]);
    }
    let id = store.image_id(&found)?;
    let mut names = Vec::new();
    for image in store.images()? {
        if store.image_id(&image)? == id {
            names.push(image.name);
        }
    }
    if names.len() > 1 && !force {
        return Err(StoreError::Conflict(format!(
            "image {reference} has {} names ({}); remove them by name, or use --force",
            names.len(),
            names
                .iter()
                .map(ImageName::familiar)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(names)
}
