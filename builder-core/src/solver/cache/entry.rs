//! What the cache holds: the key of a step's result ([`CacheKey`] and how keys derive
//! from their parents), an entry ([`CacheEntry`], with its layer), and why a step missed
//! ([`MissReason`]). Plain data, below the cache's store and its import and export.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::digest::{Digest, Hasher};
use crate::layer::{Compression, Layer};
use crate::solver::layer_ref::LayerRef;

/// The cache's directory under the store root.
pub use crate::store::CACHE_DIR;
/// The root key of stages built `FROM scratch`.
const SCRATCH_ROOT: &[u8] = b"rbuild cache root: scratch";

/// The key of one step's result in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CacheKey(pub Digest);

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl CacheKey {
    /// The root key of a stage built on nothing.
    pub(crate) fn scratch() -> Self {
        CacheKey(Digest::of(SCRATCH_ROOT))
    }

    /// The root key of a stage built on the image with this manifest digest.
    pub(crate) fn image(manifest: &Digest) -> Self {
        CacheKey(manifest.clone())
    }

    /// The key of a step: its parent, its definition digest, and the digest of what it
    /// copies (if it copies).
    pub(crate) fn step(parent: &CacheKey, step_digest: &str, sources: Option<&Digest>) -> Self {
        let mut h = Hasher::new();
        let mut field = |bytes: &[u8]| {
            h.update(&(bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        };
        field(parent.0.as_str().as_bytes());
        field(step_digest.as_bytes());
        field(sources.map_or("", Digest::as_str).as_bytes());
        CacheKey(h.finish())
    }
}

/// Why a step did not come from the cache (`--explain-cache`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum MissReason {
    /// `--no-cache` or `--no-cache-filter` asked for it.
    NoCache,
    /// Nothing is known of this step: it never ran, or its entry is gone.
    NoEntry,
    /// A step before it in its stage ran again with a different result.
    ParentChanged {
        /// The display name of the last step of the stage that ran before this one.
        step: String,
    },
    /// The stage's base (image or stage) is not what it was.
    BaseChanged,
    /// The stage or image it copies from (`--from`) changed.
    SourceChanged {
        /// The `--from` value.
        from: String,
    },
    /// Files it copies from the context changed, were added or removed.
    FilesChanged {
        /// The paths, relative to the context.
        paths: Vec<String>,
    },
    /// Build arguments or environment variables it sees changed.
    ArgsChanged {
        /// The names.
        names: Vec<String>,
    },
    /// Its definition changed in another way.
    DefinitionChanged,
}

impl fmt::Display for MissReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MissReason::NoCache => write!(f, "cache disabled for this step"),
            MissReason::NoEntry => write!(f, "no cache entry"),
            MissReason::ParentChanged { step } => write!(f, "a previous step changed: {step}"),
            MissReason::BaseChanged => write!(f, "the base image or stage changed"),
            MissReason::SourceChanged { from } => write!(f, "the --from source {from} changed"),
            MissReason::FilesChanged { paths } => {
                write!(f, "context files changed: {}", paths.join(", "))
            }
            MissReason::ArgsChanged { names } => {
                write!(f, "build arguments changed: {}", names.join(", "))
            }
            MissReason::DefinitionChanged => write!(f, "the instruction changed"),
        }
    }
}

/// The layer of a cached step: its diff_id, and its blob (digest, size, compression)
/// when one exists, else the chain ID of the store directory that holds it.
///
/// Entries of a layer with a blob keep the fields every version wrote. An entry of a
/// layer kept only as a directory leaves out `digest`, `size` and `compression`: a
/// version that requires them fails to read it and takes it as a miss, never as a
/// wrong layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CachedLayer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    pub diff_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    /// The chain ID of `layers/<chain_id>/`, for a layer a step made as a directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<String>,
}

impl CachedLayer {
    /// The record of `layer`, on top of the stack with chain ID `chain_id`.
    pub(crate) fn of(layer: &LayerRef, chain_id: &Digest) -> Self {
        let blob = layer.blob.as_ref();
        CachedLayer {
            digest: blob.map(Digest::to_string),
            diff_id: layer.diff_id.to_string(),
            size: blob.map(|_| layer.size),
            compression: blob.map(|_| layer.compression.name().to_owned()),
            chain_id: blob.is_none().then(|| chain_id.to_string()),
        }
    }

    /// This record with the blob `layer` made for it.
    pub(crate) fn with_blob(&self, layer: &Layer) -> Self {
        CachedLayer {
            digest: Some(layer.blob.digest.to_string()),
            diff_id: self.diff_id.clone(),
            size: Some(layer.blob.size),
            compression: Some(layer.compression.name().to_owned()),
            chain_id: self.chain_id.clone(),
        }
    }

    /// The layer's blob (digest, size, compression), if the record names one that
    /// parses (a compression this build does not know does not).
    pub(crate) fn blob(&self) -> Option<(Digest, u64, Compression)> {
        let digest: Digest = self.digest.as_deref()?.parse().ok()?;
        let compression: Compression = self.compression.as_deref()?.parse().ok()?;
        Some((digest, self.size?, compression))
    }

    /// The layer, if its digests parse and `available` says its blob can be had.
    pub(crate) fn to_layer_if(&self, available: impl Fn(&Digest) -> bool) -> Option<LayerRef> {
        let diff_id: Digest = self.diff_id.parse().ok()?;
        let (digest, size, compression) = self.blob()?;
        if !available(&digest) {
            return None;
        }
        Some(LayerRef {
            blob: Some(digest),
            diff_id,
            size,
            compression,
        })
    }
}

/// One step's result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CacheEntry {
    /// The key (`sha256:...`).
    pub key: String,
    /// The parent key.
    pub parent: String,
    /// The history `created_by` of the step.
    pub created_by: String,
    /// When the step first ran: its history time, so a cached rebuild gives the same
    /// image.
    #[serde(default)]
    pub created: Option<String>,
    /// The layer, `None` when the step changed nothing.
    pub layer: Option<CachedLayer>,
    /// The context files it copied: path and content digest (or type for non-files).
    #[serde(default)]
    pub sources: BTreeMap<String, String>,
    /// Instead of `sources`, for a copy of many files: the name of its list under the
    /// cache's `sources/` (see `copy::list`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sources_list: Option<String>,
    /// The build arguments and environment it saw.
    #[serde(default)]
    pub args: BTreeMap<String, String>,
    /// For `COPY --from`: the source as written and the key of its content.
    #[serde(default)]
    pub from: Option<(String, String)>,
}
