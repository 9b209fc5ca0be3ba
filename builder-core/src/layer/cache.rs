//! `<root>/layers/<chain_id>/`: each layer of a stack unpacked once, over the layers
//! below it, as an overlay lower dir.

use std::fs;
use std::io::{self, Read};
use std::path::PathBuf;

use super::apply::apply_over;
use super::{ApplyMode, LayerError};
use crate::digest::{Digest, Hasher};
use crate::fakeroot;
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

    /// Where the top layer of the stack with chain ID `chain_id` (see [`chain_ids`]) is,
    /// or would be, unpacked.
    pub fn layer_dir(&self, chain_id: &Digest) -> PathBuf {
        self.root().join("layers").join(chain_id.hex())
    }

    /// Unpacks each layer of a stack, given as (blob, diff_id) lowest first, into
    /// `<root>/layers/<chain_id>/` as an overlay lower dir over the ones below it, once;
    /// returns the directories, lowest first. Each layer is read within the store's
    /// [`archive_limits`](Self::archive_limits).
    ///
    /// A directory is keyed by its chain ID, not its diff_id, for two reasons (containerd
    /// keys its snapshots the same way): a parent directory the layer implies but does
    /// not hold takes the attributes the layers below give it (see
    /// [`apply_layer`](super::apply_layer)), so the same layer unpacks differently over
    /// different stacks; and two byte-identical layers in one stack (`RUN echo a > /a`
    /// twice within a second, the empty layers of old images) get two directories,
    /// where one directory given twice as an overlay lower makes the mount fail with
    /// ELOOP.
    pub fn unpack_layers<'a>(
        &self,
        layers: impl IntoIterator<Item = (&'a Digest, &'a Digest)>,
    ) -> Result<Vec<PathBuf>, LayerError> {
        self.unpack_stack(
            layers
                .into_iter()
                .map(|(blob, diff_id)| (Some(blob), diff_id)),
        )
    }

    /// [`unpack_layers`](Self::unpack_layers) of a stack where some layers may have no
    /// blob: those must be directories already (a step's committed upper directory).
    pub(crate) fn unpack_stack<'a>(
        &self,
        layers: impl IntoIterator<Item = (Option<&'a Digest>, &'a Digest)>,
    ) -> Result<Vec<PathBuf>, LayerError> {
        let layers: Vec<_> = layers.into_iter().collect();
        let chain = chain_ids(layers.iter().map(|(_, diff_id)| *diff_id));
        let mut dirs: Vec<PathBuf> = Vec::with_capacity(layers.len());
        for ((blob, diff_id), chain_id) in layers.into_iter().zip(&chain) {
            let dir = match blob {
                Some(blob) => self.unpack_over(blob, diff_id, chain_id, &dirs)?,
                None => {
                    let dir = self.layer_dir(chain_id);
                    if !dir.is_dir() {
                        return Err(StoreError::Io {
                            action: "find the directory of layer",
                            path: dir,
                            source: io::Error::from(io::ErrorKind::NotFound),
                        }
                        .into());
                    }
                    dir
                }
            };
            dirs.push(dir);
        }
        Ok(dirs)
    }

    /// Unpacks layer blob `blob` once over `lowers` (its stack's directories below it).
    fn unpack_over(
        &self,
        blob: &Digest,
        diff_id: &Digest,
        chain_id: &Digest,
        lowers: &[PathBuf],
    ) -> Result<PathBuf, LayerError> {
        let dest = self.layer_dir(chain_id);
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
        let found = apply_over(
            self.verified_reader(blob)?,
            tmp.path(),
            ApplyMode::OverlayLower,
            lowers,
            &self.archive_limits(),
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
        // The owner table (unprivileged only) goes beside the directory first, so that a
        // directory in its place always has its table.
        let table = fakeroot::table_path(&tmp);
        if table.exists() {
            let dest_table = fakeroot::table_path(&dest);
            fs::rename(&table, &dest_table).map_err(|e| StoreError::Io {
                action: "rename owner table to",
                path: dest_table,
                source: e,
            })?;
        }
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

/// image-spec config.md, "Layer ChainID": the chain IDs of a stack of layers with
/// `diff_ids` (lowest first). The lowest layer's is its diff_id; each other's is the
/// digest of `"<chain ID below> <diff_id>"`. A chain ID names a layer together with
/// everything below it.
pub fn chain_ids<'a>(diff_ids: impl IntoIterator<Item = &'a Digest>) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::new();
    for diff_id in diff_ids {
        let id = match out.last() {
            None => diff_id.clone(),
            Some(below) => Digest::of(format!("{below} {diff_id}").as_bytes()),
        };
        out.push(id);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let b: Digest = format!("sha256:{}", "b".repeat(64)).parse().unwrap();
        let ids = chain_ids([&a, &b, &b]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], Digest::of(format!("{a} {b}").as_bytes()));
        assert_eq!(ids[2], Digest::of(format!("{} {b}", ids[1]).as_bytes()));
        // The same layer twice in a stack has two chain IDs, so two directories.
        assert_ne!(ids[1], ids[2]);
    }
}
