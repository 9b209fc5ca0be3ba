//! `store verify` and `prune`: consistency checks and garbage collection of the store.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use super::{ImageError, load_image, platform_images};
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
        if let Some(d) = named.digest() {
            out.insert(d);
        }
        // The index documents between the name and its images (an index of indexes).
        out.extend(crate::image::index_documents(store, &named.descriptor)?);
        // Every platform's image of an index, not only the one a build on this host takes.
        for image in platform_images(store, &named.descriptor)? {
            out.insert(image.digest()?);
            out.insert(image.config_digest.clone());
            for (blob, _) in image.layers()? {
                out.insert(blob);
            }
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
        // Every platform's image of an index.
        let images = match platform_images(store, &named.descriptor) {
            Ok(images) => images,
            Err(e) => {
                problems.push(Problem(format!("image {name}: {e}")));
                continue;
            }
        };
        if let Ok(digest) = Digest::try_from(named.descriptor.digest()) {
            let found = fs::metadata(store.blob_path(&digest)).map_or(0, |m| m.len());
            if named.descriptor.size() != found {
                problems.push(Problem(format!(
                    "image {name}: index says the manifest has {} bytes, it has {found}",
                    named.descriptor.size(),
                )));
            }
        }
        for image in images {
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
                    Err(_) => {
                        problems.push(Problem(format!("image {name}: blob {digest} is missing")))
                    }
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
    /// Bytes freed: blobs, unpacked layers and the build cache's records.
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
    // Unpacked layers are named by chain ID (`ContentStore::unpack_layers`).
    let mut keep_chain_ids = BTreeSet::new();
    for named in store.images()? {
        for image in platform_images(store, &named.descriptor)? {
            let layers = image.layers()?;
            for chain_id in crate::layer::chain_ids(layers.iter().map(|(_, diff_id)| diff_id)) {
                keep_chain_ids.insert(chain_id.hex().to_owned());
            }
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
    let layers = store.root().join(LAYERS_DIR);
    // A layer's directory and its owner table (`<chain hex>.owners`) go together.
    let pick = |name: &str| all || !keep_chain_ids.contains(name.split('.').next().unwrap_or(name));
    report.bytes += entries_bytes(&layers, pick);
    report.layer_dirs = store.remove_entries(Path::new(LAYERS_DIR), pick)?;
    // The records of the layer directories removed (`<chain hex>.json`, `.changes`).
    let layerdb = Path::new(crate::layer::commit::LAYERDB_DIR);
    store.remove_entries(layerdb, |name: &str| {
        pick(name.split('.').next().unwrap_or(name))
    })?;
    store.reclaim_scratch(&exclusive)?;
    // The build cache points at layers this prune may just have removed: drop it whole.
    let cache = store.root().join(crate::store::CACHE_DIR);
    if let Ok(entries) = fs::read_dir(&cache) {
        report.cache_entries = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .count();
        report.bytes += tree_bytes(&cache);
        store.remove_tree(&cache)?;
        // Back as the store makes it (0700), empty. A build's cache write may have made it
        // again already (atomic writes create their directory), which is as good.
        match std::os::unix::fs::DirBuilderExt::mode(&mut fs::DirBuilder::new(), 0o700)
            .create(&cache)
        {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            other => other.map_err(crate::store::io_err("create directory", &cache))?,
        }
    }
    Ok(report)
}

/// Where unpacked layers live in the store: `<root>/layers/<chain_id hex>/`.
const LAYERS_DIR: &str = "layers";

/// The bytes of the files under `path` (apparent sizes; a hardlinked file once; links
/// not followed; what cannot be read counts nothing).
pub(crate) fn tree_bytes(path: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    walkdir::WalkDir::new(path)
        .follow_links(false)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| !m.is_dir())
        .filter(|m| {
            use std::os::unix::fs::MetadataExt as _;
            m.nlink() < 2 || seen.insert((m.dev(), m.ino()))
        })
        .map(|m| m.len())
        .sum()
}

/// [`tree_bytes`] of the entries of `dir` that `pick` names.
fn entries_bytes(dir: &Path, pick: impl Fn(&str) -> bool) -> u64 {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| pick(&e.file_name().to_string_lossy()))
        .map(|e| tree_bytes(&e.path()))
        .sum()
}

/// What the store holds, by kind, as `rbuild system df` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Named images, and the bytes of the blobs they reference.
    pub images: Usage,
    /// Blobs no named image references (layers of cached steps, old images) and the
    /// build cache's records: what `prune` removes.
    pub build_cache: Usage,
    /// Unpacked layers (`<root>/layers`); active: used by a named image.
    pub unpacked_layers: Usage,
    /// `RUN --mount=type=cache` directories (`prune --cache-mounts` removes them).
    pub cache_mounts: Usage,
}

/// One row of [`DiskUsage`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// How many there are.
    pub total: usize,
    /// How many a named image uses.
    pub active: usize,
    /// Their bytes on disk (apparent sizes).
    pub bytes: u64,
    /// The bytes `prune` (with its flags) would free.
    pub reclaimable: u64,
}

/// Measures the store for `rbuild system df`. Reads only; other processes may change the
/// store meanwhile, so the figures are a snapshot.
pub fn disk_usage(store: &ContentStore) -> Result<DiskUsage, ImageError> {
    let keep = referenced_blobs(store)?;
    // Unpacked layers are named by chain ID (`ContentStore::unpack_layers`).
    let mut used_layers = BTreeSet::new();
    let images = store.images()?;
    for named in &images {
        let image = load_image(store, &named.descriptor)?;
        let layers = image.layers()?;
        for chain_id in crate::layer::chain_ids(layers.iter().map(|(_, diff_id)| diff_id)) {
            used_layers.insert(chain_id.hex().to_owned());
        }
    }
    let mut usage = DiskUsage::default();
    usage.images.total = images.len();
    usage.images.active = images.len();
    for digest in store.blobs()? {
        let bytes = fs::metadata(store.blob_path(&digest)).map_or(0, |m| m.len());
        if keep.contains(&digest) {
            usage.images.bytes += bytes;
        } else {
            usage.build_cache.total += 1;
            usage.build_cache.bytes += bytes;
        }
    }
    let cache = store.root().join(crate::store::CACHE_DIR);
    let records = fs::read_dir(&cache)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
        .count();
    usage.build_cache.total += records;
    usage.build_cache.bytes += tree_bytes(&cache);
    usage.build_cache.reclaimable = usage.build_cache.bytes;
    for entry in fs::read_dir(store.root().join(LAYERS_DIR))
        .into_iter()
        .flatten()
        .flatten()
        // A layer's owner table (`<chain hex>.owners`, see fakeroot.rs) is no layer.
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
    {
        let bytes = tree_bytes(&entry.path());
        usage.unpacked_layers.total += 1;
        usage.unpacked_layers.bytes += bytes;
        if used_layers.contains(entry.file_name().to_string_lossy().as_ref()) {
            usage.unpacked_layers.active += 1;
        } else {
            usage.unpacked_layers.reclaimable += bytes;
        }
    }
    for entry in fs::read_dir(store.root().join(crate::store::CACHE_MOUNTS_DIR))
        .into_iter()
        .flatten()
        .flatten()
    {
        usage.cache_mounts.total += 1;
        usage.cache_mounts.bytes += tree_bytes(&entry.path());
    }
    usage.cache_mounts.reclaimable = usage.cache_mounts.bytes;
    Ok(usage)
}

/// What `verify_layers` found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerCheck {
    /// Unpacked layers compared with their blobs.
    pub checked: usize,
    /// Each unpacked layer that differs from its blob (or whose blob does not unpack).
    pub problems: Vec<Problem>,
    /// With `repair`, the chain IDs of the unpacked layers removed (unpacked again from
    /// their verified blobs when a build or run needs them): each that differs, and those
    /// unpacked over it.
    pub removed: Vec<Digest>,
}

/// `store verify --deep`: unpacks the blob of every unpacked layer a named image uses
/// (`<root>/layers/<chain_id>/`) into scratch, the same way a build does (over the
/// unpacked layers below it), and compares
/// the two trees: entries, kinds, modes, owners, sizes, contents, link targets, device
/// numbers and extended attributes. An unpacked layer is trusted by every later build
/// (it is an overlay lower dir), so an edited one would flow into new images. With
/// `repair`, each layer that differs is removed while no other process uses the store.
pub fn verify_layers(store: &ContentStore, repair: bool) -> Result<LayerCheck, ImageError> {
    let _exclusive = if repair {
        Some(store.lock_exclusive()?)
    } else {
        None
    };
    let mut seen = BTreeSet::new();
    let mut out = LayerCheck::default();
    for named in store.images()? {
        let Ok(image) = load_image(store, &named.descriptor) else {
            continue; // verify reports it.
        };
        let Ok(layers) = image.layers() else {
            continue;
        };
        let chain = crate::layer::chain_ids(layers.iter().map(|(_, diff_id)| diff_id));
        // The directories below the one compared: its implied parents copy their
        // attributes, so it is unpacked afresh over them.
        let mut lowers = Vec::new();
        let mut removed_below = false;
        for ((blob, diff_id), chain_id) in layers.into_iter().zip(chain) {
            let dir = store.layer_dir(&chain_id);
            if !fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
                // Unpacked again, over its lowers, when a build needs it; the ones above
                // cannot be compared without it.
                break;
            }
            if removed_below {
                // Unpacked over a directory just removed as wrong: it goes too.
                store.remove_tree(&dir)?;
                out.removed.push(chain_id);
                continue;
            }
            if !seen.insert(chain_id.clone()) {
                lowers.push(dir);
                continue;
            }
            out.checked += 1;
            let Some(why) = compare_with_blob(store, &blob, &diff_id, &lowers, &dir)? else {
                lowers.push(dir);
                continue;
            };
            out.problems.push(Problem(format!(
                "unpacked layer {} (image {}) differs from its blob {blob}: {why}",
                dir.display(),
                named.name.familiar()
            )));
            if repair {
                store.remove_tree(&dir)?;
                out.removed.push(chain_id);
                removed_below = true;
            } else {
                lowers.push(dir);
            }
        }
    }
    Ok(out)
}

/// Unpacks `blob` over `lowers` into scratch and compares it with `dir`: the first
/// difference, if any.
fn compare_with_blob(
    store: &ContentStore,
    blob: &Digest,
    diff_id: &Digest,
    lowers: &[std::path::PathBuf],
    dir: &Path,
) -> Result<Option<String>, ImageError> {
    let tmp_dir = store.tmp_dir();
    let fresh = tempfile::Builder::new()
        .prefix("verify-")
        .tempdir_in(&tmp_dir)
        .map_err(crate::store::io_err("create temp dir in", &tmp_dir))?;
    let applied = crate::layer::apply_over(
        store.verified_reader(blob)?,
        fresh.path(),
        crate::layer::ApplyMode::OverlayLower,
        lowers,
        &store.archive_limits(),
        &format!("layer blob {blob}"),
    );
    let why = match applied {
        Err(e) => Some(format!("the blob does not unpack: {e}")),
        Ok(a) if &a.diff_id != diff_id => Some(format!(
            "the blob unpacks to diff_id {}, not {diff_id}",
            a.diff_id
        )),
        Ok(_) => first_difference(fresh.path(), dir),
    };
    // Removed from the store root's descriptor, like every deletion in the store.
    store.remove_tree(&fresh.keep())?;
    Ok(why)
}

/// Facts of one entry of an unpacked tree that a layer determines.
fn facts(path: &Path) -> Result<String, std::io::Error> {
    use std::os::unix::fs::MetadataExt;
    let m = fs::symlink_metadata(path)?;
    let kind = m.file_type();
    let mut out = format!(
        "mode {:o}, owner {}:{}",
        m.mode() & 0o7777,
        m.uid(),
        m.gid()
    );
    if kind.is_file() {
        let mut hasher = crate::digest::Hasher::new();
        std::io::copy(&mut fs::File::open(path)?, &mut HashWriter(&mut hasher))?;
        out += &format!(", file of {} bytes {}", m.len(), hasher.finish());
    } else if kind.is_symlink() {
        out += &format!(", link to {}", fs::read_link(path)?.display());
    } else if kind.is_dir() {
        out += ", directory";
    } else {
        out += &format!(
            ", special file {:o} device {}",
            m.mode() & 0o170000,
            m.rdev()
        );
    }
    let mut names: Vec<_> = xattr::list(path).map(Iterator::collect).unwrap_or_default();
    names.sort();
    for name in names {
        let value = xattr::get(path, &name).ok().flatten().unwrap_or_default();
        out += &format!(", xattr {}={:?}", name.to_string_lossy(), value);
    }
    Ok(out)
}

struct HashWriter<'a>(&'a mut crate::digest::Hasher);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The first entry that differs between the trees `want` (fresh from the blob) and
/// `have` (the unpacked layer), the roots themselves aside.
fn first_difference(want: &Path, have: &Path) -> Option<String> {
    let list = |root: &Path| -> Result<Vec<std::path::PathBuf>, String> {
        walkdir::WalkDir::new(root)
            .min_depth(1)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter()
            .map(|e| {
                e.map_err(|e| e.to_string()).and_then(|e| {
                    e.path()
                        .strip_prefix(root)
                        .map(Path::to_path_buf)
                        .map_err(|e| e.to_string())
                })
            })
            .collect()
    };
    let (want_list, have_list) = match (list(want), list(have)) {
        (Ok(w), Ok(h)) => (w, h),
        (Err(e), _) | (_, Err(e)) => return Some(format!("cannot list it: {e}")),
    };
    let want_set: BTreeSet<_> = want_list.iter().collect();
    let have_set: BTreeSet<_> = have_list.iter().collect();
    if let Some(extra) = have_set.difference(&want_set).next() {
        return Some(format!("/{} is not in the blob", extra.display()));
    }
    if let Some(missing) = want_set.difference(&have_set).next() {
        return Some(format!("/{} is missing", missing.display()));
    }
    for rel in want_list {
        match (facts(&want.join(&rel)), facts(&have.join(&rel))) {
            (Ok(w), Ok(h)) if w == h => {}
            (Ok(w), Ok(h)) => {
                return Some(format!("/{}: the blob has {w}; it has {h}", rel.display()));
            }
            (Err(e), _) | (_, Err(e)) => {
                return Some(format!("/{}: cannot read it: {e}", rel.display()));
            }
        }
    }
    None
}
