//! What a build is asked to do and what it reports: the request and its parts, and the
//! result. Plain data: besides cache keys and the cache share's options, it imports
//! nothing from the rest of the solver.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use rbuild_dockerfile::Platform;

use super::cache::entry::{CacheKey, MissReason};
use super::cache::share::{CacheExport, CacheImport};
use crate::context::ContextSource;
use crate::digest::Digest;
use crate::exec::{CancelToken, Network};
use crate::export::ExportTarget;
use crate::image::{Image, ImageFormat, PlatformIndex};
use crate::layer::Compression;
use crate::progress::StepId;
use crate::registry::RegistryConfig;
use crate::store::ImageName;

/// Where the Dockerfile comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DockerfileInput {
    /// A file on disk; a `<file>.dockerignore` beside it takes precedence over the
    /// context's `.dockerignore`.
    Path(PathBuf),
    /// A file of the build context, relative to its root (the default `Dockerfile`):
    /// resolved inside the context, so a symlink cannot lead out of it (one that points
    /// out reads as missing). A `<file>.dockerignore` beside it applies as for `Path`.
    InContext(PathBuf),
    /// Text given directly (`-f -`), shown in messages as `name`.
    Text {
        /// The name used in messages, `Dockerfile` usually.
        name: String,
        /// The Dockerfile itself.
        text: String,
    },
}

/// How step roots are made (an embedder's own: [`Builder::with_snapshotter`](super::Builder::with_snapshotter)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SnapshotterKind {
    /// overlayfs over the unpacked layers (the default).
    #[default]
    Overlay,
    /// A full copy of the lowers per step.
    Copy,
}

/// What runs `RUN` steps (an embedder's own: [`Builder::with_executor`](super::Builder::with_executor)).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ExecutorKind {
    /// The built-in namespace sandbox (the default).
    #[default]
    Sandbox,
    /// An OCI runtime (`runc`) at this path.
    Runc(PathBuf),
    /// `chroot` into a plain directory root, no namespaces and no mounts
    /// ([`ChrootExecutor`](crate::exec::ChrootExecutor)): for containers whose security
    /// denies namespaces (a Kubernetes pod's default). Step roots are then always made by
    /// the copy snapshotter.
    Chroot,
    /// The same step roots entered by the proot program at this path (ptrace, no
    /// capability at all: a pod under the restricted Pod Security Standard), its `chown`
    /// calls kept as the image's owners (see the chroot executor's documentation).
    Proot(PathBuf),
}

impl ExecutorKind {
    /// Whether steps run in plain directory roots without mounts (chroot or proot):
    /// roots by copy, caches moved in and so locked exclusively.
    pub fn without_mounts(&self) -> bool {
        matches!(self, ExecutorKind::Chroot | ExecutorKind::Proot(_))
    }
}

/// Everything a build needs besides the store: what to build and how.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuildRequest {
    /// What to build: everything the image's bytes depend on.
    pub spec: BuildSpec,
    /// How to build it and where the result goes.
    pub options: BuildOptions,
}

/// What to build: the Dockerfile, its context and every input the image's bytes depend
/// on. `--reproducible-check` clones it whole, so a field added here is carried into
/// the check builds without anyone having to remember it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuildSpec {
    /// The Dockerfile.
    pub dockerfile: DockerfileInput,
    /// The build context (a directory, or a tar unpacked with
    /// [`ContextSource::from_tar`]).
    pub context: ContextSource,
    /// `--build-arg NAME=VALUE`, in order.
    pub build_args: Vec<(String, String)>,
    /// `--target`: the stage to build; the last one when `None`.
    pub target: Option<String>,
    /// `--platform`: the platforms the image is for, in order (one named twice is built
    /// once, where it is first named). For each, the Dockerfile is built once with it as
    /// `TARGETPLATFORM` (the platform its stages resolve their base images for and run
    /// as), all against the same store and cache, so a stage that does not depend on
    /// the target (`FROM --platform=$BUILDPLATFORM` without `TARGET*` arguments) runs
    /// for the first and is found in the cache by the others. With several, the result
    /// is an image index of the platforms' images ([`BuildResult::index`]). Empty: the
    /// host's, and a stage on an image of another platform keeps that image's (as
    /// BuildKit does without `--platform`).
    pub platforms: Vec<Platform>,
    /// `--label KEY=VALUE`, added to the image config.
    pub labels: Vec<(String, String)>,
    /// `SOURCE_DATE_EPOCH` (seconds since the epoch): the `created` time of the image
    /// and of this build's history entries, the latest mtime in the layers this build
    /// writes, and a variable `RUN` steps see. A `SOURCE_DATE_EPOCH` build argument
    /// sets it too (as in BuildKit); this field wins over it.
    pub source_date_epoch: Option<u64>,
    /// `--squash` / `--squash-all`: merge layers of the image into one.
    pub squash: Squash,
    /// The media type family of the image.
    pub format: ImageFormat,
    /// The compression of the image's layers: those this build writes, and those of its
    /// steps found in the cache with another compression (converted). The base image's
    /// layers keep theirs unless `force_compression` is set.
    pub compression: Compression,
    /// BuildKit's `force-compression`: the base image's layers are converted to
    /// `compression` too.
    pub force_compression: bool,
}

/// How to build a [`BuildSpec`] and where the result goes: names, outputs, pushes, the
/// cache policy, registries and how steps run. Nothing here changes the image's bytes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuildOptions {
    /// `-t`: names the image gets in the store.
    pub tags: Vec<ImageName>,
    /// `-o`: where else the image goes.
    pub outputs: Vec<ExportTarget>,
    /// `--push`: push the image to the registry of every `-t` name after the build.
    pub push: bool,
    /// `--cache-from`: caches whose entries the build may use; one that cannot be read
    /// is a warning.
    pub cache_from: Vec<CacheImport>,
    /// `--cache-to`: where the build's cache entries are exported.
    pub cache_to: Vec<CacheExport>,
    /// `--no-cache`: run every step.
    pub no_cache: bool,
    /// `--no-cache-filter`: run every step of these stages (by name or index).
    pub no_cache_filter: Vec<String>,
    /// `--pull`: look every base image up in its registry again, even when the store has
    /// it (images named by digest or image ID excepted: they cannot change). Without it,
    /// only images the store lacks are pulled.
    pub pull: bool,
    /// Registry mirrors and insecure registries for pulls and pushes, as
    /// [`RegistryConfig::load`] reads them (credentials come from docker's config.json).
    pub registry: RegistryConfig,
    /// How many stages may run at once (at least 1).
    pub jobs: usize,
    /// Cancelling this token (from another thread) stops the build: running steps are
    /// killed and [`Builder::build`](super::Builder::build) returns
    /// [`BuildError::Canceled`](super::BuildError::Canceled).
    pub cancel: CancelToken,
    /// The network `RUN` steps get unless they ask for another one.
    pub network: Network,
    /// How step roots are made.
    pub snapshotter: SnapshotterKind,
    /// What runs `RUN` steps.
    pub executor: ExecutorKind,
    /// Runs `RUN` steps with one pipe for standard output and standard error, so their
    /// log lines come in the order the step wrote them (as a terminal shows them); every
    /// line is then reported as [`Stream::Stdout`](crate::progress::Stream). Off by default: each
    /// line keeps its stream, and a stdout and a stderr line written close together may
    /// arrive in either order. The CLI turns it on for its plain and tty views.
    pub merge_step_output: bool,
    /// `--secret`: the secrets `RUN --mount=type=secret` may mount; never stored.
    pub secrets: Vec<BuildSecret>,
    /// `--ssh`: the ssh agents `RUN --mount=type=ssh` may forward.
    pub ssh: Vec<SshAgent>,
    /// `--allow`: entitlements the build may use (`RUN --security=insecure`,
    /// `--network=host` and `RUN --network=host`).
    pub allow: Vec<Entitlement>,
    /// `--allow fs.read=DIR`: directories outside the build context from which the
    /// Dockerfile may load `FROM docker-archive://`, `oci-archive://` and
    /// `oci-layout://` images (paths beneath them, symlinks kept beneath). Without one,
    /// such paths resolve only inside the context.
    pub allow_fs_read: Vec<PathBuf>,
}

/// Which layers of the built image are merged into one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Squash {
    /// Every step keeps its own layer (the default).
    #[default]
    None,
    /// `--squash`: the layers this build adds become one; the base image's layers stay.
    New,
    /// `--squash-all`: the whole image becomes one layer.
    All,
}

impl BuildRequest {
    /// A request with defaults ([`BuildSpec::new`], [`BuildOptions::default`]).
    pub fn new(dockerfile: DockerfileInput, context: ContextSource) -> Self {
        BuildRequest::of(BuildSpec::new(dockerfile, context), BuildOptions::default())
    }

    /// The request to build `spec` with `options`.
    pub fn of(spec: BuildSpec, options: BuildOptions) -> Self {
        BuildRequest { spec, options }
    }
}

impl BuildSpec {
    /// The spec of `dockerfile` in `context` with defaults: no arguments, the last stage,
    /// the host's platform, no labels, gzip, OCI, no `SOURCE_DATE_EPOCH`, no squash.
    pub fn new(dockerfile: DockerfileInput, context: ContextSource) -> Self {
        BuildSpec {
            dockerfile,
            context,
            build_args: Vec::new(),
            target: None,
            platforms: Vec::new(),
            labels: Vec::new(),
            source_date_epoch: None,
            squash: Squash::None,
            format: ImageFormat::Oci,
            compression: Compression::Gzip,
            force_compression: false,
        }
    }
}

impl Default for BuildOptions {
    /// No names, no outputs, no push, the cache on, no cache import or export, base
    /// images from the store first, no mirrors, as many jobs as cores, a fresh cancel
    /// token, host networking, overlay, the sandbox, each output line on its stream, no
    /// secrets, no ssh agents, no entitlements.
    fn default() -> Self {
        BuildOptions {
            tags: Vec::new(),
            outputs: Vec::new(),
            push: false,
            cache_from: Vec::new(),
            cache_to: Vec::new(),
            no_cache: false,
            no_cache_filter: Vec::new(),
            pull: false,
            registry: RegistryConfig::default(),
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cancel: CancelToken::new(),
            network: Network::Default,
            snapshotter: SnapshotterKind::default(),
            executor: ExecutorKind::default(),
            merge_step_output: false,
            secrets: Vec::new(),
            ssh: Vec::new(),
            allow: Vec::new(),
            allow_fs_read: Vec::new(),
        }
    }
}

/// What happened to one step that touches the filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    /// The step's number in the progress events.
    pub step: StepId,
    /// The name shown for it, `[2/4] RUN ...`.
    pub name: String,
    /// Its Dockerfile line.
    pub line: Option<u32>,
    /// Its cache key.
    pub cache_key: CacheKey,
    /// Whether the result came from the cache.
    pub cached: bool,
    /// Why it missed the cache (for steps that ran).
    pub miss: Option<MissReason>,
    /// How long it ran (zero for cached steps).
    pub duration: Duration,
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct BuildResult {
    /// The image, stored in the content store; in a build of several platforms, the
    /// first platform's (each platform's is in [`index`](Self::index)).
    pub image: Image,
    /// The image ID: the digest of its config; in a build of several platforms, the
    /// digest of the image index (what BuildKit's `--iidfile` holds then).
    pub image_id: Digest,
    /// In a build of several platforms: the image index of the platforms' images, in
    /// `--platform` order, which the names, outputs and pushes took. `None` otherwise.
    pub index: Option<PlatformIndex>,
    /// The names it was given.
    pub names: Vec<ImageName>,
    /// The steps that touch the filesystem, in the order they ended.
    pub steps: Vec<StepReport>,
    /// How long the build took.
    pub duration: Duration,
    /// The names pushed (`--push`, `-o type=registry`), each with the manifest digest
    /// its registry stored.
    pub pushed: Vec<(ImageName, Digest)>,
}

/// Something a Dockerfile may ask for only when the build allows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Entitlement {
    /// `security.insecure`: `RUN --security=insecure` steps run with every capability
    /// and no seccomp filter.
    SecurityInsecure,
    /// `network.host`: steps run on the host's network unconfined (`--network=host`,
    /// `RUN --network=host`), `CAP_NET_RAW` and the host's abstract unix sockets
    /// included; without it they get the confined default network.
    NetworkHost,
}

impl Entitlement {
    /// The name `--allow` takes.
    pub fn name(self) -> &'static str {
        match self {
            Entitlement::SecurityInsecure => "security.insecure",
            Entitlement::NetworkHost => "network.host",
        }
    }
}

impl fmt::Display for Entitlement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An `--allow` value that names no entitlement.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown entitlement {0:?} (known: security.insecure, network.host)")]
pub struct UnknownEntitlement(pub String);

impl FromStr for Entitlement {
    type Err = UnknownEntitlement;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "security.insecure" => Ok(Entitlement::SecurityInsecure),
            "network.host" => Ok(Entitlement::NetworkHost),
            other => Err(UnknownEntitlement(other.to_owned())),
        }
    }
}

/// Where a secret's value comes from (`rbuild build --secret`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// `src=FILE`: the file's content.
    File(PathBuf),
    /// `env=VAR`: the value of the builder's environment variable.
    Env(String),
}

/// One secret a build may mount (`--secret id=X,src=FILE` or `--secret id=X,env=VAR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSecret {
    /// The id `RUN --mount=type=secret,id=X` names.
    pub id: String,
    /// Where the value comes from.
    pub source: SecretSource,
}

/// The id of an ssh mount that names none.
pub const DEFAULT_SSH_ID: &str = "default";

/// An ssh agent a build may forward (`--ssh ID=SOCKET`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshAgent {
    /// The id `RUN --mount=type=ssh,id=X` names (`default` when it names none).
    pub id: String,
    /// The agent's socket on the host.
    pub socket: PathBuf,
}
