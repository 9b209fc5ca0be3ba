//! Looking paths up in a stack of layer directories as overlayfs would merge them.

use std::path::{Path, PathBuf};

use super::SnapshotError;
use super::meta::{EntryType, Meta, is_opaque};

/// A read-only merged view of layer directories (lowest first, overlayfs whiteouts),
/// resolved path by path without mounting anything.
#[derive(Debug, Clone)]
pub struct LowerView {
    layers: Vec<PathBuf>,
}

/// An entry found in a [`LowerView`].
#[derive(Debug, Clone)]
pub struct LowerEntry {
    /// Where the entry lives on disk (in the topmost layer that has it).
    pub path: PathBuf,
    /// Whether it is a directory.
    pub is_dir: bool,
    /// Whether it is a symbolic link.
    pub is_symlink: bool,
    /// Whether it is a regular file.
    pub is_file: bool,
    pub(crate) meta: Meta,
}

impl LowerView {
    /// A view over `layers`, lowest first.
    pub fn new(layers: Vec<PathBuf>) -> Self {
        LowerView { layers }
    }

    /// The topmost visible entry for `rel` (a relative path), if any.
    pub fn lookup(&self, rel: &Path) -> Result<Option<LowerEntry>, SnapshotError> {
        for layer in self.layers.iter().rev() {
            let path = layer.join(rel);
            match Meta::lstat(&path)? {
                Some(meta) if meta.is_whiteout() => return Ok(None),
                Some(meta) => {
                    return Ok(Some(LowerEntry {
                        path,
                        is_dir: meta.is_dir(),
                        is_symlink: meta.kind == EntryType::Symlink,
                        is_file: meta.kind == EntryType::File,
                        meta,
                    }));
                }
                None => {
                    if self.hidden_by_ancestor(layer, rel)? {
                        return Ok(None);
                    }
                }
            }
        }
        Ok(None)
    }

    /// Whether `rel` or one of its ancestors is a symbolic link in the merged view: such a
    /// path must never be created or mounted on from outside the sandbox.
    pub fn crosses_symlink(&self, rel: &Path) -> Result<bool, SnapshotError> {
        let mut prefix = PathBuf::new();
        for component in rel.components() {
            prefix.push(component);
            if let Some(entry) = self.lookup(&prefix)? {
                if entry.is_symlink {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// In `layer`, does an ancestor of `rel` hide what lies below (whiteout, non-directory
    /// or opaque directory)?
    fn hidden_by_ancestor(&self, layer: &Path, rel: &Path) -> Result<bool, SnapshotError> {
        let mut ancestor = rel.parent();
        while let Some(a) = ancestor {
            if a.as_os_str().is_empty() {
                break;
            }
            let path = layer.join(a);
            if let Some(meta) = Meta::lstat(&path)? {
                if !meta.is_dir() || is_opaque(&path)? {
                    return Ok(true);
                }
            }
            ancestor = a.parent();
        }
        Ok(false)
    }
}
