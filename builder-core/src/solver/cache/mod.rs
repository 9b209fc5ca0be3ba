//! The layer cache: `<root>/cache/`, step results by cache key.
//!
//! A step's key is `sha256(parent key, step digest, sources digest)`: the parent key is
//! the key of the step before it in its stage (the first step's parent is the base
//! image's manifest digest, a constant for `scratch`, or the last key of the stage it
//! is based on); the step digest ([`StepDigest`](rbuild_dockerfile::StepDigest)) covers
//! the instruction and the arguments and environment it can see; for `COPY`/`ADD` the
//! sources digest covers the selected files (path, type, mode, owner, content, link
//! target; never mtime). Keys of later steps still match after a miss when their
//! parent's result hashes the same, as the parent key is the key, not the result.
//!
//! An entry is a JSON file `<hex>.json` written atomically (temp file, rename). Beside
//! the entries, `steps/<hex>` remembers the last key each step (stage, position,
//! instruction text) had, so that a miss can be explained against the previous build.
//!
//! A build's cache also holds the entries of its `--cache-from` caches (looked at after
//! the store's own; their layer blobs are fetched when needed, `Cache::materialize`)
//! and the keys each stage used, which `--cache-to` exports.

use crate::copy::list::{self as copy_list, Listed};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rbuild_dockerfile::StageId;

pub(crate) mod entry;
pub(crate) mod share;

use self::entry::{CACHE_DIR, CacheEntry, CacheKey, CachedLayer, MissReason};
use self::share::{CacheShareError, Imported};
use super::error::BuildError;
use crate::atomic::AtomicWrite;
use crate::digest::Digest;
use crate::layer::chain_ids;
use crate::solver::layer_ref::LayerRef;
use crate::store::ContentStore;

/// The subdirectory remembering each step's last key.
const STEPS_DIR: &str = "steps";
/// The subdirectory keeping the source lists of large copies.
const SOURCES_DIR: &str = "sources";
/// How many changed files a miss of a large copy names.
const MAX_NAMED_SOURCES: usize = 20;
/// How many layer blobs of imported caches are fetched at once (as pulls do).
const FETCH_PARALLEL: usize = 3;

/// The cache of one store, with the caches one build imports.
#[derive(Debug, Clone)]
pub(crate) struct Cache {
    dir: PathBuf,
    imported: Arc<Imported>,
    /// The keys the build's steps had, with their stages, in the order they were used.
    used: Arc<Mutex<Vec<(StageId, CacheKey)>>>,
    /// The keys whose entries this build wrote: found again within the build even under
    /// `--no-cache`, so one step definition gives one result per build.
    written: Arc<Mutex<HashSet<CacheKey>>>,
    /// A lock per key a step is working on: a second step with the same key (another
    /// stage that starts the same way) waits for the first and takes its result.
    working: Arc<Mutex<HashMap<CacheKey, Arc<Mutex<()>>>>>,
}

impl Cache {
    pub(crate) fn open(store: &ContentStore) -> Result<Self, BuildError> {
        let dir = store.root().join(CACHE_DIR);
        let steps = dir.join(STEPS_DIR);
        fs::create_dir_all(&steps).map_err(|source| BuildError::Cache {
            action: "create directory for",
            path: steps.clone(),
            source,
        })?;
        Ok(Cache {
            dir,
            imported: Arc::default(),
            used: Arc::default(),
            written: Arc::default(),
            working: Arc::default(),
        })
    }

    /// This cache, also holding the entries of `imported` caches.
    pub(crate) fn with_imports(mut self, imported: Imported) -> Self {
        self.imported = Arc::new(imported);
        self
    }

    /// The lock of `key` for this build: held from the cache lookup to the cache write,
    /// so steps with one key run once and share the result.
    pub(crate) fn working_on(&self, key: &CacheKey) -> Arc<Mutex<()>> {
        self.working
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key.clone())
            .or_default()
            .clone()
    }

    /// Whether this build wrote the entry of `key`.
    pub(crate) fn written_here(&self, key: &CacheKey) -> bool {
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(key)
    }

    /// Notes that a step of `stage` had `key` (hit or not): `--cache-to` exports it.
    pub(crate) fn record(&self, stage: StageId, key: &CacheKey) {
        self.used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((stage, key.clone()));
    }

    /// The keys recorded for `stages`, each once.
    pub(crate) fn used_keys(&self, stages: &[StageId]) -> Vec<CacheKey> {
        let used = self
            .used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut keys: Vec<CacheKey> = Vec::new();
        for (stage, key) in used.iter() {
            if stages.contains(stage) && !keys.contains(key) {
                keys.push(key.clone());
            }
        }
        keys
    }

    /// The layer of `cached` over the stack `below`: if its blob is in the store or an
    /// imported cache has it; else if the store holds it as a directory a step made (with
    /// its record, for this stack and diff_id).
    pub(crate) fn layer_of(
        &self,
        cached: &CachedLayer,
        store: &ContentStore,
        below: &[LayerRef],
    ) -> Option<LayerRef> {
        if let Some(layer) = cached.to_layer_if(|d| store.contains(d) || self.imported.has_blob(d))
        {
            return Some(layer);
        }
        let chain_id: Digest = cached.chain_id.as_deref()?.parse().ok()?;
        let diff_id: Digest = cached.diff_id.parse().ok()?;
        let stack = chain_ids(below.iter().map(|l| &l.diff_id).chain([&diff_id]));
        if stack.last() != Some(&chain_id) {
            return None;
        }
        let record = store.layer_record(&chain_id)?;
        // A blob made from the layer and since removed (`rbuild rmi`, a hand) takes the
        // layer with it, as when the layer was only a blob.
        let blobs_here = record
            .blobs
            .iter()
            .all(|(_, digest, _)| digest.parse().is_ok_and(|d: Digest| store.contains(&d)));
        if record.diff_id != diff_id.as_str() || !blobs_here {
            return None;
        }
        // A blob made earlier is the layer's blob (another compression is converted from
        // it at assembly, as for a layer that was only a blob).
        let made = record.blobs.iter().find_map(|(compression, digest, size)| {
            Some((digest.parse().ok()?, *size, compression.parse().ok()?))
        });
        Some(match made {
            Some((digest, size, compression)) => LayerRef {
                blob: Some(digest),
                diff_id,
                size,
                compression,
            },
            None => LayerRef {
                blob: None,
                diff_id,
                size: record.tar_size,
                compression: crate::layer::Compression::default(),
            },
        })
    }

    /// Fetches blob `digest` from the imported cache that has it; `false` if none has.
    pub(crate) fn fetch_blob(
        &self,
        store: &ContentStore,
        digest: &Digest,
    ) -> Result<bool, CacheShareError> {
        self.imported.fetch(store, digest)
    }

    /// Makes sure the layer blobs `blobs` are in the store, fetching from the imported
    /// caches those that hits left out.
    pub(crate) fn materialize<'d>(
        &self,
        store: &ContentStore,
        blobs: impl IntoIterator<Item = &'d Digest>,
    ) -> Result<(), BuildError> {
        let missing: Vec<&Digest> = blobs.into_iter().filter(|d| !store.contains(d)).collect();
        crate::registry::for_each_parallel(FETCH_PARALLEL, &missing, |digest| {
            self.fetch_blob(store, digest).map(drop)
        })?;
        Ok(())
    }

    fn entry_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(format!("{}.json", key.0.hex()))
    }

    /// The entry for `key`, if there is a readable one: the store's own, else an
    /// imported one (then kept in the store's cache too).
    pub(crate) fn get(&self, key: &CacheKey) -> Option<CacheEntry> {
        let local = read_record(&self.entry_path(key), ENTRY_LIMIT)
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        if local.is_some() {
            return local;
        }
        let imported = self.imported.entry(key)?.clone();
        // Kept so that later builds without --cache-from hit too (once its blob is
        // here); failing to keep it only costs that.
        let _ = self.put(key, &imported);
        Some(imported)
    }

    /// Stores `entry` under `key`, atomically.
    pub(crate) fn put(&self, key: &CacheKey, entry: &CacheEntry) -> Result<(), BuildError> {
        let path = self.entry_path(key);
        let bytes = serde_json::to_vec(entry).map_err(|e| BuildError::Cache {
            action: "serialize",
            path: path.clone(),
            source: e.into(),
        })?;
        write_atomic(&path, &bytes)?;
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key.clone());
        Ok(())
    }

    /// Where the list of a large copy's sources named `name` is kept.
    pub(crate) fn sources_dir(&self) -> PathBuf {
        self.dir.join(SOURCES_DIR)
    }

    /// The context files that changed between two entries when either keeps its list
    /// in a file: both read in order, never whole; the first few named.
    fn changed_sources(&self, previous: &CacheEntry, now: &CacheEntry) -> Vec<String> {
        let dir = self.sources_dir();
        let files: Vec<Option<PathBuf>> = [previous, now]
            .iter()
            .map(|e| e.sources_list.as_ref().map(|name| dir.join(name)))
            .collect();
        let (mut names, total) = copy_list::changed(
            &listed(previous, &files[0]),
            &listed(now, &files[1]),
            MAX_NAMED_SOURCES,
        );
        if total > names.len() {
            names.push(format!("and {} more", total - names.len()));
        }
        names
    }

    fn step_path(&self, identity: &str) -> PathBuf {
        self.dir
            .join(STEPS_DIR)
            .join(Digest::of(identity.as_bytes()).hex())
    }

    /// The key `identity` (stage, position, instruction) had in the previous build.
    pub(crate) fn last_key(&self, identity: &str) -> Option<CacheKey> {
        let bytes = read_record(&self.step_path(identity), STEP_LIMIT)?;
        let text = String::from_utf8(bytes).ok()?;
        text.trim().parse().ok().map(CacheKey)
    }

    /// Remembers the key `identity` has now.
    pub(crate) fn set_last_key(&self, identity: &str, key: &CacheKey) -> Result<(), BuildError> {
        if self.last_key(identity).as_ref() == Some(key) {
            // A rebuild with nothing changed writes nothing.
            return Ok(());
        }
        let path = self.step_path(identity);
        write_atomic(&path, key.0.as_str().as_bytes())
    }

    /// Why the step `identity`, now with `entry` as its would-be entry, missed.
    pub(crate) fn explain(
        &self,
        identity: &str,
        now: &CacheEntry,
        last_ran: Option<&str>,
    ) -> MissReason {
        let Some(previous) = self.last_key(identity).and_then(|key| self.get(&key)) else {
            return MissReason::NoEntry;
        };
        if previous.key == now.key {
            // Same key, but the entry or its layer is gone.
            return MissReason::NoEntry;
        }
        if previous.parent != now.parent {
            return match last_ran {
                Some(step) => MissReason::ParentChanged {
                    step: step.to_owned(),
                },
                None => MissReason::BaseChanged,
            };
        }
        if let Some((from, _)) = now.from.as_ref().filter(|_| previous.from != now.from) {
            return MissReason::SourceChanged { from: from.clone() };
        }
        let paths = if previous.sources_list.is_some() || now.sources_list.is_some() {
            self.changed_sources(&previous, now)
        } else {
            changed_keys(&previous.sources, &now.sources)
        };
        if !paths.is_empty() {
            return MissReason::FilesChanged { paths };
        }
        let names = changed_keys(&previous.args, &now.args);
        if !names.is_empty() {
            return MissReason::ArgsChanged { names };
        }
        MissReason::DefinitionChanged
    }
}

/// An entry's source list: its file when it has one, else its map.
fn listed<'a>(entry: &'a CacheEntry, file: &'a Option<PathBuf>) -> Listed<'a> {
    match file {
        Some(file) => Listed::File(file.as_path()),
        None => Listed::Map(&entry.sources),
    }
}

fn changed_keys(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut names: Vec<String> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .collect();
    names.extend(before.keys().filter(|k| !after.contains_key(*k)).cloned());
    names.sort();
    names
}

pub(crate) use crate::store::record::read_record;

/// The most bytes a cache entry may have (one lists every file a `COPY` took).
const ENTRY_LIMIT: u64 = 256 << 20;
/// The most bytes a `steps/` record (one key) may have.
const STEP_LIMIT: u64 = 4096;

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), BuildError> {
    AtomicWrite::new(path)
        .write(bytes)
        .map_err(|e| BuildError::Cache {
            action: e.action,
            path: e.path,
            source: e.source,
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(
        key: &str,
        parent: &str,
        sources: &[(&str, &str)],
        args: &[(&str, &str)],
    ) -> CacheEntry {
        let map = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        CacheEntry {
            key: key.into(),
            parent: parent.into(),
            created_by: "RUN x".into(),
            created: None,
            layer: None,
            sources: map(sources),
            sources_list: None,
            args: map(args),
            from: None,
        }
    }

    #[test]
    fn keys_depend_on_parent_definition_and_sources() {
        let root = CacheKey::scratch();
        let a = CacheKey::step(&root, "d1", None);
        assert_eq!(a, CacheKey::step(&root, "d1", None));
        assert_ne!(a, CacheKey::step(&root, "d2", None));
        assert_ne!(a, CacheKey::step(&a, "d1", None));
        let src = Digest::of(b"files");
        assert_ne!(a, CacheKey::step(&root, "d1", Some(&src)));
    }

    #[test]
    fn misses_are_explained_against_the_previous_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let cache = Cache::open(&store).unwrap();
        let old_key = CacheKey::step(&CacheKey::scratch(), "old", None);
        let old = entry(
            old_key.0.as_str(),
            "p",
            &[("app.py", "d1"), ("b", "d2")],
            &[("V", "1")],
        );
        cache.put(&old_key, &old).unwrap();
        cache.set_last_key("s/2/COPY . .", &old_key).unwrap();

        let now = entry("k2", "p", &[("app.py", "d9"), ("b", "d2")], &[("V", "1")]);
        assert_eq!(
            cache.explain("s/2/COPY . .", &now, None),
            MissReason::FilesChanged {
                paths: vec!["app.py".into()]
            }
        );
        let now = entry("k2", "p", &[("app.py", "d1"), ("b", "d2")], &[("V", "2")]);
        assert_eq!(
            cache.explain("s/2/COPY . .", &now, None),
            MissReason::ArgsChanged {
                names: vec!["V".into()]
            }
        );
        let now = entry("k2", "q", &[], &[]);
        assert_eq!(
            cache.explain("s/2/COPY . .", &now, Some("[2/3] RUN x")),
            MissReason::ParentChanged {
                step: "[2/3] RUN x".into()
            }
        );
        assert_eq!(
            cache.explain("s/2/COPY . .", &now, None),
            MissReason::BaseChanged
        );
        assert_eq!(cache.explain("other", &now, None), MissReason::NoEntry);
    }
}
