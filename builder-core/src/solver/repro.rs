//! `--reproducible-check`: the build run twice from an empty cache, in two fresh
//! temporary stores, and the two images compared.
//!
//! Both stores start with the user's store's images (their blobs hard-linked, else
//! copied, and its index), so base images come from where a normal build would take
//! them; nothing else is shared: no build cache, no unpacked layers, no context hashes,
//! no cache mounts. When the image digests differ, the first difference is named: the
//! first layer whose content differs and in it the first path (in byte order) whose
//! content, type, mode, owner, mtime, link target or xattrs differ; else the config
//! field; else the compressed bytes of a layer.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::epoch::source_date_epoch;
use super::error::{BuildError, io_err};
use super::request::{BuildOptions, BuildRequest, BuildResult};
use super::runtime::Backends;
use crate::digest::{Digest, Hasher};
use crate::image::{Image, config_platform};
use crate::layer::{PAX_XATTR_PREFIX, decompress};
use crate::progress::Progress;
use crate::store::ContentStore;

/// The outcome of a reproducibility check that found both builds equal.
#[derive(Debug, Clone)]
pub struct ReproReport {
    /// The manifest digest both builds gave (of a build of several platforms: the image
    /// index's, each platform's image having been compared).
    pub digest: Digest,
    /// The image ID (config digest; the index digest for several platforms) both builds
    /// gave.
    pub image_id: Digest,
    /// The `SOURCE_DATE_EPOCH` both builds ran with.
    pub source_date_epoch: u64,
}

/// The files of the user's store a check store starts from: the image layout and blobs.
const SHARED_FILES: [&str; 2] = [
    crate::oci_layout::LAYOUT_FILE,
    crate::oci_layout::INDEX_FILE,
];

/// Builds `request` twice, each time in a fresh store under `store`'s temporary
/// directory, and compares the images. Names, outputs and pushes of the request are
/// ignored: nothing is kept. Without a `SOURCE_DATE_EPOCH` (request or build argument),
/// both builds get the current time as one, so that only the Dockerfile's own
/// nondeterminism can tell them apart.
pub(crate) fn check(
    store: &ContentStore,
    backends: &Backends,
    request: &BuildRequest,
    progress: &dyn Progress,
) -> Result<ReproReport, BuildError> {
    let epoch = match source_date_epoch(&request.spec)? {
        Some(epoch) => epoch,
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let tmp = store.tmp_dir();
    std::fs::create_dir_all(&tmp).map_err(io_err("create directory", &tmp))?;
    let dir = tempfile::Builder::new()
        .prefix("reproducible-check-")
        .tempdir_in(&tmp)
        .map_err(io_err("create directory in", &tmp))?;
    let mut results: Vec<(ContentStore, BuildResult)> = Vec::new();
    for run in ["first", "second"] {
        let root = dir.path().join(run);
        let fresh = seeded_store(store, &root)?;
        let copy = repeat_request(request, epoch);
        let result = super::solve::build(&fresh, backends, &copy, progress)?;
        results.push((fresh, result));
    }
    let (second_store, second) = results.pop().ok_or(BuildError::Canceled)?;
    let (first_store, first) = results.pop().ok_or(BuildError::Canceled)?;
    // Of a build of several platforms, each platform's image is compared.
    let pairs: Vec<(&Image, &Image)> = match (&first.index, &second.index) {
        (Some(a), Some(b)) => a.images.iter().zip(&b.images).collect(),
        _ => vec![(&first.image, &second.image)],
    };
    for (a, b) in pairs {
        let first_digest = a.digest().map_err(crate::image::ImageError::from)?;
        let second_digest = b.digest().map_err(crate::image::ImageError::from)?;
        if first_digest == second_digest {
            continue;
        }
        let mut difference = first_difference((&first_store, a), (&second_store, b))?;
        if first.index.is_some() {
            difference = format!("{}: {difference}", config_platform(&a.config));
        }
        return Err(BuildError::NotReproducible {
            first: first_digest,
            second: second_digest,
            difference,
        });
    }
    let digest = match &first.index {
        Some(index) => index.digest(),
        None => first.image.digest(),
    }
    .map_err(crate::image::ImageError::from)?;
    Ok(ReproReport {
        digest,
        image_id: first.image_id,
        source_date_epoch: epoch,
    })
}

/// A copy of `request` for one check build: same inputs, the given epoch, no names,
/// outputs or pushes.
fn repeat_request(request: &BuildRequest, epoch: u64) -> BuildRequest {
    // The spec whole: a field added to it is carried without anyone remembering it.
    let mut spec = request.spec.clone();
    spec.source_date_epoch = Some(epoch);
    // The options one by one, without `..`: a field added to them is a compile error
    // here, so that someone decides whether the check builds keep it.
    let BuildOptions {
        tags: _,
        outputs: _,
        push: _,
        cache_from: _,
        cache_to: _,
        no_cache: _,
        no_cache_filter: _,
        pull: _,
        registry,
        jobs,
        cancel,
        network,
        snapshotter,
        executor,
        merge_step_output,
        secrets,
        ssh,
        allow,
        allow_fs_read,
    } = request.options.clone();
    let options = BuildOptions {
        // Nothing is kept: no names, outputs or pushes, no cache import or export.
        tags: Vec::new(),
        outputs: Vec::new(),
        push: false,
        cache_from: Vec::new(),
        cache_to: Vec::new(),
        // Cold: every step runs.
        no_cache: true,
        no_cache_filter: Vec::new(),
        // The seeded store holds the base images.
        pull: false,
        registry,
        jobs,
        cancel,
        network,
        snapshotter,
        executor,
        merge_step_output,
        secrets,
        ssh,
        allow,
        allow_fs_read,
    };
    BuildRequest::of(spec, options)
}

/// A new store at `root` holding `store`'s images: its index and every blob (hard
/// links, or copies across filesystems), unpacking within `store`'s archive limits.
fn seeded_store(store: &ContentStore, root: &Path) -> Result<ContentStore, BuildError> {
    let fresh = ContentStore::open(root)?.with_archive_limits(store.archive_limits());
    for digest in store.blobs()? {
        let from = store.blob_path(&digest);
        let to = fresh.blob_path(&digest);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("create directory", parent))?;
        }
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).map_err(io_err("copy blob to", &to))?;
        }
    }
    for name in SHARED_FILES {
        let from = store.root().join(name);
        if from.exists() {
            let to = root.join(name);
            std::fs::copy(&from, &to).map_err(io_err("copy", &to))?;
        }
    }
    Ok(fresh)
}

/// What a layer says of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EntryFacts {
    kind: String,
    mode: u32,
    owner: (u64, u64),
    mtime: u64,
    link: Option<PathBuf>,
    content: Digest,
    xattrs: BTreeMap<String, Vec<u8>>,
}

impl EntryFacts {
    /// How `other` differs, in words.
    fn differences(&self, other: &EntryFacts) -> Vec<String> {
        let mut out = Vec::new();
        if self.kind != other.kind {
            out.push(format!("type ({} vs {})", self.kind, other.kind));
        }
        if self.content != other.content {
            out.push(format!("content ({} vs {})", self.content, other.content));
        }
        if self.mode != other.mode {
            out.push(format!("mode ({:o} vs {:o})", self.mode, other.mode));
        }
        if self.owner != other.owner {
            out.push(format!(
                "owner ({}:{} vs {}:{})",
                self.owner.0, self.owner.1, other.owner.0, other.owner.1
            ));
        }
        if self.mtime != other.mtime {
            out.push(format!("mtime ({} vs {})", self.mtime, other.mtime));
        }
        if self.link != other.link {
            out.push(format!(
                "link target ({} vs {})",
                Shown(self.link.as_deref()),
                Shown(other.link.as_deref())
            ));
        }
        if self.xattrs != other.xattrs {
            out.push("xattrs".to_owned());
        }
        out
    }
}

/// An optional path for messages.
struct Shown<'a>(Option<&'a Path>);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(p) => write!(f, "{}", p.display()),
            None => f.write_str("none"),
        }
    }
}

/// The first difference between two images, in words.
fn first_difference(
    (first_store, first): (&ContentStore, &Image),
    (second_store, second): (&ContentStore, &Image),
) -> Result<String, BuildError> {
    let a = first.layers()?;
    let b = second.layers()?;
    for (index, ((blob_a, diff_a), (blob_b, diff_b))) in a.iter().zip(&b).enumerate() {
        if diff_a != diff_b {
            let entries_a = layer_entries(first_store, blob_a)?;
            let entries_b = layer_entries(second_store, blob_b)?;
            return Ok(entry_difference(index, &entries_a, &entries_b));
        }
    }
    if a.len() != b.len() {
        return Ok(format!("layer count differs ({} vs {})", a.len(), b.len()));
    }
    if let Some(field) = config_difference(first, second)? {
        return Ok(format!("image config field {field} differs"));
    }
    for (index, ((blob_a, _), (blob_b, _))) in a.iter().zip(&b).enumerate() {
        if blob_a != blob_b {
            return Ok(format!(
                "layer {} has the same content but is compressed differently ({blob_a} vs {blob_b})",
                index + 1
            ));
        }
    }
    Ok("the manifests differ".to_owned())
}

/// The first path (in byte order) that differs between the two layers number `index`.
fn entry_difference(
    index: usize,
    a: &BTreeMap<PathBuf, EntryFacts>,
    b: &BTreeMap<PathBuf, EntryFacts>,
) -> String {
    let paths: BTreeSet<&PathBuf> = a.keys().chain(b.keys()).collect();
    let layer = index + 1;
    for path in paths {
        let shown = Path::new("/").join(path);
        let shown = shown.display();
        match (a.get(path), b.get(path)) {
            (Some(x), Some(y)) => {
                let diffs = x.differences(y);
                if !diffs.is_empty() {
                    return format!("{shown} (layer {layer}) differs in {}", diffs.join(", "));
                }
            }
            (Some(_), None) => {
                return format!("{shown} (layer {layer}): only in the first build");
            }
            (None, Some(_)) => {
                return format!("{shown} (layer {layer}): only in the second build");
            }
            (None, None) => {}
        }
    }
    format!("layer {layer}: the tar streams differ (entry order or headers)")
}

/// The first top-level config field that differs (`history[2].created` style for
/// history entries).
fn config_difference(a: &Image, b: &Image) -> Result<Option<String>, BuildError> {
    let to_value = |image: &Image| {
        serde_json::to_value(&image.config).map_err(|source| {
            BuildError::from(crate::image::ImageError::Serialize {
                what: "config",
                source,
            })
        })
    };
    let (va, vb) = (to_value(a)?, to_value(b)?);
    let (Some(ma), Some(mb)) = (va.as_object(), vb.as_object()) else {
        return Ok((va != vb).then(|| "(whole)".to_owned()));
    };
    let keys: BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
    for key in keys {
        let (x, y) = (ma.get(key), mb.get(key));
        if x == y {
            continue;
        }
        if let (Some(serde_json::Value::Array(xs)), Some(serde_json::Value::Array(ys))) = (x, y) {
            if let Some(i) = (0..xs.len().max(ys.len())).find(|i| xs.get(*i) != ys.get(*i)) {
                return Ok(Some(format!("{key}[{i}]")));
            }
        }
        return Ok(Some(key.clone()));
    }
    Ok(None)
}

/// The entries of layer blob `blob`, by path (whiteouts are entries of their own name).
fn layer_entries(
    store: &ContentStore,
    blob: &Digest,
) -> Result<BTreeMap<PathBuf, EntryFacts>, BuildError> {
    let path = store.blob_path(blob);
    let file = store.open_blob(blob)?;
    let plain = decompress(BufReader::new(file)).map_err(io_err("read layer", &path))?;
    let mut archive = tar::Archive::new(plain);
    let mut out = BTreeMap::new();
    let entries = archive.entries().map_err(io_err("read layer", &path))?;
    for entry in entries {
        let mut entry = entry.map_err(io_err("read layer", &path))?;
        let name = entry
            .path()
            .map_err(io_err("read layer", &path))?
            .components()
            .collect::<PathBuf>();
        let mut xattrs = BTreeMap::new();
        if let Some(pax) = entry
            .pax_extensions()
            .map_err(io_err("read layer", &path))?
        {
            for ext in pax.flatten() {
                if let Ok(key) = ext.key() {
                    if key.starts_with(PAX_XATTR_PREFIX) {
                        xattrs.insert(key.to_owned(), ext.value_bytes().to_vec());
                    }
                }
            }
        }
        let header = entry.header().clone();
        let link = entry
            .link_name()
            .map_err(io_err("read layer", &path))?
            .map(|l| l.into_owned());
        let mut hasher = Hasher::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = entry.read(&mut buf).map_err(io_err("read layer", &path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let facts = EntryFacts {
            kind: format!("{:?}", header.entry_type()),
            mode: header.mode().unwrap_or(0),
            owner: (header.uid().unwrap_or(0), header.gid().unwrap_or(0)),
            mtime: header.mtime().unwrap_or(0),
            link,
            content: hasher.finish(),
            xattrs,
        };
        out.insert(name, facts);
    }
    Ok(out)
}
