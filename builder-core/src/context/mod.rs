//! The build context: what `COPY` and `ADD` may read.
//!
//! A context comes from a directory or a tar stream ([`ContextSource`]). Its
//! `.dockerignore` ([`IgnoreRules`]) decides what is left out; a walk
//! ([`ContextListing::walk`]) lists the rest in a deterministic order; a `COPY` source
//! is resolved against that listing without ever leaving the context
//! ([`resolve_source`]); and [`ContextHashes`] digests file contents — remembering them
//! in an on-disk index so that an unchanged context is not read again — and digests a
//! selection of entries for a cache key.
//!
//! ```
//! use rbuild_core::{context::{ContextHashes, ContextListing, IgnoreRules, resolve_source}};
//!
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("app.py"), "print('hi')\n")?;
//! std::fs::write(dir.path().join("notes.txt"), "private\n")?;
//! let rules = IgnoreRules::parse("*.txt\n")?;
//! let listing = ContextListing::walk(dir.path(), &rules)?;
//! let hashes = ContextHashes::compute(&listing, None)?;
//! let sources = resolve_source(&listing, "*")?;
//! assert_eq!(sources.len(), 1);
//! let key_input = hashes.selection_digest(sources.iter().flat_map(|e| listing.subtree(e)))?;
//! assert!(key_input.to_string().starts_with("sha256:"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod digest;
mod hash;
mod ignore;
mod index;

mod pattern;
mod resolve;
mod source;
mod walk;

pub(crate) use self::digest::ContentDigest;
pub(crate) use self::hash::{ContentEncoding, selection_digest};
pub use self::hash::{ContextHashes, HashError, HashStats};
pub use self::ignore::{DOCKERIGNORE, IgnoreError, IgnoreRules, MAX_IGNORE_BYTES};
pub use self::index::{INDEX_DIR, IndexError};
pub use self::pattern::PatternError;
pub use self::resolve::{MAX_SYMLINK_HOPS, ResolveError, resolve_source};
pub use self::source::{ContextSource, UnpackError};
pub use self::walk::{ContextEntry, ContextListing, EntryType, WalkError};
pub(crate) use crate::beneath::{open_listed_file, open_root, read_in_context, read_named_file};

/// Any failure of the build context, gathering the errors of its parts.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// Reading or parsing the ignore file.
    #[error(transparent)]
    Ignore(#[from] IgnoreError),
    /// Unpacking a context tar.
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    /// Listing the context.
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// Resolving a copy source.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// Hashing the context.
    #[error(transparent)]
    Hash(#[from] HashError),
}
