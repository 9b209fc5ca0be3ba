//! A layer of a stage as the solver holds it: its diff_id and the blob made of it, if any.
//! A leaf of the solver (it imports nothing of it), so the cache entries and the stage
//! state can both name it.

use oci_spec::image::Descriptor;

use crate::digest::Digest;
use crate::image::ImageFormat;
use crate::layer::{Compression, Layer, LayerError};
use crate::store::StoreError;

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
    pub(crate) fn blob(&self) -> Result<&Digest, LayerError> {
        self.blob.as_ref().ok_or_else(|| {
            LayerError::Store(StoreError::Io {
                action: "find the blob of layer",
                path: self.diff_id.as_str().into(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })
        })
    }

    /// The manifest descriptor of this layer in an image of `format`.
    pub(crate) fn descriptor(&self, format: ImageFormat) -> Result<Descriptor, LayerError> {
        Ok(Descriptor::new(
            format.layer_type(self.compression),
            self.size,
            self.blob()?,
        ))
    }
}
