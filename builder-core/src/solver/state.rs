//! A stage's state between steps: its layers, its config and the key the next step's
//! cache key derives from.

use oci_spec::image::Descriptor;

use super::cache::entry::CacheKey;
use super::error::BuildError;
use super::semantics::StageConfig;
use crate::digest::{Digest, Hasher};
use crate::image::ImageFormat;
use crate::layer::{Compression, Layer};

/// One layer of a stage's filesystem: what it is (its diff_id) and the blob it has, if
/// one was made. A layer a step made on the overlay snapshotter is a directory of the
/// store (`layers/<chain_id>/`) until an output needs its blob
/// ([`Runtime::ensure_blobs`](super::runtime::Runtime::ensure_blobs)).
#[derive(Debug, Clone)]
pub(crate) struct LayerRef {
    /// The blob's digest, `None` for a layer kept only as a directory.
    pub blob: Option<Digest>,
    pub diff_id: Digest,
    /// The blob's size; without a blob, the size of the layer's tar.
    pub size: u64,
    /// The blob's compression (meaningless without a blob).
    pub compression: Compression,
}

impl LayerRef {
    pub(crate) fn of(layer: &Layer) -> Self {
        LayerRef {
            blob: Some(layer.blob.digest.clone()),
            diff_id: layer.diff_id.clone(),
            size: layer.blob.size,
            compression: layer.compression,
        }
    }

    /// The blob's digest; an error for a layer without one (the caller was to make it).
    pub(crate) fn blob(&self) -> Result<&Digest, BuildError> {
        self.blob.as_ref().ok_or_else(|| {
            BuildError::Layer(crate::layer::LayerError::Store(
                crate::store::StoreError::Io {
                    action: "find the blob of layer",
                    path: self.diff_id.as_str().into(),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                },
            ))
        })
    }

    /// The manifest descriptor of this layer in an image of `format`.
    pub(crate) fn descriptor(&self, format: ImageFormat) -> Result<Descriptor, BuildError> {
        Ok(Descriptor::new(
            format.layer_type(self.compression),
            self.size,
            self.blob()?,
        ))
    }
}

/// A stage after some of its steps: what the next step starts from.
#[derive(Debug, Clone)]
pub(crate) struct StageState {
    /// The image config so far (its rootfs is filled in at assembly).
    pub config: StageConfig,
    /// Every layer, the base image's first.
    pub layers: Vec<LayerRef>,
    /// The key the next step's key is derived from: the base's, then one link per
    /// layer added (by content), so that a step that ran again with the same result
    /// leaves the keys after it unchanged.
    pub key: CacheKey,
    /// The base image's name and manifest digest.
    pub base: Option<(String, Digest)>,
}

impl StageState {
    pub(crate) fn push_layer(&mut self, layer: &LayerRef) {
        self.layers.push(layer.clone());
        let mut h = Hasher::new();
        h.update(self.key.0.as_str().as_bytes());
        h.update(b"\0");
        h.update(layer.diff_id.as_str().as_bytes());
        self.key = CacheKey(h.finish());
    }
}

/// The layers of `image`, bottom first.
pub(crate) fn image_layers(image: &crate::image::Image) -> Result<Vec<LayerRef>, BuildError> {
    let pairs = image.layers()?;
    Ok(pairs
        .into_iter()
        .zip(image.manifest.layers())
        .map(|((blob, diff_id), desc)| {
            let compression = Compression::from_media_type(desc.media_type().as_ref());
            LayerRef {
                blob: Some(blob),
                diff_id,
                size: desc.size(),
                compression,
            }
        })
        .collect())
}
