//! A shared cache in an OCI image layout directory (`type=local,dest=DIR` /
//! `src=DIR`), handy as a CI artifact: the layout's index names the cache manifest by its
//! tag. The directory may come from anyone, so it is read as any [`OciLayout`] is: beneath
//! its root, never through a symbolic link, documents bounded, blobs verified.

use std::collections::HashMap;
use std::path::Path;

use oci_spec::image::{Descriptor, MediaType};

use super::error::{CacheShareError, io_err};
use super::format::{self, Documents};
use crate::digest::Digest;
use crate::oci_layout::{LayoutError, OciLayout, ref_name};
use crate::solver::cache::entry::CacheEntry;
use crate::store::{ContentStore, REF_NAME_ANNOTATION, StoreError};

/// An imported cache directory.
#[derive(Debug)]
pub(super) struct LocalCache {
    layout: OciLayout,
}

/// A layout failure as the shared cache reports it: a blob that is not what its name
/// says names the cache directory; a refused file is one that could not be read.
fn layout_err(dir: &Path) -> impl FnOnce(LayoutError) -> CacheShareError {
    let dir = dir.to_path_buf();
    move |e| match e {
        LayoutError::DigestMismatch { expected, found } => CacheShareError::DigestMismatch {
            dir,
            expected,
            found,
        },
        LayoutError::Io {
            action,
            path,
            source,
        } => CacheShareError::Io {
            action,
            path,
            source,
        },
        LayoutError::Json { path, source } => CacheShareError::Json {
            what: path.display().to_string(),
            source,
        },
        LayoutError::Refused { path, reason } => {
            io_err("read", path)(std::io::Error::new(std::io::ErrorKind::InvalidData, reason))
        }
        other => CacheShareError::Store(StoreError::from(other)),
    }
}

impl LocalCache {
    /// Reads the cache manifest tagged `tag` in the layout at `dir`; returns its entries.
    pub(super) fn open(
        dir: &Path,
        tag: &str,
    ) -> Result<(Self, HashMap<String, CacheEntry>), CacheShareError> {
        let layout = OciLayout::open(dir).map_err(layout_err(dir))?;
        let descriptor =
            layout
                .find(tag)
                .map_err(layout_err(dir))?
                .ok_or_else(|| CacheShareError::NoTag {
                    dir: dir.to_path_buf(),
                    tag: tag.to_owned(),
                })?;
        let digest = Digest::try_from(descriptor.digest())?;
        let manifest = layout.read_document(&digest).map_err(layout_err(dir))?;
        let manifest = format::parse_manifest(&manifest)?;
        let config = layout
            .read_document(&manifest.config.digest.parse()?)
            .map_err(layout_err(dir))?;
        let entries = format::parse_config(&config, &manifest)?;
        Ok((LocalCache { layout }, entries))
    }

    /// Copies blob `digest`, of `size` bytes as the cache manifest says, into `store`,
    /// refusing it if it does not hash to its name or has another size (it is read no
    /// further than one byte past `size`).
    pub(super) fn fetch(
        &self,
        store: &ContentStore,
        digest: &Digest,
        size: u64,
    ) -> Result<(), CacheShareError> {
        if store.contains(digest) {
            return Ok(());
        }
        let dir = self.layout.dir();
        let path = self.layout.blob_path(digest);
        let mut file = self.layout.open_blob(digest).map_err(layout_err(dir))?;
        let mut writer = store.writer()?;
        writer
            .copy_within(&mut file, size)
            .map_err(io_err("read", &path))?;
        match writer.finish_matching(digest, size) {
            Ok(_) => Ok(()),
            Err(StoreError::DigestMismatch { expected, found }) => {
                Err(CacheShareError::DigestMismatch {
                    dir: dir.to_path_buf(),
                    expected,
                    found,
                })
            }
            Err(
                e @ (StoreError::SizeMismatch { .. }
                | StoreError::Layout(LayoutError::Overlong { .. })),
            ) => Err(CacheShareError::Format {
                reason: format!("cache directory {}: {e}", dir.display()),
            }),
            Err(e) => Err(e.into()),
        }
    }
}

/// Copies blob `digest` from `store` into `layout` unless it is there intact; the copy is read
/// verified from the store and committed only when it hashes to its name.
fn put_blob(
    store: &ContentStore,
    layout: &OciLayout,
    digest: &Digest,
) -> Result<(), CacheShareError> {
    // A blob already there is kept only when it is intact: the directory may hold a
    // damaged copy from an earlier export, which this one replaces.
    if layout.verify_blob(digest).is_ok() {
        return Ok(());
    }
    let mut reader = store.verified_reader(digest)?;
    let mut writer = layout.writer().map_err(layout_err(layout.dir()))?;
    std::io::copy(&mut reader, &mut writer).map_err(io_err("write", layout.blob_path(digest)))?;
    writer
        .finish_verified(digest)
        .map_err(layout_err(layout.dir()))?;
    Ok(())
}

/// Writes `documents` and their layers into the layout at `dir` (created if needed) and
/// names the manifest `tag` in its index, replacing what had that tag.
pub(super) fn export(
    store: &ContentStore,
    documents: &Documents,
    dir: &Path,
    tag: &str,
) -> Result<(), CacheShareError> {
    // The files are the caller's own, as they were before the layout type (0600).
    let layout = OciLayout::create_with_mode(dir, 0o600).map_err(layout_err(dir))?;
    for (digest, _) in &documents.layers {
        put_blob(store, &layout, digest)?;
    }
    layout.put(&documents.config).map_err(layout_err(dir))?;
    let manifest = layout.put(&documents.manifest).map_err(layout_err(dir))?;

    let mut index = layout.index_or_empty().map_err(layout_err(dir))?;
    let mut manifests: Vec<Descriptor> = index
        .manifests()
        .iter()
        .filter(|d| ref_name(d) != Some(tag))
        .cloned()
        .collect();
    let mut entry = Descriptor::new(MediaType::ImageManifest, manifest.size, &manifest.digest);
    entry.set_annotations(Some(HashMap::from([(
        REF_NAME_ANNOTATION.to_owned(),
        tag.to_owned(),
    )])));
    manifests.push(entry);
    index.set_manifests(manifests);
    layout.write_index(&index).map_err(layout_err(dir))
}
