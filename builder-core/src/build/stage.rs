//! One stage: its state (layers, config, cache key) and the walk over its steps.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rbuild_dockerfile::{Base, GraphStage, Instruction, Source, Step};

use super::StepReport;
use super::cache::{CacheEntry, CacheKey, CachedLayer, MissReason};
use super::error::{BuildError, io_err, render_at};
use super::mount::with_roots;
use super::solve::{Shared, copy_source, root_key, step_scratch};
use super::state::{StageState, image_layers};
use super::step::{self, RunContext, RunFailure, make_workdir, run_spec, touches_files};
use crate::copy::{self, CopyOp, CopySource};
use crate::digest::Digest;
use crate::layer::{Layer, LayerOptions, write_layer};
use crate::progress::{Event, StepId, StepOutput, display_name};
use crate::semantics::{self, Applied};
use crate::snapshot::Snapshot;
use crate::store::ImageName;

/// The run of one stage.
pub(crate) struct StageRun<'s, 'a> {
    shared: &'s Shared<'a>,
    stage: &'s GraphStage,
    state: StageState,
    /// Position shown for the next step (`[n/count]`).
    position: u32,
    count: u32,
    parent_missed: bool,
}

impl<'s, 'a> StageRun<'s, 'a> {
    /// How many steps of `stage` progress shows: its `FROM` of an image and its steps
    /// that touch files.
    pub(crate) fn shown_steps(shared: &Shared<'_>, stage: &GraphStage) -> usize {
        let from = usize::from(matches!(stage.base, Base::Image(_)));
        from + stage
            .steps
            .iter()
            .filter_map(|id| shared.graph.step(*id))
            .filter(|s| touches_files(&s.instruction))
            .count()
    }

    /// The stage at its `FROM`.
    pub(crate) fn new(shared: &'s Shared<'a>, stage: &'s GraphStage) -> Result<Self, BuildError> {
        let state = match &stage.base {
            Base::Scratch => StageState {
                config: semantics::new_stage_config(None),
                layers: Vec::new(),
                key: root_key(None),
                base: None,
            },
            Base::Image(reference) => {
                let base = shared
                    .bases
                    .get(reference)
                    .ok_or_else(|| BuildError::ImageNotFound(reference.clone()))?;
                StageState {
                    config: semantics::new_stage_config(Some(&base.image.config)),
                    layers: image_layers(&base.image)?,
                    key: root_key(Some(base)),
                    // Recorded by its full name, as BuildKit annotates it.
                    base: Some((
                        reference
                            .parse::<ImageName>()
                            .map_or_else(|_| reference.clone(), |n| n.to_string()),
                        base.digest.clone(),
                    )),
                }
            }
            Base::Stage(id) => {
                let parent = shared
                    .states
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .get(id)
                    .cloned()
                    .ok_or(BuildError::Canceled)?;
                StageState {
                    config: semantics::new_stage_config(Some(&parent.config.image)),
                    ..parent
                }
            }
        };
        let count = u32::try_from(Self::shown_steps(shared, stage)).unwrap_or(u32::MAX);
        let mut run = StageRun {
            shared,
            stage,
            state,
            position: 0,
            count: count.max(1),
            parent_missed: false,
        };
        if let Base::Image(reference) = &stage.base {
            // The base is resolved already: shown as a step found in the cache.
            run.position += 1;
            let id = run.next_id();
            shared.progress.event(&Event::StepStarted {
                step: id,
                stage: stage.name.clone(),
                name: run.name(&format!("FROM {reference}")),
                line: u32::try_from(stage.span.start_line).ok(),
            });
            shared.progress.event(&Event::StepCached {
                step: id,
                cache_key: run.state.key.to_string(),
                output: StepOutput::EmptyLayer,
            });
        }
        Ok(run)
    }

    fn next_id(&self) -> StepId {
        StepId(
            self.shared
                .next_step
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst),
        )
    }

    fn name(&self, text: &str) -> String {
        display_name(self.stage.name.as_deref(), self.position, self.count, text)
    }

    /// Runs every step; returns the stage's final state.
    pub(crate) fn run(mut self) -> Result<StageState, BuildError> {
        for (index, id) in self.stage.steps.iter().enumerate() {
            if self.shared.cancel.is_cancelled() {
                return Err(BuildError::Canceled);
            }
            let Some(step) = self.shared.graph.step(*id) else {
                continue;
            };
            if touches_files(&step.instruction) {
                self.file_step(index, step)?;
            } else {
                let applied = self.apply(step)?;
                let created = self.config_step_time(step, &applied)?;
                semantics::push_history(
                    &mut self.state.config.image,
                    &applied,
                    Some(created),
                    true,
                );
            }
        }
        Ok(self.state)
    }

    /// The history time of a step that changes only the config: when this step first
    /// followed the same parent (remembered in the cache), so that a rebuild with nothing
    /// changed gives the same image.
    fn config_step_time(&self, step: &Step, applied: &Applied) -> Result<String, BuildError> {
        let shared = self.shared;
        let key = CacheKey::step(&self.state.key, step.digest.as_str(), None);
        if !shared.cache_disabled(self.stage) {
            if let Some(created) = shared.cache.get(&key).and_then(|e| e.created) {
                return Ok(created);
            }
        }
        let entry = CacheEntry {
            key: key.to_string(),
            parent: self.state.key.to_string(),
            created_by: applied.created_by.clone(),
            created: Some(shared.created.clone()),
            layer: None,
            sources: BTreeMap::new(),
            args: BTreeMap::new(),
        };
        shared.cache.put(&key, &entry)?;
        Ok(shared.created.clone())
    }

    /// The line a step is reported at: its own, or the `FROM` for ONBUILD triggers.
    fn line_of(&self, index: usize, step: &Step) -> usize {
        let trigger = self
            .shared
            .triggers
            .get(&self.stage.id)
            .is_some_and(|t| index < t.len());
        if trigger {
            self.stage.span.start_line
        } else {
            step.span.start_line
        }
    }

    fn file_step(&mut self, index: usize, step: &Step) -> Result<(), BuildError> {
        let shared = self.shared;
        self.position += 1;
        let text = shared.step_text(self.stage, index, step);
        let name = self.name(&text);
        let line = self.line_of(index, step);
        let id = self.next_id();
        shared.progress.event(&Event::StepStarted {
            step: id,
            stage: self.stage.name.clone(),
            name: name.clone(),
            line: u32::try_from(line).ok(),
        });
        let location = shared.location(line);
        let failed = |e: BuildError, duration: Duration| {
            shared.progress.event(&Event::StepFailed {
                step: id,
                duration,
                exit_code: None,
                message: crate::registry::error_chain(&e),
            });
            e
        };
        let input = self
            .copy_input(step)
            .map_err(|e| failed(e, Duration::ZERO))?;
        let key = CacheKey::step(&self.state.key, step.digest.as_str(), input.digest.as_ref());
        let identity = format!("{}\0{index}\0{text}", self.stage.display_name());
        let mut entry = CacheEntry {
            key: key.to_string(),
            parent: self.state.key.to_string(),
            created_by: String::new(),
            created: Some(shared.created.clone()),
            layer: None,
            sources: input.files.clone(),
            args: step
                .args
                .iter()
                .chain(step.env.iter())
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        };
        let disabled = shared.cache_disabled(self.stage);
        let hit = if disabled {
            None
        } else {
            shared.cache.get(&key).and_then(|found| match &found.layer {
                None => Some((found, None)),
                Some(cached) => cached
                    .to_layer(shared.store)
                    .map(|layer| (found, Some(layer))),
            })
        };
        if let Some((found, layer)) = hit {
            let applied = self.apply(step)?;
            let created = found.created.unwrap_or_else(|| shared.created.clone());
            self.add_result(&applied, layer.as_ref(), created);
            shared.progress.event(&Event::StepCached {
                step: id,
                cache_key: key.to_string(),
                output: output_of(layer.as_ref()),
            });
            shared.cache.set_last_key(&identity, &key)?;
            self.report(id, name, line, key, true, None, Duration::ZERO);
            return Ok(());
        }
        let reason = if disabled {
            MissReason::NoCache
        } else {
            shared.cache.explain(&identity, &entry, self.parent_missed)
        };
        let begun = Instant::now();
        let layer = match self.execute(id, step, &input) {
            Ok(layer) => layer,
            // A step cut short because another stage failed just ends with the build.
            Err(RunFailure::Error(BuildError::Canceled)) => return Err(BuildError::Canceled),
            Err(RunFailure::Error(e)) => {
                let e = BuildError::Step {
                    location,
                    name,
                    source: Box::new(e),
                };
                return Err(failed(e, begun.elapsed()));
            }
            Err(RunFailure::Exit { message, tail }) => {
                shared.progress.event(&Event::StepFailed {
                    step: id,
                    duration: begun.elapsed(),
                    exit_code: None,
                    message: message.clone(),
                });
                return Err(BuildError::StepFailed {
                    location,
                    name,
                    message,
                    tail,
                });
            }
        };
        let duration = begun.elapsed();
        let applied = self.apply(step)?;
        entry.created_by = applied.created_by.clone();
        entry.layer = layer.as_ref().map(CachedLayer::of);
        self.add_result(&applied, layer.as_ref(), shared.created.clone());
        shared.cache.put(&key, &entry)?;
        shared.cache.set_last_key(&identity, &key)?;
        shared.progress.event(&Event::StepFinished {
            step: id,
            duration,
            output: output_of(layer.as_ref()),
        });
        self.parent_missed = true;
        self.report(id, name, line, key, false, Some(reason), duration);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn report(
        &self,
        step: StepId,
        name: String,
        line: usize,
        cache_key: CacheKey,
        cached: bool,
        miss: Option<MissReason>,
        duration: Duration,
    ) {
        self.shared
            .reports
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(StepReport {
                step,
                name,
                line: u32::try_from(line).ok(),
                cache_key,
                cached,
                miss,
                duration,
            });
    }

    /// Applies `step` to the stage's config; an error names the step's line.
    fn apply(&mut self, step: &Step) -> Result<Applied, BuildError> {
        semantics::apply_step(&mut self.state.config, step).map_err(|e| {
            BuildError::Dockerfile(render_at(
                self.shared.file_name,
                self.shared.text,
                &e.span,
                &e.message,
            ))
        })
    }

    fn add_result(&mut self, applied: &Applied, layer: Option<&Layer>, created: String) {
        if let Some(layer) = layer {
            self.state.push_layer(layer);
        }
        semantics::push_history(
            &mut self.state.config.image,
            applied,
            Some(created),
            layer.is_none(),
        );
    }

    /// What a `COPY`/`ADD` reads: where from, its digest for the key, and the context
    /// files it selects (for `--explain-cache`).
    fn copy_input(&self, step: &Step) -> Result<CopyInput, BuildError> {
        let workdir = self.workdir(step);
        let op = match &step.instruction {
            Instruction::Copy(c) => CopyOp::from_copy(c, &workdir),
            Instruction::Add(a) => CopyOp::from_add(a, &workdir),
            _ => return Ok(CopyInput::default()),
        };
        match copy_source(self.shared.graph, step) {
            Some(source) => {
                let state = self.source_state(&source)?;
                Ok(CopyInput {
                    op: Some(op),
                    from: Some(state.clone()),
                    // A stage's key covers its content; the step digest covers the
                    // selection.
                    digest: Some(Digest::of(state.key.to_string().as_bytes())),
                    files: BTreeMap::new(),
                })
            }
            None => {
                let Some(context) = self.shared.context else {
                    return Ok(CopyInput {
                        op: Some(op),
                        ..CopyInput::default()
                    });
                };
                let from = CopySource::Context {
                    root: context.root,
                    listing: &context.listing,
                    hashes: &context.hashes,
                };
                let digest = copy::sources_digest(&op, &from)?;
                let files = selected_files(context, step);
                Ok(CopyInput {
                    op: Some(op),
                    from: None,
                    digest: Some(digest),
                    files,
                })
            }
        }
    }

    fn source_state(&self, source: &Source) -> Result<StageState, BuildError> {
        match source {
            Source::Stage(id) => self
                .shared
                .states
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(id)
                .cloned()
                .ok_or(BuildError::Canceled),
            Source::Image(reference) => {
                let base = self
                    .shared
                    .bases
                    .get(reference)
                    .ok_or_else(|| BuildError::ImageNotFound(reference.clone()))?;
                Ok(StageState {
                    config: semantics::new_stage_config(Some(&base.image.config)),
                    layers: image_layers(&base.image)?,
                    key: root_key(Some(base)),
                    base: None,
                })
            }
        }
    }

    fn workdir(&self, step: &Step) -> String {
        step.workdir
            .clone()
            .or_else(|| self.state.config.image.config.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".to_owned())
    }

    /// Prepares a snapshot over `state`'s layers in `scratch`.
    fn prepare(
        &self,
        state: &StageState,
        scratch: &std::path::Path,
    ) -> Result<Snapshot, BuildError> {
        let store = self.shared.store;
        let mut lowers: Vec<PathBuf> = state
            .layers
            .iter()
            .map(|l| store.unpack_layer(&l.blob, &l.diff_id))
            .collect::<Result<_, _>>()?;
        if lowers.is_empty() {
            // overlayfs needs at least one lower directory.
            let empty = self.shared.work.join("empty");
            std::fs::create_dir_all(&empty).map_err(io_err("create directory", &empty))?;
            lowers.push(empty);
        }
        std::fs::create_dir_all(scratch).map_err(io_err("create directory", scratch))?;
        Ok(self.shared.snapshotter.prepare(&lowers, scratch)?)
    }

    /// Runs the step on a fresh snapshot; returns its layer, `None` if it changed
    /// nothing.
    fn execute(
        &self,
        id: StepId,
        step: &Step,
        input: &CopyInput,
    ) -> Result<Option<Layer>, RunFailure> {
        let shared = self.shared;
        let scratch = step_scratch(shared.work, id.0)?;
        let snapshot = self.prepare(&self.state, &scratch.join("root"))?;
        match &step.instruction {
            Instruction::Run(run) => {
                let spec = run_spec(step, run, &self.state.config.image, shared.request.network);
                let ctx = RunContext {
                    executor: shared.executor,
                    progress: shared.progress,
                    step_id: id,
                    cancel: shared.cancel.clone(),
                };
                step::run(&ctx, &snapshot, spec)?;
            }
            Instruction::Copy(_) | Instruction::Add(_) => {
                let Some(op) = &input.op else {
                    return Ok(None);
                };
                match &input.from {
                    Some(state) => {
                        let source = self.prepare(state, &scratch.join("source"))?;
                        with_roots(&snapshot, &[&source], &scratch, |root, sources| {
                            let from = CopySource::Tree(&sources[0]);
                            copy::copy(op, &from, root)?;
                            Ok(())
                        })?;
                    }
                    None => {
                        let Some(context) = shared.context else {
                            return Ok(None);
                        };
                        with_roots(&snapshot, &[], &scratch, |root, _| {
                            let from = CopySource::Context {
                                root: context.root,
                                listing: &context.listing,
                                hashes: &context.hashes,
                            };
                            copy::copy(op, &from, root)?;
                            Ok(())
                        })?;
                    }
                }
            }
            Instruction::Workdir(_) => {
                let workdir = self.workdir(step);
                let user = step
                    .user
                    .clone()
                    .or_else(|| self.state.config.image.config.user.clone());
                if workdir != "/" {
                    with_roots(&snapshot, &[], &scratch, |root, _| {
                        make_workdir(root, &workdir, user.as_deref())
                    })?;
                }
            }
            _ => return Ok(None),
        }
        let changes = shared
            .snapshotter
            .diff(&snapshot)
            .map_err(BuildError::from)?;
        let layer = if changes.is_empty() {
            None
        } else {
            let options = LayerOptions {
                compression: shared.request.compression,
                ..LayerOptions::default()
            };
            Some(
                write_layer(shared.store, snapshot.source_tree(), &changes, &options)
                    .map_err(BuildError::from)?,
            )
        };
        drop(snapshot);
        let _ = std::fs::remove_dir_all(&scratch);
        Ok(layer)
    }
}

/// What a `COPY`/`ADD` step reads.
#[derive(Default)]
struct CopyInput {
    op: Option<CopyOp>,
    /// The stage or image it copies from (`--from`), or the context when `None`.
    from: Option<StageState>,
    digest: Option<Digest>,
    files: BTreeMap<String, String>,
}

/// The context files a step's sources select, with their content digests (or their
/// type for what is not a regular file).
fn selected_files(
    context: &super::solve::ContextState<'_>,
    step: &Step,
) -> BTreeMap<String, String> {
    let sources = match &step.instruction {
        Instruction::Copy(c) => &c.files.sources,
        Instruction::Add(a) => &a.files.sources,
        _ => return BTreeMap::new(),
    };
    let mut files = BTreeMap::new();
    for source in sources {
        if source.contains("://") {
            continue;
        }
        let Ok(entries) = crate::context::resolve_source(&context.listing, source) else {
            continue;
        };
        for entry in entries {
            for e in context.listing.subtree(entry) {
                let value = context
                    .hashes
                    .get(&e.path)
                    .map_or_else(|| format!("{:?} {:o}", e.kind, e.mode), |d| d.to_string());
                files.insert(e.path.to_string_lossy().into_owned(), value);
            }
        }
    }
    files
}

fn output_of(layer: Option<&Layer>) -> StepOutput {
    match layer {
        Some(layer) => StepOutput::Layer {
            digest: layer.blob.digest.to_string(),
            size: layer.blob.size,
        },
        None => StepOutput::EmptyLayer,
    }
}
