//! The solver: parse, resolve base images, lower, run the stages by step dependencies, and
//! assemble the target.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rbuild_dockerfile::{
    Base, BuildGraph, EdgeKind, Environment, GraphStage, Instruction, LowerOptions, Source,
    StageId, Step, lower,
};

use super::base::{self, BaseImage};
use super::cache::{Cache, CacheKey};
use super::error::{BuildError, DockerfilePhase, Location, io_err};
use super::repro::{SOURCE_DATE_EPOCH, source_date_epoch};
use super::semantics;
use super::squash;
use super::stage::StageRun;
use super::state::StageState;
use super::{Backends, BuildRequest, BuildResult, DockerfileInput};
use crate::context::{
    ContextHashes, ContextListing, ContextSource, INDEX_DIR, IgnoreRules, read_in_context,
    read_named_file,
};
use crate::exec::{CancelToken, Executor};
use crate::export::{ExportTarget, export};
use crate::image::{ImageSpec, assemble, host_platform, rfc3339, tag_image};
use crate::limits::Limits;
use crate::progress::{BuildId, Event, InStep, Progress, StepId, StepOutput};
use crate::snapshot::Snapshotter;
use crate::store::ContentStore;

/// The name messages give a Dockerfile read from a path: its file name.
fn dockerfile_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || "Dockerfile".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The build context as the copy steps see it.
pub(crate) struct ContextState<'a> {
    pub root: &'a Path,
    pub listing: ContextListing,
    pub hashes: ContextHashes,
}

/// What every stage of one build shares.
pub(crate) struct Shared<'a> {
    pub store: &'a ContentStore,
    pub request: &'a BuildRequest,
    pub graph: &'a BuildGraph,
    pub file_name: &'a str,
    pub text: &'a str,
    pub bases: &'a HashMap<String, BaseImage>,
    /// ONBUILD triggers run at the start of stages: their texts, by stage.
    pub triggers: &'a HashMap<StageId, Vec<String>>,
    pub context: Option<&'a ContextState<'a>>,
    pub snapshotter: &'a (dyn Snapshotter + Sync),
    pub executor: &'a (dyn Executor + Sync),
    pub cache: &'a Cache,
    /// The builder's limits (`ADD`'s archives and downloads are within them).
    pub limits: Limits,
    pub progress: &'a dyn Progress,
    pub cancel: CancelToken,
    pub next_step: AtomicU32,
    /// Per-build scratch space (removed at the end).
    pub work: &'a Path,
    /// The creation time of this build's history entries and image.
    pub created: String,
    /// `SOURCE_DATE_EPOCH`, when the build has one (see [`source_date_epoch`]).
    pub epoch: Option<u64>,
    pub states: Mutex<HashMap<StageId, StageState>>,
    pub reports: Mutex<Vec<super::StepReport>>,
}

impl Shared<'_> {
    /// `Dockerfile:LINE` of a span.
    pub(crate) fn location(&self, line: usize) -> String {
        format!("{}:{line}", self.file_name)
    }

    /// The text of step `index` of `stage` as the Dockerfile (or a trigger) has it.
    pub(crate) fn step_text(&self, stage: &GraphStage, index: usize, step: &Step) -> String {
        if let Some(triggers) = self.triggers.get(&stage.id) {
            if let Some(text) = triggers.get(index) {
                return text.clone();
            }
        }
        let span = step.span;
        let text = self
            .text
            .get(span.start_offset..span.end_offset)
            .unwrap_or_default();
        // Continuation lines and heredoc bodies are shown on one line, as BuildKit does,
        // without the escape characters that joined them.
        let lines: Vec<&str> = text
            .lines()
            .map(|l| l.trim().trim_end_matches(['\\', '`']).trim_end())
            .filter(|l| !l.is_empty())
            .collect();
        lines.join(" ")
    }

    /// Whether `--no-cache` or `--no-cache-filter` covers `stage`.
    pub(crate) fn cache_disabled(&self, stage: &GraphStage) -> bool {
        self.request.no_cache
            || self.request.no_cache_filter.iter().any(|f| {
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
    let started = Instant::now();
    let mut announced = false;
    let result = build_inner(store, backends, request, progress, started, &mut announced);
    if let Err(err) = &result {
        if !announced {
            progress.event(&Event::BuildStarted {
                build_id: build_id(),
                stages: 0,
                steps: 0,
            });
        }
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
        progress.event(&Event::BuildFailed {
            message: format!("failed to solve: {message}"),
            duration: started.elapsed(),
        });
    }
    result
}

fn build_id() -> BuildId {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    BuildId(
        crate::digest::Digest::of(format!("{now}-{}", std::process::id()).as_bytes()).hex()[..12]
            .to_owned(),
    )
}

/// How much of a Dockerfile is read: past the parser's own limit, so that a file a bit
/// too large gets the parser's message (its size), but bounded, so that a Dockerfile
/// that is `/dev/zero` or an endless pipe does not fill memory.
const DOCKERFILE_READ_LIMIT: u64 = 4 * rbuild_dockerfile::MAX_DOCKERFILE_BYTES as u64;

/// Reads the Dockerfile at `path`. Inside a context unpacked from a tar (`rbuild build -`,
/// whose symlinks are anyone's), its symlinks resolve inside the context, as BuildKit
/// reads it from the context it received; elsewhere it is the file the user named, read
/// as the docker CLI reads it (following symlinks). Either way it must be a regular file
/// or a pipe, and it is read only up to [`DOCKERFILE_READ_LIMIT`].
fn read_dockerfile(
    path: &Path,
    context: &ContextSource,
    in_context: bool,
) -> std::io::Result<String> {
    let bytes = match (context, path.strip_prefix(context.root())) {
        (ContextSource::Unpacked(_), Ok(rel)) | (ContextSource::Directory(_), Ok(rel))
            if in_context || matches!(context, ContextSource::Unpacked(_)) =>
        {
            read_in_context(context.root(), rel, DOCKERFILE_READ_LIMIT)?.ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such file in the build context",
                )
            })?
        }
        _ => read_named_file(path, DOCKERFILE_READ_LIMIT)?,
    };
    String::from_utf8(bytes).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "stream did not contain valid UTF-8",
        )
    })
}

fn build_inner(
    store: &ContentStore,
    backends: &Backends,
    request: &BuildRequest,
    progress: &dyn Progress,
    started: Instant,
    announced: &mut bool,
) -> Result<BuildResult, BuildError> {
    // Every registry request of the build (bases, caches, pushes) within the builder's
    // deadline.
    let registry = request
        .registry
        .clone()
        .with_deadline(backends.http_deadline);
    let (file_name, text, dockerfile_path) = match &request.dockerfile {
        DockerfileInput::Path(path) => {
            let text = read_dockerfile(path, &request.context, false).map_err(|source| {
                BuildError::ReadDockerfile {
                    path: path.clone(),
                    source,
                }
            })?;
            (dockerfile_name(path), text, Some(path.clone()))
        }
        DockerfileInput::InContext(rel) => {
            let path = request.context.root().join(rel);
            let text = read_dockerfile(&path, &request.context, true).map_err(|source| {
                BuildError::ReadDockerfile {
                    path: path.clone(),
                    source,
                }
            })?;
            (dockerfile_name(&path), text, Some(path))
        }
        DockerfileInput::Text { name, text } => (name.clone(), text.clone(), None),
    };
    let failed = |phase: DockerfilePhase, error: rbuild_dockerfile::Error| BuildError::Dockerfile {
        at: Location::new(&file_name, &text, error.span()),
        phase,
        error,
    };
    let mut file =
        rbuild_dockerfile::parse(&text).map_err(|e| failed(DockerfilePhase::Parse, e))?;
    let mut build_args = Environment::new();
    for (k, v) in &request.build_args {
        build_args.set(k.clone(), v.clone());
    }
    let mut options = LowerOptions {
        target: request.target.clone(),
        build_args,
        build_platform: host_platform(),
        target_platform: host_platform(),
        base_images: BTreeMap::new(),
    };
    let lowered = |file: &rbuild_dockerfile::Dockerfile, options: &LowerOptions| {
        lower(file, options).map_err(|e| failed(DockerfilePhase::Lower, e))
    };
    let first = lowered(&file, &options)?;
    super::entitlement::check(&first, &request.allow, request.network, &file_name, &text)?;

    // The build starts before its base images are pulled, so that the pulls show as
    // steps of it. Steps that ONBUILD triggers of a base image bring are not counted.
    let steps = first
        .stages
        .iter()
        .map(|stage| StageRun::shown_steps_of(&first, stage))
        .sum::<usize>();
    progress.event(&Event::BuildStarted {
        build_id: build_id(),
        stages: u32::try_from(first.stages.len()).unwrap_or(u32::MAX),
        steps: u32::try_from(steps).unwrap_or(u32::MAX),
    });
    *announced = true;
    let next_step = AtomicU32::new(1);

    // Base images, and images COPY --from names.
    let mut bases: HashMap<String, BaseImage> = HashMap::new();
    let mut wanted: Vec<(String, rbuild_dockerfile::Span)> = Vec::new();
    for stage in &first.stages {
        if let Base::Image(reference) = &stage.base {
            wanted.push((reference.clone(), stage.span));
        }
    }
    for edge in &first.edges {
        if let (Source::Image(reference), Some(step)) = (&edge.source, edge.step) {
            if let Some(step) = first.step(step) {
                wanted.push((reference.clone(), step.span));
            }
        }
    }
    for (reference, span) in wanted {
        if bases.contains_key(&reference) {
            continue;
        }
        let lookup = base::Lookup {
            pull: request.pull,
            registry: &registry,
            context: request.context.root(),
            fs_read: &request.allow_fs_read,
            progress,
            next_step: &next_step,
        };
        let found =
            base::resolve(store, &reference, lookup).map_err(|e| BuildError::BaseImage {
                reference: reference.clone(),
                at: Location::new(&file_name, &text, Some(span)),
                source: Box::new(e),
            })?;
        bases.insert(reference, found);
    }

    // ONBUILD triggers of the base (image or stage) run first in the stages built on it.
    let triggers = insert_triggers(&mut file, &first, &bases, &file_name, &text)?;

    for (reference, base) in &bases {
        options.base_images.insert(
            reference.clone(),
            semantics::base_image_config(&base.image.config),
        );
    }
    let graph = lowered(&file, &options)?;
    // ONBUILD triggers may bring steps of their own.
    super::entitlement::check(&graph, &request.allow, request.network, &file_name, &text)?;

    // The context, listed and hashed once, if any step copies from it (or binds it).
    let uses_context = graph.steps.iter().any(|s| match &s.instruction {
        Instruction::Copy(c) => c.from.is_none(),
        Instruction::Add(_) => true,
        Instruction::Run(r) => r.mounts.iter().any(|m| {
            m.mount_type == rbuild_dockerfile::MountType::Bind
                && m.from.as_deref().is_none_or(str::is_empty)
        }),
        _ => false,
    });
    let context_root = request.context.root();
    let context = if uses_context {
        let rules = IgnoreRules::for_build(context_root, dockerfile_path.as_deref())?;
        let listing = ContextListing::walk(context_root, &rules)?;
        let hashes = ContextHashes::compute(&listing, Some(&store.root().join(INDEX_DIR)))?;
        Some(ContextState {
            root: context_root,
            listing,
            hashes,
        })
    } else {
        None
    };

    let snapshotter = backends.snapshotter(request.snapshotter);
    let executor = backends.executor(&request.executor);
    let (imported, import_warnings) =
        super::cache_share::import(store, &request.cache_from, &registry);
    let cache = Cache::open(store)?.with_imports(imported);
    let tmp = store.tmp_dir();
    std::fs::create_dir_all(&tmp).map_err(io_err("create directory", &tmp))?;
    let work = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(&tmp)
        .map_err(io_err("create build directory in", &tmp))?;
    let epoch = source_date_epoch(request)?;
    let now = epoch.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });

    let shared = Shared {
        store,
        request,
        graph: &graph,
        file_name: &file_name,
        text: &text,
        bases: &bases,
        triggers: &triggers,
        context: context.as_ref(),
        snapshotter: snapshotter.as_ref(),
        executor: executor.as_ref(),
        cache: &cache,
        limits: Limits::default()
            .with_archive(store.archive_limits())
            .with_http_deadline(backends.http_deadline),
        progress,
        cancel: request.cancel.child(),
        next_step,
        work: work.path(),
        created: rfc3339(now),
        epoch,
        states: Mutex::new(HashMap::new()),
        reports: Mutex::new(Vec::new()),
    };

    warn_about(&shared);
    // Registry mirrors that failed while base images were pulled (the pull went on).
    let mut skipped: Vec<&String> = bases.values().flat_map(|b| &b.warnings).collect();
    skipped.sort();
    skipped.extend(&import_warnings);
    for message in skipped {
        progress.event(&Event::Warning {
            rule: None,
            message: message.clone(),
            line: None,
        });
    }

    super::schedule::run_stages(&shared)?;

    let target = shared
        .states
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&graph.target)
        .ok_or(BuildError::Canceled)?;
    let image = finish_image(&shared, target)?;
    super::cache_share::export(
        store,
        &cache,
        &request.cache_to,
        &graph,
        &registry,
        progress,
        &shared.next_step,
    )?;
    let names = super::push::names_to_push(request);
    let pushed = if names.is_empty() {
        Vec::new()
    } else {
        // BuildKit pushes within its "exporting to image" step.
        in_step(progress, &shared.next_step, "exporting to image", |sink| {
            super::push::push_image(store, &image, &names, &registry, sink)
        })?
    };
    let reports = std::mem::take(
        &mut *shared
            .reports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    let duration = started.elapsed();
    progress.event(&Event::BuildFinished {
        image_id: image.config_digest.to_string(),
        names: request.tags.iter().map(ToString::to_string).collect(),
        duration,
    });
    // Scratch space goes now; a failure to remove it does not fail the build.
    let _ = work.close();
    Ok(BuildResult {
        image_id: image.config_digest.clone(),
        image,
        names: request.tags.clone(),
        steps: reports,
        duration,
        pushed,
    })
}

/// The `ONBUILD` triggers each stage inherits, parsed and put in front of its
/// instructions; returns their texts by stage. A stage built on an image runs the
/// image's `OnBuild`; one built on another stage runs that stage's `ONBUILD`
/// instructions (BuildKit runs a stage's triggers when it is used as a base, too).
fn insert_triggers(
    file: &mut rbuild_dockerfile::Dockerfile,
    first: &BuildGraph,
    bases: &HashMap<String, BaseImage>,
    file_name: &str,
    text: &str,
) -> Result<HashMap<StageId, Vec<String>>, BuildError> {
    // Every list first, from the file as written: inserting changes the instructions.
    let mut wanted: Vec<(&GraphStage, Vec<String>, String)> = Vec::new();
    for stage in &first.stages {
        let (texts, from) = match &stage.base {
            Base::Scratch => continue,
            Base::Image(reference) => match bases.get(reference) {
                Some(base) => (
                    semantics::onbuild_triggers(&base.image.config),
                    reference.clone(),
                ),
                None => continue,
            },
            Base::Stage(parent) => {
                let declared = file
                    .stages
                    .get(parent.0 as usize)
                    .map(|p| {
                        p.instructions
                            .iter()
                            .filter_map(|i| match i {
                                Instruction::Onbuild(o) => Some(o.expression.clone()),
                                _ => None,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (declared, format!("stage {parent}"))
            }
        };
        if !texts.is_empty() {
            wanted.push((stage, texts, from));
        }
    }
    let mut triggers = HashMap::new();
    for (stage, texts, from) in wanted {
        let mut instructions = Vec::new();
        for trigger in &texts {
            let parsed = rbuild_dockerfile::parse(&format!("FROM scratch\n{trigger}\n")).map_err(
                |error| BuildError::OnbuildTrigger {
                    trigger: trigger.clone(),
                    from: from.clone(),
                    at: Location::new(file_name, text, Some(stage.span)),
                    error,
                },
            )?;
            for parsed_stage in parsed.stages {
                instructions.extend(parsed_stage.instructions);
            }
        }
        let Some(target) = file.stages.get_mut(stage.id.0 as usize) else {
            continue;
        };
        let count = instructions.len();
        target.instructions.splice(0..0, instructions);
        let mut shown = texts;
        shown.truncate(count);
        triggers.insert(stage.id, shown);
    }
    Ok(triggers)
}

/// Build arguments BuildKit's frontend reads itself, never "not consumed": inline cache,
/// syntax, multi-platform and cache-mount namespaces, git context, sandbox hostname.
/// rbuild has no use for them (its cache export is `--cache-to`), so they do nothing.
const BUILDKIT_ARGS: &[&str] = &[
    "BUILDKIT_INLINE_CACHE",
    "BUILDKIT_SYNTAX",
    "BUILDKIT_MULTI_PLATFORM",
    "BUILDKIT_CACHE_MOUNT_NS",
    "BUILDKIT_CONTEXT_KEEP_GIT_DIR",
    "BUILDKIT_SANDBOX_HOSTNAME",
];

/// Warns, as BuildKit does, about build arguments nothing declared, and about platforms
/// the engine does not build for.
fn warn_about(shared: &Shared<'_>) {
    let graph = shared.graph;
    // SOURCE_DATE_EPOCH is the engine's, as in BuildKit: never unused.
    let unused: Vec<&str> = graph
        .unused_build_args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != SOURCE_DATE_EPOCH && !BUILDKIT_ARGS.contains(a))
        .collect();
    if !unused.is_empty() {
        shared.progress.event(&Event::Warning {
            rule: None,
            message: format!(
                "one or more build-args [{}] were not consumed",
                unused.join(" ")
            ),
            line: None,
        });
    }
    // Build arguments and ENV values are written to the image's config and history:
    // a secret-looking name is pointed at --secret (BuildKit's SecretsUsedInArgOrEnv).
    for stage in &graph.stages {
        for step in stage.steps.iter().filter_map(|id| graph.step(*id)) {
            let (keyword, names): (&str, Vec<&str>) = match &step.instruction {
                Instruction::Arg(arg) => {
                    ("ARG", arg.args.iter().map(|a| a.name.as_str()).collect())
                }
                Instruction::Env(kv) => ("ENV", kv.pairs.iter().map(|p| p.key.as_str()).collect()),
                _ => continue,
            };
            for name in names
                .into_iter()
                .filter(|n| crate::redact::is_secret_name(n))
            {
                shared.progress.event(&Event::Warning {
                    rule: Some("SecretsUsedInArgOrEnv".to_owned()),
                    message: format!(
                        "do not use {keyword} for sensitive data ({keyword} {name:?}): its value is stored in the image's history and config; pass secrets with --secret and RUN --mount=type=secret"
                    ),
                    line: u32::try_from(step.span.start_line).ok(),
                });
            }
        }
    }
    let host = host_platform().to_string();
    for stage in &graph.stages {
        if let Some(platform) = stage.platform.as_deref().filter(|p| *p != host) {
            shared.progress.event(&Event::Warning {
                rule: None,
                message: format!(
                    "FROM --platform={platform}: only {host} is built; the stage uses the image as the store has it"
                ),
                line: u32::try_from(stage.span.start_line).ok(),
            });
        }
    }
}

/// Assembles the target stage's image, names it and exports it.
fn finish_image(
    shared: &Shared<'_>,
    target: StageState,
) -> Result<crate::image::Image, BuildError> {
    let request = shared.request;
    let mut config = target.config.image;
    if !request.labels.is_empty() {
        let labels = config.config.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in &request.labels {
            labels.insert(k.clone(), v.clone());
        }
    }
    // The image is as new as its newest history entry, so that a rebuild with nothing
    // changed gives the same image ID; with SOURCE_DATE_EPOCH it is the epoch, whatever
    // the base image's history says.
    config.created = if shared.epoch.is_some() {
        Some(shared.created.clone())
    } else {
        config
            .history
            .iter()
            .filter_map(|h| h.created.clone())
            .max()
            .or_else(|| Some(shared.created.clone()))
    };
    config.rootfs.diff_ids = target
        .layers
        .iter()
        .map(|l| l.diff_id.to_string())
        .collect();
    shared.cache.materialize(shared.store, &target.layers)?;
    let mut layers = target.layers;
    let base = squash::apply(shared, &mut config, &mut layers, target.base)?;
    // The base image's layers are the bottom ones (none are left after --squash-all).
    let base_layers = base
        .as_ref()
        .and_then(|(_, digest)| shared.bases.values().find(|b| &b.digest == digest))
        .map_or(0, |b| b.image.manifest.layers().len());
    super::recompress::apply(shared, &mut layers, base_layers)?;
    let spec = ImageSpec {
        config,
        base_layers: layers
            .iter()
            .map(|l| l.descriptor(request.format))
            .collect(),
        base,
        format: request.format,
        annotations: Vec::new(),
    };
    let image = assemble(shared.store, &spec, &[])?;
    for name in &request.tags {
        tag_image(shared.store, name, &image)?;
    }
    for output in &request.outputs {
        if let (ExportTarget::Docker { .. }, Some(message)) =
            (output, crate::export::zstd_docker_archive_warning([&image]))
        {
            shared.progress.event(&Event::Warning {
                rule: None,
                message,
                line: None,
            });
        }
        let exported = match export_step_name(output) {
            Some(name) => in_step(shared.progress, &shared.next_step, name, |sink| {
                export(shared.store, output, &image, &request.tags, sink)
            })?,
            None => export(shared.store, output, &image, &request.tags, shared.progress)?,
        };
        if !exported.skipped_devices.is_empty() {
            shared.progress.event(&Event::Warning {
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

/// Runs `work` as a build step of its own named `name` (an `[internal]` or exporting
/// step, outside any stage): started, then finished or failed with `work`'s result. The
/// transfer events `work` sends to the sink it is given are filed under the step.
pub(crate) fn in_step<T, E: std::error::Error>(
    progress: &dyn Progress,
    next_step: &AtomicU32,
    name: &str,
    work: impl FnOnce(&dyn Progress) -> Result<T, E>,
) -> Result<T, E> {
    let step = StepId(next_step.fetch_add(1, Ordering::SeqCst));
    progress.event(&Event::StepStarted {
        step,
        stage: None,
        name: name.to_owned(),
        line: None,
    });
    let started = Instant::now();
    let sink = InStep {
        step,
        inner: progress,
    };
    let result = work(&sink);
    match &result {
        Ok(_) => progress.event(&Event::StepFinished {
            step,
            duration: started.elapsed(),
            output: StepOutput::EmptyLayer,
        }),
        Err(e) => progress.event(&Event::StepFailed {
            step,
            duration: started.elapsed(),
            exit_code: None,
            message: crate::error_chain::error_chain(e),
        }),
    }
    result
}

/// Where the steps of a build keep their scratch directories.
pub(crate) fn step_scratch(work: &Path, step: u32) -> Result<PathBuf, BuildError> {
    let dir = work.join(format!("step-{step}"));
    std::fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
    Ok(dir)
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
