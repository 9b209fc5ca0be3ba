//! Where a context comes from: a directory, or a tar stream (`rbuild build -`).

use std::io::{self, BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};

use crate::layer::{LimitExceeded, Meter};
use crate::limits::ArchiveLimits;
use crate::privilege::Privilege;

/// The first bytes of a gzip stream (RFC 1952, section 2.3.1).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The first bytes of a zstd frame (RFC 8878, section 3.1.1).
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// A failure to unpack a context tar.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnpackError {
    /// The temporary directory could not be made.
    #[error("failed to create a directory for the context in {parent}")]
    TempDir {
        /// Where it was to be made.
        parent: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The stream is not a readable tar.
    #[error("failed to read context tar")]
    Read(#[source] io::Error),
    /// An entry's path (or hard link target) is absolute or climbs out with `..`.
    #[error("context tar entry {path:?} escapes the context")]
    Escapes {
        /// The offending path.
        path: PathBuf,
    },
    /// An entry lies beneath a symlink unpacked earlier, so writing it would follow
    /// the link (possibly out of the context).
    #[error("context tar entry {path:?} lies beneath a symlink")]
    BeneathSymlink {
        /// The offending path.
        path: PathBuf,
    },
    /// The tar is past one of its [`ArchiveLimits`] (a compressed bomb, or too many
    /// entries); unpacking stopped.
    #[error("context tar refused: {0}")]
    Limit(LimitExceeded),
    /// An entry could not be written.
    #[error("failed to unpack context tar entry {path:?}")]
    Unpack {
        /// The entry.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// A build context on disk. A clone is the same context: an unpacked one is removed
/// when its last clone is dropped.
#[derive(Debug, Clone)]
pub enum ContextSource {
    /// A directory given by the user, used in place.
    Directory(PathBuf),
    /// A tar stream unpacked into a temporary directory, removed when the last clone is
    /// dropped.
    Unpacked(std::sync::Arc<tempfile::TempDir>),
}

impl ContextSource {
    /// The root directory of the context.
    pub fn root(&self) -> &Path {
        match self {
            Self::Directory(dir) => dir,
            Self::Unpacked(tmp) => tmp.path(),
        }
    }

    /// Unpacks a context tar — plain, gzip or zstd, told apart by their magic numbers as
    /// `docker build -` does for the first two — into a new temporary directory under
    /// `parent`. Every entry must stay inside: absolute paths, `..` components, hard
    /// links pointing out, and entries beneath an unpacked symlink are refused (the
    /// whole unpack fails; nothing is silently skipped). Owners are kept when running
    /// as root, so they count in the context digest as they would from a directory.
    ///
    /// The tar is read within the default [`ArchiveLimits`] (as layers and `ADD`'s
    /// archives are): a compressed stream may not expand past its ratio, nor hold more
    /// entries than the limit. [`from_tar_limited`](Self::from_tar_limited) takes others.
    pub fn from_tar(stream: impl Read, parent: &Path) -> Result<Self, UnpackError> {
        Self::from_tar_limited(stream, parent, &ArchiveLimits::default())
    }

    /// [`ContextSource::from_tar`] within `limits`.
    pub fn from_tar_limited(
        stream: impl Read,
        parent: &Path,
        limits: &ArchiveLimits,
    ) -> Result<Self, UnpackError> {
        let meter = Meter::new(*limits);
        let mut stream = BufReader::new(meter.compressed(stream));
        let head = stream.fill_buf().map_err(UnpackError::Read)?;
        let decoded: Box<dyn Read> = if head.starts_with(&GZIP_MAGIC) {
            Box::new(flate2::read::MultiGzDecoder::new(stream))
        } else if head.starts_with(&ZSTD_MAGIC) {
            Box::new(zstd::Decoder::with_buffer(stream).map_err(UnpackError::Read)?)
        } else {
            Box::new(stream)
        };
        Self::unpack(meter.expanded(decoded), parent, &meter).map_err(|e| {
            // The tar reader wraps a reader's error: the limit hit is the cause to show.
            meter.exceeded().map_or(e, UnpackError::Limit)
        })
    }

    fn unpack(stream: impl Read, parent: &Path, meter: &Meter) -> Result<Self, UnpackError> {
        let tmp = tempfile::Builder::new()
            .prefix("context-")
            .tempdir_in(parent)
            .map_err(|source| UnpackError::TempDir {
                parent: parent.to_path_buf(),
                source,
            })?;
        let root = tmp.path();
        let mut archive = tar::Archive::new(stream);
        archive.set_preserve_permissions(true);
        archive.set_preserve_mtime(true);
        // Owners are kept only by root of the host: in a user namespace an owner it does not
        // map would fail the unpack (COPY gives files 0:0 unless told otherwise anyway).
        archive.set_preserve_ownerships(Privilege::current().is_host_root());
        archive.set_overwrite(true);
        for entry in archive.entries().map_err(UnpackError::Read)? {
            let mut entry = entry.map_err(UnpackError::Read)?;
            meter.entry().map_err(UnpackError::Limit)?;
            let path = entry.path().map_err(UnpackError::Read)?.into_owned();
            let rel =
                contained(&path).ok_or_else(|| UnpackError::Escapes { path: path.clone() })?;
            if rel.as_os_str().is_empty() {
                continue;
            }
            if let Some(format) = crate::layer::sparse_format(&mut entry) {
                return Err(UnpackError::Read(std::io::Error::other(format!(
                    "entry {:?}: {}",
                    path,
                    crate::layer::sparse_reason(format)
                ))));
            }
            if entry.header().entry_type().is_hard_link() {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Read)?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                if contained(&target).is_none_or(|t| t.as_os_str().is_empty()) {
                    return Err(UnpackError::Escapes { path: target });
                }
            }
            if under_symlink(root, &rel) {
                return Err(UnpackError::BeneathSymlink { path });
            }
            let unpacked = entry
                .unpack_in(root)
                .map_err(|source| UnpackError::Unpack {
                    path: path.clone(),
                    source,
                })?;
            if !unpacked {
                return Err(UnpackError::Escapes { path });
            }
        }
        Ok(Self::Unpacked(std::sync::Arc::new(tmp)))
    }
}

/// `path` as a relative path of normal components, if it stays inside (a leading `./`
/// is allowed; `/` and `..` are not).
fn contained(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for comp in path.components() {
        match comp {
            Component::Normal(name) => out.push(name),
            Component::CurDir => {}
            Component::RootDir | Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// Whether a proper ancestor of `rel` under `root` is a symlink.
fn under_symlink(root: &Path, rel: &Path) -> bool {
    let mut at = root.to_path_buf();
    let mut comps: Vec<_> = rel.components().collect();
    comps.pop();
    comps.into_iter().any(|comp| {
        at.push(comp);
        std::fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink())
    })
}
