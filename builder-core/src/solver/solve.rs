//! The solver: parse, resolve base images, lower, run the stages by step dependencies, and
//! assemble the target.

use std::collections::HashMap;
use std::sync::Mutex;

use rbuild_dockerfile::{BuildGraph, EdgeKind, GraphStage, Source, StageId, Step};

use super::Backends;
use super::assemble::assemble;
use super::cache::entry::CacheKey;
use super::error::BuildError;
use super::output::output;
use super::prepare::base::BaseImage;
use super::prepare::{Prepared, prepare};
use super::report::Reporter;
use super::request::{BuildRequest, BuildResult, StepReport};
use super::runtime::Runtime;
use super::state::StageState;
use crate::progress::{Event, Progress};
use crate::store::ContentStore;

/// What every stage of one build shares.
pub(crate) struct Shared<'a> {
    pub runtime: &'a Runtime<'a>,
    pub request: &'a BuildRequest,
    pub prepared: &'a Prepared,
    pub states: Mutex<HashMap<StageId, StageState>>,
    pub reports: Mutex<Vec<StepReport>>,
}

impl Shared<'_> {
    /// Whether `--no-cache` or `--no-cache-filter` covers `stage`.
    pub(crate) fn cache_disabled(&self, stage: &GraphStage) -> bool {
        self.request.options.no_cache
            || self.request.options.no_cache_filter.iter().any(|f| {
                stage.name.as_deref() == Some(f.to_ascii_lowercase().as_str())
                    || f.parse::<u32>().ok() == Some(stage.id.0)
            })
    }
}

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

/// Whether `edge` is the `COPY --from` of `step`.
pub(crate) fn copy_source(graph: &BuildGraph, step: &Step) -> Option<Source> {
    graph
        .edges
        .iter()
        .find(|e| e.step == Some(step.id) && e.kind == EdgeKind::CopyFrom)
        .map(|e| e.source.clone())
}

/// The cache key a stage built on `base` starts from.
pub(crate) fn root_key(base: Option<&BaseImage>) -> CacheKey {
    base.map_or_else(CacheKey::scratch, |b| CacheKey::image(&b.digest))
}
