//! A shared cache in an OCI image layout directory (`type=local,dest=DIR` /
//! `src=DIR`), handy as a CI artifact: `oci-layout`, `index.json` naming the cache
//! manifest by its tag, and `blobs/sha256/`.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::format::{self, Documents};
use super::{CacheShareError, io_err};
use crate::atomic::AtomicWrite;
use crate::digest::Digest;
use crate::image::{OCI_INDEX, OCI_MANIFEST};
use crate::solver::cache::entry::CacheEntry;
use crate::store::{ContentStore, OCI_LAYOUT_VERSION, REF_NAME_ANNOTATION, StoreError};

/// image-spec `image-layout.md`: the file marking a layout, and its index.
const LAYOUT_FILE: &str = "oci-layout";
const INDEX_FILE: &str = "index.json";

/// An imported cache directory.
#[derive(Debug)]
pub(super) struct LocalCache {
    dir: PathBuf,
}

fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join("blobs").join("sha256").join(digest.hex())
}

/// The most bytes the layout's index, a cache manifest or its config may have.
const MAX_DOCUMENT: u64 = 64 << 20;

/// Opens `rel`, a regular file of the layout at `dir`, beneath it without following any
/// symlink: the directory may come from anyone (a CI artifact), and a link in it must not
/// make rbuild read, or store as a blob, a file outside it.
fn open_in_layout(dir: &Path, rel: &Path) -> std::io::Result<fs::File> {
    let root = crate::context::open_root(dir)?;
    crate::context::open_listed_file(&root, rel).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) || e.raw_os_error() == Some(libc::EXDEV) {
            std::io::Error::new(
                e.kind(),
                "it is or passes through a symbolic link, which a cache layout may not hold",
            )
        } else {
            e
        }
    })
}

fn blob_rel(digest: &Digest) -> PathBuf {
    Path::new("blobs/sha256").join(digest.hex())
}

/// Reads at most [`MAX_DOCUMENT`] bytes of `rel` in the layout at `dir`.
fn read_document(dir: &Path, rel: &Path) -> std::io::Result<Vec<u8>> {
    let file = open_in_layout(dir, rel)?;
    let mut bytes = Vec::new();
    file.take(MAX_DOCUMENT + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_DOCUMENT {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("it is larger than {MAX_DOCUMENT} bytes"),
        ));
    }
    Ok(bytes)
}

/// Blob `digest` of the layout at `dir`, read whole and checked.
fn read_blob(dir: &Path, digest: &Digest) -> Result<Vec<u8>, CacheShareError> {
    let bytes =
        read_document(dir, &blob_rel(digest)).map_err(io_err("read", blob_path(dir, digest)))?;
    let found = Digest::of(&bytes);
    if &found != digest {
        return Err(CacheShareError::DigestMismatch {
            dir: dir.to_path_buf(),
            expected: digest.clone(),
            found,
        });
    }
    Ok(bytes)
}

fn read_index(dir: &Path) -> Result<Option<Value>, CacheShareError> {
    let path = dir.join(INDEX_FILE);
    match read_document(dir, Path::new(INDEX_FILE)) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| CacheShareError::Json {
                    what: path.display().to_string(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", path)(e)),
    }
}

fn ref_name(descriptor: &Value) -> Option<&str> {
    descriptor
        .get("annotations")
        .and_then(|a| a.get(REF_NAME_ANNOTATION))
        .and_then(Value::as_str)
}

impl LocalCache {
    /// Reads the cache manifest tagged `tag` in the layout at `dir`; returns its entries.
    pub(super) fn open(
        dir: &Path,
        tag: &str,
    ) -> Result<(Self, HashMap<String, CacheEntry>), CacheShareError> {
        let index = read_index(dir)?.ok_or_else(|| {
            io_err("read", dir.join(INDEX_FILE))(std::io::ErrorKind::NotFound.into())
        })?;
        let descriptor = index
            .get("manifests")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|d| ref_name(d) == Some(tag))
            .ok_or_else(|| CacheShareError::NoTag {
                dir: dir.to_path_buf(),
                tag: tag.to_owned(),
            })?;
        let digest: Digest = descriptor
            .get("digest")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .parse()?;
        let manifest = format::parse_manifest(&read_blob(dir, &digest)?)?;
        let config = read_blob(dir, &manifest.config.digest.parse()?)?;
        let entries = format::parse_config(&config, &manifest)?;
        let cache = LocalCache {
            dir: dir.to_path_buf(),
        };
        Ok((cache, entries))
    }

    /// Copies blob `digest` into `store`, refusing it if it does not hash to its name.
    pub(super) fn fetch(
        &self,
        store: &ContentStore,
        digest: &Digest,
    ) -> Result<(), CacheShareError> {
        let path = blob_path(&self.dir, digest);
        if store.contains(digest) {
            return Ok(());
        }
        let mut file =
            open_in_layout(&self.dir, &blob_rel(digest)).map_err(io_err("read", &path))?;
        store
            .import_reader(&mut file, digest, &path)
            .map_err(|e| match e {
                StoreError::DigestMismatch { expected, found } => CacheShareError::DigestMismatch {
                    dir: self.dir.clone(),
                    expected,
                    found,
                },
                other => other.into(),
            })
    }
}

/// Writes `bytes` to `path` through a temp file in its directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CacheShareError> {
    AtomicWrite::new(path)
        .write(bytes)
        .map_err(|e| io_err(e.action, &e.path)(e.source))
}

/// Copies blob `digest` from `store` into the layout unless it is there.
fn put_blob(store: &ContentStore, dir: &Path, digest: &Digest) -> Result<(), CacheShareError> {
    let dest = blob_path(dir, digest);
    if dest.is_file() {
        return Ok(());
    }
    let mut reader = store.verified_reader(digest)?;
    AtomicWrite::new(&dest)
        .write_with(|file| std::io::copy(&mut reader, file).map(drop))
        .map_err(|e| io_err(e.action, &e.path)(e.source))
}

/// Writes `documents` and their layers into the layout at `dir` (created if needed) and
/// names the manifest `tag` in its index, replacing what had that tag.
pub(super) fn export(
    store: &ContentStore,
    documents: &Documents,
    dir: &Path,
    tag: &str,
) -> Result<(), CacheShareError> {
    fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
    for (digest, _) in &documents.layers {
        put_blob(store, dir, digest)?;
    }
    let config = Digest::of(&documents.config);
    write_atomic(&blob_path(dir, &config), &documents.config)?;
    let manifest = Digest::of(&documents.manifest);
    write_atomic(&blob_path(dir, &manifest), &documents.manifest)?;
    let layout = format!("{{\"imageLayoutVersion\":\"{OCI_LAYOUT_VERSION}\"}}");
    write_atomic(&dir.join(LAYOUT_FILE), layout.as_bytes())?;

    let mut index = read_index(dir)?
        .unwrap_or_else(|| json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}));
    let mut manifests: Vec<Value> = index
        .get("manifests")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    manifests.retain(|d| ref_name(d) != Some(tag));
    manifests.push(json!({
        "mediaType": OCI_MANIFEST,
        "digest": manifest.to_string(),
        "size": documents.manifest.len(),
        "annotations": { REF_NAME_ANNOTATION: tag },
    }));
    if let Some(obj) = index.as_object_mut() {
        obj.insert("manifests".to_owned(), Value::Array(manifests));
    }
    let bytes = serde_json::to_vec(&index).map_err(|source| CacheShareError::Json {
        what: INDEX_FILE.to_owned(),
        source,
    })?;
    write_atomic(&dir.join(INDEX_FILE), &bytes)
}
