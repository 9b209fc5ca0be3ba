//! The build engine: from a Dockerfile and a context to an image in the store.
//!
//! A [`Builder`] takes a [`BuildRequest`] (the Dockerfile, the context, build arguments,
//! the target, names and outputs) and runs it: the Dockerfile is parsed and lowered to a
//! [`BuildGraph`](rbuild_dockerfile::BuildGraph), the base images are resolved (local
//! store names, else pulled from their registry, always with [`BuildOptions::pull`];
//! `scratch`, earlier stages, `oci-layout://`, `oci-archive://`, `docker-archive://`)
//! and the graph lowered again with their configurations; then the
//! stages run level by level, those of one level in parallel. Each step that touches the
//! filesystem (`RUN`, `COPY`, `ADD`, `WORKDIR`) is looked up in the cache by its key
//! (parent key, step definition, the sources it copies); a hit reuses the layer, a miss
//! prepares a snapshot, runs or copies, diffs it into a [`ChangeSet`](crate::ChangeSet)
//! and writes a layer. Steps that change only the configuration become `empty_layer`
//! history entries. The target stage is assembled into an image, named and exported,
//! and pushed to registries if the request asks for it ([`BuildOptions::push`],
//! [`ExportTarget::Registry`]).
//!
//! Progress goes to the caller's [`Progress`](crate::Progress) sink; nothing here writes
//! to a terminal.

mod assemble;
mod cache;
mod epoch;
mod error;
mod mounted_roots;
mod mounts;
mod output;
mod prepare;
mod report;
mod repro;
mod request;
mod runtime;
mod semantics;
mod solve;
mod sources;
mod stage;
mod state;
mod step;

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
use crate::progress::Progress;
use crate::store::ContentStore;

/// Runs builds against one content store.
///
/// ```no_run
/// use rbuild_core::{BuildRequest, Builder, ContentStore, ContextSource, DockerfileInput, NullProgress};
///
/// let store = ContentStore::open("/var/lib/rbuild")?;
/// let request = BuildRequest::new(
///     DockerfileInput::Path("app/Dockerfile".into()),
///     ContextSource::Directory("app".into()),
/// );
/// let result = Builder::new(store).build(&request, &NullProgress)?;
/// println!("{}", result.image_id);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    store: ContentStore,
}

impl Builder {
    /// A builder storing images, layers and its cache in `store`.
    pub fn new(store: ContentStore) -> Self {
        Builder { store }
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
        solve::build(&self.store, request, progress)
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
        repro::check(&self.store, request, progress)
    }
}
