//! The first phase of a build: everything known before a step runs. The Dockerfile is
//! read, parsed and lowered, the entitlements checked, the base images (and images
//! `COPY --from` names) resolved or pulled, the `ONBUILD` triggers put in place, the
//! Dockerfile lowered again with the bases' configs, and the context listed and hashed
//! when a step reads it. The result, [`Prepared`], is read-only for the phases after it.
//!
//! `BuildStarted` and the pulls' steps are sent as they happen; the warnings are
//! collected in [`Prepared::warnings`] for the caller to send.

pub(crate) mod base;
mod dockerfile;
pub(crate) mod entitlement;
mod triggers;
mod warnings;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use rbuild_dockerfile::{
    Base, BuildGraph, Environment, GraphStage, Instruction, LowerOptions, Platform, Source,
    StageId, Step, lower,
};

use self::base::{BaseImage, BaseKey};
use self::triggers::insert_triggers;
use crate::context::{ContextHashes, ContextListing, INDEX_DIR, IgnoreRules};
use crate::image::{host_platform, rfc3339};
use crate::progress::Event;
use crate::solver::epoch::source_date_epoch;
use crate::solver::error::{BuildError, DockerfilePhase, Location};
use crate::solver::report::Reporter;
use crate::solver::request::{BuildOptions, BuildSpec};
use crate::solver::semantics;
use crate::store::ContentStore;

/// The build context as the copy steps see it.
pub(crate) struct ContextState {
    pub root: PathBuf,
    pub listing: ContextListing,
    pub hashes: ContextHashes,
}

/// A build ready to run: the lowered graph and everything its steps read besides the
/// store and the machinery.
pub(crate) struct Prepared {
    /// The name messages give the Dockerfile.
    pub file_name: String,
    /// The Dockerfile's text (spans point into it).
    pub text: String,
    /// The graph, lowered with the base images' configs and the triggers in place.
    pub graph: BuildGraph,
    /// Every base image and `COPY --from` image, by reference as written and the
    /// platform it is for.
    pub bases: HashMap<BaseKey, BaseImage>,
    /// `--platform`: the platform the image is for; `None`: the host's, stages on an
    /// image keeping that image's.
    pub target_platform: Option<Platform>,
    /// ONBUILD triggers run at the start of stages: their texts, by stage.
    pub triggers: HashMap<StageId, Vec<String>>,
    /// The context, when a step reads it.
    pub context: Option<ContextState>,
    /// The creation time of this build's history entries and image.
    pub created: String,
    /// `SOURCE_DATE_EPOCH`, when the build has one (see [`source_date_epoch`]).
    pub epoch: Option<u64>,
    /// The warnings to send before the first stage runs.
    pub warnings: Vec<Event>,
}

impl Prepared {
    /// The platform `stage` runs as, when the Dockerfile or `--platform` says: its
    /// `FROM --platform` (or its parent stage's), else the target's; `None`: its base
    /// image's own (the host's for `scratch`).
    pub(crate) fn stage_platform(&self, stage: &GraphStage) -> Option<Platform> {
        stage_platform(stage, self.target_platform.as_ref())
    }

    /// The base image `reference` resolved for `platform`.
    pub(crate) fn base(&self, reference: &str, platform: Option<Platform>) -> Option<&BaseImage> {
        self.bases.get(&BaseKey {
            reference: reference.to_owned(),
            platform,
        })
    }

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
}

/// How many steps of `stage` progress shows: its `FROM` of an image and its steps that
/// touch files.
pub(crate) fn shown_steps(graph: &BuildGraph, stage: &GraphStage) -> usize {
    let from = usize::from(matches!(stage.base, Base::Image(_)));
    from + stage
        .steps
        .iter()
        .filter_map(|id| graph.step(*id))
        .filter(|s| semantics::touches_files(&s.instruction))
        .count()
}

/// Prepares the build of `spec` for `target` (one of its platforms; `None` when it has
/// none) with `options` (pulls reported through `reporter`).
pub(crate) fn prepare(
    store: &ContentStore,
    spec: &BuildSpec,
    target: Option<&Platform>,
    options: &BuildOptions,
    reporter: &Reporter<'_>,
) -> Result<Prepared, BuildError> {
    let (file_name, text, dockerfile_path) = dockerfile::read(spec)?;
    let failed = |phase: DockerfilePhase, error: rbuild_dockerfile::Error| BuildError::Dockerfile {
        at: Location::new(&file_name, &text, error.span()),
        phase,
        error,
    };
    let file = rbuild_dockerfile::parse(&text).map_err(|e| failed(DockerfilePhase::Parse, e))?;
    let mut build_args = Environment::new();
    for (k, v) in &spec.build_args {
        build_args.set(k.clone(), v.clone());
    }
    let mut lowering = LowerOptions {
        target: spec.target.clone(),
        build_args,
        build_platform: host_platform(),
        target_platform: target.cloned().unwrap_or_else(host_platform),
        base_images: BTreeMap::new(),
    };
    let lowered = |file: &rbuild_dockerfile::Dockerfile, options: &LowerOptions| {
        lower(file, options).map_err(|e| failed(DockerfilePhase::Lower, e))
    };
    let first = lowered(&file, &lowering)?;
    entitlement::check(&first, &options.allow, options.network, &file_name, &text)?;

    // The build starts before its base images are pulled, so that the pulls show as
    // steps of it. Steps that ONBUILD triggers of a base image bring are not counted.
    let steps = first
        .stages
        .iter()
        .map(|stage| shown_steps(&first, stage))
        .sum::<usize>();
    reporter.build_started(first.stages.len(), steps);

    // Base images and images COPY --from names, then the ONBUILD triggers of the bases
    // (image or stage), which run first in the stages built on them. A trigger may read
    // a stage nothing else reached (`COPY --from=stage`), or an image: those are
    // resolved, and their own triggers inserted, until the graph brings nothing new.
    let mut bases: HashMap<BaseKey, BaseImage> = HashMap::new();
    let mut triggers: HashMap<StageId, Vec<String>> = HashMap::new();
    let mut graph = first;
    loop {
        for (key, at) in wanted_images(&graph, &triggers, target) {
            if bases.contains_key(&key) {
                continue;
            }
            let lookup = base::Lookup {
                pull: options.pull,
                registry: &options.registry,
                context: spec.context.root(),
                fs_read: &options.allow_fs_read,
                reporter,
            };
            let found = base::resolve(store, &key.reference, key.platform.as_ref(), lookup)
                .map_err(|e| BuildError::BaseImage {
                    reference: key.reference.clone(),
                    at: Location::new(&file_name, &text, Some(at)),
                    source: Box::new(e),
                })?;
            bases.insert(key, found);
        }
        let mut with_triggers = file.clone();
        triggers = insert_triggers(
            &mut with_triggers,
            &graph,
            &bases,
            target,
            &file_name,
            &text,
        )?;
        // Lowering knows images by reference only: when two stages take one reference
        // for two platforms, they are seeded with one of the two configs (the same `Env`,
        // `WorkingDir` and `User` in every image of a multi-platform name seen so far).
        for (key, base) in &bases {
            lowering.base_images.insert(
                key.reference.clone(),
                semantics::base_image_config(&base.image.config),
            );
        }
        let next = lowered(&with_triggers, &lowering)?;
        let same_stages = next
            .stages
            .iter()
            .map(|s| s.id)
            .eq(graph.stages.iter().map(|s| s.id));
        let resolved =
            wanted_images(&next, &triggers, target).all(|(key, _)| bases.contains_key(&key));
        graph = next;
        if same_stages && resolved {
            break;
        }
    }
    // ONBUILD triggers may bring steps of their own.
    entitlement::check(&graph, &options.allow, options.network, &file_name, &text)?;

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
    let context_root = spec.context.root();
    let context = if uses_context {
        let rules = IgnoreRules::for_build(context_root, dockerfile_path.as_deref())?;
        let listing = ContextListing::walk(context_root, &rules)?;
        let hashes = ContextHashes::compute(&listing, Some(&store.root().join(INDEX_DIR)))?;
        Some(ContextState {
            root: context_root.to_path_buf(),
            listing,
            hashes,
        })
    } else {
        None
    };

    // Warnings are sent by the caller once the build's machinery is open; registry
    // mirrors that failed while base images were pulled (the pull went on) come after
    // the Dockerfile's own.
    let mut warnings = warnings::warnings(&file, &graph);
    let mut skipped: Vec<&String> = bases.values().flat_map(|b| &b.warnings).collect();
    skipped.sort();
    warnings.extend(skipped.into_iter().map(|message| Event::Warning {
        rule: None,
        message: message.clone(),
        line: None,
    }));
    let epoch = source_date_epoch(spec)?;
    let now = epoch.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    Ok(Prepared {
        file_name,
        text,
        graph,
        bases,
        target_platform: target.cloned(),
        triggers,
        context,
        created: rfc3339(now),
        epoch,
        warnings,
    })
}

/// The platform `stage` runs as when the Dockerfile or `target` (`--platform`) says (see
/// [`Prepared::stage_platform`]).
fn stage_platform(stage: &GraphStage, target: Option<&Platform>) -> Option<Platform> {
    stage
        .platform
        .as_deref()
        .and_then(Platform::parse)
        .or_else(|| target.cloned())
}

/// The images `graph` builds on or reads (`FROM`, `COPY --from`, `RUN --mount=from`),
/// each for its platform (a stage's base for the stage's, an image read for the target's,
/// as BuildKit makes such an image a stage of its own) and with where to report it: its
/// line, or the `FROM` line for a trigger's step.
fn wanted_images<'g>(
    graph: &'g BuildGraph,
    triggers: &'g HashMap<StageId, Vec<String>>,
    target: Option<&'g Platform>,
) -> impl Iterator<Item = (BaseKey, rbuild_dockerfile::Span)> + 'g {
    let bases = graph
        .stages
        .iter()
        .filter_map(move |stage| match &stage.base {
            Base::Image(reference) => Some((
                BaseKey {
                    reference: reference.clone(),
                    platform: stage_platform(stage, target),
                },
                stage.span,
            )),
            _ => None,
        });
    let read = graph.edges.iter().filter_map(move |edge| {
        let (Source::Image(reference), Some(step)) = (&edge.source, edge.step) else {
            return None;
        };
        let stage = graph.stage(edge.stage)?;
        let index = stage.steps.iter().position(|s| *s == step)?;
        let shown = triggers.get(&stage.id).map_or(0, Vec::len);
        let span = if index < shown {
            stage.span
        } else {
            graph.step(step)?.span
        };
        let key = BaseKey {
            reference: reference.clone(),
            platform: target.cloned(),
        };
        Some((key, span))
    });
    bases.chain(read)
}
