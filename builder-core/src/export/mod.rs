//! Exporters: where a built image goes (`-o type=...`).
//!
//! [`ExportTarget`] parses docker build's `-o` syntax; [`export`] writes an image of the
//! store there: an OCI layout (tar or directory), a docker archive, the rootfs (directory
//! or tar), or names in the local store.

mod archive;
mod layout;
mod target;

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::PathBuf;

use oci_spec::image::{Descriptor, ImageIndexBuilder, MediaType};

pub use self::archive::{import_rootfs, load_archive, save_images, save_layout_dir};
use self::layout::{DirSink, LayoutSink, TarSink};
pub use self::target::{ExportTarget, InvalidExportTarget};
use crate::digest::Digest;
use crate::image::{Image, ImageError};
use crate::layer::{
    ApplyMode, Compression, LayerError, LayerOptions, apply_layer, tree_changes, write_layer_to,
};
use crate::store::{ContentStore, ImageName, REF_NAME_ANNOTATION, StoreError};

/// containerd's annotation carrying an image's full name in an exported index, as BuildKit
/// writes it next to `org.opencontainers.image.ref.name` (which then holds the tag).
pub const CONTAINERD_NAME_ANNOTATION: &str = "io.containerd.image.name";

/// A failure exporting an image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// An output file could not be written.
    #[error("failed to write export {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The image could not be read.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Unpacking the rootfs failed.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// A JSON document could not be serialized.
    #[error("failed to serialize {what}")]
    Json {
        /// Which document.
        what: &'static str,
        /// Why.
        source: serde_json::Error,
    },
    /// `type=image`, `type=registry` and `--push` need at least one name.
    #[error("the image needs a name to be named or pushed: give one with -t (or name= in -o)")]
    NoName,
}

/// Something that takes a built image somewhere.
pub trait Exporter {
    /// Exports `image` of `store`, known by `names`.
    fn export(
        &self,
        store: &ContentStore,
        image: &Image,
        names: &[ImageName],
    ) -> Result<(), ExportError>;
}

impl Exporter for ExportTarget {
    fn export(
        &self,
        store: &ContentStore,
        image: &Image,
        names: &[ImageName],
    ) -> Result<(), ExportError> {
        export(store, self, image, names)
    }
}

/// Names `image` in the store under every one of `names` (at least one).
fn tag_all(store: &ContentStore, image: &Image, names: &[ImageName]) -> Result<(), ExportError> {
    if names.is_empty() {
        return Err(ExportError::NoName);
    }
    for name in names {
        store.tag(name, &image.descriptor)?;
    }
    Ok(())
}

fn json<T: serde::Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, ExportError> {
    // Through Value so that every map is written in sorted key order.
    let value = serde_json::to_value(value).map_err(|source| ExportError::Json { what, source })?;
    serde_json::to_vec(&value).map_err(|source| ExportError::Json { what, source })
}

/// Exports `image` to `target`.
pub fn export(
    store: &ContentStore,
    target: &ExportTarget,
    image: &Image,
    names: &[ImageName],
) -> Result<(), ExportError> {
    match target {
        ExportTarget::Oci { dest, tar: true } => {
            let mut sink = Box::new(TarSink::create(dest)?);
            write_layout(store, sink.as_mut(), &[(image, names)])?;
            sink.finish()
        }
        ExportTarget::Oci { dest, tar: false } => {
            let mut sink = Box::new(DirSink { root: dest.clone() });
            write_layout(store, sink.as_mut(), &[(image, names)])?;
            sink.finish()
        }
        ExportTarget::Docker { dest } => write_docker_archive(store, dest, &[(image, names)]),
        ExportTarget::Local { dest } => {
            fs::create_dir_all(dest).map_err(|source| ExportError::Write {
                path: dest.clone(),
                source,
            })?;
            unpack_rootfs(store, image, dest)
        }
        ExportTarget::Tar { dest } => {
            let tmp = tempfile::Builder::new()
                .prefix("rootfs-")
                .tempdir_in(store.tmp_dir())
                .map_err(|source| ExportError::Write {
                    path: store.tmp_dir(),
                    source,
                })?;
            unpack_rootfs(store, image, tmp.path())?;
            let file = fs::File::create(dest).map_err(|source| ExportError::Write {
                path: dest.clone(),
                source,
            })?;
            let options = LayerOptions {
                compression: Compression::None,
                ..Default::default()
            };
            let changes = tree_changes(tmp.path())?;
            let (file, _) =
                write_layer_to(io::BufWriter::new(file), tmp.path(), &changes, &options)?;
            file.into_inner()
                .map_err(|e| ExportError::Write {
                    path: dest.clone(),
                    source: e.into_error(),
                })?
                .sync_all()
                .map_err(|source| ExportError::Write {
                    path: dest.clone(),
                    source,
                })
        }
        ExportTarget::Image => tag_all(store, image, names),
        // The push itself needs registry settings: the builder does it after the export.
        ExportTarget::Registry { names: own } if !own.is_empty() => tag_all(store, image, own),
        ExportTarget::Registry { .. } => tag_all(store, image, names),
    }
}

/// Applies every layer of `image`, bottom first, into directory `dest`.
pub fn unpack_rootfs(
    store: &ContentStore,
    image: &Image,
    dest: &std::path::Path,
) -> Result<(), ExportError> {
    for (blob, diff_id) in image.layers()? {
        let found = apply_layer(store.verified_reader(&blob)?, dest, ApplyMode::Merged)?;
        if found != diff_id {
            return Err(LayerError::DiffIdMismatch {
                expected: diff_id,
                found,
            }
            .into());
        }
    }
    Ok(())
}

fn add_blob(
    store: &ContentStore,
    sink: &mut dyn LayoutSink,
    digest: &Digest,
) -> Result<u64, ExportError> {
    let size = fs::metadata(store.blob_path(digest))
        .map_err(|_| StoreError::BlobNotFound(digest.clone()))?
        .len();
    let mut reader = store.verified_reader(digest)?;
    sink.add(&format!("blobs/sha256/{}", digest.hex()), size, &mut reader)?;
    Ok(size)
}

/// Writes an OCI image layout holding `images`, each entry named as BuildKit names them.
pub(crate) fn write_layout(
    store: &ContentStore,
    sink: &mut dyn LayoutSink,
    images: &[(&Image, &[ImageName])],
) -> Result<(), ExportError> {
    let layout = format!(
        "{{\"imageLayoutVersion\":\"{}\"}}",
        crate::store::OCI_LAYOUT_VERSION
    );
    sink.add("oci-layout", layout.len() as u64, &mut layout.as_bytes())?;
    let mut written = std::collections::BTreeSet::new();
    let mut entries: Vec<Descriptor> = Vec::new();
    for (image, names) in images {
        let manifest_digest = image.digest().map_err(ImageError::from)?;
        let mut blobs = vec![manifest_digest, image.config_digest.clone()];
        blobs.extend(image.layers()?.into_iter().map(|(b, _)| b));
        for blob in blobs {
            if written.insert(blob.clone()) {
                add_blob(store, sink, &blob)?;
            }
        }
        let mut base = image.descriptor.clone();
        base.set_annotations(None);
        if names.is_empty() {
            entries.push(base.clone());
        }
        for name in names.iter() {
            let mut d = base.clone();
            let mut ann = HashMap::new();
            ann.insert(CONTAINERD_NAME_ANNOTATION.to_owned(), name.to_string());
            if let Some(tag) = name.tag() {
                ann.insert(REF_NAME_ANNOTATION.to_owned(), tag.to_owned());
            }
            d.set_annotations(Some(ann));
            entries.push(d);
        }
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(entries)
        .build()
        .map_err(|e| ExportError::Image(ImageError::Manifest(e)))?;
    let bytes = json("index.json", &index)?;
    sink.add("index.json", bytes.len() as u64, &mut &bytes[..])
}

/// Docker's `manifest.json` entry (moby image/tarexport).
#[derive(serde::Serialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    repo_tags: Vec<String>,
    layers: Vec<String>,
}

/// Writes a `docker load`able archive: the OCI layout plus `manifest.json` and
/// `repositories`, as Docker 25 and later write them.
pub(crate) fn write_docker_archive(
    store: &ContentStore,
    dest: &std::path::Path,
    images: &[(&Image, &[ImageName])],
) -> Result<(), ExportError> {
    let mut sink = Box::new(TarSink::create(dest)?);
    write_layout(store, sink.as_mut(), images)?;
    let mut manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for (image, names) in images {
        let tagged: Vec<&ImageName> = names.iter().filter(|n| n.tag().is_some()).collect();
        manifest.push(DockerManifestEntry {
            config: format!("blobs/sha256/{}", image.config_digest.hex()),
            repo_tags: tagged.iter().map(|n| n.familiar()).collect(),
            layers: image
                .layers()?
                .iter()
                .map(|(b, _)| format!("blobs/sha256/{}", b.hex()))
                .collect(),
        });
        for name in tagged {
            let top = image
                .layers()?
                .last()
                .map(|(b, _)| b.hex().to_owned())
                .unwrap_or_default();
            repositories
                .entry(name.familiar_repository())
                .or_default()
                .insert(name.tag().unwrap_or("latest").to_owned(), top);
        }
    }
    let bytes = json("manifest.json", &manifest)?;
    sink.add("manifest.json", bytes.len() as u64, &mut &bytes[..])?;
    if !repositories.is_empty() {
        let bytes = json("repositories", &repositories)?;
        sink.add("repositories", bytes.len() as u64, &mut &bytes[..])?;
    }
    sink.finish()
}
