//! `save` and `load`: image archives in OCI layout or docker format.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::path::Path;

use oci_spec::image::{Descriptor, ImageIndex};

use super::layout::{DirSink, LayoutSink, TarSink};
use super::{CONTAINERD_NAME_ANNOTATION, ExportError, write_docker_archive, write_layout};
use crate::digest::{Digest, Hasher};
use crate::image::{Image, ImageConfig, ImageError, ImageFormat, load_image, write_manifest};
use crate::layer::{Compression, LayerError};
use crate::store::{ContentStore, ImageName, REF_NAME_ANNOTATION, StoreError};

/// Writes `images` (each with its names) into one archive at `dest`: an OCI layout tar,
/// or a docker archive (which holds the OCI layout too).
pub fn save_images(
    store: &ContentStore,
    dest: &Path,
    images: &[(Image, Vec<ImageName>)],
    format: ImageFormat,
) -> Result<(), ExportError> {
    let refs: Vec<(&Image, &[ImageName])> = images.iter().map(|(i, n)| (i, n.as_slice())).collect();
    match format {
        ImageFormat::Docker => write_docker_archive(store, dest, &refs),
        ImageFormat::Oci => {
            let mut sink = Box::new(TarSink::create(dest)?);
            write_layout(store, sink.as_mut(), &refs)?;
            sink.finish()
        }
    }
}

/// Writes `images` as an OCI layout directory at `dest`.
pub fn save_layout_dir(
    store: &ContentStore,
    dest: &Path,
    images: &[(Image, Vec<ImageName>)],
) -> Result<(), ExportError> {
    let refs: Vec<(&Image, &[ImageName])> = images.iter().map(|(i, n)| (i, n.as_slice())).collect();
    let mut sink = Box::new(DirSink {
        root: dest.to_path_buf(),
    });
    write_layout(store, sink.as_mut(), &refs)?;
    sink.finish()
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> ExportError {
    let path = path.to_path_buf();
    move |source| ExportError::Write { path, source }
}

/// Copies `path` into the store, checking it hashes to `expected` when given.
fn put_file(
    store: &ContentStore,
    path: &Path,
    expected: Option<&Digest>,
) -> Result<crate::Blob, ExportError> {
    let mut file = File::open(path).map_err(read_err(path))?;
    let mut w = store.writer()?;
    io::copy(&mut file, &mut w).map_err(read_err(path))?;
    let blob = w.finish()?;
    if let Some(expected) = expected {
        if &blob.digest != expected {
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                found: blob.digest,
            }
            .into());
        }
    }
    Ok(blob)
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
/// returns the images with the names they got.
pub fn load_archive(
    store: &ContentStore,
    archive: &Path,
) -> Result<Vec<(Image, Vec<ImageName>)>, ExportError> {
    let tmp = tempfile::Builder::new()
        .prefix("load-")
        .tempdir_in(store.tmp_dir())
        .map_err(read_err(&store.tmp_dir()))?;
    // The tar crate's unpack refuses entries that leave the directory.
    let file = File::open(archive).map_err(read_err(archive))?;
    let plain = crate::layer::decompress(BufReader::new(file)).map_err(LayerError::Read)?;
    tar::Archive::new(plain)
        .unpack(tmp.path())
        .map_err(read_err(archive))?;
    let dir = tmp.path();
    if dir.join("manifest.json").is_file() {
        load_docker(store, dir)
    } else {
        load_layout(store, dir)
    }
}

fn load_docker(
    store: &ContentStore,
    dir: &Path,
) -> Result<Vec<(Image, Vec<ImageName>)>, ExportError> {
    let path = dir.join("manifest.json");
    let bytes = fs::read(&path).map_err(read_err(&path))?;
    let entries: Vec<DockerEntry> =
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            path: path.clone(),
            source,
        })?;
    let mut out = Vec::new();
    for entry in entries {
        let config_path = dir.join(&entry.config);
        let config_blob = put_file(store, &config_path, None)?;
        let config: ImageConfig = store.read_json(&config_blob.digest)?;
        if entry.layers.len() != config.rootfs.diff_ids.len() {
            return Err(ImageError::LayerCount(
                config_blob.digest.clone(),
                entry.layers.len(),
                config.rootfs.diff_ids.len(),
            )
            .into());
        }
        let mut layers = Vec::new();
        for (layer, want) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
            let lpath = dir.join(layer);
            // Checked before the blob goes in: a layer that is not what the config says
            // never enters the store.
            let (found, compression) = diff_id_of(&lpath)?;
            if found.as_str() != want {
                return Err(LayerError::DiffIdMismatch {
                    expected: want.parse().map_err(ImageError::from)?,
                    found,
                }
                .into());
            }
            let blob = put_file(store, &lpath, None)?;
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
            let name: ImageName = tag.parse().map_err(StoreError::from)?;
            store.tag(&name, &image.descriptor)?;
            names.push(name);
        }
        out.push((image, names));
    }
    Ok(out)
}

fn load_layout(
    store: &ContentStore,
    dir: &Path,
) -> Result<Vec<(Image, Vec<ImageName>)>, ExportError> {
    let path = dir.join("index.json");
    let bytes = fs::read(&path).map_err(read_err(&path))?;
    let index: ImageIndex = serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
        path: path.clone(),
        source,
    })?;
    // Every blob of the layout goes in, each checked against its name.
    let blobs = dir.join("blobs/sha256");
    for entry in fs::read_dir(&blobs).map_err(read_err(&blobs))? {
        let entry = entry.map_err(read_err(&blobs))?;
        let name = entry.file_name();
        let digest: Digest = format!("sha256:{}", name.to_string_lossy())
            .parse()
            .map_err(ImageError::from)?;
        put_file(store, &entry.path(), Some(&digest))?;
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
            .and_then(|n| n.parse::<ImageName>().ok());
        let mut names = Vec::new();
        if let Some(name) = name {
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
