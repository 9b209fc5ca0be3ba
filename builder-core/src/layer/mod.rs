//! Layers: tar change sets, written from a [`ChangeSet`](crate::change::ChangeSet) and applied to
//! a directory.
//!
//! Writing, compressing and applying are separate stages: [`write_layer`] streams a tar
//! through a compressor into a [`BlobWriter`](crate::store::BlobWriter) in one pass, hashing the
//! uncompressed bytes (the diff_id) and the compressed ones (the blob digest) on the way;
//! [`apply_layer`] detects the compression by its magic number and unpacks, resolving
//! every path inside the target.

mod apply;
mod cache;
pub(crate) mod commit;
mod compress;
mod limits;
mod merged;
mod tree;
mod writer;

use std::io;
use std::path::PathBuf;

pub(crate) use self::apply::apply_over;
pub use self::apply::{Applied, ApplyMode, apply_layer, apply_layer_limited};
pub use self::cache::chain_ids;
pub(crate) use self::compress::Compressor;
pub use self::compress::{Compression, decompress};
pub use self::limits::LimitExceeded;
pub(crate) use self::limits::Meter;
pub(crate) use self::merged::{write_merged_tar, write_merged_tars};
pub use self::tree::tree_changes;
pub use self::writer::{LayerOptions, write_layer, write_layer_to};
use crate::digest::Digest;
use crate::store::{Blob, StoreError};

/// image-spec layer.md, "Whiteouts": a file named `.wh.<name>` deletes `<name>` of the
/// layers below.
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// image-spec layer.md, "Opaque Whiteout": this file in a directory hides everything the
/// layers below have in that directory.
pub const OPAQUE_WHITEOUT: &str = ".wh..wh..opq";
/// The PAX record prefix for extended attributes, as GNU tar, Go and BuildKit write them.
pub const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";
/// overlayfs, Documentation/filesystems/overlayfs.rst "whiteouts and opaque directories":
/// the xattr that makes an upper or lower directory opaque (as root).
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// The same xattr for overlay mounted with `userxattr` in a user namespace.
pub const OVERLAY_OPAQUE_USER_XATTR: &str = "user.overlay.opaque";

/// Whether xattr `name` is overlayfs bookkeeping, which must never reach a layer.
pub fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.")
}

/// A layer written to the content store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// The (compressed) blob as stored.
    pub blob: Blob,
    /// The sha256 of the uncompressed tar, as listed in the image config's rootfs.
    pub diff_id: Digest,
    /// How the blob is compressed; it decides the layer's media type.
    pub compression: Compression,
}

/// Names the sparse-file format of `entry` when it is one: GNU tar's `S` entries
/// (`--sparse --format=gnu`) and its PAX encodings (`GNU.sparse.*` records, whose real
/// name hides under `GNUSparseFile.<pid>/`). rbuild refuses them rather than unpack a
/// renamed file or an empty one.
pub(crate) fn sparse_format<R: std::io::Read>(
    entry: &mut tar::Entry<'_, R>,
) -> Option<&'static str> {
    if entry.header().entry_type() == tar::EntryType::GNUSparse {
        return Some("GNU");
    }
    let pax = entry.pax_extensions().ok().flatten()?;
    for ext in pax.flatten() {
        if ext.key_bytes().starts_with(b"GNU.sparse.") {
            return Some("PAX");
        }
    }
    None
}

/// The reason given when [`sparse_format`] finds one.
pub(crate) fn sparse_reason(format: &str) -> String {
    format!(
        "it is a sparse file ({format} format), which rbuild does not unpack: make the archive without --sparse"
    )
}

/// A failure writing or applying a layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// A path of the source tree could not be read.
    #[error("failed to read {path} from the source tree")]
    Source {
        /// The path, relative to the source tree.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The tar stream could not be written or compressed.
    #[error("failed to write layer entry {path}")]
    Write {
        /// The entry being written.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The layer could not be read or decompressed.
    #[error("failed to read layer tar stream")]
    Read(#[source] io::Error),
    /// An entry of the layer could not be created in the target.
    #[error("failed to apply layer entry {entry:?}")]
    Apply {
        /// The entry's name as the tar gives it.
        entry: String,
        /// Why.
        source: io::Error,
    },
    /// An entry names a path outside the target (absolute, `..`, or through a symlink
    /// or hardlink that leads out); nothing is written for it.
    #[error("refused layer entry {entry:?}: {reason}")]
    Unsafe {
        /// The entry's name as the tar gives it.
        entry: String,
        /// What makes it unsafe.
        reason: &'static str,
    },
    /// An entry is of a kind rbuild does not unpack (a sparse file).
    #[error("refused layer entry {entry:?}: {reason}")]
    Unsupported {
        /// The entry's name as the tar gives it.
        entry: String,
        /// Why.
        reason: String,
    },
    /// The uncompressed layer does not hash to the diff_id it was stored under.
    #[error("layer diff_id mismatch: expected {expected}, found {found}")]
    DiffIdMismatch {
        /// The diff_id asked for.
        expected: Digest,
        /// What the content hashes to.
        found: Digest,
    },
    /// A layer directory a step made no longer gives the tar its record names (changed
    /// since, by hand or a fault): it is no longer trusted, and the next build that needs
    /// it runs its step again.
    #[error(
        "layer directory {dir} changed since the step that made it (diff_id mismatch: expected {expected}, found {found}); it is dropped, and the next build runs that step again"
    )]
    LayerDirChanged {
        /// The directory, `<root>/layers/<chain_id>`.
        dir: PathBuf,
        /// The diff_id its record names.
        expected: Digest,
        /// What its tar hashes to now.
        found: Digest,
    },
    /// An archive is past one of its [`ArchiveLimits`](crate::limits::ArchiveLimits) (a tar bomb); unpacking stopped.
    #[error("refused to unpack {archive}: {limit}")]
    Limit {
        /// The archive: `layer blob sha256:...`, or where it was being unpacked.
        archive: String,
        /// The limit it went past.
        limit: LimitExceeded,
    },
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
