//! `store verify` and `prune`: consistency checks and garbage collection of the store.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use super::{ImageError, load_image};
use crate::digest::Digest;
use crate::store::{ContentStore, StoreError};

/// One problem `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem(pub String);

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Every blob reachable from the named images (manifests, configs, layers).
pub fn referenced_blobs(store: &ContentStore) -> Result<BTreeSet<Digest>, ImageError> {
    let mut out = BTreeSet::new();
    for named in store.images()? {
        let image = load_image(store, &named.descriptor)?;
        if let Some(d) = named.digest() {
            out.insert(d);
        }
        out.insert(image.digest()?);
        out.insert(image.config_digest.clone());
        for (blob, _) in image.layers()? {
            out.insert(blob);
        }
    }
    Ok(out)
}

/// Re-hashes every blob and checks every image's references; returns each problem.
pub fn verify(store: &ContentStore) -> Result<Vec<Problem>, StoreError> {
    let mut problems = Vec::new();
    for digest in store.blobs()? {
        if let Err(e) = store.verify_blob(&digest) {
            problems.push(Problem(e.to_string()));
        }
    }
    for named in store.images()? {
        let name = named.name.familiar();
        let image = match load_image(store, &named.descriptor) {
            Ok(i) => i,
            Err(e) => {
                problems.push(Problem(format!("image {name}: {e}")));
                continue;
            }
        };
        if named.descriptor.size() != image.descriptor.size() {
            problems.push(Problem(format!(
                "image {name}: index says the manifest has {} bytes, it has {}",
                named.descriptor.size(),
                image.descriptor.size()
            )));
        }
        let mut children = vec![image.manifest.config().clone()];
        children.extend(image.manifest.layers().iter().cloned());
        for child in children {
            let Ok(digest) = Digest::try_from(child.digest()) else {
                problems.push(Problem(format!(
                    "image {name}: bad digest {}",
                    child.digest()
                )));
                continue;
            };
            match fs::metadata(store.blob_path(&digest)) {
                Err(_) => problems.push(Problem(format!("image {name}: blob {digest} is missing"))),
                Ok(m) if m.len() != child.size() => problems.push(Problem(format!(
                    "image {name}: blob {digest} has {} bytes, the manifest says {}",
                    m.len(),
                    child.size()
                ))),
                Ok(_) => {}
            }
        }
        if let Err(e) = image.layers() {
            problems.push(Problem(format!("image {name}: {e}")));
        }
    }
    Ok(problems)
}

/// What prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Blobs no named image references.
    pub blobs: Vec<Digest>,
    /// Unpacked layer directories removed.
    pub layer_dirs: usize,
    /// Bytes freed by removing blobs.
    pub bytes: u64,
    /// Build cache entries removed (the whole cache goes: its layers may be gone).
    pub cache_entries: usize,
}

/// Removes blobs no named image references, unpacked layers of removed blobs, and
/// scratch files; with `all`, every unpacked layer (they are rebuilt on demand).
///
/// Waits until no other process uses the store (see
/// [`ContentStore::lock_exclusive`]): a running build's blobs, layers and cache entries
/// are not referenced by a name yet, and must not go.
pub fn prune(store: &ContentStore, all: bool) -> Result<PruneReport, ImageError> {
    let exclusive = store.lock_exclusive()?;
    let keep = referenced_blobs(store)?;
    let mut keep_diff_ids = BTreeSet::new();
    for named in store.images()? {
        let image = load_image(store, &named.descriptor)?;
        for (_, diff_id) in image.layers()? {
            keep_diff_ids.insert(diff_id.hex().to_owned());
        }
    }
    let mut report = PruneReport::default();
    for digest in store.blobs()? {
        if !keep.contains(&digest) {
            report.bytes += fs::metadata(store.blob_path(&digest)).map_or(0, |m| m.len());
            store.remove_blob(&digest)?;
            report.blobs.push(digest);
        }
    }
    report.layer_dirs = store.remove_entries(Path::new("layers"), |name| {
        all || !keep_diff_ids.contains(name)
    })?;
    store.reclaim_scratch(&exclusive)?;
    // The build cache points at layers this prune may just have removed: drop it whole.
    let cache = store.root().join(crate::build::CACHE_DIR);
    if let Ok(entries) = fs::read_dir(&cache) {
        report.cache_entries = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .count();
        store.remove_tree(&cache)?;
    }
    Ok(report)
}
