//! The shared cache's one error, below every part of it (and below the build's error,
//! which carries it).

use std::path::PathBuf;

use crate::digest::Digest;
use crate::registry::RegistryError;
use crate::store::StoreError;

/// A failure to import or export a shared cache.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CacheShareError {
    /// Talking to the cache's registry failed.
    #[error("failed to {action} cache {location}")]
    Registry {
        /// `import` or `export`.
        action: &'static str,
        /// The cache reference.
        location: String,
        /// Why.
        source: Box<RegistryError>,
    },
    /// A file of a local cache directory could not be read or written.
    #[error("failed to {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A cache document does not parse.
    #[error("failed to parse {what}")]
    Json {
        /// Which document.
        what: String,
        /// Why.
        source: serde_json::Error,
    },
    /// A cache document parses but is not what a cache holds.
    #[error("invalid cache: {reason}")]
    Format {
        /// What is wrong.
        reason: String,
    },
    /// A local cache directory holds no manifest of that tag.
    #[error("cache directory {dir} has no manifest tagged {tag:?}")]
    NoTag {
        /// The directory.
        dir: PathBuf,
        /// The tag looked for.
        tag: String,
    },
    /// A blob of a local cache does not hash to its name.
    #[error("blob {expected} of cache directory {dir} hashes to {found}")]
    DigestMismatch {
        /// The directory.
        dir: PathBuf,
        /// The name.
        expected: Digest,
        /// What it hashes to.
        found: Digest,
    },
    /// A digest in a cache document does not parse.
    #[error(transparent)]
    Digest(#[from] crate::digest::InvalidDigest),
    /// The content store.
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> CacheShareError {
    let path = path.into();
    move |source| CacheShareError::Io {
        action,
        path,
        source,
    }
}
