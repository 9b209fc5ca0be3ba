//! Images of several platforms under one name: an image index whose entries are each a
//! platform's manifest. A build for a platform picks its entry, comparing platforms
//! normalized as containerd does ([`Platform::new`]); `rbuild import --platform` adds
//! one to a name that has others.

use oci_spec::image::{Descriptor, ImageIndex, MediaType};
use rbuild_dockerfile::Platform;

use super::{
    DOCKER_MANIFEST_LIST, Image, ImageConfig, ImageError, ImageFormat, descriptor, load_image,
};
use crate::digest::Digest;
use crate::store::{ContentStore, ImageName, StoreError};

/// How deep indexes may nest in the store, an archive or a layout (an index naming
/// itself would never end): `load` takes no deeper ones, reading follows no deeper.
pub(crate) const MAX_INDEX_DEPTH: usize = 8;
const MAX_DEPTH: usize = MAX_INDEX_DEPTH;

/// Manifests and indexes: documents whose children are followed (by their declared
/// media type, when loaded and when read).
pub(crate) fn is_document(media: &str) -> bool {
    media.contains("manifest") || media.contains("index")
}

/// The platform an image config says it is for, normalized.
pub fn config_platform(config: &ImageConfig) -> Platform {
    Platform::new(
        &config.os,
        &config.architecture,
        config.variant.as_deref().unwrap_or(""),
    )
}

/// Every image `desc` points to: the manifest itself, or each manifest of an index (and
/// of the indexes in it), in index order.
/// Each document is read once, however many entries name it (a crafted index repeating
/// one inner index at every level would otherwise cost exponential time).
pub fn platform_images(store: &ContentStore, desc: &Descriptor) -> Result<Vec<Image>, ImageError> {
    let mut out = Vec::new();
    collect(
        store,
        desc,
        0,
        &mut std::collections::HashSet::new(),
        &mut out,
    )?;
    Ok(out)
}

fn collect(
    store: &ContentStore,
    desc: &Descriptor,
    depth: usize,
    seen: &mut std::collections::HashSet<String>,
    out: &mut Vec<Image>,
) -> Result<(), ImageError> {
    if !seen.insert(desc.digest().to_string()) {
        return Ok(());
    }
    match read_index(store, desc)? {
        Some(index) if depth < MAX_DEPTH => {
            // By the media type each entry declares, as `load` checks them: an entry
            // declared a layer (or anything but a manifest or index) is no image, whatever
            // its blob holds (load did not check what such a blob names).
            for entry in index
                .manifests()
                .iter()
                .filter(|entry| is_document(entry.media_type().as_ref()))
            {
                collect(store, entry, depth + 1, seen, out)?;
            }
            Ok(())
        }
        Some(_) => Err(StoreError::ImageNotFound(desc.digest().to_string()).into()),
        None => {
            out.push(load_image(store, desc)?);
            Ok(())
        }
    }
}

/// The digests of the index documents `desc` reaches: itself when it is an index, and
/// the indexes in it (an index of indexes), outermost first; empty for a manifest.
pub(crate) fn index_documents(
    store: &ContentStore,
    desc: &Descriptor,
) -> Result<Vec<Digest>, ImageError> {
    fn walk(
        store: &ContentStore,
        desc: &Descriptor,
        depth: usize,
        out: &mut Vec<Digest>,
    ) -> Result<(), ImageError> {
        let digest = Digest::try_from(desc.digest())?;
        // Each once, as platform_images reads them.
        if out.contains(&digest) {
            return Ok(());
        }
        let Some(index) = read_index(store, desc)? else {
            return Ok(());
        };
        if depth >= MAX_DEPTH {
            return Err(StoreError::ImageNotFound(desc.digest().to_string()).into());
        }
        out.push(digest);
        for entry in index
            .manifests()
            .iter()
            .filter(|entry| is_document(entry.media_type().as_ref()))
        {
            walk(store, entry, depth + 1, out)?;
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(store, desc, 0, &mut out)?;
    Ok(out)
}

/// The index `desc` points to, or `None` when it is a manifest.
fn read_index(store: &ContentStore, desc: &Descriptor) -> Result<Option<ImageIndex>, ImageError> {
    let digest = Digest::try_from(desc.digest())?;
    let value: serde_json::Value = store.read_json(&digest)?;
    if value.get("manifests").is_none() {
        return Ok(None);
    }
    let index = serde_json::from_value(value).map_err(|source| StoreError::Json {
        path: store.blob_path(&digest),
        source,
    })?;
    Ok(Some(index))
}

/// The image of `platform` that `desc` points to: the manifest when its config is of
/// that platform, or the index entry of that platform; `None` when there is none.
pub fn load_image_for(
    store: &ContentStore,
    desc: &Descriptor,
    platform: &Platform,
) -> Result<Option<Image>, ImageError> {
    Ok(platform_images(store, desc)?
        .into_iter()
        .find(|image| config_platform(&image.config) == *platform))
}

/// Names `image` `name` in the store, keeping the images of other platforms the name
/// had: when there are some, the name points to a new image index of those and
/// `image` (last); otherwise to `image` alone, as [`tag_image`](super::tag_image) does.
pub fn tag_keeping_platforms(
    store: &ContentStore,
    name: &ImageName,
    image: &Image,
) -> Result<(), ImageError> {
    let platform = config_platform(&image.config);
    // Another process may add a platform to the name meanwhile (two imports or builds of
    // different platforms): the name is set only if it still holds what was read, else
    // read again (one platform was lost in 4 of 40 such races).
    loop {
        let named = store.images()?.into_iter().find(|i| i.name == *name);
        let read = named.as_ref().map(|n| n.descriptor.digest().to_string());
        let before = match &named {
            Some(named) => platform_images(store, &named.descriptor)?,
            None => Vec::new(),
        };
        let mut entries: Vec<Descriptor> = before
            .iter()
            .filter(|other| config_platform(&other.config) != platform)
            .map(platform_descriptor)
            .collect::<Result<_, _>>()?;
        let target = if entries.is_empty() {
            image.descriptor.clone()
        } else {
            entries.push(platform_descriptor(image)?);
            store_index(store, entries, MediaType::ImageIndex)?
        };
        if store.tag_if(name, Some(read.as_deref()), &target)? {
            return Ok(());
        }
    }
}

/// The images of a build for several platforms, and the image index naming them.
#[derive(Debug, Clone)]
pub struct PlatformIndex {
    /// The index's descriptor (media type, digest, size), what a name points to.
    pub descriptor: Descriptor,
    /// Each platform's image, in the index's order.
    pub images: Vec<Image>,
}

impl PlatformIndex {
    /// The index's digest.
    pub fn digest(&self) -> Result<Digest, crate::digest::InvalidDigest> {
        Digest::try_from(self.descriptor.digest())
    }
}

/// Stores the image index of `images`, one entry per image in their order, each its
/// manifest's descriptor with the platform its config says, as BuildKit's image writer
/// makes it: an OCI image index (image-spec image-index.md), or a docker manifest list
/// (`application/vnd.docker.distribution.manifest.list.v2+json`) for
/// [`ImageFormat::Docker`].
pub fn write_index(
    store: &ContentStore,
    images: Vec<Image>,
    format: ImageFormat,
) -> Result<PlatformIndex, ImageError> {
    let entries = images
        .iter()
        .map(platform_descriptor)
        .collect::<Result<Vec<_>, _>>()?;
    let media_type = match format {
        ImageFormat::Oci => MediaType::ImageIndex,
        ImageFormat::Docker => MediaType::Other(DOCKER_MANIFEST_LIST.to_owned()),
    };
    let descriptor = store_index(store, entries, media_type)?;
    Ok(PlatformIndex { descriptor, images })
}

/// Stores an index of `entries` with `media_type`; returns its descriptor.
fn store_index(
    store: &ContentStore,
    entries: Vec<Descriptor>,
    media_type: MediaType,
) -> Result<Descriptor, ImageError> {
    let index = oci_spec::image::ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(media_type.clone())
        .manifests(entries)
        .build()
        .map_err(ImageError::Manifest)?;
    // Through Value, so that the keys are sorted and the bytes stable.
    let value = serde_json::to_value(&index).map_err(|source| ImageError::Serialize {
        what: "index",
        source,
    })?;
    let bytes = serde_json::to_vec(&value).map_err(|source| ImageError::Serialize {
        what: "index",
        source,
    })?;
    let blob = store.put(&bytes)?;
    Ok(descriptor(media_type, &blob))
}

/// An index entry for `image`: its manifest's descriptor with the config's platform,
/// without annotations.
fn platform_descriptor(image: &Image) -> Result<Descriptor, ImageError> {
    let platform = config_platform(&image.config);
    let mut spec = oci_spec::image::PlatformBuilder::default()
        .architecture(platform.architecture.as_str())
        .os(platform.os.as_str())
        .build()
        .map_err(ImageError::Manifest)?;
    spec.set_variant(Some(platform.variant).filter(|v| !v.is_empty()));
    let mut desc = image.descriptor.clone();
    desc.set_annotations(None);
    desc.set_platform(Some(spec));
    Ok(desc)
}
