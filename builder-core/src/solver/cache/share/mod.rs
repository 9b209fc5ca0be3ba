//! The shared build cache: `--cache-to` writes the build's cache entries to a registry
//! or an OCI layout directory, `--cache-from` lets another builder, with an empty store,
//! take them as its own (BuildKit's `type=registry` and `type=local` cache).
//!
//! # Format
//!
//! One export is an OCI image manifest (image-spec `manifest.md`), tagged at the `ref=`
//! (registry) or named by `org.opencontainers.image.ref.name` in the layout's
//! `index.json` (local):
//!
//! - `artifactType`: `application/vnd.rbuild.cache.v1`;
//! - `config`: a JSON blob of type `application/vnd.rbuild.cache.config.v1+json`,
//!   `{"schemaVersion":1,"entries":[...]}`, one entry per step, sorted by key: `key`
//!   (the step's [`CacheKey`](super::entry::CacheKey)), `parent`, `created_by` and `created`
//!   (the history entry, so that a hit gives the same image), `layer` (`digest`,
//!   `diff_id`, `size`, `compression`, or `null` for a step that changed nothing),
//!   `sources`, `args` and `from` (what `--explain-cache` compares);
//! - `layers`: the layer blobs of those entries, each once, as ordinary OCI layer
//!   descriptors, so that registries keep them (and mount them across repositories)
//!   as they keep image layers.
//!
//! BuildKit keeps the same idea (an index or manifest whose config lists cache records
//! by key and points at layer blobs) with its own record graph; rbuild's keys already
//! chain their parents, so its entries are a flat list. Using an image manifest, not an
//! index of layers, keeps the export valid for registries that check what a manifest
//! references (docker-registry 2.8 among them).
//!
//! `mode=min` exports the steps of the image's own stages (the target and the stages it
//! is built on); `mode=max` every step of every stage the build ran or found.
//!
//! # Import
//!
//! The manifest and config are fetched before the stages run; a missing or unreachable
//! cache is a warning and the build goes on without it. A step whose key is an imported
//! entry's is a hit; its layer blob is fetched only when something needs its content:
//! a later step that runs on top of it, a `COPY --from` of its stage, the final image.

mod error;
mod format;
mod local;
mod options;
mod remote;

use std::collections::HashMap;

pub use self::error::CacheShareError;
pub use self::format::{CACHE_ARTIFACT_TYPE, CACHE_CONFIG_TYPE};
pub use self::options::{
    CacheExport, CacheImport, CacheLocation, CacheMode, DEFAULT_LOCAL_TAG, InvalidCacheOption,
};
use super::entry::{CacheEntry, CacheKey};
use crate::digest::Digest;
use crate::error_chain::error_chain;
use crate::progress::Progress;
use crate::registry::RegistryConfig;
use crate::store::ContentStore;

/// Where the blobs of one imported cache come from.
#[derive(Debug)]
enum BlobSource {
    Registry(Box<remote::RemoteCache>),
    Local(local::LocalCache),
}

impl BlobSource {
    fn fetch(
        &self,
        store: &ContentStore,
        digest: &Digest,
        size: u64,
    ) -> Result<(), CacheShareError> {
        match self {
            BlobSource::Registry(r) => r.fetch(store, digest, size),
            BlobSource::Local(l) => l.fetch(store, digest, size),
        }
    }
}

/// The entries of every `--cache-from` cache that could be read, and where their layer
/// blobs are.
#[derive(Debug, Default)]
pub(crate) struct Imported {
    entries: HashMap<String, CacheEntry>,
    /// Each layer blob: the index of its source in `sources`, and its size.
    blobs: HashMap<Digest, (usize, u64)>,
    sources: Vec<BlobSource>,
}

impl Imported {
    /// The imported entry for `key`.
    pub(crate) fn entry(&self, key: &CacheKey) -> Option<&CacheEntry> {
        self.entries.get(key.0.as_str())
    }

    /// Whether an imported cache can provide blob `digest`.
    pub(crate) fn has_blob(&self, digest: &Digest) -> bool {
        self.blobs.contains_key(digest)
    }

    /// Fetches blob `digest` into `store` from the cache that has it; `false` when no
    /// imported cache has it.
    pub(crate) fn fetch(
        &self,
        store: &ContentStore,
        digest: &Digest,
    ) -> Result<bool, CacheShareError> {
        let Some((index, size)) = self.blobs.get(digest) else {
            return Ok(false);
        };
        let Some(source) = self.sources.get(*index) else {
            return Ok(false);
        };
        source.fetch(store, digest, *size)?;
        Ok(true)
    }

    /// Adds one cache's entries; those of caches added earlier win.
    fn add(&mut self, source: BlobSource, entries: HashMap<String, CacheEntry>) {
        let index = self.sources.len();
        self.sources.push(source);
        for (key, entry) in entries {
            if let Some(layer) = &entry.layer {
                let digest = layer
                    .digest
                    .as_deref()
                    .and_then(|d| d.parse::<Digest>().ok());
                if let (Some(digest), Some(size)) = (digest, layer.size) {
                    self.blobs.entry(digest).or_insert((index, size));
                }
            }
            self.entries.entry(key).or_insert(entry);
        }
    }
}

/// Reads every cache of `imports`; those that cannot be read are left out, each with a
/// warning (as BuildKit warns and builds on).
pub(crate) fn import(
    store: &ContentStore,
    imports: &[CacheImport],
    registry: &RegistryConfig,
) -> (Imported, Vec<String>) {
    let mut imported = Imported::default();
    let mut warnings = Vec::new();
    for import in imports {
        let read = match &import.location {
            CacheLocation::Registry(name) => remote::RemoteCache::open(store, name, registry)
                .map(|(cache, entries)| (BlobSource::Registry(Box::new(cache)), entries)),
            CacheLocation::Local { dir, tag } => local::LocalCache::open(dir, tag)
                .map(|(cache, entries)| (BlobSource::Local(cache), entries)),
        };
        match read {
            Ok((source, entries)) => imported.add(source, entries),
            Err(e) => warnings.push(format!(
                "cache {} not imported: {}",
                import.location,
                error_chain(&e)
            )),
        }
    }
    (imported, warnings)
}

/// Writes `entries` as one cache export to `location` (a registry, its blobs' transfers
/// reported to `progress`, or a local layout).
pub(crate) fn write(
    store: &ContentStore,
    entries: Vec<CacheEntry>,
    location: &CacheLocation,
    registry: &RegistryConfig,
    progress: &dyn Progress,
) -> Result<(), CacheShareError> {
    let documents = format::documents(entries)?;
    match location {
        CacheLocation::Registry(name) => {
            remote::export(store, &documents, name, registry, progress)
        }
        CacheLocation::Local { dir, tag } => local::export(store, &documents, dir, tag),
    }
}
