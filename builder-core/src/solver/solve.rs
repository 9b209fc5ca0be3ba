//! The solver: parse, resolve base images, lower, run the stages level by level, and
//! assemble the target.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rbuild_dockerfile::{BuildGraph, EdgeKind, GraphStage, Source, StageId, Step};

use super::cache::entry::CacheKey;
use super::error::BuildError;
use super::prepare::base::BaseImage;
use super::prepare::{Prepared, prepare};
use super::report::Reporter;
use super::request::{BuildRequest, BuildResult, StepReport};
use super::runtime::Runtime;
use super::squash;
use super::stage::StageRun;
use super::state::StageState;
use crate::export::{ExportTarget, export};
use crate::image::{ImageSpec, assemble, tag_image};
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
    request: &BuildRequest,
    progress: &dyn Progress,
) -> Result<BuildResult, BuildError> {
    let reporter = Reporter::new(progress);
    let result = build_inner(store, request, &reporter);
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
    request: &BuildRequest,
    reporter: &Reporter<'_>,
) -> Result<BuildResult, BuildError> {
    let prepared = prepare(store, &request.spec, &request.options, reporter)?;
    let runtime = Runtime::open(store, &request.spec, &request.options, &prepared, reporter)?;
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
    for level in &graph.levels {
        run_level(&shared, level)?;
    }

    let target = shared
        .states
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&graph.target)
        .ok_or(BuildError::Canceled)?;
    let image = finish_image(&shared, target)?;
    super::cache_export::export(
        store,
        &runtime.cache,
        &request.options.cache_to,
        graph,
        &request.options.registry,
        reporter,
    )?;
    let names = super::push::names_to_push(&request.options);
    let pushed = if names.is_empty() {
        Vec::new()
    } else {
        // BuildKit pushes within its "exporting to image" step.
        reporter.in_step("exporting to image", |sink| {
            super::push::push_image(store, &image, &names, &request.options.registry, sink)
        })?
    };
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
        names: request.options.tags.clone(),
        steps: reports,
        duration,
        pushed,
    })
}

/// Runs the stages of one level, at most `jobs` at once; the first failure cancels the
/// others.
fn run_level(shared: &Shared<'_>, level: &[StageId]) -> Result<(), BuildError> {
    let next = AtomicUsize::new(0);
    let errors: Mutex<Vec<BuildError>> = Mutex::new(Vec::new());
    let workers = shared.request.options.jobs.max(1).min(level.len());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(id) = level.get(i) else { break };
                    let Some(stage) = shared.prepared.graph.stage(*id) else {
                        continue;
                    };
                    match StageRun::new(shared, stage).and_then(StageRun::run) {
                        Ok(state) => {
                            shared
                                .states
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .insert(*id, state);
                        }
                        Err(e) => {
                            shared.runtime.cancel.cancel();
                            errors
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner)
                                .push(e);
                        }
                    }
                }
            });
        }
    });
    let mut errors = errors
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // The error that caused the cancellation, not the cancellations it caused.
    let first = errors
        .iter()
        .position(|e| !matches!(e, BuildError::Canceled))
        .unwrap_or(0);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.swap_remove(first))
    }
}

/// Assembles the target stage's image, names it and exports it.
fn finish_image(
    shared: &Shared<'_>,
    target: StageState,
) -> Result<crate::image::Image, BuildError> {
    let request = shared.request;
    let mut config = target.config.image;
    if !request.spec.labels.is_empty() {
        let labels = config.config.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in &request.spec.labels {
            labels.insert(k.clone(), v.clone());
        }
    }
    // The image is as new as its newest history entry, so that a rebuild with nothing
    // changed gives the same image ID; with SOURCE_DATE_EPOCH it is the epoch, whatever
    // the base image's history says.
    config.created = if shared.prepared.epoch.is_some() {
        Some(shared.prepared.created.clone())
    } else {
        config
            .history
            .iter()
            .filter_map(|h| h.created.clone())
            .max()
            .or_else(|| Some(shared.prepared.created.clone()))
    };
    config.rootfs.diff_ids = target
        .layers
        .iter()
        .map(|l| l.diff_id.to_string())
        .collect();
    shared
        .runtime
        .cache
        .materialize(shared.runtime.store, target.layers.iter().map(|l| &l.blob))?;
    let mut layers = target.layers;
    let base = squash::apply(shared, &mut config, &mut layers, target.base)?;
    // The base image's layers are the bottom ones (none are left after --squash-all).
    let base_layers = base
        .as_ref()
        .and_then(|(_, digest)| shared.prepared.bases.values().find(|b| &b.digest == digest))
        .map_or(0, |b| b.image.manifest.layers().len());
    super::recompress::apply(shared, &mut layers, base_layers)?;
    let spec = ImageSpec {
        config,
        base_layers: layers
            .iter()
            .map(|l| l.descriptor(request.spec.format))
            .collect(),
        base,
        format: request.spec.format,
        annotations: Vec::new(),
    };
    let image = assemble(shared.runtime.store, &spec, &[])?;
    for name in &request.options.tags {
        tag_image(shared.runtime.store, name, &image)?;
    }
    for output in &request.options.outputs {
        if let (ExportTarget::Docker { .. }, Some(message)) =
            (output, crate::export::zstd_docker_archive_warning([&image]))
        {
            shared.runtime.reporter.event(&Event::Warning {
                rule: None,
                message,
                line: None,
            });
        }
        let exported = match export_step_name(output) {
            Some(name) => shared.runtime.reporter.in_step(name, |sink| {
                export(
                    shared.runtime.store,
                    output,
                    &image,
                    &request.options.tags,
                    sink,
                )
            })?,
            None => export(
                shared.runtime.store,
                output,
                &image,
                &request.options.tags,
                shared.runtime.reporter.progress(),
            )?,
        };
        if !exported.skipped_devices.is_empty() {
            shared.runtime.reporter.event(&Event::Warning {
                rule: None,
                message: format!(
                    "the local export did not make the image's device nodes on the host ({}): \
                     use -o type=tar or type=oci to keep them",
                    exported.skipped_devices.join(", ")
                ),
                line: None,
            });
        }
    }
    Ok(image)
}

/// The step BuildKit shows for an output that writes files, by its exporter's name.
fn export_step_name(output: &ExportTarget) -> Option<&'static str> {
    match output {
        ExportTarget::Oci { .. } => Some("exporting to oci image format"),
        ExportTarget::Docker { .. } => Some("exporting to docker image format"),
        ExportTarget::Local { .. } => Some("exporting to client directory"),
        ExportTarget::Tar { .. } => Some("exporting to client tarball"),
        ExportTarget::Image | ExportTarget::Registry { .. } => None,
    }
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
