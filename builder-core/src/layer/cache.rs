//! `<root>/layers/<diff_id>/`: each layer unpacked once, as an overlay lower dir.

use std::fs;
use std::io::{self, Read};
use std::path::PathBuf;

use super::{ApplyMode, ArchiveLimits, LayerError, apply_layer_limited};
use crate::digest::{Digest, Hasher};
use crate::store::{ContentStore, StoreError};

/// Reads a blob while checking it hashes to its name; the check fails at end of stream.
struct VerifyingReader {
    file: fs::File,
    hasher: Hasher,
    expected: Digest,
}

impl Read for VerifyingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.hasher.update(&buf[..n]);
        if n == 0 && !buf.is_empty() {
            let found = self.hasher.clone().finish();
            if found != self.expected {
                return Err(io::Error::other(format!(
                    "blob {} hashes to {found}",
                    self.expected
                )));
            }
        }
        Ok(n)
    }
}

impl ContentStore {
    /// A reader of blob `digest` that fails at its end if the content does not hash to
    /// `digest`.
    pub fn verified_reader(&self, digest: &Digest) -> Result<impl Read + use<>, StoreError> {
        Ok(VerifyingReader {
            file: self.open_blob(digest)?,
            hasher: Hasher::new(),
            expected: digest.clone(),
        })
    }

    /// Where the layer with `diff_id` is (or would be) unpacked.
    pub fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root().join("layers").join(diff_id.hex())
    }

    /// Unpacks layer blob `blob` once into `<root>/layers/<diff_id>/` as an overlay lower
    /// dir and returns that directory; later calls return it at once.
    pub fn unpack_layer(&self, blob: &Digest, diff_id: &Digest) -> Result<PathBuf, LayerError> {
        let dest = self.layer_dir(diff_id);
        if dest.is_dir() {
            return Ok(dest);
        }
        let parent = self.root().join("layers");
        let tmp = tempfile::Builder::new()
            .prefix(".unpack-")
            .tempdir_in(&parent)
            .map_err(|e| StoreError::Io {
                action: "create temp dir in",
                path: parent.clone(),
                source: e,
            })?;
        let found = apply_layer_limited(
            self.verified_reader(blob)?,
            tmp.path(),
            ApplyMode::OverlayLower,
            &ArchiveLimits::from_env()?,
            &format!("layer blob {blob}"),
        )?
        .diff_id;
        if &found != diff_id {
            return Err(LayerError::DiffIdMismatch {
                expected: diff_id.clone(),
                found,
            });
        }
        let tmp = tmp.keep();
        // The temp dir is created 0700; the unpacked root should read as a normal dir.
        let _ = fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755));
        match fs::rename(&tmp, &dest) {
            Ok(()) => Ok(dest),
            // Another process unpacked the same layer meanwhile: keep theirs.
            Err(_) if dest.is_dir() => {
                let _ = self.remove_tree(&tmp);
                Ok(dest)
            }
            Err(e) => Err(StoreError::Io {
                action: "rename unpacked layer to",
                path: dest,
                source: e,
            }
            .into()),
        }
    }
}
