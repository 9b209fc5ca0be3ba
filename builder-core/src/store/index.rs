//! `index.json`: the named images of the store, updated under a lock.

use std::collections::HashMap;
use std::fs::File;

use oci_spec::image::{Descriptor, ImageIndex};
use rustix::fs::{FlockOperation, flock};

use super::{ContentStore, ImageName, REF_NAME_ANNOTATION, StoreError, io_err};
use crate::digest::Digest;
use crate::oci_layout::{INDEX_LOCK_FILE, ref_name};

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
        let path = self.root().join(INDEX_LOCK_FILE);
        let file = self.open_lock_file(&path)?;
        flock(&file, FlockOperation::LockExclusive).map_err(|e| io_err("lock", &path)(e.into()))?;
        Ok(file)
    }

    /// Reads `index.json`.
    pub fn index(&self) -> Result<ImageIndex, StoreError> {
        Ok(self.layout.index()?)
    }

    /// Changes `index.json` under an exclusive lock shared by every process using the store.
    pub fn update_index<T>(
        &self,
        change: impl FnOnce(&mut ImageIndex) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _lock = self.lock_index()?;
        let mut index = self.index()?;
        let out = change(&mut index)?;
        self.layout.write_index(&index)?;
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
        self.tag_if(name, None, descriptor).map(drop)
    }

    /// Points `name` at `descriptor` only if the name still points to `expected` (the
    /// digest read before, `Some(None)`: no such name), in the same locked update: a
    /// change made from what the name held (another platform added to its index) is not
    /// lost to another process's change in between. `None` for `expected`: always.
    /// Returns whether the name was set.
    pub(crate) fn tag_if(
        &self,
        name: &ImageName,
        expected: Option<Option<&str>>,
        descriptor: &Descriptor,
    ) -> Result<bool, StoreError> {
        let key = name.to_string();
        self.update_index(|index| {
            if let Some(expected) = expected {
                let current = index
                    .manifests()
                    .iter()
                    .find(|d| ref_name(d) == Some(key.as_str()))
                    .map(|d| d.digest().to_string());
                if current.as_deref() != expected {
                    return Ok(false);
                }
            }
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
            Ok(true)
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

    /// Finds an image by name, or by its image ID as docker shows it: the config digest
    /// (the index digest for an image index), whole or as a unique prefix of at least 4 hex
    /// digits, with or without `sha256:`. A full manifest digest also finds its image.
    /// A prefix that several different images share is refused as ambiguous.
    pub fn resolve(&self, reference: &str) -> Result<NamedImage, StoreError> {
        let images = self.images()?;
        if let Ok(name) = reference.parse::<ImageName>() {
            if let Some(found) = images.iter().find(|i| i.name == name) {
                return Ok(found.clone());
            }
        }
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        if hex.len() < 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::ImageNotFound(reference.to_owned()));
        }
        let hex = hex.to_ascii_lowercase();
        let mut found: Option<(Digest, &NamedImage)> = None;
        for image in &images {
            let Some(manifest) = image.digest() else {
                continue;
            };
            let id = self.image_id(image)?;
            let by_manifest = hex.len() == 64 && manifest.hex() == hex;
            if !id.hex().starts_with(&hex) && !by_manifest {
                continue;
            }
            match &found {
                Some((seen, _)) if *seen != id => {
                    return Err(StoreError::AmbiguousImageId(reference.to_owned()));
                }
                Some(_) => {}
                None => found = Some((id, image)),
            }
        }
        found
            .map(|(_, image)| image.clone())
            .ok_or_else(|| StoreError::ImageNotFound(reference.to_owned()))
    }

    /// The ID docker shows for a named image: its config digest, or the digest of the
    /// index itself for an image index.
    pub fn image_id(&self, image: &NamedImage) -> Result<Digest, StoreError> {
        let manifest = Digest::try_from(image.descriptor.digest())
            .map_err(|_| StoreError::ImageNotFound(image.name.to_string()))?;
        let value: serde_json::Value = self.read_json(&manifest)?;
        match value.pointer("/config/digest").and_then(|d| d.as_str()) {
            Some(config) => config
                .parse()
                .map_err(|_| StoreError::ImageNotFound(image.name.to_string())),
            None => Ok(manifest),
        }
    }
}
