//! The build graph: typed stages lowered into steps with build arguments resolved and
//! words expanded, stages linked by what they take from each other.
//!
//! [`lower`] takes a parsed [`Dockerfile`](crate::Dockerfile) and [`LowerOptions`]
//! (`--target`, `--build-arg`, platforms) and returns a [`BuildGraph`]: the stages the
//! target needs, one [`Step`] per instruction of those stages, the [`Edge`]s between
//! stages (and to external images), and [`BuildGraph::levels`], the stages grouped so
//! that every stage depends only on stages of earlier levels (stages of one level can
//! run in parallel).
//!
//! Scoping follows BuildKit: `ARG`s before the first `FROM` are global and visible to
//! `FROM` lines only, unless a stage redeclares them (`ARG NAME`); `--build-arg` values
//! override defaults; `ENV` shadows `ARG`; the automatic arguments (`TARGETPLATFORM`,
//! `BUILDARCH`, ..., `TARGETSTAGE`) are global; the proxy arguments (`HTTP_PROXY`, ...,
//! in any case) given as build arguments reach every `RUN` step in both cases, over its
//! own variables (and stay out of step digests, as BuildKit keeps them out of cache
//! keys). `FROM` names a stage by its exact (lower-case) name; `COPY --from`, `RUN
//! --mount from=` and `--target` ignore case, and `--from` is never expanded.
//!
//! The base images' configurations (`Env`, `WorkingDir`, `User`, `Shell`) are inputs
//! ([`LowerOptions::base_images`]): lower once, resolve [`BuildGraph::base_images`],
//! lower again with their configurations. Without them a step's [`Step::env`] holds
//! only what the Dockerfile set, and a relative `WORKDIR` stays relative. `ONBUILD`
//! triggers of base images are the executor's to run.

mod args;
mod digest;
mod lower;
mod platform;
mod render;
mod scope;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::Span;
use crate::instruction::Instruction;
use crate::shell::Environment;

pub use self::args::PROXY_ARGS;
pub use self::digest::StepDigest;
pub use self::lower::{MAX_STEP_VARIABLES, lower};
pub use self::platform::Platform;
pub use self::scope::DEFAULT_PATH;

/// A stage's position in the Dockerfile (0-based, counting every `FROM`), the number
/// `COPY --from=<index>` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct StageId(pub u32);

/// A step's position in [`BuildGraph::steps`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct StepId(pub u32);

impl std::fmt::Display for StageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::fmt::Display for StepId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What lowering needs besides the Dockerfile: the `docker build` options that change
/// the graph.
#[derive(Debug, Clone)]
pub struct LowerOptions {
    /// `--target`: the stage to build (by name, case-insensitive); the last stage when
    /// `None`.
    pub target: Option<String>,
    /// `--build-arg NAME=VALUE` values, in the order given.
    pub build_args: Environment,
    /// The platform the build runs on (`BUILDPLATFORM`).
    pub build_platform: Platform,
    /// The platform the image is for (`TARGETPLATFORM`).
    pub target_platform: Platform,
    /// Configurations of base images, by the reference as `FROM` names it after
    /// expansion (see [`BuildGraph::base_images`]); they seed the environment, working
    /// directory, user and shell of stages built on them, so that `ENV PATH=$PATH:/x`
    /// expands as in BuildKit. Images not listed start with nothing known.
    pub base_images: BTreeMap<String, BaseImageConfig>,
}

/// What a stage inherits from its base image's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseImageConfig {
    /// `Env`, in order.
    pub env: Environment,
    /// `WorkingDir`, if set.
    pub workdir: Option<String>,
    /// `User`, if set.
    pub user: Option<String>,
    /// `Shell`, if set.
    pub shell: Option<Vec<String>>,
}

impl Default for LowerOptions {
    fn default() -> LowerOptions {
        LowerOptions {
            target: None,
            build_args: Environment::new(),
            build_platform: Platform::linux_amd64(),
            target_platform: Platform::linux_amd64(),
            base_images: BTreeMap::new(),
        }
    }
}

/// Where a stage starts from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Base {
    /// `FROM scratch`: an empty file system.
    Scratch,
    /// An image reference, as written after expansion.
    Image(String),
    /// An earlier stage of the same Dockerfile.
    Stage(StageId),
}

/// A stage of the graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GraphStage {
    /// The stage's index in the Dockerfile.
    pub id: StageId,
    /// `AS name`, lower case.
    pub name: Option<String>,
    /// What the stage starts from.
    pub base: Base,
    /// The platform the stage runs as when the Dockerfile says: its `FROM --platform=`,
    /// expanded and normalized, or else its parent stage's; `None`: the target's.
    pub platform: Option<String>,
    /// The stage's steps, in order.
    pub steps: Vec<StepId>,
    /// The index of the stage's level in [`BuildGraph::levels`].
    pub level: usize,
    /// The `FROM` line.
    pub span: Span,
}

impl GraphStage {
    /// The name BuildKit shows for the stage: its `AS` name or `stage-<index>`.
    pub fn display_name(&self) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None => format!("stage-{}", self.id),
        }
    }
}

/// One instruction of a stage, ready for an executor.
///
/// The configuration fields describe the state the step runs with, including the
/// step's own change (a `WORKDIR` step carries its new directory, an `ENV` step the new
/// variables).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The step.
    pub id: StepId,
    /// The stage it belongs to.
    pub stage: StageId,
    /// The instruction with its expandable words expanded (commands of `RUN`, `CMD`,
    /// `ENTRYPOINT`, `HEALTHCHECK` stay as written: the shell expands them).
    pub instruction: Instruction,
    /// The build arguments in scope with their values (declared in this stage).
    pub args: Environment,
    /// The environment: the base image's `Env` when known (see
    /// [`LowerOptions::base_images`]; `PATH` is given BuildKit's default when the image
    /// has none, and `scratch` has just that), then `ENV` of this stage and the stages
    /// it is based on.
    pub env: Environment,
    /// The environment a `RUN` step gets (and words were expanded with): the base
    /// image's `Env`, then every `ENV` and every `ARG` with a value, in order, the later
    /// winning, as BuildKit's state environment. Build arguments are in it; they never
    /// reach the image config ([`Step::env`]).
    pub run_env: Environment,
    /// Proxy variables from `--build-arg` (any case), each set upper and lower case, that
    /// a `RUN` gets over its other variables (empty for other steps); not part of
    /// [`Step::digest`].
    pub proxy_env: Environment,
    /// The build arguments the step's words referenced.
    pub used_args: Vec<String>,
    /// The working directory (absolute, or relative to the base image's when that is
    /// not known); `None`: the base image's.
    pub workdir: Option<String>,
    /// `USER`; `None`: the base image's.
    pub user: Option<String>,
    /// `SHELL`; `None`: the base image's or `/bin/sh -c`.
    pub shell: Option<Vec<String>>,
    /// A digest of everything above except the ids, spans and proxy variables.
    pub digest: StepDigest,
    /// The instruction's place in the source.
    pub span: Span,
}

/// What an edge stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// `FROM <source>`.
    Base,
    /// `COPY --from=<source>` (or `ADD`).
    CopyFrom,
    /// `RUN --mount=from=<source>`.
    MountFrom,
}

/// Where a stage takes files from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Source {
    /// Another stage of the graph.
    Stage(StageId),
    /// An external image.
    Image(String),
}

/// A dependency of a stage (or of one of its steps) on a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Edge {
    /// The stage that depends.
    pub stage: StageId,
    /// The step that uses the source; `None` for `FROM`.
    pub step: Option<StepId>,
    /// What it depends on.
    pub source: Source,
    /// How.
    pub kind: EdgeKind,
}

/// The lowered Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildGraph {
    /// The stages the target needs, in Dockerfile order.
    pub stages: Vec<GraphStage>,
    /// Every step of those stages, stage after stage.
    pub steps: Vec<Step>,
    /// Dependencies between stages and on external images.
    pub edges: Vec<Edge>,
    /// The stage being built.
    pub target: StageId,
    /// Stages grouped by level: a stage depends only on stages of earlier levels.
    pub levels: Vec<Vec<StageId>>,
    /// The global `ARG`s (and platform arguments) with their final values.
    pub global_args: Environment,
    /// `--build-arg` names that no `ARG` declared (BuildKit warns about them).
    pub unused_build_args: Vec<String>,
}

impl BuildGraph {
    /// The external images the graph's stages start from, each once, in stage order:
    /// what to resolve before lowering again with [`LowerOptions::base_images`].
    pub fn base_images(&self) -> Vec<&str> {
        let mut images: Vec<&str> = Vec::new();
        for stage in &self.stages {
            if let Base::Image(image) = &stage.base {
                if !images.contains(&image.as_str()) {
                    images.push(image);
                }
            }
        }
        images
    }

    /// The stage with this id, if the graph kept it.
    pub fn stage(&self, id: StageId) -> Option<&GraphStage> {
        self.stages.iter().find(|s| s.id == id)
    }

    /// The step with this id.
    pub fn step(&self, id: StepId) -> Option<&Step> {
        self.steps.get(id.0 as usize)
    }
}
