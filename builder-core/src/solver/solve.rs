//! A build as its phases, each a function of the one before: [`prepare`] (read, lower,
//! resolve the bases, insert the triggers, list the context) -> [`solve`] (run the
//! stages by step dependencies into a [`Solved`]) -> [`assemble`] (the target's image)
//! -> [`output`] (names, exports, the shared cache, pushes), with the [`Runtime`] as the
//! machinery all but the first use.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use super::assemble::assemble;
use super::error::BuildError;
use super::output::output;
use super::prepare::{Prepared, prepare};
use super::report::Reporter;
use super::request::{BuildRequest, BuildResult, StepReport};
use super::runtime::Backends;
use super::runtime::Runtime;
use super::shared::Shared;
use super::state::StageState;
use crate::limits::Limits;
use crate::progress::{Event, Progress};
use crate::store::ContentStore;

/// Builds `request` into `store`, reporting to `progress`.
pub(crate) fn build(
    store: &ContentStore,
    backends: &Backends,
    request: &BuildRequest,
    progress: &dyn Progress,
) -> Result<BuildResult, BuildError> {
    let reporter = Reporter::new(progress);
    let result = build_inner(store, backends, request, &reporter);
    if let Err(err) = &result {
        // A failed step's output tail was shown with the step: not again here.
        let message = match err {
            BuildError::StepFailed {
                location,
                name,
                message,
                ..
            } => format!("{location}: {name}: {message}"),
            err => err.render(),
        };
        reporter.build_failed(format!("failed to solve: {message}"));
    }
    result
}

fn build_inner(
    store: &ContentStore,
    backends: &Backends,
    request: &BuildRequest,
    reporter: &Reporter<'_>,
) -> Result<BuildResult, BuildError> {
    // Every registry request of the build (bases, caches, pushes) within the builder's
    // deadline.
    let mut request = request.clone();
    request.options.registry = request
        .options
        .registry
        .clone()
        .with_deadline(backends.http_deadline);
    let request = &request;
    let prepared = prepare(store, &request.spec, &request.options, reporter)?;
    let runtime = Runtime::open(
        store,
        backends,
        &request.spec,
        &request.options,
        &prepared,
        reporter,
    )?;
    // Sent where the build always sent them: after the machinery is open, before the
    // first stage runs.
    for warning in &prepared.warnings {
        reporter.event(warning);
    }
    for message in &runtime.import_warnings {
        reporter.event(&Event::Warning {
            rule: None,
            message: message.clone(),
            line: None,
        });
    }

    let limits = Limits::default()
        .with_archive(store.archive_limits())
        .with_http_deadline(backends.http_deadline);
    let solved = solve(request, &prepared, &runtime, limits)?;
    let target = solved.target;
    let assembled = assemble(&request.spec, &prepared, &runtime, target)?;
    let output = output(&prepared, &runtime, &request.options, &assembled)?;
    let image = assembled.image;
    let duration = reporter.build_finished(
        image.config_digest.to_string(),
        request
            .options
            .tags
            .iter()
            .map(ToString::to_string)
            .collect(),
    );
    // Scratch space goes now; a failure to remove it does not fail the build.
    runtime.close();
    Ok(BuildResult {
        image_id: image.config_digest.clone(),
        image,
        names: output.names,
        steps: solved.steps,
        duration,
        pushed: output.pushed,
    })
}

/// The stages run: the target stage's final state and the report of every step that
/// touched files, in the order they ended.
pub(crate) struct Solved {
    pub target: StageState,
    pub steps: Vec<StepReport>,
}

/// Runs the prepared graph's stages, each step as soon as the stages it reads have ended
/// (see [`schedule`](super::schedule)); the first failure cancels the rest and is the
/// error.
fn solve(
    request: &BuildRequest,
    prepared: &Prepared,
    runtime: &Runtime<'_>,
    limits: Limits,
) -> Result<Solved, BuildError> {
    let shared = Shared {
        runtime,
        request,
        prepared,
        limits,
        states: Mutex::new(HashMap::new()),
        reports: Mutex::new(Vec::new()),
    };
    super::schedule::run_stages(&shared)?;
    let target = shared
        .states
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&prepared.graph.target)
        .ok_or(BuildError::Canceled)?;
    let steps = shared
        .reports
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    Ok(Solved { target, steps })
}
