//! An OCI image layout on any directory (image-spec image-layout.md): the content store,
//! an `-o type=oci,tar=false` export, a `--cache-to type=local` directory, a
//! `FROM oci-layout://` base are all one [`OciLayout`].
//!
//! The principal type is [`OciLayout`], opened with [`OciLayout::open`] on a directory
//! another tool wrote (skopeo, umoci, BuildKit) or made with [`OciLayout::create`]. Its
//! index is typed ([`ImageIndex`]); blobs go in through a [`BlobWriter`] that hashes
//! while it writes and puts the blob under its name only once it is complete and synced,
//! and, with [`BlobWriter::finish_verified_as`], only when it is what its descriptor
//! promised: otherwise the result is [`LayoutError::DigestMismatch`] (or
//! [`LayoutError::SizeMismatch`]) and nothing is left behind.
//!
//! A layout may come from anyone (a CI artifact, a directory a Dockerfile names), so it
//! is read as data: every file is opened beneath the layout's directory descriptor with
//! `openat2` `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, never blocking, and must be a
//! regular file; a symbolic link anywhere on the way (`blobs/` itself, or one blob) is
//! refused, never followed out of the layout. Documents (the index, manifests) are read
//! no further than [`MAX_DOCUMENT`] bytes.
//!
//! This module sits below the store: the store is one layout among others (plus its
//! lock and its own directories), and the exporters, the shared cache and the solver
//! open layouts that have nothing to do with the store.

mod writer;

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oci_spec::image::{Descriptor, ImageIndex};
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

pub use self::writer::{Blob, BlobWriter};
use crate::atomic::{AtomicError, AtomicWrite};
use crate::digest::{Digest, Hasher};

/// image-spec image-layout.md, "oci-layout file": the file marking a layout.
pub const LAYOUT_FILE: &str = "oci-layout";
/// image-spec image-layout.md: the layout version this one follows.
pub const LAYOUT_VERSION: &str = "1.0.0";
/// image-spec image-layout.md, "index.json file".
pub const INDEX_FILE: &str = "index.json";
/// image-spec image-layout.md, "Blobs": the directory holding one directory per digest
/// algorithm.
pub const BLOBS_DIR: &str = "blobs";
/// image-spec annotations.md, "Pre-Defined Annotation Keys": the name of an index entry.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// The lock file beside the index that a writer sharing the layout with other processes
/// (the store) holds while it changes the index; not part of the specification.
pub(crate) const INDEX_LOCK_FILE: &str = "index.json.lock";
/// The most bytes a JSON document of a layout (its index, a manifest) may have.
pub const MAX_DOCUMENT: u64 = 64 << 20;

/// The content of the `oci-layout` file.
pub(crate) fn layout_marker() -> String {
    format!("{{\"imageLayoutVersion\":\"{LAYOUT_VERSION}\"}}")
}

/// Where blob `digest` lives in any layout, relative to its root: `blobs/<alg>/<hex>`.
pub(crate) fn blob_rel(digest: &Digest) -> String {
    format!("{BLOBS_DIR}/{}/{}", digest.algorithm(), digest.hex())
}

/// An empty image index.
pub(crate) fn empty_index() -> ImageIndex {
    // The builder cannot fail with every required field given.
    oci_spec::image::ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(oci_spec::image::MediaType::ImageIndex)
        .manifests(Vec::new())
        .build()
        .unwrap_or_default()
}

/// The `org.opencontainers.image.ref.name` of an index entry.
pub(crate) fn ref_name(descriptor: &Descriptor) -> Option<&str> {
    descriptor
        .annotations()
        .as_ref()?
        .get(REF_NAME_ANNOTATION)
        .map(String::as_str)
}

/// A failure reading or writing an OCI image layout.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    /// A file or directory of the layout could not be created, read or written.
    #[error("failed to {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why it failed.
        source: io::Error,
    },
    /// A blob's content does not hash to the digest it was expected to have.
    #[error("blob {expected} is corrupt: its content hashes to {found}")]
    DigestMismatch {
        /// The digest asked for.
        expected: Digest,
        /// What the content hashes to.
        found: Digest,
    },
    /// A blob's size differs from the size its descriptor promised.
    #[error("blob {digest} has {found} bytes, expected {expected}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The promised size.
        expected: u64,
        /// The actual size.
        found: u64,
    },
    /// A blob's source had more bytes than its descriptor promised; it was read no
    /// further than one byte past that.
    #[error("blob {digest} has more than {expected} bytes, its descriptor says {expected}")]
    Overlong {
        /// The blob.
        digest: Digest,
        /// The promised size.
        expected: u64,
    },
    /// The layout holds no blob of this digest.
    #[error("blob {digest} not found in {dir}")]
    BlobNotFound {
        /// The layout.
        dir: PathBuf,
        /// The blob.
        digest: Digest,
    },
    /// A document of the layout does not parse.
    #[error("failed to parse {path}")]
    Json {
        /// The document.
        path: PathBuf,
        /// Why it does not parse.
        source: serde_json::Error,
    },
    /// A file of the layout is refused: it is or passes through a symbolic link, is not
    /// a regular file, or is larger than a document may be.
    #[error("refusing {path}: {reason}")]
    Refused {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl From<AtomicError> for LayoutError {
    fn from(e: AtomicError) -> Self {
        LayoutError::Io {
            action: e.action,
            path: e.path,
            source: e.source,
        }
    }
}

pub(crate) fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LayoutError {
    let path = path.to_path_buf();
    move |source| LayoutError::Io {
        action,
        path,
        source,
    }
}

/// Something a layout keeps alive for as long as it or a writer of it lives (the store's
/// lock: a blob being written keeps prune away).
pub(crate) type KeepAlive = Arc<dyn fmt::Debug + Send + Sync>;

/// An OCI image layout directory, held by a descriptor of its root.
///
/// Clones share the descriptor. Reads resolve beneath it without following a symbolic
/// link; writes go through a temp file (in the layout's scratch directory) renamed into
/// place.
#[derive(Debug, Clone)]
pub struct OciLayout {
    dir: PathBuf,
    fd: Arc<OwnedFd>,
    /// Where blob writers put their temp files; `blobs/sha256` when `None`.
    scratch: Option<PathBuf>,
    /// The permission bits of the files written.
    mode: u32,
    /// Whether a blob already under its name is taken as intact (the store, whose blobs
    /// only its own verified writers put there) rather than replaced by a new write (any
    /// other directory, where an earlier copy may be damaged).
    trust_existing: bool,
    _keep: Option<KeepAlive>,
}

impl OciLayout {
    /// Opens the layout at `dir`, a directory another tool may have written (the
    /// `oci-layout` file is not required, as skopeo and BuildKit read layouts without
    /// it). A symbolic link as `dir` itself is followed; none beneath it ever is.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, LayoutError> {
        let dir = dir.into();
        let fd = rustix::fs::open(
            &dir,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err("open layout", &dir)(e.into()))?;
        Self::from_fd(dir, fd)
    }

    /// Makes (or completes) a layout at `dir`: the directory, `blobs/sha256` and the
    /// `oci-layout` file. The index is written by [`OciLayout::write_index`], last, so
    /// that a layout with an index is a whole one.
    pub fn create(dir: impl Into<PathBuf>) -> Result<Self, LayoutError> {
        Self::create_with_mode(dir, 0o644)
    }

    /// Like [`OciLayout::create`], the files written with permission bits `mode`.
    pub fn create_with_mode(dir: impl Into<PathBuf>, mode: u32) -> Result<Self, LayoutError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        let layout = Self::open(dir)?.with_file_mode(mode);
        layout.blobs_dir(true)?;
        layout.ensure_marker()?;
        Ok(layout)
    }

    /// The layout whose root directory is open as `fd` (`dir` names it in messages and
    /// in the paths [`OciLayout::blob_path`] returns). `blobs` and `blobs/sha256`, where
    /// present, must be real directories.
    pub(crate) fn from_fd(dir: PathBuf, fd: OwnedFd) -> Result<Self, LayoutError> {
        let layout = OciLayout {
            dir,
            fd: Arc::new(fd),
            scratch: None,
            mode: 0o644,
            trust_existing: false,
            _keep: None,
        };
        layout.blobs_dir(false)?;
        Ok(layout)
    }

    /// Blob writers put their temp files in `dir` (on the layout's filesystem) rather
    /// than in `blobs/sha256`.
    pub(crate) fn with_scratch(mut self, dir: PathBuf) -> Self {
        self.scratch = Some(dir);
        self
    }

    /// Files are written with permission bits `mode` (0644 unless set).
    pub fn with_file_mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// A blob already under its name is taken as intact: finishing a writer of the same
    /// content keeps it rather than replacing it (the store).
    pub(crate) fn trusting_existing_blobs(mut self) -> Self {
        self.trust_existing = true;
        self
    }

    /// Every clone of the layout, and every writer of it, holds `keep`.
    pub(crate) fn keeping(mut self, keep: KeepAlive) -> Self {
        self._keep = Some(keep);
        self
    }

    /// The layout's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where blob writers put their temp files.
    pub(crate) fn scratch_dir(&self) -> PathBuf {
        self.scratch
            .clone()
            .unwrap_or_else(|| self.dir.join(BLOBS_DIR).join("sha256"))
    }

    /// Where the blob `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(blob_rel(digest))
    }

    /// `blobs/sha256` opened without following a link, made (with its parent) when
    /// `create`; `None` when it does not exist.
    fn blobs_dir(&self, create: bool) -> Result<Option<OwnedFd>, LayoutError> {
        let mut current: Option<OwnedFd> = None;
        let mut path = self.dir.clone();
        for name in [BLOBS_DIR, "sha256"] {
            path.push(name);
            let parent = current.as_ref().map_or(self.fd.as_fd(), AsFd::as_fd);
            if create {
                match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(io_err("create directory", &path)(e.into())),
                }
            }
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            match rustix::fs::openat(parent, name, flags, Mode::empty()) {
                Ok(fd) => current = Some(fd),
                Err(Errno::NOENT) => return Ok(None),
                Err(Errno::LOOP | Errno::NOTDIR) => {
                    return Err(LayoutError::Refused {
                        path,
                        reason: "it is a symbolic link or not a directory, which an image \
                                 layout may not hold (a symlink could lead out of it)"
                            .to_owned(),
                    });
                }
                Err(e) => return Err(io_err("open directory", &path)(e.into())),
            }
        }
        Ok(current)
    }

    /// Writes the `oci-layout` file unless the layout has one of this version.
    pub(crate) fn ensure_marker(&self) -> Result<(), LayoutError> {
        let current = self.read_file(LAYOUT_FILE, 4096).ok();
        let ours = current
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .is_some_and(|v| v.get("imageLayoutVersion") == Some(&LAYOUT_VERSION.into()));
        if ours {
            return Ok(());
        }
        self.write_file(LAYOUT_FILE, layout_marker().as_bytes())
    }

    /// Whether the layout has an `oci-layout` file or an index, present or not.
    pub(crate) fn has(&self, rel: &str) -> bool {
        rustix::fs::statat(&*self.fd, rel, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).is_ok()
    }

    /// Writes `rel` (a file at the layout's top) atomically and synced.
    pub(crate) fn write_file(&self, rel: &str, bytes: &[u8]) -> Result<(), LayoutError> {
        let path = self.dir.join(rel);
        let mut write = AtomicWrite::new(&path).synced().mode(self.mode);
        let scratch = self.scratch.clone();
        if let Some(dir) = &scratch {
            write = write.temp_in(dir);
        }
        Ok(write.write(bytes)?)
    }

    /// Opens `rel` (a regular file) beneath the layout without following any symbolic
    /// link and without blocking.
    pub fn open_file(&self, rel: &str) -> Result<File, LayoutError> {
        let path = self.dir.join(rel);
        crate::beneath::open_listed_file(&*self.fd, Path::new(rel)).map_err(|e| {
            match e.raw_os_error() {
                Some(libc::ELOOP | libc::EXDEV) => LayoutError::Refused {
                    path,
                    reason: "it is or passes through a symbolic link, which an image layout \
                             may not hold (a symlink could lead out of it)"
                        .to_owned(),
                },
                _ if e.kind() == io::ErrorKind::InvalidInput => LayoutError::Refused {
                    path,
                    reason: format!("it {e}"),
                },
                _ => io_err("open", &path)(e),
            }
        })
    }

    /// Reads `rel` whole, refusing it when it has more than `limit` bytes.
    pub(crate) fn read_file(&self, rel: &str, limit: u64) -> Result<Vec<u8>, LayoutError> {
        let path = self.dir.join(rel);
        let mut bytes = Vec::new();
        self.open_file(rel)?
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err("read", &path))?;
        if bytes.len() as u64 > limit {
            return Err(LayoutError::Refused {
                path,
                reason: format!("it has more than {limit} bytes, more than a document may"),
            });
        }
        Ok(bytes)
    }

    /// Syncs the layout's directories, making the renames into them durable; a failure
    /// is ignored (what was written stays written).
    pub fn sync_dirs(&self) {
        if let Ok(Some(blobs)) = self.blobs_dir(false) {
            let _ = rustix::fs::fsync(&blobs);
        }
        let _ = rustix::fs::fsync(&*self.fd);
    }

    /// Reads `index.json`.
    pub fn index(&self) -> Result<ImageIndex, LayoutError> {
        let bytes = self.read_file(INDEX_FILE, MAX_DOCUMENT)?;
        serde_json::from_slice(&bytes).map_err(|source| LayoutError::Json {
            path: self.dir.join(INDEX_FILE),
            source,
        })
    }

    /// Reads `index.json`, or an empty index when the layout has none yet.
    pub fn index_or_empty(&self) -> Result<ImageIndex, LayoutError> {
        match self.index() {
            Err(LayoutError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(empty_index())
            }
            other => other,
        }
    }

    /// Replaces `index.json` with `index` (atomically, synced).
    pub fn write_index(&self, index: &ImageIndex) -> Result<(), LayoutError> {
        // Through Value so that every map is written in sorted key order.
        let path = self.dir.join(INDEX_FILE);
        let bytes = serde_json::to_value(index)
            .and_then(|v| serde_json::to_vec(&v))
            .map_err(|source| LayoutError::Json { path, source })?;
        self.write_file(INDEX_FILE, &bytes)
    }

    /// The index entry named `tag` (by `org.opencontainers.image.ref.name`).
    pub fn find(&self, tag: &str) -> Result<Option<Descriptor>, LayoutError> {
        Ok(self
            .index()?
            .manifests()
            .iter()
            .find(|d| ref_name(d) == Some(tag))
            .cloned())
    }

    /// Whether blob `digest` is present as a regular file (not verified).
    pub fn contains(&self, digest: &Digest) -> bool {
        rustix::fs::openat2(
            &*self.fd,
            blob_rel(digest),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
        )
        .and_then(|fd| rustix::fs::fstat(&fd))
        .is_ok_and(|st| rustix::fs::FileType::from_raw_mode(st.st_mode).is_file())
    }

    /// Opens blob `digest` for streaming; the caller hashes if it needs verification.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, LayoutError> {
        self.open_file(&blob_rel(digest)).map_err(|e| match e {
            LayoutError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                LayoutError::BlobNotFound {
                    dir: self.dir.clone(),
                    digest: digest.clone(),
                }
            }
            other => other,
        })
    }

    /// Reads blob `digest` whole and checks that it hashes to its name.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>, LayoutError> {
        let mut bytes = Vec::new();
        self.open_blob(digest)?
            .read_to_end(&mut bytes)
            .map_err(io_err("read blob", &self.blob_path(digest)))?;
        check_digest(digest, Digest::of(&bytes))?;
        Ok(bytes)
    }

    /// Reads blob `digest`, a document, refusing it past [`MAX_DOCUMENT`] bytes, and
    /// checks that it hashes to its name.
    pub fn read_document(&self, digest: &Digest) -> Result<Vec<u8>, LayoutError> {
        let bytes = self
            .read_file(&blob_rel(digest), MAX_DOCUMENT)
            .map_err(|e| match e {
                LayoutError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                    LayoutError::BlobNotFound {
                        dir: self.dir.clone(),
                        digest: digest.clone(),
                    }
                }
                other => other,
            })?;
        check_digest(digest, Digest::of(&bytes))?;
        Ok(bytes)
    }

    /// Re-hashes blob `digest`, returning its size if it is intact.
    pub fn verify_blob(&self, digest: &Digest) -> Result<u64, LayoutError> {
        let path = self.blob_path(digest);
        let mut file = self.open_blob(digest)?;
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = file.read(&mut buf).map_err(io_err("read blob", &path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let size = hasher.len();
        check_digest(digest, hasher.finish())?;
        Ok(size)
    }

    /// Every blob digest present under `blobs/sha256`, in order.
    pub fn blobs(&self) -> Result<Vec<Digest>, LayoutError> {
        let path = self.dir.join(BLOBS_DIR).join("sha256");
        let Some(dir) = self.blobs_dir(false)? else {
            return Err(io_err("list", &path)(io::ErrorKind::NotFound.into()));
        };
        let mut out = Vec::new();
        let listing =
            rustix::fs::Dir::read_from(&dir).map_err(|e| io_err("list", &path)(e.into()))?;
        for entry in listing {
            let entry = entry.map_err(|e| io_err("list", &path)(e.into()))?;
            if let Ok(name) = entry.file_name().to_str() {
                if let Ok(d) = format!("sha256:{name}").parse() {
                    out.push(d);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// A writer for a new blob; its name is known once it is finished.
    pub fn writer(&self) -> Result<BlobWriter, LayoutError> {
        BlobWriter::new(self)
    }

    /// Stores `bytes` and returns their blob; storing the same bytes again leaves the
    /// same blob (see [`BlobWriter::finish`]).
    pub fn put(&self, bytes: &[u8]) -> Result<Blob, LayoutError> {
        let mut w = self.writer()?;
        io::Write::write_all(&mut w, bytes).map_err(io_err("write blob", &self.scratch_dir()))?;
        w.finish()
    }
}

fn check_digest(expected: &Digest, found: Digest) -> Result<(), LayoutError> {
    if &found != expected {
        return Err(LayoutError::DigestMismatch {
            expected: expected.clone(),
            found,
        });
    }
    Ok(())
}

/// What a manifest or an index names, typed; each field is parsed on its own so that a
/// refusal can say which one is bad.
#[derive(Debug, Default)]
pub(crate) struct Children {
    /// A manifest's config.
    pub config: Option<Descriptor>,
    /// A manifest's layers.
    pub layers: Vec<Descriptor>,
    /// An index's manifests (`Some` for an index, even an empty one).
    pub manifests: Option<Vec<Descriptor>>,
}

impl Children {
    /// Parses the descriptors a manifest or index document names; the error names the
    /// field that is bad (`None` when the document is not JSON at all).
    pub fn parse(bytes: &[u8]) -> Result<Self, (Option<&'static str>, serde_json::Error)> {
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| (None, e))?;
        let mut out = Children::default();
        if let Some(v) = value.get("config") {
            out.config = Some(serde_json::from_value(v.clone()).map_err(|e| (Some("config"), e))?);
        }
        if let Some(v) = value.get("layers") {
            out.layers = serde_json::from_value(v.clone()).map_err(|e| (Some("layers"), e))?;
        }
        if let Some(v) = value.get("manifests") {
            out.manifests =
                Some(serde_json::from_value(v.clone()).map_err(|e| (Some("manifests"), e))?);
        }
        Ok(out)
    }

    /// Every descriptor, config first.
    pub fn all(&self) -> impl Iterator<Item = &Descriptor> {
        self.config
            .iter()
            .chain(&self.layers)
            .chain(self.manifests.iter().flatten())
    }
}

#[cfg(test)]
mod tests;
