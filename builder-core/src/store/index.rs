//! `index.json`: the named images of the store, updated under a lock.

use std::collections::HashMap;
use std::fs::{self, File};

use oci_spec::image::{Descriptor, ImageIndex};
use rustix::fs::{FlockOperation, flock};

use super::{ContentStore, INDEX_FILE, ImageName, REF_NAME_ANNOTATION, StoreError, io_err};
use crate::digest::Digest;

pub(super) const EMPTY_INDEX: &str = "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[]}";

/// One entry of `index.json` that carries a name.
#[derive(Debug, Clone)]
pub struct NamedImage {
    /// The name, from the `org.opencontainers.image.ref.name` annotation.
    pub name: ImageName,
    /// The manifest (or index) it points to.
    pub descriptor: Descriptor,
}

impl NamedImage {
    /// The digest the name points to.
    pub fn digest(&self) -> Option<Digest> {
        Digest::try_from(self.descriptor.digest()).ok()
    }
}

impl ContentStore {
    fn lock_index(&self) -> Result<File, StoreError> {
        let path = self.root.join("index.json.lock");
        let file = self.open_lock_file(&path)?;
        flock(&file, FlockOperation::LockExclusive).map_err(|e| io_err("lock", &path)(e.into()))?;
        Ok(file)
    }

    /// Reads `index.json`.
    pub fn index(&self) -> Result<ImageIndex, StoreError> {
        let path = self.root.join(INDEX_FILE);
        let bytes = fs::read(&path).map_err(io_err("read", &path))?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json { path, source })
    }

    /// Changes `index.json` under an exclusive lock shared by every process using the store.
    pub fn update_index<T>(
        &self,
        change: impl FnOnce(&mut ImageIndex) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _lock = self.lock_index()?;
        let mut index = self.index()?;
        let out = change(&mut index)?;
        let path = self.root.join(INDEX_FILE);
        let bytes = serde_json::to_vec(&index).map_err(|source| StoreError::Json {
            path: path.clone(),
            source,
        })?;
        self.write_atomic(&path, &bytes)?;
        Ok(out)
    }

    /// The index entries that carry a name, in index order.
    pub fn images(&self) -> Result<Vec<NamedImage>, StoreError> {
        Ok(self
            .index()?
            .manifests()
            .iter()
            .filter_map(|d| {
                let name = d.annotations().as_ref()?.get(REF_NAME_ANNOTATION)?;
                Some(NamedImage {
                    name: name.parse().ok()?,
                    descriptor: d.clone(),
                })
            })
            .collect())
    }

    /// Points `name` at `descriptor`, replacing what the name pointed to before.
    pub fn tag(&self, name: &ImageName, descriptor: &Descriptor) -> Result<(), StoreError> {
        let key = name.to_string();
        self.update_index(|index| {
            let mut manifests: Vec<Descriptor> = index
                .manifests()
                .iter()
                .filter(|d| ref_name(d) != Some(key.as_str()))
                .cloned()
                .collect();
            let mut d = descriptor.clone();
            let mut ann: HashMap<String, String> = d.annotations().clone().unwrap_or_default();
            ann.insert(REF_NAME_ANNOTATION.to_owned(), key.clone());
            d.set_annotations(Some(ann));
            manifests.push(d);
            index.set_manifests(manifests);
            Ok(())
        })
    }

    /// Removes the name `name`; the blobs stay until prune.
    pub fn untag(&self, name: &ImageName) -> Result<Descriptor, StoreError> {
        let key = name.to_string();
        self.update_index(|index| {
            let pos = index
                .manifests()
                .iter()
                .position(|d| ref_name(d) == Some(key.as_str()))
                .ok_or_else(|| StoreError::ImageNotFound(key.clone()))?;
            let mut manifests = index.manifests().clone();
            let removed = manifests.remove(pos);
            index.set_manifests(manifests);
            Ok(removed)
        })
    }

    /// Finds an image by name, by full digest, or by a prefix of its digest of at least
    /// 4 hex digits (an image id as `rbuild images` shows it).
    pub fn resolve(&self, reference: &str) -> Result<NamedImage, StoreError> {
        let images = self.images()?;
        if let Ok(name) = reference.parse::<ImageName>() {
            if let Some(found) = images.iter().find(|i| i.name == name) {
                return Ok(found.clone());
            }
        }
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            if let Some(found) = images
                .iter()
                .find(|i| i.digest().is_some_and(|d| d.hex().starts_with(hex)))
            {
                return Ok(found.clone());
            }
        }
        Err(StoreError::ImageNotFound(reference.to_owned()))
    }
}

fn ref_name(d: &Descriptor) -> Option<&str> {
    d.annotations()
        .as_ref()?
        .get(REF_NAME_ANNOTATION)
        .map(String::as_str)
}
