//! One stage: its state (layers, config, cache key) and the walk over its steps.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rbuild_dockerfile::{Base, EdgeKind, GraphStage, Instruction, Mount, Run, StageId, Step};

use super::cache::entry::{CacheEntry, CacheKey, CachedLayer, MissReason};
use super::epoch;
use super::error::{BuildError, Location};
use super::mounted_roots::with_roots;
use super::mounts::{self, MountInputs};
use super::prepare::shown_steps;
use super::request::StepReport;
use super::semantics::{self, Applied, touches_files};
use super::shared::{Shared, root_key};
use super::sources::{CopyInput, copy_input, source_state};
use super::state::{LayerRef, StageState, image_layers};
use super::step::{self, RunContext, RunFailure, make_workdir, run_spec};
use crate::copy::{self, CopySource};
use crate::digest::Digest;
use crate::exec::TreeMount;
use crate::layer::chain_ids;
use crate::progress::{Event, StepId, StepOutput, display_name, platform_display_name};
use crate::store::ImageName;

/// The run of one stage.
pub(crate) struct StageRun<'s, 'a> {
    shared: &'s Shared<'a>,
    stage: &'s GraphStage,
    state: StageState,
    /// Position shown for the next step (`[n/count]`).
    position: u32,
    count: u32,
    /// The name of the last step of this stage that ran (missed the cache).
    last_ran: Option<String>,
    /// The index in `stage.steps` of the next step to run.
    next: usize,
}

/// Where [`StageRun::run`] stopped.
pub(crate) enum Advance<'s, 'a> {
    /// The stage ended: its final state.
    Done(StageState),
    /// The next step needs these stages, which have not ended: the run, to run again
    /// once they have. The step has not started.
    Waiting(StageRun<'s, 'a>, Vec<StageId>),
}

impl<'s, 'a> StageRun<'s, 'a> {
    /// How many steps of `stage` progress shows: its `FROM` of an image and its steps
    /// that touch files.
    pub(crate) fn shown_steps(shared: &Shared<'_>, stage: &GraphStage) -> usize {
        shown_steps(&shared.prepared.graph, stage)
    }

    /// The stage at its `FROM`.
    pub(crate) fn new(shared: &'s Shared<'a>, stage: &'s GraphStage) -> Result<Self, BuildError> {
        let platform = shared.prepared.stage_platform(stage);
        let mut state = match &stage.base {
            Base::Scratch => StageState {
                config: semantics::new_stage_config(None),
                layers: Vec::new(),
                key: root_key(None),
                base: None,
            },
            Base::Image(reference) => {
                let base = shared
                    .prepared
                    .base(reference, platform.clone())
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
        // The stage is of its platform (`scratch` too), spelled normalized as BuildKit's
        // image config is; without one, its base image's own.
        if let Some(platform) = &platform {
            semantics::set_platform(&mut state.config.image, platform);
        } else if !matches!(stage.base, Base::Stage(_)) {
            let own = crate::image::config_platform(&state.config.image);
            semantics::set_platform(&mut state.config.image, &own);
        }
        let count = u32::try_from(Self::shown_steps(shared, stage)).unwrap_or(u32::MAX);
        let mut run = StageRun {
            shared,
            stage,
            state,
            position: 0,
            count: count.max(1),
            last_ran: None,
            next: 0,
        };
        if let Base::Image(reference) = &stage.base {
            // The base is resolved already: shown as a step found in the cache.
            run.position += 1;
            let id = run.next_id();
            shared.runtime.reporter.event(&Event::StepStarted {
                step: id,
                stage: stage.name.clone(),
                name: run.name(&format!("FROM {reference}")),
                line: u32::try_from(stage.span.start_line).ok(),
                emulated: None,
            });
            shared.runtime.reporter.event(&Event::StepCached {
                step: id,
                cache_key: run.state.key.to_string(),
                output: StepOutput::EmptyLayer,
            });
        }
        Ok(run)
    }

    fn next_id(&self) -> StepId {
        self.shared.runtime.reporter.next_id()
    }

    /// The step's name; in a build of several platforms, with the platform it runs as.
    fn name(&self, text: &str) -> String {
        let stage = self.stage.name.as_deref();
        let platform = crate::image::config_platform(&self.state.config.image);
        match self.shared.runtime.reporter.platform_prefix(&platform) {
            Some(prefix) => platform_display_name(&prefix, stage, self.position, self.count, text),
            None => display_name(stage, self.position, self.count, text),
        }
    }

    /// The platform `step` runs emulated as: its stage's, for a `RUN` in a stage of a
    /// platform the build machine does not run natively.
    fn emulated(&self, step: &Step) -> Option<String> {
        if !matches!(step.instruction, Instruction::Run(_)) {
            return None;
        }
        let platform = crate::image::config_platform(&self.state.config.image);
        crate::exec::runs_emulated(&platform, &crate::image::host_platform())
            .then(|| platform.to_string())
    }

    /// Runs the steps in order until the stage ends, or until `waits_for` names stages
    /// the next step needs that have not ended (then before that step starts).
    pub(crate) fn run(
        mut self,
        waits_for: &dyn Fn(rbuild_dockerfile::StepId) -> Vec<StageId>,
    ) -> Result<Advance<'s, 'a>, BuildError> {
        for (index, id) in self.stage.steps.iter().enumerate().skip(self.next) {
            if self.shared.runtime.cancel.is_cancelled() {
                return Err(BuildError::Canceled);
            }
            let Some(step) = self.shared.prepared.graph.step(*id) else {
                continue;
            };
            let waiting = waits_for(*id);
            if !waiting.is_empty() {
                self.next = index;
                return Ok(Advance::Waiting(self, waiting));
            }
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
        Ok(Advance::Done(self.state))
    }

    /// The history time of a step that changes only the config: when this step first
    /// followed the same parent (remembered in the cache), so that a rebuild with nothing
    /// changed gives the same image.
    fn config_step_time(&self, step: &Step, applied: &Applied) -> Result<String, BuildError> {
        let shared = self.shared;
        if shared.prepared.epoch.is_some() {
            // SOURCE_DATE_EPOCH fixes every time of the build.
            return Ok(shared.prepared.created.clone());
        }
        let key = CacheKey::step(&self.state.key, step.digest.as_str(), None);
        shared.runtime.cache.record(self.stage.id, &key);
        if !shared.cache_disabled(self.stage) || shared.runtime.cache.written_here(&key) {
            if let Some(created) = shared.runtime.cache.get(&key).and_then(|e| e.created) {
                return Ok(created);
            }
        }
        let entry = CacheEntry {
            key: key.to_string(),
            parent: self.state.key.to_string(),
            created_by: applied.created_by.clone(),
            created: Some(shared.prepared.created.clone()),
            layer: None,
            sources: BTreeMap::new(),
            sources_list: None,
            args: BTreeMap::new(),
            from: None,
        };
        shared.runtime.cache.put(&key, &entry)?;
        Ok(shared.prepared.created.clone())
    }

    /// The line a step is reported at: its own, or the `FROM` for ONBUILD triggers.
    fn line_of(&self, index: usize, step: &Step) -> usize {
        let trigger = self
            .shared
            .prepared
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
        let text = shared.prepared.step_text(self.stage, index, step);
        let name = self.name(&text);
        let line = self.line_of(index, step);
        let id = self.next_id();
        shared.runtime.reporter.event(&Event::StepStarted {
            step: id,
            stage: self.stage.name.clone(),
            name: name.clone(),
            line: u32::try_from(line).ok(),
            emulated: self.emulated(step),
        });
        let location = shared.prepared.location(line);
        let failed = |e: BuildError, duration: Duration| {
            shared.runtime.reporter.event(&Event::StepFailed {
                step: id,
                duration,
                exit_code: None,
                message: e.render(),
            });
            e
        };
        let mut input = self.copy_input(step).map_err(|e| {
            let e = BuildError::Step {
                location: location.clone(),
                name: name.clone(),
                source: Box::new(e),
            };
            failed(e, Duration::ZERO)
        })?;
        let key = CacheKey::step(&self.state.key, step.digest.as_str(), input.digest.as_ref());
        let key = self.mount_key(step, key).map_err(|e| {
            let e = BuildError::Step {
                location: location.clone(),
                name: name.clone(),
                source: Box::new(e),
            };
            failed(e, Duration::ZERO)
        })?;
        let key = epoch::step_key(key, shared.prepared.epoch);
        let identity = format!("{}\0{index}\0{text}", self.stage.display_name());
        let mut entry = CacheEntry {
            key: key.to_string(),
            parent: self.state.key.to_string(),
            created_by: String::new(),
            created: Some(shared.prepared.created.clone()),
            layer: None,
            sources: std::mem::take(&mut input.files),
            sources_list: input.list.clone(),
            args: step
                .args
                .iter()
                .chain(step.env.iter())
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            from: input.from_key.clone(),
        };
        // One result per key within a build: a step with the key another step of this
        // build is working on waits for it, and under --no-cache takes what it wrote.
        let working = shared.runtime.cache.working_on(&key);
        let _working = working
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let disabled =
            shared.cache_disabled(self.stage) && !shared.runtime.cache.written_here(&key);
        let hit = if disabled {
            None
        } else {
            shared
                .runtime
                .cache
                .get(&key)
                .and_then(|found| match &found.layer {
                    None => Some((found, None)),
                    Some(cached) => shared
                        .runtime
                        .cache
                        .layer_of(cached, shared.runtime.store, &self.state.layers)
                        .map(|layer| (found, Some(layer))),
                })
        };
        shared.runtime.cache.record(self.stage.id, &key);
        if let Some((found, layer)) = hit {
            let applied = self.apply(step)?;
            let created = match shared.prepared.epoch {
                Some(_) => shared.prepared.created.clone(),
                None => found
                    .created
                    .unwrap_or_else(|| shared.prepared.created.clone()),
            };
            self.add_result(&applied, layer.as_ref(), created);
            shared.runtime.reporter.event(&Event::StepCached {
                step: id,
                cache_key: key.to_string(),
                output: output_of(layer.as_ref()),
            });
            shared.runtime.cache.set_last_key(&identity, &key)?;
            self.report(id, name, line, key, true, None, Duration::ZERO);
            return Ok(());
        }
        let reason = if disabled {
            MissReason::NoCache
        } else {
            shared
                .runtime
                .cache
                .explain(&identity, &entry, self.last_ran.as_deref())
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
            Err(RunFailure::Exit {
                code,
                message,
                tail,
            }) => {
                shared.runtime.reporter.event(&Event::StepFailed {
                    step: id,
                    duration: begun.elapsed(),
                    exit_code: code,
                    message: message.clone(),
                });
                return Err(BuildError::StepFailed {
                    location,
                    name,
                    message,
                    exit_code: code,
                    tail,
                });
            }
        };
        let duration = begun.elapsed();
        let applied = self.apply(step)?;
        entry.created_by = applied.created_by.clone();
        entry.layer = layer.as_ref().map(|l| {
            let chain = chain_ids(
                self.state
                    .layers
                    .iter()
                    .map(|l| &l.diff_id)
                    .chain([&l.diff_id]),
            );
            CachedLayer::of(l, chain.last().unwrap_or(&l.diff_id))
        });
        self.add_result(&applied, layer.as_ref(), shared.prepared.created.clone());
        shared.runtime.cache.put(&key, &entry)?;
        shared.runtime.cache.set_last_key(&identity, &key)?;
        shared.runtime.reporter.event(&Event::StepFinished {
            step: id,
            duration,
            output: output_of(layer.as_ref()),
        });
        self.last_ran = Some(name.clone());
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
        semantics::apply_step(&mut self.state.config, step).map_err(|e| BuildError::Instruction {
            at: Location::new(
                &self.shared.prepared.file_name,
                &self.shared.prepared.text,
                Some(e.span),
            ),
            message: e.message,
        })
    }

    fn add_result(&mut self, applied: &Applied, layer: Option<&LayerRef>, created: String) {
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

    /// `key` with the digest of what a `RUN`'s context bind mounts bind, when it has
    /// some; other mounts count only through their specification (in the step digest).
    fn mount_key(&self, step: &Step, key: CacheKey) -> Result<CacheKey, BuildError> {
        let Instruction::Run(run) = &step.instruction else {
            return Ok(key);
        };
        let context = self.shared.prepared.context.as_ref().map(|c| &c.listing);
        let mut key = match mounts::context_digest(&run.mounts, context)? {
            Some(digest) => CacheKey::step(&key, "run-mount-bind", Some(&digest)),
            None => key,
        };
        for (_, state) in self.mount_sources(step, run)? {
            let digest = Digest::of(state.key.to_string().as_bytes());
            key = CacheKey::step(&key, "run-mount-from", Some(&digest));
        }
        Ok(key)
    }

    /// The `from=` bind mounts of a `RUN` with the state of the stage or image each
    /// names (the graph's mount edges of the step, in the order of the mounts).
    fn mount_sources<'r>(
        &self,
        step: &Step,
        run: &'r Run,
    ) -> Result<Vec<(&'r Mount, StageState)>, BuildError> {
        let edges = self
            .shared
            .prepared
            .graph
            .edges
            .iter()
            .filter(|e| e.step == Some(step.id) && e.kind == EdgeKind::MountFrom);
        run.mounts
            .iter()
            .filter(|m| mounts::from_tree(m))
            .zip(edges)
            .map(|(mount, edge)| Ok((mount, source_state(self.shared, &edge.source)?)))
            .collect()
    }

    /// What a `COPY`/`ADD` reads (see [`copy_input`]).
    fn copy_input(&self, step: &Step) -> Result<CopyInput, BuildError> {
        copy_input(self.shared, step, &self.workdir(step))
    }

    pub(crate) fn workdir(&self, step: &Step) -> String {
        step.workdir
            .clone()
            .or_else(|| self.state.config.image.config.working_dir.clone())
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| "/".to_owned())
    }

    /// Runs the step on a fresh snapshot; returns its layer, `None` if it changed
    /// nothing.
    fn execute(
        &self,
        id: StepId,
        step: &Step,
        input: &CopyInput,
    ) -> Result<Option<LayerRef>, RunFailure> {
        let shared = self.shared;
        if matches!(step.instruction, Instruction::Run(_)) {
            // A foreign platform's step runs through binfmt_misc: refused here, before
            // anything is made, when no handler would take its binaries.
            crate::exec::check_emulation(
                &crate::image::config_platform(&self.state.config.image),
                &crate::image::host_platform(),
                std::path::Path::new(crate::exec::BINFMT_MISC_DIR),
            )
            .map_err(BuildError::from)?;
        }
        let scratch = shared.runtime.step_scratch(id.0)?;
        let snapshot = shared
            .runtime
            .snapshot(&self.state.layers, &scratch.join("root"))?;
        match &step.instruction {
            Instruction::Run(run) => {
                let run = &mounts::with_resolved_targets(run, &self.workdir(step));
                let mut spec = run_spec(
                    step,
                    run,
                    &self.state.config.image,
                    shared.request.options.network,
                );
                spec.merge_output = shared.request.options.merge_step_output;
                // Held (locks, the step's own directories) until the step is done.
                let mounts = mounts::prepare(
                    &run.mounts,
                    &MountInputs {
                        store: shared.runtime.store,
                        secrets: &shared.request.options.secrets,
                        ssh: &shared.request.options.ssh,
                        scratch: &scratch.join("mounts"),
                        context: shared.prepared.context.as_ref().map(|c| &c.listing),
                        exclusive_caches: shared.request.options.executor.without_mounts(),
                    },
                )
                .map_err(BuildError::from)?;
                mounts.apply(&mut spec);
                epoch::add_run_env(&mut spec, shared.prepared.epoch);
                // The trees of `from=` bind mounts, each a snapshot of its own whose writes
                // go with the step's scratch space.
                let mut trees = Vec::new();
                for (i, (mount, state)) in self.mount_sources(step, run)?.into_iter().enumerate() {
                    let tree = shared
                        .runtime
                        .snapshot(&state.layers, &scratch.join(format!("tree-{i}")))?;
                    spec.trees.push(TreeMount {
                        root: tree.root().clone(),
                        source: mounts::tree_source(mount),
                        target: mount.target.clone().unwrap_or_default(),
                        readonly: mount.read_only,
                    });
                    trees.push(tree);
                }
                let ctx = RunContext {
                    executor: shared.runtime.executor.as_ref(),
                    progress: shared.runtime.reporter.progress(),
                    step_id: id,
                    cancel: shared.runtime.cancel.clone(),
                };
                step::run(&ctx, &snapshot, spec)?;
                drop(mounts);
                drop(trees);
            }
            Instruction::Copy(_) | Instruction::Add(_) => {
                let Some(op) = &input.op else {
                    return Ok(None);
                };
                match &input.from {
                    Some(state) => {
                        let source = shared
                            .runtime
                            .snapshot(&state.layers, &scratch.join("source"))?;
                        with_roots(&snapshot, &[&source], &scratch, |root, sources| {
                            let from = CopySource::Tree(&sources[0]);
                            copy::copy(op, &from, root)?;
                            Ok(())
                        })?;
                    }
                    None => {
                        let Some(context) = shared.prepared.context.as_ref() else {
                            return Ok(None);
                        };
                        with_roots(&snapshot, &[], &scratch, |root, _| {
                            let from = CopySource::Context {
                                root: &context.root,
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
        let layer = shared.runtime.commit(&snapshot, &self.state.layers)?;
        drop(snapshot);
        let _ = shared.runtime.store.remove_tree(&scratch);
        Ok(layer)
    }
}

fn output_of(layer: Option<&LayerRef>) -> StepOutput {
    match layer {
        Some(layer) => StepOutput::Layer {
            digest: layer.blob.as_ref().unwrap_or(&layer.diff_id).to_string(),
            size: layer.size,
        },
        None => StepOutput::EmptyLayer,
    }
}
