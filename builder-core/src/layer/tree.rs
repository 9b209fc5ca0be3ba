//! The change set of a whole tree, for base layers and `import`.

use std::path::Path;

use super::LayerError;
use crate::change::{ChangeKind, ChangeSet};

/// A change set that adds every path under `root` (not `root` itself), walked in path
/// order (what a change set keeps most compactly).
pub fn tree_changes(root: &Path) -> Result<ChangeSet, LayerError> {
    let mut set = ChangeSet::new();
    for entry in walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.map_err(|e| LayerError::Source {
            path: e.path().unwrap_or(root).to_path_buf(),
            source: e.into(),
        })?;
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        set.record(rel, ChangeKind::Added)
            .map_err(|e| LayerError::Source {
                path: e.path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
            })?;
    }
    Ok(set)
}
