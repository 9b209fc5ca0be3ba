//! The machinery one build runs with: the store, the snapshotter and executor the
//! request chose (or the embedder handed in), the cache (with its `--cache-from` imports), the reporter, the cancel
//! token, and the build's scratch directory (removed when the runtime is dropped).
//!
//! Every phase after the preparation uses it; it knows nothing of the Dockerfile. The
//! snapshot of a list of layers and the layer a snapshot's changes make live here, so
//! the steps and `--squash` make them the same way.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::cache::Cache;
use super::error::{BuildError, io_err};
use super::prepare::Prepared;
use super::report::Reporter;
use super::request::{BuildOptions, BuildSpec, ExecutorKind, SnapshotterKind};
use super::state::LayerRef;
use crate::digest::Digest;
use crate::exec::{CancelToken, ChrootExecutor, Executor, RuncExecutor, SandboxExecutor};
use crate::layer::{LayerOptions, chain_ids, write_layer};
use crate::limits::Limits;
use crate::snapshot::{CopySnapshotter, OverlaySnapshotter, Snapshot, Snapshotter, StepRoot};
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
    /// Held while a blob is made from a layer directory: each is made once (the second
    /// caller finds the first one's blob in the layer's record).
    blob_flight: Mutex<()>,
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
        // A chroot needs a plain directory: nothing can be mounted where it is used.
        // Owners kept in tables (crate::fakeroot) live beside plain directories too: an
        // overlay's copied-up parents would lose the owners their lowers' tables give.
        let snapshotter = backends.snapshotter(match options.executor {
            _ if crate::fakeroot::active() => SnapshotterKind::Copy,
            ExecutorKind::Chroot | ExecutorKind::Proot(_) => SnapshotterKind::Copy,
            _ => options.snapshotter,
        });
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
            blob_flight: Mutex::new(()),
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
            .materialize(store, layers.iter().filter_map(|l| l.blob.as_ref()))?;
        let mut lowers: Vec<PathBuf> =
            store.unpack_stack(layers.iter().map(|l| (l.blob.as_ref(), &l.diff_id)))?;
        if lowers.is_empty() {
            // overlayfs needs at least one lower directory.
            let empty = self.work().join("empty");
            std::fs::create_dir_all(&empty).map_err(io_err("create directory", &empty))?;
            lowers.push(empty);
        }
        std::fs::create_dir_all(scratch).map_err(io_err("create directory", scratch))?;
        Ok(self.snapshotter.prepare(&lowers, scratch)?)
    }

    /// What `snapshot` (made over `below`) changed as a layer of this build, `None` when
    /// it changed nothing. An overlay snapshot's upper directory becomes the layer's
    /// directory in the store, with no blob (made when an output needs one:
    /// [`ensure_blobs`](Self::ensure_blobs)); another snapshot's changes are written as
    /// a blob (compression and epoch of the request).
    pub(crate) fn commit(
        &self,
        snapshot: &Snapshot,
        below: &[LayerRef],
    ) -> Result<Option<LayerRef>, BuildError> {
        let changes = self.snapshotter.diff(snapshot)?;
        if changes.is_empty() {
            return Ok(None);
        }
        if let StepRoot::Overlay { upper, .. } = snapshot.root() {
            let below: Vec<Digest> = below.iter().map(|l| l.diff_id.clone()).collect();
            let committed = self.store.commit_upper(
                upper,
                &changes,
                &below,
                self.layer_options.source_date_epoch,
            )?;
            return Ok(Some(LayerRef {
                blob: None,
                diff_id: committed.diff_id,
                size: committed.tar_size,
                compression: self.layer_options.compression,
            }));
        }
        let layer = write_layer(
            self.store,
            snapshot.source_tree(),
            &changes,
            &self.layer_options,
        )?;
        Ok(Some(LayerRef::of(&layer)))
    }

    /// Gives every layer of the stack `layers` (bottom first) a blob: those kept only as
    /// directories get one made from the directory (in the request's compression,
    /// checked against the diff_id before it is stored), once per layer.
    pub(crate) fn ensure_blobs(&self, layers: &mut [LayerRef]) -> Result<(), BuildError> {
        if layers.iter().all(|l| l.blob.is_some()) {
            return Ok(());
        }
        let chain = chain_ids(layers.iter().map(|l| &l.diff_id));
        for (layer, chain_id) in layers.iter_mut().zip(&chain) {
            if layer.blob.is_some() {
                continue;
            }
            let _flight = self
                .blob_flight
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let made = self
                .store
                .blob_from_dir(chain_id, &layer.diff_id, &self.layer_options)?;
            *layer = LayerRef::of(&made);
        }
        Ok(())
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
            (None, ExecutorKind::Chroot) => Arc::new(ChrootExecutor::new()),
            (None, ExecutorKind::Proot(proot)) => Arc::new(ChrootExecutor::proot(proot.clone())),
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
