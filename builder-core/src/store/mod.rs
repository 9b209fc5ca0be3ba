//! The content store: an [`OciLayout`] plus its lock and its named areas.
//!
//! The store root is an OCI image layout (image-spec image-layout.md), so skopeo, umoci
//! and podman read the store directly (`oci:<root>:<name>`); the layout's own files and
//! blob writes are [`crate::oci_layout`]'s. Blobs are written to `<root>/tmp`, synced
//! and renamed into place, so a reader never sees half a blob and writing the same
//! content twice is a no-op. Every read re-hashes what it reads. Beside the layout the
//! store keeps its lock (`lock.rs`), its ownership and deletion rules (`guard.rs`), the
//! names in its index (`index.rs`) and directories of its own (`layers/`, `cache/`,
//! `tmp/`, ...).

mod blob;
mod guard;
mod index;
mod lock;
pub(crate) mod record;
mod reference;

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use self::blob::BlobWriter;
pub use self::guard::UnsafeStore;
pub use self::index::NamedImage;
pub use self::lock::ExclusiveLock;
pub use self::reference::{ImageName, InvalidImageName};
use crate::atomic::{AtomicError, AtomicWrite};
use crate::digest::Digest;
use crate::limits::ArchiveLimits;
pub use crate::oci_layout::Blob;
pub(crate) use crate::oci_layout::REF_NAME_ANNOTATION;
use crate::oci_layout::{INDEX_FILE, LAYOUT_FILE, LayoutError, OciLayout};
use crate::privilege::Privilege;
/// The environment variable that overrides the store root, like `--root`.
pub(crate) const ROOT_ENV: &str = "RBUILD_ROOT";

/// A failure of the content store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file or directory of the store could not be created, read or written.
    #[error("failed to {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
    /// A blob's content does not hash to its name.
    #[error("blob {expected} is corrupt: its content hashes to {found}")]
    DigestMismatch {
        /// The name of the blob.
        expected: Digest,
        /// What its content hashes to.
        found: Digest,
    },
    /// A blob's size differs from the size a descriptor promised.
    #[error("blob {digest} has {found} bytes, expected {expected}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The promised size.
        expected: u64,
        /// The actual size.
        found: u64,
    },
    /// No blob has this digest.
    #[error("blob {0} not found in the store")]
    BlobNotFound(Digest),
    /// No image has this name.
    #[error("image {0} not found in the store")]
    ImageNotFound(String),
    /// An image ID prefix that several different images share.
    #[error("image ID prefix {0} is ambiguous: several images match it; give more digits")]
    AmbiguousImageId(String),
    /// An operation refused because of what else refers to an image.
    #[error("conflict: {0}")]
    Conflict(String),
    /// `index.json` or another JSON document of the store is not valid.
    #[error("failed to parse {path}")]
    Json {
        /// The document.
        path: PathBuf,
        /// Why it does not parse.
        source: serde_json::Error,
    },
    /// An image name does not parse.
    #[error(transparent)]
    Name(#[from] InvalidImageName),
    /// The store is not safe to use: another account owns or could change it.
    #[error(transparent)]
    Unsafe(#[from] UnsafeStore),
    /// A file of the store's layout is refused (a symbolic link, not a regular file).
    #[error(transparent)]
    Layout(LayoutError),
}

impl From<LayoutError> for StoreError {
    fn from(e: LayoutError) -> Self {
        match e {
            LayoutError::Io {
                action,
                path,
                source,
            } => StoreError::Io {
                action,
                path,
                source,
            },
            LayoutError::DigestMismatch { expected, found } => {
                StoreError::DigestMismatch { expected, found }
            }
            LayoutError::SizeMismatch {
                digest,
                expected,
                found,
            } => StoreError::SizeMismatch {
                digest,
                expected,
                found,
            },
            LayoutError::BlobNotFound { digest, .. } => StoreError::BlobNotFound(digest),
            LayoutError::Json { path, source } => StoreError::Json { path, source },
            other => StoreError::Layout(other),
        }
    }
}

impl From<AtomicError> for StoreError {
    fn from(e: AtomicError) -> Self {
        StoreError::Io {
            action: e.action,
            path: e.path,
            source: e.source,
        }
    }
}

pub(crate) fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

/// The store root used when neither `--root` nor `RBUILD_ROOT` is given:
/// `/var/lib/rbuild` as root, else `$XDG_DATA_HOME/rbuild`, else `~/.local/share/rbuild`.
/// An unprivileged caller stays one in the user namespace
/// [`enter_user_namespace`](crate::rootless::enter_user_namespace) makes: its store is
/// in its home.
///
/// As the XDG base directory specification says, a relative `XDG_DATA_HOME` is ignored;
/// a `HOME` that is unset, empty or relative gives way to the caller's home in
/// /etc/passwd (a store under `/` or the working directory is never meant).
pub fn default_root() -> PathBuf {
    if let Some(root) = std::env::var_os(ROOT_ENV).filter(|r| !r.is_empty()) {
        return PathBuf::from(root);
    }
    if Privilege::current().is_root() && !crate::privilege::entered() {
        return PathBuf::from("/var/lib/rbuild");
    }
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(data) = absolute("XDG_DATA_HOME") {
        return data.join("rbuild");
    }
    let home = absolute("HOME")
        .or_else(|| crate::privilege::host_home(crate::privilege::caller_uid()))
        .unwrap_or_else(|| PathBuf::from("/"));
    home.join(".local/share/rbuild")
}

/// The build cache's directory under the store root (the solver's records; `prune`
/// drops it whole).
pub const CACHE_DIR: &str = "cache";

/// The directory under the store root holding `RUN --mount=type=cache` directories.
pub const CACHE_MOUNTS_DIR: &str = "cache-mounts";

/// An OCI image layout used as rbuild's content store.
///
/// While a process has a store open it holds a shared lock on it; prune waits for the
/// exclusive lock, so it never removes what a running build of another process uses.
#[derive(Debug, Clone)]
pub struct ContentStore {
    /// The layout at the root; its clones (and its blob writers) hold the lock too.
    layout: OciLayout,
    /// The shared lock this process holds on the store (see `lock.rs`).
    lock: Arc<lock::StoreLock>,
    /// The limits of the archives this store unpacks.
    archive_limits: ArchiveLimits,
}

impl ContentStore {
    /// Opens the store at `root`, creating the layout if it does not exist yet.
    ///
    /// The root and its top-level directories must be real directories owned by the
    /// caller (their modes are taken back to 0700): another account able to write in a
    /// store could make rbuild run or delete what it planted there. A symbolic link as
    /// the root itself is followed if the caller or root owns it.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        // Absolute, so that paths under it compare with paths made from it whatever the
        // working directory (a relative `--root` made `run` refuse its own scratch).
        let root = root.into();
        let root = std::path::absolute(&root).map_err(io_err("open", &root))?;
        let lock = lock::StoreLock::acquire(&root)?;
        let fd = lock
            .root_fd()
            .try_clone_to_owned()
            .map_err(io_err("open", &root))?;
        let keep: crate::oci_layout::KeepAlive = lock.clone();
        let layout = OciLayout::from_fd(root.clone(), fd)?
            .with_scratch(root.join("tmp"))
            .with_file_mode(0o600)
            .trusting_existing_blobs()
            .keeping(keep);
        // Written only when missing, so that a read-only store opens.
        if !layout.has(LAYOUT_FILE) {
            layout.ensure_marker()?;
        }
        if !layout.has(INDEX_FILE) {
            layout.write_index(&crate::oci_layout::empty_index())?;
        }
        Ok(Self {
            layout,
            lock,
            archive_limits: ArchiveLimits::default(),
        })
    }

    /// This store, unpacking archives within `limits`: the layers it unpacks (by chain
    /// ID, to verify, to export), and the archives loaded or imported into it. The
    /// default is [`ArchiveLimits::default`]; clones made afterwards keep the limits.
    pub fn with_archive_limits(mut self, limits: ArchiveLimits) -> Self {
        self.archive_limits = limits;
        self
    }

    /// The limits of the archives this store unpacks (see
    /// [`with_archive_limits`](Self::with_archive_limits)).
    pub fn archive_limits(&self) -> ArchiveLimits {
        self.archive_limits
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        self.layout.dir()
    }

    /// The OCI image layout at the root.
    pub fn layout(&self) -> &OciLayout {
        &self.layout
    }

    /// A descriptor of the root directory, opened without following links.
    pub(crate) fn root_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.lock.root_fd()
    }

    /// The scratch directory, on the same filesystem as the blobs.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root().join("tmp")
    }

    /// Where the blob `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.layout.blob_path(digest)
    }

    /// Whether the blob `digest` is present as a regular file (not verified).
    pub fn contains(&self, digest: &Digest) -> bool {
        self.layout.contains(digest)
    }

    /// Stores the bytes `reader` yields as blob `digest` (`what` names the source in
    /// errors); they are checked before the blob is committed, so content that is not
    /// what was asked for never enters the store, even under its own digest.
    pub fn import_reader(
        &self,
        reader: &mut impl io::Read,
        digest: &Digest,
        what: &Path,
    ) -> Result<(), StoreError> {
        if self.contains(digest) {
            return Ok(());
        }
        let mut writer = self.writer()?;
        io::copy(reader, &mut writer).map_err(io_err("read", what))?;
        writer.finish_verified(digest)?;
        Ok(())
    }

    /// A writer for a new blob; its name is known once it is finished.
    pub fn writer(&self) -> Result<BlobWriter, StoreError> {
        Ok(BlobWriter(self.layout.writer()?))
    }

    /// Stores `bytes` and returns their blob; storing the same bytes again is a no-op.
    pub fn put(&self, bytes: &[u8]) -> Result<Blob, StoreError> {
        Ok(self.layout.put(bytes)?)
    }

    /// Opens blob `digest` for streaming (never through a symbolic link); the caller
    /// hashes if it needs verification.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, StoreError> {
        Ok(self.layout.open_blob(digest)?)
    }

    /// Reads blob `digest` whole and checks that it hashes to its name.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        Ok(self.layout.read_blob(digest)?)
    }

    /// Reads blob `digest` and parses it as JSON.
    pub fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        digest: &Digest,
    ) -> Result<T, StoreError> {
        let bytes = self.read(digest)?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            path: self.blob_path(digest),
            source,
        })
    }

    /// Re-hashes blob `digest` from disk, returning its size if it is intact.
    pub fn verify_blob(&self, digest: &Digest) -> Result<u64, StoreError> {
        Ok(self.layout.verify_blob(digest)?)
    }

    /// Every blob digest present under `blobs/sha256`, in order.
    pub fn blobs(&self) -> Result<Vec<Digest>, StoreError> {
        Ok(self.layout.blobs()?)
    }

    /// Deletes blob `digest` (no reference checks: see prune).
    pub fn remove_blob(&self, digest: &Digest) -> Result<(), StoreError> {
        self.remove_tree(&self.blob_path(digest)).map(|_| ())
    }

    /// Writes `path` atomically: a temp file in `<root>/tmp`, fsync, rename.
    pub(crate) fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        AtomicWrite::new(path)
            .temp_in(&self.tmp_dir())
            .synced()
            .write(bytes)
            .map_err(StoreError::from)
    }
}
