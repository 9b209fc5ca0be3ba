//! Image assembly: layers and a config into a manifest, stored and optionally named.
//!
//! Media types follow image-spec (media-types.md) for `--format oci` and Docker's image
//! manifest v2 schema 2 for `--format docker`; the JSON shapes are the same.

mod check;
mod config;
mod platforms;

use std::collections::HashMap;
use std::str::FromStr;

use oci_spec::image::{Descriptor, ImageManifest, MediaType};

pub use self::check::{
    DiskUsage, LayerCheck, Problem, PruneReport, Usage, disk_usage, prune, referenced_blobs,
    verify, verify_layers,
};
pub use self::config::{
    Empty, Healthcheck, History, ImageConfig, RootFs, RunConfig, host_architecture, host_platform,
    rfc3339,
};
pub(crate) use self::platforms::{MAX_INDEX_DEPTH, index_documents, is_document};
pub use self::platforms::{
    PlatformIndex, config_platform, load_image_for, platform_images, tag_keeping_platforms,
    write_index,
};
use crate::digest::{Digest, InvalidDigest};
use crate::layer::{Compression, Layer};
use crate::store::{Blob, ContentStore, ImageName, StoreError};

/// image-spec annotations.md: when the image was created.
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";
/// image-spec annotations.md: the name of the base image.
pub const BASE_NAME_ANNOTATION: &str = "org.opencontainers.image.base.name";
/// image-spec annotations.md: the manifest digest of the base image.
pub const BASE_DIGEST_ANNOTATION: &str = "org.opencontainers.image.base.digest";

/// image-spec manifest.md: an image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// image-spec image-index.md: an image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest v2 schema 2, "Media Types": the manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest v2 schema 2, "Media Types".
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image manifest v2 schema 2: the config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker image manifest v2 schema 2: a gzip layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker image manifest v2 schema 2: an uncompressed layer.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// A zstd layer in a docker manifest: not in docker's schema 2 (which predates zstd), the
/// name BuildKit and containerd give it. Docker 20.10 cannot load such a layer.
pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";

/// Which family of media types an image uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageFormat {
    /// image-spec media types.
    #[default]
    Oci,
    /// Docker v2 schema 2 media types.
    Docker,
}

impl FromStr for ImageFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "oci" => Ok(Self::Oci),
            "docker" => Ok(Self::Docker),
            other => Err(format!(
                "unknown image format {other:?}: expected oci or docker"
            )),
        }
    }
}

impl ImageFormat {
    /// The manifest media type.
    pub fn manifest_type(self) -> MediaType {
        match self {
            Self::Oci => MediaType::ImageManifest,
            Self::Docker => MediaType::Other(DOCKER_MANIFEST.to_owned()),
        }
    }

    /// The config media type.
    pub fn config_type(self) -> MediaType {
        match self {
            Self::Oci => MediaType::ImageConfig,
            Self::Docker => MediaType::Other(DOCKER_CONFIG.to_owned()),
        }
    }

    /// The media type of a layer with `compression` (zstd in a docker manifest: the
    /// `...diff.tar.zstd` type BuildKit writes there).
    pub fn layer_type(self, compression: Compression) -> MediaType {
        match (self, compression) {
            (Self::Oci, Compression::None) => MediaType::ImageLayer,
            (Self::Oci, Compression::Gzip) => MediaType::ImageLayerGzip,
            (Self::Oci, Compression::Zstd) => MediaType::ImageLayerZstd,
            (Self::Docker, Compression::None) => MediaType::Other(DOCKER_LAYER.to_owned()),
            (Self::Docker, Compression::Gzip) => MediaType::Other(DOCKER_LAYER_GZIP.to_owned()),
            (Self::Docker, Compression::Zstd) => MediaType::Other(DOCKER_LAYER_ZSTD.to_owned()),
        }
    }
}

/// A failure assembling or reading an image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// A store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A manifest could not be built or serialized.
    #[error("failed to build image manifest")]
    Manifest(#[source] oci_spec::OciSpecError),
    /// A JSON document could not be serialized.
    #[error("failed to serialize image {what}")]
    Serialize {
        /// Which document.
        what: &'static str,
        /// Why.
        source: serde_json::Error,
    },
    /// A descriptor carries a digest rbuild cannot use.
    #[error(transparent)]
    Digest(#[from] InvalidDigest),
    /// The config's diff_ids and the manifest's layers disagree.
    #[error("image {0} has {1} layers but {2} diff_ids")]
    LayerCount(Digest, usize, usize),
}

/// An image in the store: its manifest, config, and the digests naming them.
#[derive(Debug, Clone)]
pub struct Image {
    /// The manifest's descriptor (media type, digest, size), what index entries point to.
    pub descriptor: Descriptor,
    /// The manifest.
    pub manifest: ImageManifest,
    /// The config.
    pub config: ImageConfig,
    /// The config blob's digest, the image id docker shows.
    pub config_digest: Digest,
}

impl Image {
    /// The manifest digest.
    pub fn digest(&self) -> Result<Digest, InvalidDigest> {
        Digest::try_from(self.descriptor.digest())
    }

    /// The layers as (blob digest, diff_id), bottom first.
    pub fn layers(&self) -> Result<Vec<(Digest, Digest)>, ImageError> {
        let diff_ids = &self.config.rootfs.diff_ids;
        if diff_ids.len() != self.manifest.layers().len() {
            return Err(ImageError::LayerCount(
                self.digest()?,
                self.manifest.layers().len(),
                diff_ids.len(),
            ));
        }
        self.manifest
            .layers()
            .iter()
            .zip(diff_ids)
            .map(|(l, d)| Ok((Digest::try_from(l.digest())?, d.parse()?)))
            .collect()
    }

    /// Total size of the config and layer blobs, as `rbuild images` shows it.
    pub fn size(&self) -> u64 {
        self.manifest.config().size() + self.manifest.layers().iter().map(|l| l.size()).sum::<u64>()
    }
}

fn descriptor(media_type: MediaType, blob: &Blob) -> Descriptor {
    Descriptor::new(media_type, blob.size, &blob.digest)
}

/// What goes into an image besides its layers.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ImageSpec {
    /// The config; its rootfs is extended with the new layers' diff_ids.
    pub config: ImageConfig,
    /// The base image's layers, reused as they are (blob, diff_id, media type).
    pub base_layers: Vec<Descriptor>,
    /// The base image's name and manifest digest, recorded as annotations.
    pub base: Option<(String, Digest)>,
    /// Media type family.
    pub format: ImageFormat,
    /// Manifest annotations besides created/base (ordered for reproducibility).
    pub annotations: Vec<(String, String)>,
}

impl ImageSpec {
    /// An image of `config` and no base: the OCI format, no annotations.
    pub fn new(config: ImageConfig) -> Self {
        ImageSpec {
            config,
            ..ImageSpec::default()
        }
    }

    /// With [`format`](Self::format) set.
    pub fn with_format(mut self, format: ImageFormat) -> Self {
        self.format = format;
        self
    }

    /// With the base image's layers ([`base_layers`](Self::base_layers)).
    pub fn with_base_layers(mut self, layers: Vec<Descriptor>) -> Self {
        self.base_layers = layers;
        self
    }

    /// With the base image's name and manifest digest ([`base`](Self::base)).
    pub fn with_base(mut self, name: String, digest: Digest) -> Self {
        self.base = Some((name, digest));
        self
    }

    /// With [`annotations`](Self::annotations) set.
    pub fn with_annotations(mut self, annotations: Vec<(String, String)>) -> Self {
        self.annotations = annotations;
        self
    }
}

/// Writes the config and manifest of an image made of `spec`'s base layers plus `layers`.
pub fn assemble(
    store: &ContentStore,
    spec: &ImageSpec,
    layers: &[Layer],
) -> Result<Image, ImageError> {
    let mut config = spec.config.clone();
    config
        .rootfs
        .diff_ids
        .extend(layers.iter().map(|l| l.diff_id.to_string()));
    let config_bytes = serde_json::to_vec(&config).map_err(|source| ImageError::Serialize {
        what: "config",
        source,
    })?;
    let config_blob = store.put(&config_bytes)?;
    let mut layer_descs = Vec::new();
    for base in &spec.base_layers {
        let mut d = base.clone();
        // Base layers switch family with the image (gzip stays gzip).
        let compression = Compression::from_media_type(d.media_type().as_ref());
        d.set_media_type(spec.format.layer_type(compression));
        layer_descs.push(d);
    }
    layer_descs.extend(
        layers
            .iter()
            .map(|l| descriptor(spec.format.layer_type(l.compression), &l.blob)),
    );
    let mut annotations: HashMap<String, String> = spec.annotations.iter().cloned().collect();
    if let Some(created) = &config.created {
        annotations.insert(CREATED_ANNOTATION.to_owned(), created.clone());
    }
    if let Some((name, digest)) = &spec.base {
        annotations.insert(BASE_NAME_ANNOTATION.to_owned(), name.clone());
        annotations.insert(BASE_DIGEST_ANNOTATION.to_owned(), digest.to_string());
    }
    write_manifest(
        store,
        &config,
        config_blob,
        layer_descs,
        spec.format,
        annotations,
    )
}

/// Writes the manifest of an image whose config blob (of `config`) is already stored.
pub fn write_manifest(
    store: &ContentStore,
    config: &ImageConfig,
    config_blob: Blob,
    layer_descs: Vec<Descriptor>,
    format: ImageFormat,
    annotations: HashMap<String, String>,
) -> Result<Image, ImageError> {
    let spec_format = format;
    let mut builder = oci_spec::image::ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(spec_format.manifest_type())
        .config(descriptor(spec_format.config_type(), &config_blob))
        .layers(layer_descs);
    if !annotations.is_empty() && spec_format == ImageFormat::Oci {
        builder = builder.annotations(annotations);
    }
    let manifest = builder.build().map_err(ImageError::Manifest)?;
    // serde_json writes a HashMap in iteration order; go through Value to sort keys.
    let value = serde_json::to_value(&manifest).map_err(|source| ImageError::Serialize {
        what: "manifest",
        source,
    })?;
    let manifest_bytes = serde_json::to_vec(&value).map_err(|source| ImageError::Serialize {
        what: "manifest",
        source,
    })?;
    let manifest_blob = store.put(&manifest_bytes)?;
    let mut desc = descriptor(spec_format.manifest_type(), &manifest_blob);
    let mut platform = oci_spec::image::PlatformBuilder::default()
        .architecture(config.architecture.as_str())
        .os(config.os.as_str())
        .build()
        .map_err(ImageError::Manifest)?;
    platform.set_variant(config.variant.clone().filter(|v| !v.is_empty()));
    desc.set_platform(Some(platform));
    Ok(Image {
        descriptor: desc,
        manifest,
        config: config.clone(),
        config_digest: config_blob.digest,
    })
}

/// Reads the image a descriptor points to (a manifest, or an index whose first manifest
/// is taken).
pub fn load_image(store: &ContentStore, desc: &Descriptor) -> Result<Image, ImageError> {
    let digest = Digest::try_from(desc.digest())?;
    let bytes = store.read(&digest)?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
            path: store.blob_path(&digest),
            source,
        })?;
    if value.get("manifests").is_some() {
        let index: oci_spec::image::ImageIndex =
            serde_json::from_value(value).map_err(|source| StoreError::Json {
                path: store.blob_path(&digest),
                source,
            })?;
        let first = index
            .manifests()
            .iter()
            .find(|m| {
                m.platform()
                    .as_ref()
                    .is_none_or(|p| p.architecture().to_string() == host_architecture())
            })
            .or_else(|| index.manifests().first())
            .ok_or_else(|| StoreError::ImageNotFound(digest.to_string()))?;
        return load_image(store, first);
    }
    let manifest: ImageManifest =
        serde_json::from_value(value).map_err(|source| StoreError::Json {
            path: store.blob_path(&digest),
            source,
        })?;
    let config_digest = Digest::try_from(manifest.config().digest())?;
    let config: ImageConfig = store.read_json(&config_digest)?;
    let mut descriptor = Descriptor::new(
        manifest
            .media_type()
            .clone()
            .unwrap_or(MediaType::ImageManifest),
        bytes.len() as u64,
        &digest,
    );
    descriptor.set_annotations(desc.annotations().clone());
    descriptor.set_platform(desc.platform().clone());
    Ok(Image {
        descriptor,
        manifest,
        config,
        config_digest,
    })
}

/// Stores `image` under `name` in the store's index.
pub fn tag_image(store: &ContentStore, name: &ImageName, image: &Image) -> Result<(), ImageError> {
    store.tag(name, &image.descriptor)?;
    Ok(())
}
