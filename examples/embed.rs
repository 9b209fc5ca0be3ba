//! A small tool embedding rbuild's engine: builds the Dockerfile of a context directory,
//! prints each step as it starts and ends, and names the image.
//!
//! ```sh
//! RBUILD_ROOT=/tmp/store cargo run -p rbuild-core --example embed -- examples/friendlyhello friendlyhello:embedded
//! ```
//!
//! The store is the directory `$RBUILD_ROOT` names (`RBUILD_ROOT=/var/lib/rbuild` shares
//! the store of `rbuild` run as root). Building needs what `rbuild build` needs: root (or
//! a user namespace) to mount and run steps.
//!
//! It uses only the names at the root of `rbuild_core`.

use std::path::PathBuf;
use std::process::ExitCode;

use rbuild_core::{
    BuildError, BuildRequest, Builder, ContentStore, ContextSource, Digest, DockerfileInput, Event,
    ImageName, Progress,
};

/// Prints the events a person wants to see; a real tool might forward them elsewhere.
struct Lines;

impl Progress for Lines {
    fn event(&self, event: &Event) {
        match event {
            Event::StepStarted { step, name, .. } => eprintln!("{step} {name}"),
            Event::StepLog { step, text, .. } => eprintln!("{step}   {text}"),
            Event::StepCached { step, .. } => eprintln!("{step} cached"),
            Event::StepFinished { step, duration, .. } => {
                eprintln!("{step} done in {:.1}s", duration.as_secs_f64());
            }
            Event::StepFailed { step, message, .. } => eprintln!("{step} failed: {message}"),
            _ => {}
        }
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(context) = args.next().map(PathBuf::from) else {
        eprintln!("usage: embed CONTEXT [NAME[:TAG]]");
        return ExitCode::from(2);
    };
    let Some(root) = std::env::var_os("RBUILD_ROOT").map(PathBuf::from) else {
        eprintln!("error: set RBUILD_ROOT to the store's directory");
        return ExitCode::from(2);
    };
    let store = match ContentStore::open(&root) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("error: opening store {}: {e}", root.display());
            return ExitCode::FAILURE;
        }
    };
    let mut tags = Vec::new();
    if let Some(name) = args.next() {
        match name.parse() {
            Ok(name) => tags.push(name),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    }
    match build(store, context, tags, &Lines) {
        Ok(id) => {
            println!("{id}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {}", e.render());
            ExitCode::FAILURE
        }
    }
}

/// Builds `context/Dockerfile` into `store` under `tags`; returns the image ID.
fn build(
    store: ContentStore,
    context: PathBuf,
    tags: Vec<ImageName>,
    progress: &dyn Progress,
) -> Result<Digest, BuildError> {
    let mut request = BuildRequest::new(
        DockerfileInput::Path(context.join("Dockerfile")),
        ContextSource::Directory(context),
    );
    request.options.tags = tags;
    Ok(Builder::new(store).build(&request, progress)?.image_id)
}
