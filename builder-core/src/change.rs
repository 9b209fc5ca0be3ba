//! What a build step changed in a filesystem tree.
//!
//! A [`ChangeSet`] is the contract between the two halves of the engine: a snapshotter
//! produces one by comparing a step's tree with the tree below it, and the layer writer
//! turns it into a tar layer, reading the current state of every added or modified path
//! from a source tree.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

/// How one path changed relative to the tree below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChangeKind {
    /// The path did not exist below and exists now.
    Added,
    /// The path existed below and now has other content, metadata or type.
    Modified,
    /// The path existed below and no longer does; a layer records it as a whiteout.
    Deleted,
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The path relative to the tree's root: not empty, only normal components.
    pub path: PathBuf,
    /// How it changed.
    pub kind: ChangeKind,
}

/// Every change of one step, ordered so that a directory comes before what it holds.
///
/// Rules a producer follows:
/// - every added or modified path is listed, including each descendant of an added
///   directory (a layer holds exactly the listed paths);
/// - a deleted directory is listed once, not with its descendants;
/// - a directory whose lower contents are hidden entirely (removed and created again) is
///   listed as modified or added and also marked opaque with [`ChangeSet::mark_opaque`];
///   its present children are listed as added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeSet {
    changes: BTreeMap<PathBuf, ChangeKind>,
    opaque: BTreeSet<PathBuf>,
}

/// A path given to a [`ChangeSet`] was empty, absolute or had `.`/`..` components.
#[derive(Debug, thiserror::Error)]
#[error("invalid change path {path:?}: must be relative with only normal components")]
pub struct InvalidChangePath {
    /// The offending path.
    pub path: PathBuf,
}

fn check_path(path: &Path) -> Result<(), InvalidChangePath> {
    let normal = path.components().all(|c| matches!(c, Component::Normal(_)));
    if normal && path.components().next().is_some() {
        Ok(())
    } else {
        Err(InvalidChangePath {
            path: path.to_path_buf(),
        })
    }
}

impl ChangeSet {
    /// An empty change set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `path` changed; a later record for the same path replaces it.
    pub fn record(
        &mut self,
        path: impl Into<PathBuf>,
        kind: ChangeKind,
    ) -> Result<(), InvalidChangePath> {
        let path = path.into();
        check_path(&path)?;
        self.changes.insert(path, kind);
        Ok(())
    }

    /// Marks directory `dir` opaque: nothing of the lower layers' `dir` shows through.
    pub fn mark_opaque(&mut self, dir: impl Into<PathBuf>) -> Result<(), InvalidChangePath> {
        let dir = dir.into();
        check_path(&dir)?;
        self.opaque.insert(dir);
        Ok(())
    }

    /// The changes, a directory before its contents (component-wise path order).
    pub fn iter(&self) -> impl Iterator<Item = Change> + '_ {
        self.changes.iter().map(|(path, kind)| Change {
            path: path.clone(),
            kind: *kind,
        })
    }

    /// How `path` changed, if it did.
    pub fn get(&self, path: &Path) -> Option<ChangeKind> {
        self.changes.get(path).copied()
    }

    /// Whether `dir` was marked opaque.
    pub fn is_opaque(&self, dir: &Path) -> bool {
        self.opaque.contains(dir)
    }

    /// The opaque directories, in path order.
    pub fn opaque_dirs(&self) -> impl Iterator<Item = &Path> {
        self.opaque.iter().map(PathBuf::as_path)
    }

    /// Number of changed paths.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    /// True when the step changed nothing: no path and no opaque directory.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.opaque.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_come_before_their_contents() {
        let mut set = ChangeSet::new();
        set.record("a.b", ChangeKind::Added).unwrap();
        set.record("a/b", ChangeKind::Added).unwrap();
        set.record("a", ChangeKind::Added).unwrap();
        let order: Vec<_> = set.iter().map(|c| c.path).collect();
        assert_eq!(
            order,
            vec![
                PathBuf::from("a"),
                PathBuf::from("a/b"),
                PathBuf::from("a.b")
            ]
        );
    }

    #[test]
    fn rejects_paths_that_leave_the_tree() {
        let mut set = ChangeSet::new();
        for bad in ["", "/etc", "../x", "a/../b", "./a"] {
            assert!(set.record(bad, ChangeKind::Added).is_err(), "{bad}");
        }
        assert!(set.is_empty());
    }
}
