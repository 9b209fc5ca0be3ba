//! A build as its phases, each a function of the one before: [`prepare`] (read, lower,
//! resolve the bases, insert the triggers, list the context) -> [`solve`] (run the
//! stages by step dependencies into a [`Solved`]) -> [`assemble`] (the target's image)
//! -> [`output`] (names, exports, the shared cache, pushes), with the [`Runtime`] as the
//! machinery all but the first use.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use rbuild_dockerfile::Platform;

use super::assemble::{Assembled, assemble};
use super::error::BuildError;
use super::output::{cache_export, output, output_index};
use super::prepare::{Prepared, prepare};
use super::report::Reporter;
use super::request::{BuildRequest, BuildResult, StepReport};
use super::runtime::Backends;
use super::runtime::Runtime;
use super::shared::Shared;
use super::state::StageState;
use crate::image::{Image, ImageError, write_index};
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
    // A platform named twice is built once, where it was first named.
    let mut request = request.clone();
    let mut platforms: Vec<Platform> = Vec::new();
    for platform in std::mem::take(&mut request.spec.platforms) {
        if !platforms.contains(&platform) {
            platforms.push(platform);
        }
    }
    request.spec.platforms = platforms;
    let request = &request;
    let reporter = Reporter::for_platforms(progress, request.spec.platforms.len());
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
    if request.spec.platforms.len() > 1 {
        return build_platforms(store, backends, request, reporter);
    }
    let target = request.spec.platforms.first();
    let (image, steps, output) = build_for(
        store,
        backends,
        request,
        target,
        reporter,
        |prepared, runtime, assembled, steps| {
            let output = output(prepared, runtime, &request.options, &assembled)?;
            Ok((assembled.image, steps, output))
        },
    )?;
    let duration = reporter.build_finished(
        image.config_digest.to_string(),
        request
            .options
            .tags
            .iter()
            .map(ToString::to_string)
            .collect(),
    );
    Ok(BuildResult {
        image_id: image.config_digest.clone(),
        image,
        index: None,
        names: output.names,
        steps,
        duration,
        pushed: output.pushed,
    })
}

/// A build of several platforms: the Dockerfile built for each in turn, against the one
/// store and cache (a stage that does not depend on the target is found in the cache by
/// every platform after the first); the request's names, outputs and pushes then take
/// the image index of exactly these platforms' images, in the request's order.
fn build_platforms(
    store: &ContentStore,
    backends: &Backends,
    request: &BuildRequest,
    reporter: &Reporter<'_>,
) -> Result<BuildResult, BuildError> {
    let mut images: Vec<Image> = Vec::new();
    let mut steps = Vec::new();
    // The cache entries each --cache-to writes, from every platform's build.
    let mut cache = Vec::new();
    for platform in &request.spec.platforms {
        reporter.set_target(Some(platform.clone()));
        let (image, part, entries) = build_for(
            store,
            backends,
            request,
            Some(platform),
            reporter,
            |prepared, runtime, assembled, steps| {
                let entries = cache_export::gather_all(
                    store,
                    &runtime.cache,
                    &runtime.layer_options,
                    &request.options.cache_to,
                    &prepared.graph,
                );
                Ok((assembled.image, steps, entries))
            },
        )?;
        images.push(image);
        steps.extend(part);
        cache_export::merge(&mut cache, entries);
    }
    reporter.set_target(None);
    let index = write_index(store, images, request.spec.format)?;
    let output = output_index(store, reporter, &request.options, &index, cache)?;
    let image_id = index.digest().map_err(ImageError::from)?;
    let image = index.images.first().cloned().ok_or(BuildError::Canceled)?;
    let duration = reporter.build_finished(
        image_id.to_string(),
        request
            .options
            .tags
            .iter()
            .map(ToString::to_string)
            .collect(),
    );
    Ok(BuildResult {
        image_id,
        image,
        index: Some(index),
        names: output.names,
        steps,
        duration,
        pushed: output.pushed,
    })
}

/// The build for `target` (`None`: no `--platform`) up to its image: prepared, its
/// machinery opened, solved and assembled; `then` takes the image and the steps' reports
/// while the machinery is open, which is closed after it.
fn build_for<T>(
    store: &ContentStore,
    backends: &Backends,
    request: &BuildRequest,
    target: Option<&Platform>,
    reporter: &Reporter<'_>,
    then: impl FnOnce(&Prepared, &Runtime<'_>, Assembled, Vec<StepReport>) -> Result<T, BuildError>,
) -> Result<T, BuildError> {
    let prepared = prepare(store, &request.spec, target, &request.options, reporter)?;
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
        reporter.warn(warning);
    }
    for message in &runtime.import_warnings {
        reporter.warn(&Event::Warning {
            rule: None,
            message: message.clone(),
            line: None,
        });
    }

    let limits = Limits::default()
        .with_archive(store.archive_limits())
        .with_http_deadline(backends.http_deadline);
    let solved = solve(request, &prepared, &runtime, limits)?;
    let assembled = assemble(&request.spec, &prepared, &runtime, solved.target)?;
    let result = then(&prepared, &runtime, assembled, solved.steps)?;
    // Scratch space goes now; a failure to remove it does not fail the build.
    runtime.close();
    Ok(result)
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
