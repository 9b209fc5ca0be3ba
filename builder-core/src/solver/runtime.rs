//! The machinery one build runs with: the store, the snapshotter and executor the
//! request chose (or the embedder handed in), the cache (with its `--cache-from` imports), the reporter, the cancel
//! token, and the build's scratch directory (removed when the runtime is dropped).
//!
//! Every phase after the preparation uses it; it knows nothing of the Dockerfile. The
//! snapshot of a list of layers and the layer a snapshot's changes make live here, so
//! the steps and `--squash` make them the same way.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::cache::Cache;
use super::error::{BuildError, io_err};
use super::prepare::Prepared;
use super::report::Reporter;
use super::request::{BuildOptions, BuildSpec, ExecutorKind, SnapshotterKind};
use super::state::LayerRef;
use crate::exec::{CancelToken, Executor, RuncExecutor, SandboxExecutor};
use crate::layer::{Layer, LayerOptions, write_layer};
use crate::limits::Limits;
use crate::snapshot::{CopySnapshotter, OverlaySnapshotter, Snapshot, Snapshotter};
use crate::store::ContentStore;

/// What a build runs with besides its definition.
pub(crate) struct Runtime<'a> {
    pub store: &'a ContentStore,
    pub snapshotter: Arc<dyn Snapshotter + Send + Sync>,
    pub executor: Arc<dyn Executor + Send + Sync>,
    pub cache: Cache,
    pub reporter: &'a Reporter<'a>,
    /// A child of the request's token: the first failure cancels it, not the caller's.
    pub cancel: CancelToken,
    /// `--cache-from` caches that could not be read, as warnings.
    pub import_warnings: Vec<String>,
    /// How the layers this build writes are made (compression, `SOURCE_DATE_EPOCH`).
    pub layer_options: LayerOptions,
    /// Per-build scratch space, removed with the runtime.
    work: tempfile::TempDir,
}

impl<'a> Runtime<'a> {
    /// Opens the machinery for building `spec` with `options` into `store`: the
    /// snapshotter and executor, the `--cache-from` imports, the cache, a scratch
    /// directory. Sends no events (the import warnings are kept for the caller).
    pub(crate) fn open(
        store: &'a ContentStore,
        backends: &Backends,
        spec: &BuildSpec,
        options: &BuildOptions,
        prepared: &Prepared,
        reporter: &'a Reporter<'a>,
    ) -> Result<Self, BuildError> {
        let snapshotter = backends.snapshotter(options.snapshotter);
        let executor = backends.executor(&options.executor);
        let (imported, import_warnings) =
            super::cache::share::import(store, &options.cache_from, &options.registry);
        let cache = Cache::open(store)?.with_imports(imported);
        let tmp = store.tmp_dir();
        std::fs::create_dir_all(&tmp).map_err(io_err("create directory", &tmp))?;
        let work = tempfile::Builder::new()
            .prefix("build-")
            .tempdir_in(&tmp)
            .map_err(io_err("create build directory in", &tmp))?;
        let layer_options = LayerOptions {
            compression: spec.compression,
            source_date_epoch: prepared.epoch,
            ..LayerOptions::default()
        };
        Ok(Runtime {
            store,
            snapshotter,
            executor,
            cache,
            reporter,
            cancel: options.cancel.child(),
            import_warnings,
            layer_options,
            work,
        })
    }

    /// The build's scratch directory.
    pub(crate) fn work(&self) -> &Path {
        self.work.path()
    }

    /// The scratch directory of step `step`.
    pub(crate) fn step_scratch(&self, step: u32) -> Result<PathBuf, BuildError> {
        let dir = self.work().join(format!("step-{step}"));
        std::fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        Ok(dir)
    }

    /// A snapshot over `layers` (bottom first) in `scratch`: their blobs fetched from an
    /// imported cache if hits left them out, unpacked, and a root prepared over them.
    pub(crate) fn snapshot(
        &self,
        layers: &[LayerRef],
        scratch: &Path,
    ) -> Result<Snapshot, BuildError> {
        let store = self.store;
        // Layers of hits from a --cache-from cache come now that their content is needed.
        self.cache
            .materialize(store, layers.iter().map(|l| &l.blob))?;
        let mut lowers: Vec<PathBuf> =
            store.unpack_layers(layers.iter().map(|l| (&l.blob, &l.diff_id)))?;
        if lowers.is_empty() {
            // overlayfs needs at least one lower directory.
            let empty = self.work().join("empty");
            std::fs::create_dir_all(&empty).map_err(io_err("create directory", &empty))?;
            lowers.push(empty);
        }
        std::fs::create_dir_all(scratch).map_err(io_err("create directory", scratch))?;
        Ok(self.snapshotter.prepare(&lowers, scratch)?)
    }

    /// What `snapshot` changed as a layer of this build (compression and epoch of the
    /// request), `None` when it changed nothing.
    pub(crate) fn commit(&self, snapshot: &Snapshot) -> Result<Option<Layer>, BuildError> {
        let changes = self.snapshotter.diff(snapshot)?;
        if changes.is_empty() {
            return Ok(None);
        }
        Ok(Some(write_layer(
            self.store,
            snapshot.source_tree(),
            &changes,
            &self.layer_options,
        )?))
    }

    /// Removes the scratch directory; a failure to remove it does not fail the build.
    pub(crate) fn close(self) {
        let _ = self.work.close();
    }
}

/// The executor and snapshotter of a build: an embedder's own, else those the request's
/// kinds name; and the deadline of its HTTP requests.
#[derive(Clone)]
pub(crate) struct Backends {
    pub(crate) executor: Option<Arc<dyn Executor + Send + Sync>>,
    pub(crate) snapshotter: Option<Arc<dyn Snapshotter + Send + Sync>>,
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
