//! The build engine: from a Dockerfile and a context to an image in the store.
//!
//! A [`Builder`] takes a [`BuildRequest`] (the Dockerfile, the context, build arguments,
//! the target, names and outputs) and runs it: the Dockerfile is parsed and lowered to a
//! [`BuildGraph`](rbuild_dockerfile::BuildGraph), the base images are resolved (local
//! store names, else pulled from their registry, always with [`BuildRequest::pull`];
//! `scratch`, earlier stages, `oci-layout://`, `oci-archive://`, `docker-archive://`)
//! and the graph lowered again with their configurations; then the stages run in
//! parallel, each step as soon as the stages it reads have ended. Each step that touches
//! the filesystem (`RUN`, `COPY`, `ADD`, `WORKDIR`) is looked up in the cache by its key
//! (parent key, step definition, the sources it copies); a hit reuses the layer, a miss
//! prepares a snapshot, runs or copies, diffs it into a [`ChangeSet`](crate::change::ChangeSet)
//! and writes a layer. Steps that change only the configuration become `empty_layer`
//! history entries. The target stage is assembled into an image, named and exported,
//! and pushed to registries if the request asks for it ([`BuildRequest::push`],
//! [`ExportTarget::Registry`]).
//!
//! Progress goes to the caller's [`Progress`] sink; nothing here writes
//! to a terminal.

mod base;
mod cache;
mod cache_share;
mod entitlement;
mod error;
mod mounted_roots;
mod mounts;
mod push;
mod recompress;
mod repro;
mod schedule;
mod semantics;
mod solve;
mod sources;
mod squash;
mod stage;
mod state;
mod step;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use self::cache::{CACHE_DIR, CacheKey, MissReason};
pub use self::cache_share::{
    CACHE_ARTIFACT_TYPE, CACHE_CONFIG_TYPE, CacheExport, CacheImport, CacheLocation, CacheMode,
    CacheShareError, DEFAULT_LOCAL_TAG, InvalidCacheOption,
};
pub use self::entitlement::{Entitlement, UnknownEntitlement};
pub use self::error::{BuildError, DockerfilePhase, Location};
pub use self::mounts::{
    BuildSecret, CACHE_MOUNTS_DIR, DEFAULT_SSH_ID, MountError, SecretSource, SshAgent,
    prune_cache_mounts,
};
pub use self::repro::ReproReport;
use crate::context::ContextSource;
use crate::digest::Digest;
use crate::exec::{CancelToken, Executor, Network, RuncExecutor, SandboxExecutor};
use crate::export::ExportTarget;
use crate::image::{Image, ImageFormat};
use crate::layer::Compression;
use crate::limits::Limits;
use crate::progress::{Progress, StepId};
use crate::registry::RegistryConfig;
use crate::snapshot::{CopySnapshotter, OverlaySnapshotter, Snapshotter};
use crate::store::{ContentStore, ImageName};

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

/// How step roots are made (an embedder's own: [`Builder::with_snapshotter`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SnapshotterKind {
    /// overlayfs over the unpacked layers (the default).
    #[default]
    Overlay,
    /// A full copy of the lowers per step.
    Copy,
}

/// What runs `RUN` steps (an embedder's own: [`Builder::with_executor`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ExecutorKind {
    /// The built-in namespace sandbox (the default).
    #[default]
    Sandbox,
    /// An OCI runtime (`runc`) at this path.
    Runc(PathBuf),
}

/// Everything a build needs besides the store.
#[derive(Debug)]
pub struct BuildRequest {
    /// The Dockerfile.
    pub dockerfile: DockerfileInput,
    /// The build context (a directory, or a tar unpacked with
    /// [`ContextSource::from_tar`]).
    pub context: ContextSource,
    /// `--build-arg NAME=VALUE`, in order.
    pub build_args: Vec<(String, String)>,
    /// `--target`: the stage to build; the last one when `None`.
    pub target: Option<String>,
    /// `-t`: names the image gets in the store.
    pub tags: Vec<ImageName>,
    /// `-o`: where else the image goes.
    pub outputs: Vec<ExportTarget>,
    /// `--label KEY=VALUE`, added to the image config.
    pub labels: Vec<(String, String)>,
    /// `--no-cache`: run every step.
    pub no_cache: bool,
    /// `--no-cache-filter`: run every step of these stages (by name or index).
    pub no_cache_filter: Vec<String>,
    /// How many stages may run at once (at least 1).
    pub jobs: usize,
    /// Cancelling this token (from another thread) stops the build: running steps are
    /// killed and [`Builder::build`] returns [`BuildError::Canceled`].
    pub cancel: CancelToken,
    /// The network `RUN` steps get unless they ask for another one.
    pub network: Network,
    /// How step roots are made.
    pub snapshotter: SnapshotterKind,
    /// What runs `RUN` steps.
    pub executor: ExecutorKind,
    /// The compression of the image's layers: those this build writes, and those of its
    /// steps found in the cache with another compression (converted). The base image's
    /// layers keep theirs unless `force_compression` is set.
    pub compression: Compression,
    /// BuildKit's `force-compression`: the base image's layers are converted to
    /// `compression` too.
    pub force_compression: bool,
    /// Runs `RUN` steps with one pipe for standard output and standard error, so their
    /// log lines come in the order the step wrote them (as a terminal shows them); every
    /// line is then reported as [`Stream::Stdout`](crate::progress::Stream). Off by default: each
    /// line keeps its stream, and a stdout and a stderr line written close together may
    /// arrive in either order. The CLI turns it on for its plain and tty views.
    pub merge_step_output: bool,
    /// The media type family of the image.
    pub format: ImageFormat,
    /// `--pull`: look every base image up in its registry again, even when the store has
    /// it (images named by digest or image ID excepted: they cannot change). Without it,
    /// only images the store lacks are pulled.
    pub pull: bool,
    /// `--push`: push the image to the registry of every `-t` name after the build.
    pub push: bool,
    /// Registry mirrors and insecure registries for pulls and pushes, as
    /// [`RegistryConfig::load`] reads them (credentials come from docker's config.json).
    pub registry: RegistryConfig,
    /// `--secret`: the secrets `RUN --mount=type=secret` may mount; never stored.
    pub secrets: Vec<BuildSecret>,
    /// `--allow`: entitlements the build may use (`RUN --security=insecure`,
    /// `--network=host` and `RUN --network=host`).
    pub allow: Vec<Entitlement>,
    /// `--allow fs.read=DIR`: directories outside the build context from which the
    /// Dockerfile may load `FROM docker-archive://`, `oci-archive://` and
    /// `oci-layout://` images (paths beneath them, symlinks kept beneath). Without one,
    /// such paths resolve only inside the context.
    pub allow_fs_read: Vec<PathBuf>,
    /// `--ssh`: the ssh agents `RUN --mount=type=ssh` may forward.
    pub ssh: Vec<SshAgent>,
    /// `SOURCE_DATE_EPOCH` (seconds since the epoch): the `created` time of the image
    /// and of this build's history entries, the latest mtime in the layers this build
    /// writes, and a variable `RUN` steps see. A `SOURCE_DATE_EPOCH` build argument
    /// sets it too (as in BuildKit); this field wins over it.
    pub source_date_epoch: Option<u64>,
    /// `--squash` / `--squash-all`: merge layers of the image into one.
    pub squash: Squash,
    /// `--cache-to`: where the build's cache entries are exported.
    pub cache_to: Vec<CacheExport>,
    /// `--cache-from`: caches whose entries the build may use; one that cannot be read
    /// is a warning.
    pub cache_from: Vec<CacheImport>,
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
    /// A request with defaults: no arguments, the last stage, no names, no outputs, the
    /// cache on, as many jobs as cores, host networking, overlay, the sandbox, gzip, OCI,
    /// base images from the store first, no push, no mirrors, no secrets, no
    /// `SOURCE_DATE_EPOCH`, no squash.
    pub fn new(dockerfile: DockerfileInput, context: ContextSource) -> Self {
        BuildRequest {
            dockerfile,
            context,
            build_args: Vec::new(),
            target: None,
            tags: Vec::new(),
            outputs: Vec::new(),
            labels: Vec::new(),
            no_cache: false,
            no_cache_filter: Vec::new(),
            cancel: CancelToken::new(),
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            network: Network::Default,
            snapshotter: SnapshotterKind::default(),
            executor: ExecutorKind::default(),
            compression: Compression::Gzip,
            force_compression: false,
            merge_step_output: false,
            format: ImageFormat::Oci,
            pull: false,
            push: false,
            registry: RegistryConfig::default(),
            secrets: Vec::new(),
            allow: Vec::new(),
            allow_fs_read: Vec::new(),
            ssh: Vec::new(),
            source_date_epoch: None,
            squash: Squash::None,
            cache_to: Vec::new(),
            cache_from: Vec::new(),
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
    /// The image, stored in the content store.
    pub image: Image,
    /// The image ID: the digest of its config.
    pub image_id: Digest,
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

/// Runs builds against one content store.
///
/// ```no_run
/// use rbuild_core::{BuildRequest, Builder, ContentStore, ContextSource, DockerfileInput, Event};
///
/// let store = ContentStore::open("/var/lib/rbuild")?;
/// let request = BuildRequest::new(
///     DockerfileInput::Path("app/Dockerfile".into()),
///     ContextSource::Directory("app".into()),
/// );
/// // Another thread may stop the build: the request's token is shared by its clones.
/// let cancel = request.cancel.clone();
/// # let _ = &cancel;
/// let result = Builder::new(store).build(&request, &|event: &Event| eprintln!("{event:?}"))?;
/// println!("{}", result.image_id);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// The request's [`ExecutorKind`] and [`SnapshotterKind`] choose among rbuild's own
/// back ends; [`with_executor`](Self::with_executor) and
/// [`with_snapshotter`](Self::with_snapshotter) hand in an embedder's own instead.
/// [`with_limits`](Self::with_limits) sets how far archives may expand and how long an
/// HTTP request may take (the library reads no environment variable for them).
#[derive(Clone)]
pub struct Builder {
    store: ContentStore,
    backends: Backends,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("store", &self.store)
            .field("own_executor", &self.backends.executor.is_some())
            .field("own_snapshotter", &self.backends.snapshotter.is_some())
            .field("http_deadline", &self.backends.http_deadline)
            .finish()
    }
}

impl Builder {
    /// A builder storing images, layers and its cache in `store`.
    pub fn new(store: ContentStore) -> Self {
        Builder {
            store,
            backends: Backends::default(),
        }
    }

    /// Runs every `RUN` step with `executor`, whatever the request's
    /// [`executor`](BuildRequest::executor) says.
    pub fn with_executor(mut self, executor: Arc<dyn Executor + Send + Sync>) -> Self {
        self.backends.executor = Some(executor);
        self
    }

    /// Makes every step root with `snapshotter`, whatever the request's
    /// [`snapshotter`](BuildRequest::snapshotter) says.
    pub fn with_snapshotter(mut self, snapshotter: Arc<dyn Snapshotter + Send + Sync>) -> Self {
        self.backends.snapshotter = Some(snapshotter);
        self
    }

    /// Builds within `limits`: every archive unpacked (base image layers, `ADD`'s local
    /// archives, `FROM docker-archive://`) within [`Limits::archive`], which the
    /// builder's store takes ([`ContentStore::with_archive_limits`]); every registry
    /// request and `ADD <url>` download within [`Limits::http_deadline`]. Without it,
    /// the store's archive limits and [`Limits::default`]'s deadline.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.store = self.store.with_archive_limits(limits.archive);
        self.backends.http_deadline = limits.http_deadline;
        self
    }

    /// The limits this builder builds within (see [`with_limits`](Self::with_limits)).
    pub fn limits(&self) -> Limits {
        Limits::default()
            .with_archive(self.store.archive_limits())
            .with_http_deadline(self.backends.http_deadline)
    }

    /// The store this builder writes to.
    pub fn store(&self) -> &ContentStore {
        &self.store
    }

    /// Builds `request`, sending progress events to `progress` (the transfers of base
    /// image pulls, exports and pushes among them), and pushes the image if the request
    /// asks for it.
    pub fn build(
        &self,
        request: &BuildRequest,
        progress: &dyn Progress,
    ) -> Result<BuildResult, BuildError> {
        if request.push && request.tags.is_empty() {
            return Err(crate::export::ExportError::NoName.into());
        }
        solve::build(&self.store, &self.backends, request, progress)
    }

    /// `--reproducible-check`: builds `request` twice from an empty cache, each in a
    /// fresh temporary store seeded with this store's images, and compares the two
    /// images. Fails with [`BuildError::NotReproducible`], naming the first difference,
    /// when they differ. Nothing is kept: names, outputs and pushes are ignored. Without
    /// a `SOURCE_DATE_EPOCH`, both builds use the current time as theirs.
    pub fn check_reproducible(
        &self,
        request: &BuildRequest,
        progress: &dyn Progress,
    ) -> Result<ReproReport, BuildError> {
        repro::check(&self.store, &self.backends, request, progress)
    }
}

/// The executor and snapshotter of a build: an embedder's own, else those the request's
/// kinds name; and the deadline of its HTTP requests.
#[derive(Clone)]
pub(crate) struct Backends {
    executor: Option<Arc<dyn Executor + Send + Sync>>,
    snapshotter: Option<Arc<dyn Snapshotter + Send + Sync>>,
    pub(crate) http_deadline: Duration,
}

impl Default for Backends {
    fn default() -> Self {
        Backends {
            executor: None,
            snapshotter: None,
            http_deadline: Limits::default().http_deadline,
        }
    }
}

impl Backends {
    /// The executor of a build asking for `kind`.
    pub(crate) fn executor(&self, kind: &ExecutorKind) -> Arc<dyn Executor + Send + Sync> {
        match (&self.executor, kind) {
            (Some(own), _) => own.clone(),
            (None, ExecutorKind::Sandbox) => Arc::new(SandboxExecutor::new()),
            (None, ExecutorKind::Runc(path)) => Arc::new(RuncExecutor::new(path.clone())),
        }
    }

    /// The snapshotter of a build asking for `kind`.
    pub(crate) fn snapshotter(&self, kind: SnapshotterKind) -> Arc<dyn Snapshotter + Send + Sync> {
        match (&self.snapshotter, kind) {
            (Some(own), _) => own.clone(),
            (None, SnapshotterKind::Overlay) => Arc::new(OverlaySnapshotter::new()),
            (None, SnapshotterKind::Copy) => Arc::new(CopySnapshotter::new()),
        }
    }
}
