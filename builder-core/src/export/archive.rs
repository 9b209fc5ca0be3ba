//! `save` and `load`: image archives in OCI layout or docker format.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex};

use super::layout::{DirSink, LayoutSink, TarSink};
use super::{CONTAINERD_NAME_ANNOTATION, ExportError, Report, write_docker_archive, write_layout};
use crate::digest::{Digest, Hasher};
use crate::image::{Image, ImageConfig, ImageFormat, load_image, write_manifest};
use crate::layer::{Compression, LayerError};
use crate::progress::Progress;
use crate::store::{ContentStore, ImageName, REF_NAME_ANNOTATION};

/// Writes `images` (each with its names) into one archive at `dest`: an OCI layout tar,
/// or a docker archive (which holds the OCI layout too). Each blob written is a transfer
/// reported to `progress` (see [`Progress`]'s module, "Transfers").
pub fn save_images(
    store: &ContentStore,
    dest: &Path,
    images: &[(Image, Vec<ImageName>)],
    format: ImageFormat,
    progress: &dyn Progress,
) -> Result<(), ExportError> {
    let refs: Vec<(&Image, &[ImageName])> = images.iter().map(|(i, n)| (i, n.as_slice())).collect();
    let shown = dest.display().to_string();
    let report = Report {
        progress,
        target: &shown,
    };
    match format {
        ImageFormat::Docker => write_docker_archive(store, dest, &refs, report),
        ImageFormat::Oci => {
            let mut sink = Box::new(TarSink::create(dest)?);
            write_layout(store, sink.as_mut(), &refs, report)?;
            sink.finish()
        }
    }
}

/// Writes `images` as an OCI layout directory at `dest`, reporting as [`save_images`].
pub fn save_layout_dir(
    store: &ContentStore,
    dest: &Path,
    images: &[(Image, Vec<ImageName>)],
    progress: &dyn Progress,
) -> Result<(), ExportError> {
    let refs: Vec<(&Image, &[ImageName])> = images.iter().map(|(i, n)| (i, n.as_slice())).collect();
    let mut sink = Box::new(DirSink {
        root: dest.to_path_buf(),
    });
    let shown = dest.display().to_string();
    let report = Report {
        progress,
        target: &shown,
    };
    write_layout(store, sink.as_mut(), &refs, report)?;
    sink.finish()
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> ExportError {
    let path = path.to_path_buf();
    move |source| ExportError::Read { path, source }
}

fn write_err(path: &Path) -> impl FnOnce(io::Error) -> ExportError {
    let path = path.to_path_buf();
    move |source| ExportError::Write { path, source }
}

/// The sha256 and size of file `path`.
fn hash_file(path: &Path) -> Result<(Digest, u64), ExportError> {
    let mut file = File::open(path).map_err(read_err(path))?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(read_err(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let size = hasher.len();
    Ok((hasher.finish(), size))
}

/// Copies `path` (a scratch file of ours) into the store.
fn put_file(store: &ContentStore, path: &Path) -> Result<crate::store::Blob, ExportError> {
    let mut file = File::open(path).map_err(read_err(path))?;
    let mut w = store.writer()?;
    io::copy(&mut file, &mut w).map_err(read_err(path))?;
    Ok(w.finish()?)
}

/// The sha256 of the uncompressed content of a layer file, and its compression.
fn diff_id_of(path: &Path) -> Result<(Digest, Compression), ExportError> {
    let mut reader = BufReader::new(File::open(path).map_err(read_err(path))?);
    let head = io::BufRead::fill_buf(&mut reader).map_err(read_err(path))?;
    let compression = Compression::detect(head);
    let mut plain = crate::layer::decompress(reader).map_err(LayerError::Read)?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = plain.read(&mut buf).map_err(LayerError::Read)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok((hasher.finish(), compression))
}

/// docker's `manifest.json` entry, as read.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// What an archive member is.
enum Member {
    /// A regular file, kept in scratch space under a name of ours.
    File(PathBuf),
    /// A symlink (`docker save` before Docker 25 links a layer shared by two images to
    /// its first copy) with its target, or a hardlink with the member it names: followed
    /// only inside the archive's own table, never on disk.
    Link {
        /// "a symlink" or "a hardlink".
        kind: &'static str,
        /// The target as the archive gives it.
        target: String,
        /// Whether the target is relative to the link's directory (a symlink) or to the
        /// archive's root (a hardlink).
        relative: bool,
    },
    /// A device or fifo: never read.
    Other(&'static str),
}

/// How many links a name may pass through inside an archive.
const MAX_LINK_HOPS: usize = 8;

/// The members of an archive, by their cleaned path. Archives are data: no path read
/// from one (an entry name, a link target, a name in `manifest.json` or `index.json`)
/// ever becomes a path on disk; regular files land in scratch space under counters.
struct Members {
    archive: PathBuf,
    files: HashMap<String, Member>,
    _scratch: tempfile::TempDir,
}

/// `name` (from an archive) as a relative `/`-joined path, refusing absolute names and
/// `..`; `.` and empty components are dropped.
fn clean_archive_path(name: &str) -> Result<String, &'static str> {
    if name.starts_with('/') {
        return Err("it is an absolute path");
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("it contains '..'"),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// A link target joined to its directory, with `..` resolved against the archive's root;
/// `None` when it is absolute or climbs above the root.
fn resolve_inside(joined: &str) -> Option<String> {
    if joined.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

impl Members {
    fn refused(&self, reason: String) -> ExportError {
        ExportError::Archive {
            archive: self.archive.clone(),
            reason,
        }
    }

    /// Reads every entry of the archive at `archive` (plain, gzip or zstd), within the
    /// tar-bomb limits.
    /// A tar error is reported without its text, which may quote the file's bytes (a
    /// file that is no tar archive has its first line read as an entry name).
    fn read(store: &ContentStore, file: File, archive: &Path) -> Result<Self, ExportError> {
        let scratch = tempfile::Builder::new()
            .prefix("load-")
            .tempdir_in(store.tmp_dir())
            .map_err(write_err(&store.tmp_dir()))?;
        let mut members = Members {
            archive: archive.to_path_buf(),
            files: HashMap::new(),
            _scratch: scratch,
        };
        let scratch_dir = members._scratch.path().to_path_buf();
        let limits = crate::layer::ArchiveLimits::from_env().map_err(LayerError::from)?;
        let meter = crate::layer::Meter::new(limits);
        let label = archive.display().to_string();
        let limited = |e: ExportError| match meter.exceeded() {
            Some(limit) => ExportError::Layer(LayerError::Limit {
                archive: label.clone(),
                limit,
            }),
            None => e,
        };
        let not_tar = |e: io::Error| {
            if e.raw_os_error().is_some() {
                read_err(archive)(e)
            } else {
                ExportError::Archive {
                    archive: archive.to_path_buf(),
                    reason: "it is not a tar archive, or a damaged one".to_owned(),
                }
            }
        };
        let compressed = BufReader::new(meter.compressed(file));
        let plain = crate::layer::decompress(compressed).map_err(LayerError::Read)?;
        let mut tar = tar::Archive::new(meter.expanded(plain));
        let entries = tar.entries().map_err(|e| limited(not_tar(e)))?;
        for (n, entry) in entries.enumerate() {
            let mut entry = entry.map_err(|e| limited(not_tar(e)))?;
            meter.entry().map_err(|limit| LayerError::Limit {
                archive: label.clone(),
                limit,
            })?;
            let raw = entry.path_bytes().into_owned();
            let name = String::from_utf8_lossy(&raw).into_owned();
            let path = clean_archive_path(&name)
                .map_err(|why| members.refused(format!("entry {name:?}: {why}")))?;
            if let Some(format) = crate::layer::sparse_format(&mut entry) {
                return Err(members.refused(format!(
                    "entry {name:?}: {}",
                    crate::layer::sparse_reason(format)
                )));
            }
            let kind = entry.header().entry_type();
            let member = match kind {
                tar::EntryType::Directory => continue,
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let dest = scratch_dir.join(n.to_string());
                    let mut out = File::create(&dest).map_err(write_err(&dest))?;
                    io::copy(&mut entry, &mut out).map_err(|e| limited(not_tar(e)))?;
                    Member::File(dest)
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let symlink = kind == tar::EntryType::Symlink;
                    Member::Link {
                        kind: if symlink { "a symlink" } else { "a hardlink" },
                        target: entry
                            .link_name_bytes()
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                            .unwrap_or_default(),
                        relative: symlink,
                    }
                }
                _ => Member::Other("not a regular file"),
            };
            if members.files.insert(path, member).is_some() {
                return Err(members.refused(format!("entry {name:?} appears twice")));
            }
        }
        Ok(members)
    }

    /// The scratch file holding the member `name` names (`what` says where the name was
    /// read: "manifest.json's Config"). Links are followed inside the archive only: a
    /// target that is absolute or climbs out of it is refused.
    fn file(&self, what: &str, name: &str) -> Result<&Path, ExportError> {
        let mut path = clean_archive_path(name)
            .map_err(|why| self.refused(format!("{what} names {name:?}: {why}")))?;
        for _ in 0..=MAX_LINK_HOPS {
            match self.files.get(&path) {
                Some(Member::File(p)) => return Ok(p),
                Some(Member::Other(kind)) => {
                    return Err(self.refused(format!(
                        "{what} names {name:?}, which is {kind} in the archive: only regular files are read"
                    )));
                }
                Some(Member::Link {
                    kind,
                    target,
                    relative,
                }) => {
                    let joined = match (relative, path.rsplit_once('/')) {
                        (true, Some((dir, _))) => format!("{dir}/{target}"),
                        _ => target.clone(),
                    };
                    path = resolve_inside(&joined).ok_or_else(|| {
                        self.refused(format!(
                            "{what} names {name:?}, which is {kind} to {target:?}, outside the archive"
                        ))
                    })?;
                }
                None => {
                    return Err(self.refused(format!(
                        "{what} names {name:?}, which the archive does not hold"
                    )));
                }
            }
        }
        Err(self.refused(format!(
            "{what} names {name:?}, which passes through more than {MAX_LINK_HOPS} links"
        )))
    }

    fn has(&self, name: &str) -> bool {
        clean_archive_path(name).is_ok_and(|p| self.files.contains_key(&p))
    }
}

/// Loads an OCI layout tar or a docker archive into the store and names its images;
/// returns the images with the names they got. Every blob a manifest names is checked
/// against its digest and size before it enters the store, or must already be in the
/// store and hash to its name; nothing else of the archive is stored.
pub fn load_archive(
    store: &ContentStore,
    archive: &Path,
) -> Result<Vec<(Image, Vec<ImageName>)>, ExportError> {
    let file = File::open(archive).map_err(read_err(archive))?;
    load_archive_file(store, file, archive, true)
}

/// Loads an archive read from `file`, a pipe or standard input as well as a file (it is
/// read once, front to back); `label` names it in errors. As [`load_archive`].
pub fn load_archive_from(
    store: &ContentStore,
    file: File,
    label: &Path,
) -> Result<Vec<(Image, Vec<ImageName>)>, ExportError> {
    load_archive_file(store, file, label, true)
}

/// Loads the archive open as `file` (`archive` names it in errors); its images get the
/// names the archive gives them only when `name` is set (`rbuild load`), never for a
/// `FROM docker-archive://`, whose archive must not create or move a name in the store.
pub(crate) fn load_archive_file(
    store: &ContentStore,
    file: File,
    archive: &Path,
    name: bool,
) -> Result<Vec<(Image, Vec<ImageName>)>, ExportError> {
    let members = Members::read(store, file, archive)?;
    if members.files.is_empty() {
        return Err(members.refused(
            "it is empty: no image archive (docker save or an OCI layout tar)".to_owned(),
        ));
    }
    if members.has("manifest.json") {
        load_docker(store, &members, name)
    } else if !members.has("index.json") {
        Err(members.refused(
            "it is no image archive: it holds neither manifest.json (docker save) nor \
             index.json (an OCI layout)"
                .to_owned(),
        ))
    } else {
        load_layout(store, &members, name)
    }
}

/// The most bytes a JSON document of an archive or layout may have.
pub(crate) const MAX_DOCUMENT: u64 = 64 << 20;

fn read_document(members: &Members, what: &str, path: &Path) -> Result<Vec<u8>, ExportError> {
    let size = fs::metadata(path).map_err(read_err(path))?.len();
    if size > MAX_DOCUMENT {
        return Err(members.refused(format!(
            "{what} has {size} bytes, more than a document may ({MAX_DOCUMENT})"
        )));
    }
    fs::read(path).map_err(read_err(path))
}

fn load_docker(
    store: &ContentStore,
    members: &Members,
    name_images: bool,
) -> Result<Vec<(Image, Vec<ImageName>)>, ExportError> {
    let path = members.file("the archive", "manifest.json")?;
    let bytes = read_document(members, "manifest.json", path)?;
    let entries: Vec<DockerEntry> = serde_json::from_slice(&bytes)
        .map_err(|e| members.refused(format!("manifest.json is not docker's manifest: {e}")))?;
    let mut out = Vec::new();
    for entry in entries {
        let config_path = members.file("manifest.json's Config", &entry.config)?;
        let config_bytes = read_document(members, "the config", config_path)?;
        let config: ImageConfig = serde_json::from_slice(&config_bytes).map_err(|e| {
            members.refused(format!(
                "config {:?} is not an image config: {e}",
                entry.config
            ))
        })?;
        if entry.layers.len() != config.rootfs.diff_ids.len() {
            return Err(members.refused(format!(
                "manifest.json lists {} layers, config {:?} {} diff_ids",
                entry.layers.len(),
                entry.config,
                config.rootfs.diff_ids.len()
            )));
        }
        // Every layer is checked before anything of this image goes in.
        let mut checked = Vec::new();
        for (layer, want) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
            let lpath = members.file("manifest.json's Layers", layer)?;
            let (found, compression) = diff_id_of(lpath)?;
            if found.as_str() != want {
                return Err(members.refused(format!(
                    "layer {layer:?} does not match its config: its diff_id is {found}, the config says {want:?}"
                )));
            }
            checked.push((lpath, compression));
        }
        let config_blob = store.put(&config_bytes)?;
        let mut layers = Vec::new();
        for (lpath, compression) in checked {
            let blob = put_file(store, lpath)?;
            layers.push(Descriptor::new(
                ImageFormat::Docker.layer_type(compression),
                blob.size,
                &blob.digest,
            ));
        }
        let image = write_manifest(
            store,
            &config,
            config_blob,
            layers,
            ImageFormat::Docker,
            HashMap::new(),
        )?;
        let mut names = Vec::new();
        for tag in entry.repo_tags.unwrap_or_default() {
            let name: ImageName = tag
                .parse()
                .map_err(|e| members.refused(format!("manifest.json's RepoTags {tag:?}: {e}")))?;
            if name_images {
                store.tag(&name, &image.descriptor)?;
                names.push(name);
            }
        }
        out.push((image, names));
    }
    Ok(out)
}

/// How deep indexes may nest in an archive or layout (an index naming itself would
/// never end).
pub(crate) const MAX_INDEX_DEPTH: usize = 8;

/// Checks blob `desc` names and, for a manifest or index, every blob it names, in the
/// archive (digest and size, then stored) or already in the store (re-hashed).
fn import_descriptor(
    store: &ContentStore,
    members: &Members,
    desc: &Descriptor,
    depth: usize,
    done: &mut std::collections::HashSet<Digest>,
) -> Result<(), ExportError> {
    let digest = Digest::try_from(desc.digest()).map_err(|e| {
        members.refused(format!(
            "a descriptor names {:?}: {e}",
            desc.digest().to_string()
        ))
    })?;
    if depth > MAX_INDEX_DEPTH {
        return Err(members.refused(format!(
            "indexes nest more than {MAX_INDEX_DEPTH} deep at {digest} (an index naming itself?)"
        )));
    }
    if !done.insert(digest.clone()) {
        return Ok(());
    }
    let name = format!("blobs/{}/{}", digest.algorithm(), digest.hex());
    let size = if members.has(&name) {
        let path = members.file("the index", &name)?;
        let (found, size) = hash_file(path)?;
        check_blob(desc, &name, &found, size).map_err(|reason| members.refused(reason))?;
        put_file(store, path)?;
        size
    } else if store.contains(&digest) {
        let size = store.verify_blob(&digest)?;
        if size != desc.size() {
            return Err(members.refused(format!(
                "blob {digest} has {size} bytes in the store, its descriptor says {}",
                desc.size()
            )));
        }
        size
    } else {
        return Err(members.refused(format!(
            "blob {digest} is named but neither the archive nor the store holds it"
        )));
    };
    let _ = size;
    let media = desc.media_type().to_string();
    if is_document(&media) {
        let bytes = store.read(&digest)?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| members.refused(format!("{media} {digest} is not JSON: {e}")))?;
        let mut children: Vec<Descriptor> = Vec::new();
        if let Some(v) = value.get("config") {
            children.push(serde_json::from_value(v.clone()).map_err(|e| {
                members.refused(format!("{media} {digest} has a bad config descriptor: {e}"))
            })?);
        }
        for field in ["layers", "manifests"] {
            if let Some(v) = value.get(field) {
                let list: Vec<Descriptor> = serde_json::from_value(v.clone()).map_err(|e| {
                    members.refused(format!("{media} {digest} has bad {field}: {e}"))
                })?;
                children.extend(list);
            }
        }
        let next = if value.get("manifests").is_some() {
            depth + 1
        } else {
            depth
        };
        for child in &children {
            import_descriptor(store, members, child, next, done)?;
        }
        if let Some(v) = value.get("config") {
            if value.get("layers").is_some() {
                let config: Descriptor = serde_json::from_value(v.clone()).map_err(|e| {
                    members.refused(format!("{media} {digest} has a bad config descriptor: {e}"))
                })?;
                let config_digest = Digest::try_from(config.digest()).map_err(|e| {
                    members.refused(format!(
                        "{digest} names config {:?}: {e}",
                        config.digest().to_string()
                    ))
                })?;
                let cbytes = store.read(&config_digest)?;
                serde_json::from_slice::<ImageConfig>(&cbytes).map_err(|e| {
                    members.refused(format!(
                        "config {config_digest} is not an image config: {e}"
                    ))
                })?;
            }
        }
    }
    Ok(())
}

/// Checks a blob `name` of an archive or layout, whose content hashed to `found` in
/// `size` bytes, against the descriptor that named it: its digest, its size, and the
/// size limit of a JSON document. The reason for a refusal otherwise.
pub(crate) fn check_blob(
    desc: &Descriptor,
    name: &str,
    found: &Digest,
    size: u64,
) -> Result<(), String> {
    let digest = desc.digest().to_string();
    if found.to_string() != digest {
        return Err(format!(
            "blob {name:?} does not hash to its name: its content is {found}"
        ));
    }
    if size != desc.size() {
        return Err(format!(
            "blob {digest} has {size} bytes, its descriptor says {}",
            desc.size()
        ));
    }
    let media = desc.media_type().to_string();
    if is_document(&media) && size > MAX_DOCUMENT {
        return Err(format!(
            "{media} {digest} has {size} bytes, more than a document may ({MAX_DOCUMENT})"
        ));
    }
    Ok(())
}

/// Manifests and indexes: documents whose children are followed.
pub(crate) fn is_document(media: &str) -> bool {
    media.contains("manifest") || media.contains("index")
}

fn load_layout(
    store: &ContentStore,
    members: &Members,
    name_images: bool,
) -> Result<Vec<(Image, Vec<ImageName>)>, ExportError> {
    let path = members.file("the archive", "index.json")?;
    let bytes = read_document(members, "index.json", path)?;
    let index: ImageIndex = serde_json::from_slice(&bytes)
        .map_err(|e| members.refused(format!("index.json is not an OCI index: {e}")))?;
    let mut done = std::collections::HashSet::new();
    for desc in index.manifests() {
        let media = desc.media_type().to_string();
        if !is_document(&media) {
            return Err(members.refused(format!(
                "index.json names {} with media type {media:?}, not a manifest or index",
                desc.digest()
            )));
        }
        import_descriptor(store, members, desc, 0, &mut done)?;
    }
    let mut out = Vec::new();
    for desc in index.manifests() {
        let image = load_image(store, desc)?;
        let ann = desc.annotations().clone().unwrap_or_default();
        let name = ann
            .get(CONTAINERD_NAME_ANNOTATION)
            // A bare tag ("v1") in ref.name is no image name; a full one is.
            .or_else(|| {
                ann.get(REF_NAME_ANNOTATION)
                    .filter(|n| n.contains(['/', ':']))
            })
            .map(|n| {
                n.parse::<ImageName>()
                    .map_err(|e| members.refused(format!("index.json names an image {n:?}: {e}")))
            })
            .transpose()?;
        let mut names = Vec::new();
        if let Some(name) = name.filter(|_| name_images) {
            store.tag(&name, &image.descriptor)?;
            names.push(name);
        }
        out.push((image, names));
    }
    Ok(out)
}

/// Makes a one-layer image from a rootfs archive (plain, gzip or zstd): the archive is
/// unpacked with the safe applier into scratch space and written again as a normalized
/// layer with `options`.
pub fn import_rootfs(
    store: &ContentStore,
    rootfs: impl Read,
    spec: &crate::image::ImageSpec,
    options: &crate::layer::LayerOptions,
) -> Result<Image, ExportError> {
    let tmp = tempfile::Builder::new()
        .prefix("import-")
        .tempdir_in(store.tmp_dir())
        .map_err(read_err(&store.tmp_dir()))?;
    crate::layer::apply_layer(rootfs, tmp.path(), crate::layer::ApplyMode::Merged)?;
    let changes = crate::layer::tree_changes(tmp.path())?;
    let layer = crate::layer::write_layer(store, tmp.path(), &changes, options)?;
    Ok(crate::image::assemble(store, spec, &[layer])?)
}

#[cfg(test)]
mod tests {
    use super::{clean_archive_path, resolve_inside};

    #[test]
    fn archive_paths_stay_inside_the_archive() {
        assert_eq!(clean_archive_path("./a//b/"), Ok("a/b".to_owned()));
        assert!(clean_archive_path("/etc/hostname").is_err());
        assert!(clean_archive_path("a/../../b").is_err());
        assert!(clean_archive_path("blobs/..").is_err());
        assert_eq!(
            resolve_inside("second/../first/layer.tar"),
            Some("first/layer.tar".to_owned())
        );
        assert_eq!(resolve_inside("x/../../etc/hostname"), None);
        assert_eq!(resolve_inside("/etc/hostname"), None);
    }
}
