//! `embed DOCKERFILE [CONTEXT] [STORE]`: builds DOCKERFILE with rbuild's [`Builder`] in
//! a program of its own, printing every progress event as one line on standard output.
//! CONTEXT defaults to the Dockerfile's directory, STORE to rbuild's default store.
//!
//! This is the whole embedding: open a store, describe the build in a [`BuildRequest`],
//! and give [`Builder::build`] a [`Progress`] sink. No terminal code comes along.

use std::path::PathBuf;
use std::process::ExitCode;

use rbuild_core::{
    BuildRequest, Builder, ContentStore, ContextSource, DockerfileInput, Event, Progress,
    default_root,
};

/// Prints each event as it arrives; steps may run on several threads at once.
struct PrintEvents;

impl Progress for PrintEvents {
    fn event(&self, event: &Event) {
        let line = match event {
            Event::StepStarted { step, name, .. } => format!("{step} start {name}"),
            Event::StepLog { step, text, .. } => format!("{step} | {text}"),
            Event::StepCached { step, .. } => format!("{step} cached"),
            Event::StepFinished { step, duration, .. } => format!("{step} done {duration:.1?}"),
            Event::StepFailed { step, message, .. } => format!("{step} failed: {message}"),
            Event::BuildFinished { image_id, .. } => format!("built {image_id}"),
            // Build start, warnings, failure and later additions: their debug form.
            other => format!("{other:?}"),
        };
        println!("{line}");
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1).map(PathBuf::from);
    let Some(dockerfile) = args.next() else {
        eprintln!("usage: embed DOCKERFILE [CONTEXT] [STORE]");
        return ExitCode::from(2);
    };
    let context = args.next().unwrap_or_else(|| match dockerfile.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    });
    let root = args.next().unwrap_or_else(default_root);
    let store = match ContentStore::open(&root) {
        Ok(store) => store,
        Err(e) => {
            eprintln!("embed: opening store {}: {e}", root.display());
            return ExitCode::FAILURE;
        }
    };
    let request = BuildRequest::new(
        DockerfileInput::Path(dockerfile),
        ContextSource::Directory(context),
    );
    match Builder::new(store).build(&request, &PrintEvents) {
        Ok(result) => {
            println!("image {} in {:.1?}", result.image_id, result.duration);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("embed: build failed: {e}");
            ExitCode::FAILURE
        }
    }
}
