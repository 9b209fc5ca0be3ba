//! What a build step changed in a filesystem tree.
//!
//! A [`ChangeSet`] is the contract between the two halves of the engine: a snapshotter
//! produces one by comparing a step's tree with the tree below it, and the layer writer
//! turns it into a tar layer, reading the current state of every added or modified path
//! from a source tree.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
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
///
/// A step may change millions of paths, so the paths recorded in order (what a walk of a
/// directory tree gives) are kept as bytes one after another, about 16 bytes per change
/// besides the path itself; those recorded out of order go to a map.
#[derive(Debug, Clone, Default)]
pub struct ChangeSet {
    /// The bytes of the paths in `in_order`, one after another.
    bytes: Vec<u8>,
    /// Changes recorded in ascending path order: where their path is in `bytes`.
    in_order: Vec<Slot>,
    /// Changes recorded after a greater path (never one of `in_order`'s paths).
    out_of_order: BTreeMap<PathBuf, ChangeKind>,
    opaque: BTreeSet<PathBuf>,
}

/// One change of [`ChangeSet::in_order`].
#[derive(Debug, Clone, Copy)]
struct Slot {
    start: usize,
    len: u32,
    kind: ChangeKind,
}

impl PartialEq for ChangeSet {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self.entries().eq(other.entries())
            && self.opaque == other.opaque
    }
}

impl Eq for ChangeSet {}

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
        let after_last = self
            .in_order
            .last()
            .is_none_or(|last| self.path_of(*last) < path.as_path());
        let bytes = path.as_os_str().as_bytes();
        match u32::try_from(bytes.len()) {
            Ok(len) if after_last && !self.out_of_order.contains_key(&path) => {
                self.in_order.push(Slot {
                    start: self.bytes.len(),
                    len,
                    kind,
                });
                self.bytes.extend_from_slice(bytes);
            }
            _ => match self.position(&path) {
                Ok(i) => self.in_order[i].kind = kind,
                Err(_) => {
                    self.out_of_order.insert(path, kind);
                }
            },
        }
        Ok(())
    }

    fn path_of(&self, slot: Slot) -> &Path {
        Path::new(OsStr::from_bytes(
            &self.bytes[slot.start..slot.start + slot.len as usize],
        ))
    }

    /// Where `path` is (or would go) in `in_order`.
    fn position(&self, path: &Path) -> Result<usize, usize> {
        self.in_order
            .binary_search_by(|slot| self.path_of(*slot).cmp(path))
    }

    /// The changes as borrowed paths, a directory before its contents.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&Path, ChangeKind)> + '_ {
        let mut a = self
            .in_order
            .iter()
            .map(|slot| (self.path_of(*slot), slot.kind))
            .peekable();
        let mut b = self
            .out_of_order
            .iter()
            .map(|(path, kind)| (path.as_path(), *kind))
            .peekable();
        std::iter::from_fn(move || match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x.0.cmp(y.0) == Ordering::Greater => b.next(),
            (Some(_), _) => a.next(),
            (None, _) => b.next(),
        })
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
        self.entries().map(|(path, kind)| Change {
            path: path.to_path_buf(),
            kind,
        })
    }

    /// How `path` changed, if it did.
    pub fn get(&self, path: &Path) -> Option<ChangeKind> {
        match self.position(path) {
            Ok(i) => Some(self.in_order[i].kind),
            Err(_) => self.out_of_order.get(path).copied(),
        }
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
        self.in_order.len() + self.out_of_order.len()
    }

    /// True when the step changed nothing: no path and no opaque directory.
    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.opaque.is_empty()
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
    fn records_in_any_order_read_back_sorted_and_the_last_record_wins() {
        let paths = ["a", "a/b", "a/b/c", "a.b", "b", "c/d"];
        let mut forward = ChangeSet::new();
        for p in paths {
            forward.record(p, ChangeKind::Added).unwrap();
        }
        let mut mixed = ChangeSet::new();
        for p in ["b", "a/b/c", "c/d", "a", "a.b", "a/b", "b"] {
            mixed.record(p, ChangeKind::Modified).unwrap();
        }
        for p in paths {
            mixed.record(p, ChangeKind::Added).unwrap();
        }
        assert_eq!(mixed, forward);
        assert_eq!(mixed.len(), paths.len());
        let order: Vec<_> = mixed.iter().map(|c| c.path).collect();
        assert_eq!(order, paths.map(PathBuf::from).to_vec());
        forward.record("a/b", ChangeKind::Deleted).unwrap();
        mixed.record("a/b", ChangeKind::Deleted).unwrap();
        assert_eq!(forward.get(Path::new("a/b")), Some(ChangeKind::Deleted));
        assert_eq!(mixed.get(Path::new("a/b")), Some(ChangeKind::Deleted));
        assert_eq!(mixed.get(Path::new("a/b/")), Some(ChangeKind::Deleted));
        assert_eq!(mixed.get(Path::new("zz")), None);
        assert_eq!(mixed, forward);
        mixed.record("z", ChangeKind::Added).unwrap();
        assert_ne!(mixed, forward);
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
