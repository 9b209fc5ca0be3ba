//! The store's blob writer: the layout's [`crate::oci_layout::BlobWriter`], failing with
//! the store's error as the rest of the store does.

use std::io::{self, Write};

use oci_spec::image::Descriptor;

use super::{Blob, StoreError};
use crate::digest::Digest;
use crate::oci_layout;

/// Writes a new blob of the store to a temp file while hashing it;
/// [`BlobWriter::finish`] names it. See [`oci_layout::BlobWriter`].
///
/// Dropping an unfinished writer removes the temp file.
#[derive(Debug)]
pub struct BlobWriter(pub(super) oci_layout::BlobWriter);

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.0.written()
    }

    /// Copies `reader` in, no more than `size` bytes and one; see
    /// [`oci_layout::BlobWriter::copy_within`].
    pub fn copy_within(&mut self, reader: &mut dyn io::Read, size: u64) -> io::Result<()> {
        self.0.copy_within(reader, size)
    }

    /// Like [`BlobWriter::finish`], but only when the content hashes to `expected`: on a
    /// mismatch the temp file is dropped and nothing enters the store.
    pub fn finish_verified(self, expected: &Digest) -> Result<Blob, StoreError> {
        Ok(self.0.finish_verified(expected)?)
    }

    /// Like [`BlobWriter::finish_verified`], and only with `size` bytes.
    pub fn finish_matching(self, digest: &Digest, size: u64) -> Result<Blob, StoreError> {
        Ok(self.0.finish_matching(digest, size)?)
    }

    /// Like [`BlobWriter::finish`], but only when the content is what `expected`
    /// describes (digest, then size).
    pub fn finish_verified_as(self, expected: &Descriptor) -> Result<Blob, StoreError> {
        Ok(self.0.finish_verified_as(expected)?)
    }

    /// Syncs the blob and renames it to its digest; if that blob exists already the new
    /// copy is dropped, so finishing is idempotent.
    pub fn finish(self) -> Result<Blob, StoreError> {
        Ok(self.0.finish()?)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}
