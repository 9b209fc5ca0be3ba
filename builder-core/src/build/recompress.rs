//! The requested compression for the layers an image is assembled from.
//!
//! A step found in the cache brings the blob it was stored with, which may have another
//! compression than this build asks for (a gzip build, then `--compression zstd` with
//! every step cached). Such a layer is converted: its tar is read back and compressed
//! again the way a new layer is written, so the result is the blob a cold build with that
//! compression writes, and the image is the same whichever way its layers came. The base
//! image's layers stay as they are unless the request forces the compression (BuildKit's
//! `force-compression`). A conversion is remembered under the cache directory, so a
//! repeat build reuses its blob instead of compressing again; each compression of a
//! layer is stored once.

use std::fs;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use super::error::BuildError;
use super::solve::Shared;
use super::state::LayerRef;
use crate::digest::{Digest, Hasher};
use crate::layer::{Compression, Compressor, decompress};

/// Where conversions are remembered, under the store's cache directory.
const CONVERTED_DIR: &str = "converted";

/// Converts the layers of `layers` above the first `base_count` (all of them when the
/// request forces the compression) to the request's compression.
pub(super) fn apply(
    shared: &Shared<'_>,
    layers: &mut [LayerRef],
    base_count: usize,
) -> Result<(), BuildError> {
    let want = shared.request.compression;
    let first = if shared.request.force_compression {
        0
    } else {
        base_count.min(layers.len())
    };
    for layer in &mut layers[first..] {
        if layer.compression != want {
            *layer = convert(shared, layer, want)?;
        }
    }
    Ok(())
}

/// `layer` in `want` compression: a remembered conversion whose blob is still in the
/// store, else a new one.
fn convert(
    shared: &Shared<'_>,
    layer: &LayerRef,
    want: Compression,
) -> Result<LayerRef, BuildError> {
    let memo = memo_path(shared.store.root(), &layer.diff_id, want);
    if let Some(found) = remembered(&memo, layer, want) {
        if shared.store.contains(&found.blob) {
            return Ok(found);
        }
    }
    let source = shared.store.open_blob(&layer.blob)?;
    let mut tar = decompress(BufReader::with_capacity(1 << 20, source)).map_err(io_err(
        "decompress layer blob",
        &shared.store.blob_path(&layer.blob),
    ))?;
    let writer = shared.store.writer()?;
    let mut out =
        Compressor::new(writer, want, None).map_err(io_err("compress layer", Path::new("/")))?;
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match tar.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(io_err(
                    "decompress layer blob",
                    &shared.store.blob_path(&layer.blob),
                )(e));
            }
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(io_err("compress layer", Path::new("/")))?;
    }
    let found = hasher.finish();
    if found != layer.diff_id {
        return Err(BuildError::Io {
            action: "convert layer blob (its content does not match its diff_id)",
            path: shared.store.blob_path(&layer.blob),
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                format!("expected {}, read {found}", layer.diff_id),
            ),
        });
    }
    let blob = out
        .finish()
        .map_err(io_err("compress layer", Path::new("/")))?
        .finish()?;
    let converted = LayerRef {
        blob: blob.digest,
        diff_id: layer.diff_id.clone(),
        size: blob.size,
        compression: want,
    };
    // Failing to remember only costs compressing again next time.
    let _ = remember(&memo, &converted);
    Ok(converted)
}

fn memo_path(root: &Path, diff_id: &Digest, want: Compression) -> PathBuf {
    root.join(super::cache::CACHE_DIR)
        .join(CONVERTED_DIR)
        .join(format!("{}.{}", diff_id.hex(), want.name()))
}

/// The remembered conversion at `memo`: a line `BLOB-DIGEST SIZE`.
fn remembered(memo: &Path, layer: &LayerRef, want: Compression) -> Option<LayerRef> {
    let text = fs::read_to_string(memo).ok()?;
    let (digest, size) = text.trim().split_once(' ')?;
    Some(LayerRef {
        blob: digest.parse().ok()?,
        diff_id: layer.diff_id.clone(),
        size: size.parse().ok()?,
        compression: want,
    })
}

fn remember(memo: &Path, converted: &LayerRef) -> io::Result<()> {
    crate::atomic::AtomicWrite::new(memo)
        .write_with(|file| writeln!(file, "{} {}", converted.blob, converted.size))
        .map_err(|e| e.source)
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BuildError + 'a {
    super::error::io_err(action, path)
}
