//! Writing one blob: hash while writing, then sync and rename into place.

use std::io::{self, Write};

use super::{ContentStore, StoreError, io_err};
use crate::digest::{Digest, Hasher};

/// A blob in the content store: its digest and size in bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Blob {
    /// The sha256 of its content, also its file name.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// Writes a new blob to a temp file while hashing it; [`BlobWriter::finish`] names it.
///
/// Dropping an unfinished writer removes the temp file.
#[derive(Debug)]
pub struct BlobWriter {
    store: ContentStore,
    file: io::BufWriter<tempfile::NamedTempFile>,
    hasher: Hasher,
}

impl BlobWriter {
    pub(super) fn new(store: &ContentStore) -> Result<Self, StoreError> {
        let tmp_dir = store.tmp_dir();
        let file = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&tmp_dir)
            .map_err(io_err("create temp file in", &tmp_dir))?;
        Ok(Self {
            store: store.clone(),
            file: io::BufWriter::with_capacity(1 << 20, file),
            hasher: Hasher::new(),
        })
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.hasher.len()
    }

    /// Like [`BlobWriter::finish`], but only when the content hashes to `expected`: on a
    /// mismatch the temp file is dropped and nothing enters the store.
    pub fn finish_verified(self, expected: &Digest) -> Result<Blob, StoreError> {
        let found = self.hasher.clone().finish();
        if &found != expected {
            return Err(StoreError::DigestMismatch {
                expected: expected.clone(),
                found,
            });
        }
        self.finish()
    }

    /// Syncs the blob and renames it to its digest; if that blob exists already the new
    /// copy is dropped, so finishing is idempotent.
    pub fn finish(self) -> Result<Blob, StoreError> {
        let size = self.hasher.len();
        let digest = self.hasher.finish();
        let dest = self.store.blob_path(&digest);
        let tmp = self
            .file
            .into_inner()
            .map_err(|e| io_err("flush blob", &dest)(e.into_error()))?;
        if dest.is_file() {
            return Ok(Blob { digest, size });
        }
        crate::atomic::commit(tmp, &dest, true)?;
        Ok(Blob { digest, size })
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
