//! The overlayfs snapshotter: per-step upper and work directories over shared lowers.

use std::fs;
use std::path::{Path, PathBuf};

use super::lower::LowerView;
use super::meta::{Meta, is_opaque, layer_xattrs, read_dir_sorted};
use super::{Snapshot, SnapshotError, Snapshotter, StepRoot};
use crate::change::{ChangeKind, ChangeSet};
use crate::privilege::Privilege;

/// Snapshots as overlayfs upper directories.
///
/// The overlay itself is mounted by the executor inside the step's mount namespace (with
/// the new mount API, one `lowerdir+` per layer, so deep stacks are not cut by the
/// 4096-byte option limit) and disappears with the step. The diff reads only the upper
/// directory: a character device 0:0 is a deletion, an opaque xattr marks a directory
/// whose lower contents are hidden, and overlay bookkeeping xattrs are ignored.
#[derive(Debug, Clone, Default)]
pub struct OverlaySnapshotter {
    userxattr: bool,
}

impl OverlaySnapshotter {
    /// An overlay snapshotter; it uses `user.overlay.*` xattrs unless running as root of
    /// the host (`trusted.*` xattrs need it).
    pub fn new() -> Self {
        OverlaySnapshotter {
            userxattr: !Privilege::current().is_host_root(),
        }
    }
}

impl Snapshotter for OverlaySnapshotter {
    fn prepare(&self, lowers: &[PathBuf], scratch: &Path) -> Result<Snapshot, SnapshotError> {
        let lowers = distinct_lowers(lowers);
        if lowers.len() > OVERLAY_MAX_LOWERS {
            return Err(SnapshotError::TooManyLayers {
                count: lowers.len(),
                max: OVERLAY_MAX_LOWERS,
            });
        }
        let upper = scratch.join("upper");
        let work = scratch.join("work");
        for dir in [&upper, &work] {
            fs::create_dir(dir).map_err(SnapshotError::io("create directory", dir))?;
        }
        Ok(Snapshot::new(
            StepRoot::Overlay {
                lowers,
                upper,
                work,
                userxattr: self.userxattr,
            },
            scratch.to_path_buf(),
            None,
        ))
    }

    fn diff(&self, snapshot: &Snapshot) -> Result<ChangeSet, SnapshotError> {
        let StepRoot::Overlay { lowers, upper, .. } = &snapshot.root else {
            return Err(SnapshotError::WrongSnapshot {
                expected: "overlay",
                scratch: snapshot.scratch.clone(),
            });
        };
        let view = LowerView::new(lowers.clone());
        let mut set = ChangeSet::new();
        walk_upper(&view, upper, Path::new(""), false, &mut set)?;
        Ok(set)
    }
}

/// `lowers` with each directory kept only where it is topmost. overlayfs refuses a mount
/// that names one lower directory twice (ELOOP, "Too many levels of symbolic links"); the
/// store never gives one twice (unpacked layers are keyed by chain ID), but a caller's
/// stack may. Dropping the lower copy changes nothing: whatever it could show, hide or
/// make opaque, the same directory higher up already does.
/// The most lower directories one overlayfs mount takes (the kernel's `OVL_MAX_STACK`):
/// a mount of more fails with `EINVAL`, so a step over more is refused before it starts.
pub(crate) const OVERLAY_MAX_LOWERS: usize = 500;

fn distinct_lowers(lowers: &[PathBuf]) -> Vec<PathBuf> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<PathBuf> = lowers
        .iter()
        .rev()
        .filter(|dir| seen.insert(dir.as_path()))
        .cloned()
        .collect();
    out.reverse();
    out
}

/// Records the changes under `rel` of the upper directory. With `all_added`, nothing of
/// the lowers shows through here (new or opaque directory): every entry is added.
fn walk_upper(
    view: &LowerView,
    upper: &Path,
    rel: &Path,
    all_added: bool,
    set: &mut ChangeSet,
) -> Result<(), SnapshotError> {
    for (name, path) in read_dir_sorted(&upper.join(rel))? {
        let rel = rel.join(name);
        let Some(meta) = Meta::lstat(&path)? else {
            continue;
        };
        if meta.is_whiteout() {
            if !all_added && view.lookup(&rel)?.is_some() {
                set.record(rel, ChangeKind::Deleted)?;
            }
            continue;
        }
        let lower = if all_added { None } else { view.lookup(&rel)? };
        let Some(lower) = lower else {
            set.record(rel.clone(), ChangeKind::Added)?;
            if meta.is_dir() {
                walk_upper(view, upper, &rel, true, set)?;
            }
            continue;
        };
        if !meta.is_dir() {
            set.record(rel, ChangeKind::Modified)?;
            continue;
        }
        if !lower.is_dir {
            // A file replaced by a directory: nothing below it can show through.
            set.record(rel.clone(), ChangeKind::Modified)?;
            walk_upper(view, upper, &rel, true, set)?;
        } else if is_opaque(&path)? {
            set.record(rel.clone(), ChangeKind::Modified)?;
            set.mark_opaque(rel.clone())?;
            walk_upper(view, upper, &rel, true, set)?;
        } else {
            // A directory copied up only because something inside it changed is not
            // itself a change unless its own attributes moved.
            if !meta.same_dir_attrs(&lower.meta)
                || layer_xattrs(&path)? != layer_xattrs(&lower.path)?
            {
                set.record(rel.clone(), ChangeKind::Modified)?;
            }
            walk_upper(view, upper, &rel, false, set)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlay() -> OverlaySnapshotter {
        OverlaySnapshotter { userxattr: false }
    }

    #[test]
    fn a_root_over_more_layers_than_overlayfs_stacks_is_refused_before_any_mount() {
        let scratch = tempfile::tempdir().unwrap();
        let lowers: Vec<PathBuf> = (0..=OVERLAY_MAX_LOWERS)
            .map(|i| scratch.path().join(format!("l{i}")))
            .collect();
        let err = overlay().prepare(&lowers, scratch.path()).unwrap_err();
        assert!(
            matches!(
                err,
                SnapshotError::TooManyLayers {
                    count: 501,
                    max: 500
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("--snapshotter copy"), "{err}");
        assert!(!scratch.path().join("upper").exists());
    }

    #[test]
    fn the_limit_counts_distinct_layer_directories() {
        let scratch = tempfile::tempdir().unwrap();
        let mut lowers: Vec<PathBuf> = (0..OVERLAY_MAX_LOWERS)
            .map(|i| scratch.path().join(format!("l{i}")))
            .collect();
        lowers.push(lowers[0].clone());
        let snapshot = overlay().prepare(&lowers, scratch.path()).unwrap();
        let StepRoot::Overlay { lowers, .. } = snapshot.root() else {
            panic!("not an overlay root");
        };
        assert_eq!(lowers.len(), OVERLAY_MAX_LOWERS);
    }
}
