//! Looking paths up in a stack of layer directories as overlayfs would merge them.

use std::path::{Path, PathBuf};

use super::SnapshotError;
use super::meta::{EntryType, Meta, is_opaque};

/// Symbolic links followed at most in one [`LowerView::resolve`] (Linux's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

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

    /// `rel` with every symbolic link of the merged view on the way followed inside the
    /// view, as runc's securejoin resolves a mount destination: an absolute target from
    /// the root, a relative one from the link's directory, `..` never above the root, a
    /// dangling link to where its target would be. `None` past `MAX_LINKS` links.
    pub fn resolve(&self, rel: &Path) -> Result<Option<PathBuf>, SnapshotError> {
        let mut pending: Vec<std::ffi::OsString> = rel
            .components()
            .rev()
            .map(|c| c.as_os_str().to_owned())
            .collect();
        let mut resolved = PathBuf::new();
        let mut links = 0;
        while let Some(name) = pending.pop() {
            match name.to_str() {
                Some("/") | Some(".") | Some("") => continue,
                Some("..") => {
                    resolved.pop();
                    continue;
                }
                _ => {}
            }
            resolved.push(&name);
            let Some(entry) = self.lookup(&resolved)? else {
                continue;
            };
            if !entry.is_symlink {
                continue;
            }
            links += 1;
            if links > MAX_LINKS {
                return Ok(None);
            }
            let target = std::fs::read_link(&entry.path)
                .map_err(|e| SnapshotError::io("read link", &entry.path)(e))?;
            resolved.pop();
            if target.is_absolute() {
                resolved = PathBuf::new();
            }
            pending.extend(target.components().rev().map(|c| c.as_os_str().to_owned()));
        }
        Ok(Some(resolved))
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
