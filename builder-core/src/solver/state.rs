//! A stage's state between steps: its layers, its config and the key the next step's
//! cache key derives from.

use super::cache::entry::CacheKey;
use super::error::BuildError;
pub(crate) use super::layer_ref::LayerRef;
use super::semantics::StageConfig;
use crate::digest::{Digest, Hasher};
use crate::layer::Compression;

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
