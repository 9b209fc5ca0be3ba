//! Writing one blob: hash while writing, check against what was expected, then sync and
//! rename into `blobs/sha256/`.

use std::io::{self, Read, Write};

use oci_spec::image::Descriptor;

use super::{LayoutError, OciLayout, io_err};
use crate::digest::{Digest, Hasher};

/// A blob of a layout: its digest and size in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Blob {
    /// The sha256 of its content, also its file name.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// Writes a new blob to a temp file while hashing it; [`BlobWriter::finish`] names it,
/// [`BlobWriter::finish_verified_as`] names it only if it is what a descriptor promised.
///
/// Dropping an unfinished writer (or finishing one whose content is refused) removes the
/// temp file: nothing is left behind. Two writers of the same content may finish in any
/// order; each rename puts the same bytes under the same name. Outside the store a blob
/// already under its name is replaced (it may be a damaged copy), never trusted.
#[derive(Debug)]
pub struct BlobWriter {
    layout: OciLayout,
    file: io::BufWriter<tempfile::NamedTempFile>,
    hasher: Hasher,
    /// Set by [`BlobWriter::copy_within`] when its source had more bytes than allowed:
    /// the allowed size. Such a writer never commits.
    overlong: Option<u64>,
}

impl BlobWriter {
    pub(super) fn new(layout: &OciLayout) -> Result<Self, LayoutError> {
        if layout.scratch.is_none() {
            // The temp file goes beside the blobs: their directory must exist.
            layout.blobs_dir(true)?;
        }
        let dir = layout.scratch_dir();
        let file = tempfile::Builder::new()
            .prefix(".blob-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(layout.mode))
            .tempfile_in(&dir)
            .map_err(io_err("create temp file in", &dir))?;
        Ok(Self {
            layout: layout.clone(),
            file: io::BufWriter::with_capacity(1 << 20, file),
            hasher: Hasher::new(),
            overlong: None,
        })
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.hasher.len()
    }

    /// Copies `reader` in, but no more than `size` bytes and one: a source longer than
    /// the `size` its descriptor promised (a huge sparse file, a device) is neither read
    /// nor written whole, and the writer then refuses to finish
    /// ([`LayoutError::Overlong`]).
    pub fn copy_within(&mut self, reader: &mut dyn Read, size: u64) -> io::Result<()> {
        io::copy(&mut reader.take(size.saturating_add(1)), self)?;
        if self.written() > size {
            self.overlong = Some(size);
        }
        Ok(())
    }

    /// Like [`BlobWriter::finish`], but only when the content hashes to `expected`: on a
    /// mismatch the temp file is dropped and nothing enters the layout.
    pub fn finish_verified(self, expected: &Digest) -> Result<Blob, LayoutError> {
        self.finish_checked(expected, None)
    }

    /// Like [`BlobWriter::finish`], but only when the content hashes to `digest` and has
    /// `size` bytes (digest checked first).
    pub fn finish_matching(self, digest: &Digest, size: u64) -> Result<Blob, LayoutError> {
        self.finish_checked(digest, Some(size))
    }

    /// Like [`BlobWriter::finish`], but only when the content is what `expected`
    /// describes: its digest, then its size.
    pub fn finish_verified_as(self, expected: &Descriptor) -> Result<Blob, LayoutError> {
        let digest = Digest::try_from(expected.digest()).map_err(|e| LayoutError::Refused {
            path: self.layout.scratch_dir(),
            reason: format!(
                "the descriptor's digest {:?}: {e}",
                expected.digest().to_string()
            ),
        })?;
        self.finish_checked(&digest, Some(expected.size()))
    }

    fn finish_checked(self, expected: &Digest, size: Option<u64>) -> Result<Blob, LayoutError> {
        // A cut copy's digest says nothing: its length is what is wrong.
        self.refuse_overlong(expected)?;
        let found = self.hasher.clone().finish();
        if &found != expected {
            return Err(LayoutError::DigestMismatch {
                expected: expected.clone(),
                found,
            });
        }
        if let Some(size) = size.filter(|s| *s != self.hasher.len()) {
            return Err(LayoutError::SizeMismatch {
                digest: expected.clone(),
                expected: size,
                found: self.hasher.len(),
            });
        }
        self.finish()
    }

    /// Syncs the blob and renames it to its digest, replacing whatever was under that
    /// name; in a layout that trusts its existing blobs (the store) a blob already there
    /// is kept and the new copy dropped. Either way finishing is idempotent.
    pub fn finish(self) -> Result<Blob, LayoutError> {
        self.refuse_overlong(&self.hasher.clone().finish())?;
        let size = self.hasher.len();
        let digest = self.hasher.finish();
        let dest = self.layout.blob_path(&digest);
        let tmp = self
            .file
            .into_inner()
            .map_err(|e| io_err("flush blob", &dest)(e.into_error()))?;
        if self.layout.trust_existing && self.layout.contains(&digest) {
            return Ok(Blob { digest, size });
        }
        let dir = self
            .layout
            .blobs_dir(true)?
            .ok_or_else(|| io_err("create directory", &dest)(io::ErrorKind::NotFound.into()))?;
        crate::atomic::commit_at(
            tmp,
            std::os::fd::AsFd::as_fd(&dir),
            digest.hex(),
            &dest,
            true,
        )?;
        Ok(Blob { digest, size })
    }
}

impl BlobWriter {
    fn refuse_overlong(&self, digest: &Digest) -> Result<(), LayoutError> {
        match self.overlong {
            Some(size) => Err(LayoutError::Overlong {
                digest: digest.clone(),
                expected: size,
            }),
            None => Ok(()),
        }
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}
