//! The solver: parse, resolve base images, lower, run the stages by step dependencies, and
//! assemble the target.

use std::collections::HashMap;
use std::sync::Mutex;

use super::assemble::assemble;
use super::error::BuildError;
use super::output::output;
use super::prepare::prepare;
use super::report::Reporter;
use super::request::{BuildRequest, BuildResult};
use super::runtime::Backends;
use super::runtime::Runtime;
use super::shared::Shared;
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
    let shared = Shared {
        runtime: &runtime,
        request,
        prepared: &prepared,
        limits: Limits::default()
            .with_archive(store.archive_limits())
            .with_http_deadline(backends.http_deadline),
        states: Mutex::new(HashMap::new()),
        reports: Mutex::new(Vec::new()),
    };

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

    let graph = &prepared.graph;
    super::schedule::run_stages(&shared)?;

    let target = shared
        .states
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&graph.target)
        .ok_or(BuildError::Canceled)?;
    let assembled = assemble(&request.spec, &prepared, &runtime, target)?;
    let output = output(&prepared, &runtime, &request.options, &assembled)?;
    let image = assembled.image;
    let reports = std::mem::take(
        &mut *shared
            .reports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
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
    drop(shared);
    runtime.close();
    Ok(BuildResult {
        image_id: image.config_digest.clone(),
        image,
        names: output.names,
        steps: reports,
        duration,
        pushed: output.pushed,
    })
}
