//! The build engine: from a Dockerfile and a context to an image in the store.
//!
//! A [`Builder`] takes a [`BuildRequest`] (the Dockerfile, the context, build arguments,
//! the target, names and outputs) and runs it: the Dockerfile is parsed and lowered to a
//! [`BuildGraph`](rbuild_dockerfile::BuildGraph), the base images are resolved (local
//! store names, else pulled from their registry, always with [`BuildOptions::pull`];
//! `scratch`, earlier stages, `oci-layout://`, `oci-archive://`, `docker-archive://`)
//! and the graph lowered again with their configurations; then the stages run in
//! parallel, each step as soon as the stages it reads have ended. Each step that touches
//! the filesystem (`RUN`, `COPY`, `ADD`, `WORKDIR`) is looked up in the cache by its key
//! (parent key, step definition, the sources it copies); a hit reuses the layer, a miss
//! prepares a snapshot, runs or copies, diffs it into a [`ChangeSet`](crate::change::ChangeSet)
//! and writes a layer. Steps that change only the configuration become `empty_layer`
//! history entries. The target stage is assembled into an image, named and exported,
//! and pushed to registries if the request asks for it ([`BuildOptions::push`],
//! [`ExportTarget::Registry`]).
//!
//! Progress goes to the caller's [`Progress`] sink; nothing here writes
//! to a terminal.

mod assemble;
mod cache;
mod epoch;
mod error;
mod layer_ref;
mod mounted_roots;
mod mounts;
mod output;
mod prepare;
mod report;
mod repro;
mod request;
mod runtime;
mod schedule;
mod semantics;
mod shared;
mod solve;
mod sources;
mod stage;
mod state;
mod step;

use std::fmt;
use std::sync::Arc;

pub use self::cache::entry::{CACHE_DIR, CacheKey, MissReason};
pub use self::cache::share::{
    CACHE_ARTIFACT_TYPE, CACHE_CONFIG_TYPE, CacheExport, CacheImport, CacheLocation, CacheMode,
    CacheShareError, DEFAULT_LOCAL_TAG, InvalidCacheOption,
};
pub use self::error::{BuildError, DockerfilePhase, Location};
pub use self::mounts::{CACHE_MOUNTS_DIR, MountError, prune_cache_mounts};
pub use self::repro::ReproReport;
pub use self::request::{
    BuildOptions, BuildRequest, BuildResult, BuildSecret, BuildSpec, DEFAULT_SSH_ID,
    DockerfileInput, Entitlement, ExecutorKind, SecretSource, SnapshotterKind, Squash, SshAgent,
    StepReport, UnknownEntitlement,
};
use self::runtime::Backends;
use crate::exec::Executor;
use crate::limits::Limits;
use crate::progress::Progress;
use crate::snapshot::Snapshotter;
use crate::store::ContentStore;

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
/// let cancel = request.options.cancel.clone();
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
    /// [`executor`](BuildOptions::executor) says.
    pub fn with_executor(mut self, executor: Arc<dyn Executor + Send + Sync>) -> Self {
        self.backends.executor = Some(executor);
        self
    }

    /// Makes every step root with `snapshotter`, whatever the request's
    /// [`snapshotter`](BuildOptions::snapshotter) says.
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
        if request.options.push && request.options.tags.is_empty() {
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
