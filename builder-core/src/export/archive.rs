//! `save` and `load`: image archives in OCI layout or docker format.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::Path;

use oci_spec::image::{Descriptor, ImageIndex};

use super::layout::{DirSink, LayoutSink, TarSink};
use super::members::{Members, read_err};
use super::{
    CONTAINERD_NAME_ANNOTATION, ExportError, Report, Saved, write_docker_archive, write_layout,
};
use crate::digest::{Digest, Hasher};
use crate::image::{Image, ImageConfig, ImageFormat, write_manifest};
pub(crate) use crate::image::{MAX_INDEX_DEPTH, is_document};
use crate::layer::{Compression, LayerError};
pub(crate) use crate::oci_layout::MAX_DOCUMENT;
use crate::oci_layout::{Children, INDEX_FILE, LayoutError, blob_rel};
use crate::progress::Progress;
use crate::store::{ContentStore, ImageName, REF_NAME_ANNOTATION, StoreError};

/// Writes `images` (each an image or an index, with its names) into one archive at
/// `dest`: an OCI layout tar, or a docker archive (which holds the OCI layout too; its
/// `manifest.json` lists one image of an index, see [`Saved`]). Each blob written is a
/// transfer reported to `progress` (see [`Progress`]'s module, "Transfers").
pub fn save_images(
    store: &ContentStore,
    dest: &Path,
    images: &[(Saved, Vec<ImageName>)],
    format: ImageFormat,
    progress: &dyn Progress,
) -> Result<(), ExportError> {
    let refs: Vec<(&Saved, &[ImageName])> = images.iter().map(|(i, n)| (i, n.as_slice())).collect();
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
    images: &[(Saved, Vec<ImageName>)],
    progress: &dyn Progress,
) -> Result<(), ExportError> {
    let refs: Vec<(&Saved, &[ImageName])> = images.iter().map(|(i, n)| (i, n.as_slice())).collect();
    let mut sink = Box::new(DirSink::create(dest)?);
    let shown = dest.display().to_string();
    let report = Report {
        progress,
        target: &shown,
    };
    write_layout(store, sink.as_mut(), &refs, report)?;
    sink.finish()
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

/// Loads an OCI layout tar or a docker archive into the store and names its images;
/// returns the images with the names they got. Every blob a manifest names is checked
/// against its digest and size before it enters the store, or must already be in the
/// store and hash to its name; nothing else of the archive is stored.
pub fn load_archive(
    store: &ContentStore,
    archive: &Path,
) -> Result<Vec<(Image, Vec<ImageName>)>, ExportError> {
    let file = File::open(archive).map_err(read_err(archive))?;
    Ok(reported(load_archive_file(store, file, archive, true)?))
}

/// Each entry's image as `load` reports it: an index's the one a docker archive lists
/// (see [`Saved`]).
fn reported(loaded: Vec<(Saved, Vec<ImageName>)>) -> Vec<(Image, Vec<ImageName>)> {
    loaded
        .into_iter()
        .filter_map(|(saved, names)| Some((saved.docker_image()?.clone(), names)))
        .collect()
}

/// Loads an archive read from `file`, a pipe or standard input as well as a file (it is
/// read once, front to back); `label` names it in errors. As [`load_archive`].
pub fn load_archive_from(
    store: &ContentStore,
    file: File,
    label: &Path,
) -> Result<Vec<(Image, Vec<ImageName>)>, ExportError> {
    Ok(reported(load_archive_file(store, file, label, true)?))
}

/// Loads the archive open as `file` (`archive` names it in errors); its images get the
/// names the archive gives them only when `name` is set (`rbuild load`), never for a
/// `FROM docker-archive://`, whose archive must not create or move a name in the store.
/// An entry that is an index comes back whole (the build picks its platform's image).
pub(crate) fn load_archive_file(
    store: &ContentStore,
    file: File,
    archive: &Path,
    name: bool,
) -> Result<Vec<(Saved, Vec<ImageName>)>, ExportError> {
    let members = Members::read(store, file, archive)?;
    if members.files.is_empty() {
        return Err(members.refused(
            "it is empty: no image archive (docker save or an OCI layout tar)".to_owned(),
        ));
    }
    // A docker archive holding an index (rbuild's or docker's save of several
    // platforms) is loaded as the OCI layout it also is, as docker's containerd image
    // store loads it: its manifest.json lists one platform's image only.
    if members.has("manifest.json") && !layout_names_an_index(&members)? {
        load_docker(store, &members, name)
    } else if !members.has(INDEX_FILE) {
        Err(members.refused(format!(
            "it is no image archive: it holds neither manifest.json (docker save) nor \
             {INDEX_FILE} (an OCI layout)"
        )))
    } else {
        load_layout(store, &members, name)
    }
}

/// Whether the archive's `index.json` (when it has one) has an entry that is an index.
fn layout_names_an_index(members: &Members) -> Result<bool, ExportError> {
    if !members.has(INDEX_FILE) {
        return Ok(false);
    }
    let path = members.file("the archive", INDEX_FILE)?;
    let bytes = read_document(members, INDEX_FILE, path)?;
    let index: ImageIndex = serde_json::from_slice(&bytes)
        .map_err(|e| members.refused(format!("{INDEX_FILE} is not an OCI index: {e}")))?;
    Ok(index.manifests().iter().any(|desc| {
        let media = desc.media_type().to_string();
        media.contains("index") || media.contains("manifest.list")
    }))
}

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
) -> Result<Vec<(Saved, Vec<ImageName>)>, ExportError> {
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
        out.push((Saved::Image(image), names));
    }
    Ok(out)
}

/// Checks blob `desc` names and, for a manifest or index, every blob it names, in the
/// archive (hashed as it is stored, committed only when digest and size match) or
/// already in the store (re-hashed).
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
    let name = blob_rel(&digest);
    if members.has(&name) {
        let path = members.file("the index", &name)?;
        check_document_size(desc).map_err(|reason| members.refused(reason))?;
        let mut file = File::open(path).map_err(read_err(path))?;
        store_verified(store, &mut file, path, desc, &name)?
            .map_err(|reason| members.refused(reason))?;
    } else if store.contains(&digest) {
        let size = store.verify_blob(&digest)?;
        if size != desc.size() {
            return Err(members.refused(format!(
                "blob {digest} has {size} bytes in the store, its descriptor says {}",
                desc.size()
            )));
        }
    } else {
        return Err(members.refused(format!(
            "blob {digest} is named but neither the archive nor the store holds it"
        )));
    }
    let media = desc.media_type().to_string();
    if is_document(&media) {
        let bytes = store.read(&digest)?;
        let children = Children::parse(&bytes).map_err(|(field, e)| {
            members.refused(match field {
                None => format!("{media} {digest} is not JSON: {e}"),
                Some("config") => format!("{media} {digest} has a bad config descriptor: {e}"),
                Some(field) => format!("{media} {digest} has bad {field}: {e}"),
            })
        })?;
        let next = if children.manifests.is_some() {
            depth + 1
        } else {
            depth
        };
        for child in children.all() {
            import_descriptor(store, members, child, next, done)?;
        }
        if let (Some(config), true) = (&children.config, is_manifest(&bytes)) {
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
    Ok(())
}

/// Whether a document has a `layers` field (an image manifest, not an artifact's).
fn is_manifest(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(bytes).is_ok_and(|v| v.get("layers").is_some())
}

/// Refuses a manifest or index whose descriptor promises more bytes than a JSON document
/// may have (checked before the blob is read: its size must match the descriptor's).
pub(crate) fn check_document_size(desc: &Descriptor) -> Result<(), String> {
    let media = desc.media_type().to_string();
    if is_document(&media) && desc.size() > MAX_DOCUMENT {
        return Err(format!(
            "{media} {} has {} bytes, more than a document may ({MAX_DOCUMENT})",
            desc.digest(),
            desc.size()
        ));
    }
    Ok(())
}

/// Stores blob `name` of an archive or layout, read from `body` (`path` names it in read
/// errors), hashed as it is written and committed only when it is what `desc` says: its
/// digest, then its size. No more than one byte past the size `desc` says is read. The reason for a refusal otherwise (nothing is stored then).
pub(crate) fn store_verified(
    store: &ContentStore,
    body: &mut dyn Read,
    path: &Path,
    desc: &Descriptor,
    name: &str,
) -> Result<Result<(), String>, StoreError> {
    let mut writer = store.writer()?;
    writer
        .copy_within(body, desc.size())
        .map_err(crate::store::io_err("read", path))?;
    match writer.finish_verified_as(desc) {
        Ok(_) => Ok(Ok(())),
        Err(StoreError::Layout(e @ LayoutError::Overlong { .. })) => Ok(Err(e.to_string())),
        Err(StoreError::DigestMismatch { found, .. }) => Ok(Err(format!(
            "blob {name:?} does not hash to its name: its content is {found}"
        ))),
        Err(StoreError::SizeMismatch {
            found, expected, ..
        }) => Ok(Err(format!(
            "blob {} has {found} bytes, its descriptor says {expected}",
            desc.digest()
        ))),
        Err(e) => Err(e),
    }
}

fn load_layout(
    store: &ContentStore,
    members: &Members,
    name_images: bool,
) -> Result<Vec<(Saved, Vec<ImageName>)>, ExportError> {
    let path = members.file("the archive", INDEX_FILE)?;
    let bytes = read_document(members, INDEX_FILE, path)?;
    let index: ImageIndex = serde_json::from_slice(&bytes)
        .map_err(|e| members.refused(format!("{INDEX_FILE} is not an OCI index: {e}")))?;
    let mut done = std::collections::HashSet::new();
    for desc in index.manifests() {
        let media = desc.media_type().to_string();
        if !is_document(&media) {
            return Err(members.refused(format!(
                "{INDEX_FILE} names {} with media type {media:?}, not a manifest or index",
                desc.digest()
            )));
        }
        import_descriptor(store, members, desc, 0, &mut done)?;
    }
    let mut out = Vec::new();
    for desc in index.manifests() {
        // An index is named as a whole.
        let saved = Saved::load(store, desc)?;
        if saved.docker_image().is_none() {
            return Err(members.refused(format!(
                "{INDEX_FILE} names {}, an index of no image",
                desc.digest()
            )));
        }
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
                    .map_err(|e| members.refused(format!("{INDEX_FILE} names an image {n:?}: {e}")))
            })
            .transpose()?;
        let mut names = Vec::new();
        if let Some(name) = name.filter(|_| name_images) {
            store.tag(&name, desc)?;
            names.push(name);
        }
        out.push((saved, names));
    }
    Ok(out)
}

/// Makes a one-layer image from a rootfs archive (plain, gzip or zstd): the archive is
/// unpacked with the safe applier into scratch space, within the store's
/// [`archive_limits`](ContentStore::archive_limits), and written again as a normalized
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
    let name = format!("the layer unpacked into {}", tmp.path().display());
    crate::layer::apply_layer_limited(
        rootfs,
        tmp.path(),
        crate::layer::ApplyMode::Merged,
        &store.archive_limits(),
        &name,
    )?;
    let changes = crate::layer::tree_changes(tmp.path())?;
    let layer = crate::layer::write_layer(store, tmp.path(), &changes, options);
    // The owner table an unprivileged applier left beside the tree goes with it.
    let _ = std::fs::remove_file(crate::fakeroot::table_path(tmp.path()));
    Ok(crate::image::assemble(store, spec, &[layer?])?)
}
