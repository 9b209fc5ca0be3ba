//! The requested compression for the layers an image is assembled from.
//!
//! A step found in the cache brings the blob it was stored with, which may have another
//! compression than this build asks for (a gzip build, then `--compression zstd` with
//! every step cached). Such a layer is converted: its tar is read back and compressed
//! again the way a new layer is written, so the result is the blob a cold build with that
//! compression writes, and the image is the same whichever way its layers came. The base
//! image's layers stay as they are unless the request forces the compression (BuildKit's
//! `force-compression`). A conversion is remembered under the cache directory, so a
//! repeat build reuses its blob instead of compressing again (after reading it back
//! against the diff_id: the record is only a file); each compression of a layer is
//! stored once.

use std::fs;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use super::Assembly;
use crate::digest::{Digest, Hasher};
use crate::layer::{Compression, Compressor, decompress};
use crate::solver::error::BuildError;
use crate::solver::state::LayerRef;

/// Where conversions are remembered, under the store's cache directory.
const CONVERTED_DIR: &str = "converted";

/// Converts the layers of `layers` above the first `base_count` (all of them when the
/// request forces the compression) to the request's compression.
pub(super) fn apply(
    assembly: &Assembly<'_>,
    layers: &mut [LayerRef],
    base_count: usize,
) -> Result<(), BuildError> {
    let want = assembly.spec.compression;
    let first = if assembly.spec.force_compression {
        0
    } else {
        base_count.min(layers.len())
    };
    for layer in &mut layers[first..] {
        if layer.compression != want {
            *layer = convert(assembly, layer, want)?;
        }
    }
    Ok(())
}

/// `layer` in `want` compression: a remembered conversion whose blob is still in the
/// store, else a new one.
fn convert(
    assembly: &Assembly<'_>,
    layer: &LayerRef,
    want: Compression,
) -> Result<LayerRef, BuildError> {
    let memo = memo_path(assembly.runtime.store.root(), &layer.diff_id, want);
    if let Some(found) = remembered(&memo, layer, want) {
        if holds(assembly, &found) {
            return Ok(found);
        }
    }
    let blob = layer.blob()?;
    let source = assembly.runtime.store.open_blob(blob)?;
    let mut tar = decompress(BufReader::with_capacity(1 << 20, source)).map_err(io_err(
        "decompress layer blob",
        &assembly.runtime.store.blob_path(blob),
    ))?;
    // Errors writing name the layer by the blob it is converted from (a full disk shows
    // the scratch file too).
    let source_path = assembly.runtime.store.blob_path(blob);
    let writer = assembly.runtime.store.writer()?;
    let mut out = Compressor::new(writer, want, None)
        .map_err(io_err("compress again the layer of blob", &source_path))?;
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
                    &assembly.runtime.store.blob_path(blob),
                )(e));
            }
        };
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(io_err("compress again the layer of blob", &source_path))?;
    }
    let found = hasher.finish();
    if found != layer.diff_id {
        return Err(BuildError::Io {
            action: "convert layer blob (its content does not match its diff_id)",
            path: source_path,
            source: io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "expected {}, read {found}: the store's copy is damaged \
                     (`rbuild store verify` lists the damaged blobs)",
                    layer.diff_id
                ),
            ),
        });
    }
    let blob = out
        .finish()
        .map_err(io_err("compress again the layer of blob", &source_path))?
        .finish()?;
    let converted = LayerRef {
        blob: Some(blob.digest),
        diff_id: layer.diff_id.clone(),
        size: blob.size,
        compression: want,
    };
    // Failing to remember only costs compressing again next time.
    let _ = remember(&memo, &converted);
    Ok(converted)
}

fn memo_path(root: &Path, diff_id: &Digest, want: Compression) -> PathBuf {
    root.join(crate::solver::cache::entry::CACHE_DIR)
        .join(CONVERTED_DIR)
        .join(format!("{}.{}", diff_id.hex(), want.name()))
}

/// Whether the store holds `converted` as its record says: the blob is there with that
/// size, in that compression, and unpacks to the layer's diff_id. A record is only a
/// file under the cache directory (a crash, a full disk or a hand may have left it wrong),
/// and a wrong one would name a layer blob of other content in the image; reading the
/// blob back costs a decompression, far less than the compression it saves.
fn holds(assembly: &Assembly<'_>, converted: &LayerRef) -> bool {
    let Some(blob) = &converted.blob else {
        return false;
    };
    let path = assembly.runtime.store.blob_path(blob);
    if fs::symlink_metadata(&path).map_or(true, |m| !m.is_file() || m.len() != converted.size) {
        return false;
    }
    let Ok(source) = assembly.runtime.store.open_blob(blob) else {
        return false;
    };
    let mut source = BufReader::with_capacity(1 << 20, source);
    let Ok(head) = io::BufRead::fill_buf(&mut source) else {
        return false;
    };
    if Compression::detect(head) != converted.compression {
        return false;
    }
    let Ok(mut tar) = decompress(source) else {
        return false;
    };
    let mut hasher = Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match tar.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    hasher.finish() == converted.diff_id
}

/// The most bytes a conversion record has (a digest, a space, a size, a line break).
const MEMO_LIMIT: u64 = 256;

/// The remembered conversion at `memo`: a line `BLOB-DIGEST SIZE`.
fn remembered(memo: &Path, layer: &LayerRef, want: Compression) -> Option<LayerRef> {
    let bytes = crate::solver::cache::read_record(memo, MEMO_LIMIT)?;
    let text = String::from_utf8(bytes).ok()?;
    let (digest, size) = text.trim().split_once(' ')?;
    Some(LayerRef {
        blob: Some(digest.parse().ok()?),
        diff_id: layer.diff_id.clone(),
        size: size.parse().ok()?,
        compression: want,
    })
}

fn remember(memo: &Path, converted: &LayerRef) -> io::Result<()> {
    crate::atomic::AtomicWrite::new(memo)
        .write_with(|file| {
            let blob = converted.blob.as_ref().ok_or(io::ErrorKind::NotFound)?;
            writeln!(file, "{blob} {}", converted.size)
        })
        .map_err(|e| e.source)
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BuildError + 'a {
    crate::solver::error::io_err(action, path)
}
