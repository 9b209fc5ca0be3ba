//! `rbuild rmi IMAGE...`: remove image names (blobs go with `rbuild prune`).

use std::process::ExitCode;

use super::store::StoreArgs;

/// `rbuild rmi`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbuild rmi myapp:old
  rbuild rmi myapp:1.0 myapp:1.1")]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    /// Images to remove, by name or image id
    #[arg(required = true)]
    images: Vec<String>,
}

/// Runs `rbuild rmi`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store = args.store.open()?;
    let mut code = ExitCode::SUCCESS;
    for reference in &args.images {
        let result = store.resolve(reference).and_then(|found| {
            store.untag(&found.name)?;
            Ok(found)
        });
        match result {
            Ok(found) => println!("Untagged: {}", found.name.familiar()),
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
