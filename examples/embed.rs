//! A small tool embedding rbuild's engine: builds the Dockerfile of a context directory,
//! prints each step as it starts and ends, and names the image.
//!
//! ```sh
//! cargo run -p rbuild-core --example embed -- examples/friendlyhello friendlyhello:embedded
//! ```
//!
//! The store is `$RBUILD_ROOT`, or rbuild's default (`/var/lib/rbuild` as root). Building
//! needs what `rbuild build` needs: root (or a user namespace) to mount and run steps.

use std::path::PathBuf;
use std::process::ExitCode;

use rbuild_core::{
    BuildError, BuildRequest, Builder, ContentStore, ContextSource, Digest, DockerfileInput, Event,
    ImageName, Progress, default_root,
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
    let root = std::env::var_os("RBUILD_ROOT").map_or_else(default_root, PathBuf::from);
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
            eprintln!("error: {}", rbuild_core::error_chain(&e));
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
    request.tags = tags;
    Ok(Builder::new(store).build(&request, progress)?.image_id)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::fs::File;
    use std::process::Command;

    use rbuild_core::{Collect, ImageConfig, ImageSpec, LayerOptions, import_rootfs, tag_image};

    use super::*;

    /// Runs in CI (`cargo test` runs this example's tests): the embedding builds a
    /// Dockerfile on the busybox fixture and reports its steps to its own sink.
    #[test]
    fn the_embedding_builds_an_image_and_sees_its_steps() {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test must run as root: builds mount overlays and run steps in namespaces"
        );
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/base-images/make");
        let made = Command::new(script).arg("busybox").output().unwrap();
        assert!(made.status.success(), "{made:?}");
        let tar = String::from_utf8(made.stdout).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path().join("store")).unwrap();
        let image = import_rootfs(
            &store,
            File::open(tar.trim()).unwrap(),
            &ImageSpec {
                config: ImageConfig::for_host(),
                ..ImageSpec::default()
            },
            &LayerOptions::default(),
        )
        .unwrap();
        tag_image(&store, &"busybox".parse().unwrap(), &image).unwrap();
        let context = dir.path().join("ctx");
        std::fs::create_dir_all(&context).unwrap();
        std::fs::write(
            context.join("Dockerfile"),
            "FROM busybox\nRUN echo embedded\n",
        )
        .unwrap();
        let events = Collect::new();
        let id = build(
            store.clone(),
            context,
            vec!["embedded:1".parse().unwrap()],
            &events,
        )
        .unwrap();
        assert!(id.to_string().starts_with("sha256:"));
        assert!(
            events
                .events()
                .iter()
                .any(|e| matches!(e, Event::StepLog { text, .. } if text == "embedded")),
            "the sink saw no output of the RUN step"
        );
        assert!(store.resolve("embedded:1").is_ok());
    }
}
