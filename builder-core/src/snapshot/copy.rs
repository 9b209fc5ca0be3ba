//! The portable snapshotter: a merged copy of the lowers, compared after the step.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps};

use super::meta::{EntryType, Meta, is_opaque, layer_xattrs, read_dir_sorted, same_content};
use super::{Snapshot, SnapshotError, Snapshotter, StepOwners, StepRoot};
use crate::change::{ChangeKind, ChangeSet};
use crate::fakeroot::{self, Owners};

/// Snapshots as a full merged copy of the lowers, for kernels or filesystems where
/// overlayfs is unavailable.
///
/// After the step, a parallel walk compares every entry with the state recorded right
/// after the copy: an entry whose inode and ctime did not move is unchanged; otherwise its
/// attributes are compared, and for regular files whose size and mtime still agree, its
/// bytes with the lower file it was copied from.
#[derive(Debug, Clone, Default)]
pub struct CopySnapshotter;

impl CopySnapshotter {
    /// A copying snapshotter.
    pub fn new() -> Self {
        CopySnapshotter
    }
}

/// The copy's state right after preparation: what every path looked like and the lower
/// file it came from, in path order (a directory before its contents).
#[derive(Debug)]
pub(crate) struct Baseline {
    entries: Vec<(PathBuf, Meta, PathBuf)>,
    /// The root's owner table right after preparation, when owners are kept in one
    /// (see [`crate::fakeroot`]): a step may change an owner there only.
    owners: Option<Owners>,
}

/// Owners of the baseline's owned inodes, by inode number and birth time.
type OwnedInodes = HashMap<(u64, Option<std::time::SystemTime>), (u32, u32)>;

/// The owner changes a step's chown calls made, in order, by inode number and birth time
/// (`None` leaves an id as it is).
type ChownedInodes = HashMap<(u64, Option<std::time::SystemTime>), Vec<(Option<u32>, Option<u32>)>>;

/// Who owns what a RUN step made: its user, but for new names of owned inodes; and what
/// its chown calls gave.
struct Made<'a> {
    user: (u32, u32),
    owned_inodes: &'a OwnedInodes,
    chowned: &'a ChownedInodes,
}

impl Baseline {
    /// See [`Snapshot::follow_run`].
    pub(super) fn follow_run(
        &self,
        root: &Path,
        noted: Option<StepOwners>,
    ) -> Result<(), SnapshotError> {
        if self.owners.is_none() {
            return match noted {
                Some(noted) => chown_on_disk(root, &noted.calls),
                None => Ok(()),
            };
        }
        let StepOwners { user, calls } = noted.unwrap_or_default();
        let table = fakeroot::table_path(root);
        let mut owners = Owners::load(root).map_err(SnapshotError::io("read", &table))?;
        // The owned inodes of the baseline: one the step renamed or linked elsewhere
        // keeps its owner there, as it would on disk.
        let owned_inodes: OwnedInodes = owners
            .paths()
            .filter_map(|rel| {
                let before = self.get(rel)?;
                Some(((before.ino, before.btime), owners.get(rel)?))
            })
            .collect();
        // The chown calls of a step under proot, by the inode each named (a path the step
        // then renamed or linked elsewhere takes them there), in order.
        let mut chowned: ChownedInodes = HashMap::new();
        for call in &calls {
            chowned
                .entry((call.inode.1, call.born))
                .or_default()
                .push((call.uid, call.gid));
        }
        let made = Made {
            user,
            owned_inodes: &owned_inodes,
            chowned: &chowned,
        };
        let mut seen = HashSet::new();
        self.follow_dir(root, Path::new(""), &mut owners, &mut seen, &made)?;
        let gone: Vec<PathBuf> = owners
            .paths()
            .filter(|rel| !seen.contains(*rel))
            .map(Path::to_path_buf)
            .collect();
        for rel in &gone {
            owners.forget(rel);
        }
        owners
            .save(root)
            .map_err(SnapshotError::io("write", &table))
    }

    /// [`Baseline::follow_run`] for the entries of directory `dir` (relative to `root`),
    /// each directory opened to its owner before it is read.
    fn follow_dir(
        &self,
        root: &Path,
        dir: &Path,
        owners: &mut Owners,
        seen: &mut HashSet<PathBuf>,
        made: &Made<'_>,
    ) -> Result<(), SnapshotError> {
        for (name, path) in read_dir_sorted(&root.join(dir))? {
            let rel = dir.join(name);
            let Some(now) = Meta::lstat(&path)? else {
                continue;
            };
            let before = self.get(&rel);
            // A path the step made or replaced is its processes' own: root's, with the
            // mode they gave it.
            let kept = before.is_some_and(|before| now.same_inode(before));
            if !kept {
                owners.forget(&rel);
                // The step user's, but a new name of an inode that had an owner.
                let owner = made.owned_inodes.get(&(now.ino, now.btime));
                owners.set(&rel, owner.copied().unwrap_or(made.user));
            }
            // Then what the step's chown calls gave its inode, by any of its names.
            if let Some(changes) = made.chowned.get(&(now.ino, now.btime)) {
                for (uid, gid) in changes {
                    let (was_uid, was_gid) = owners.get(&rel).unwrap_or((0, 0));
                    owners.set(&rel, (uid.unwrap_or(was_uid), gid.unwrap_or(was_gid)));
                }
            }
            if now.kind != EntryType::Symlink {
                // The mode kept in the table holds unless the step changed the one on
                // disk.
                let image = match (owners.mode(&rel), before) {
                    (Some(mode), Some(before)) if kept && before.mode == now.mode => mode,
                    _ => now.mode,
                };
                let disk = fakeroot::disk_mode(image, now.is_dir());
                if disk != now.mode {
                    fs::set_permissions(&path, fs::Permissions::from_mode(disk))
                        .map_err(SnapshotError::io("change the mode of", &path))?;
                }
                owners.set_mode(&rel, image, disk);
            }
            if now.is_dir() {
                self.follow_dir(root, &rel, owners, seen, made)?;
            }
            if owners.entry(&rel).is_some() {
                seen.insert(rel);
            }
        }
        Ok(())
    }

    /// See [`Snapshot::owner_view`].
    pub(super) fn owner_view(
        &self,
        root: &Path,
    ) -> Result<Option<super::OwnerView>, SnapshotError> {
        if self.owners.is_none() {
            return Ok(None);
        }
        let table = fakeroot::table_path(root);
        let owners = Owners::load(root).map_err(SnapshotError::io("read", &table))?;
        let owned = owners
            .paths()
            .filter_map(|rel| {
                let before = self.get(rel)?;
                Some(((before.ino, before.btime), owners.entry(rel)?))
            })
            .collect();
        let before = self
            .entries
            .iter()
            .map(|(_, meta, _)| (meta.ino, meta.btime))
            .collect();
        Ok(Some(super::OwnerView { owned, before }))
    }

    fn get(&self, rel: &Path) -> Option<&Meta> {
        self.entries
            .binary_search_by(|(p, _, _)| p.as_path().cmp(rel))
            .ok()
            .map(|i| &self.entries[i].1)
    }
}

impl Snapshotter for CopySnapshotter {
    fn prepare(&self, lowers: &[PathBuf], scratch: &Path) -> Result<Snapshot, SnapshotError> {
        let root = scratch.join("root");
        fs::create_dir(&root).map_err(SnapshotError::io("create directory", &root))?;
        let mut sources = HashMap::new();
        // Unprivileged, the owners the lowers' tables give go into the root's table
        // (crate::fakeroot), and nothing is chowned.
        let mut owners = fakeroot::active().then(Owners::default);
        for layer in lowers {
            let mut links = HashMap::new();
            let mut merge = Merge {
                layer,
                root: &root,
                sources: &mut sources,
                links: &mut links,
                owners: match owners.as_mut() {
                    Some(table) => Some((
                        Owners::load(layer)
                            .map_err(SnapshotError::io("read", &fakeroot::table_path(layer)))?,
                        table,
                    )),
                    None => None,
                },
            };
            merge.dir(Path::new(""))?;
        }
        if let Some(owners) = &owners {
            owners
                .save(&root)
                .map_err(SnapshotError::io("write", &fakeroot::table_path(&root)))?;
        }
        let entries: Vec<_> = scan(&root, Path::new(""))?
            .into_iter()
            .map(|(rel, meta)| {
                let source = sources
                    .get(&rel)
                    .cloned()
                    .unwrap_or_else(|| root.join(&rel));
                (rel, meta, source)
            })
            .collect();
        debug_assert!(entries.is_sorted_by(|a, b| a.0 < b.0));
        Ok(Snapshot::new(
            StepRoot::Dir(root),
            scratch.to_path_buf(),
            Some(Baseline { entries, owners }),
        ))
    }

    fn diff(&self, snapshot: &Snapshot) -> Result<ChangeSet, SnapshotError> {
        let (StepRoot::Dir(root), Some(baseline)) = (&snapshot.root, &snapshot.baseline) else {
            return Err(SnapshotError::WrongSnapshot {
                expected: "copy",
                scratch: snapshot.scratch.clone(),
            });
        };
        let mut set = diff_tree(root, baseline)?;
        if let Some(before) = &baseline.owners {
            let after = Owners::load(root)
                .map_err(SnapshotError::io("read", &fakeroot::table_path(root)))?;
            owner_changes(root, before, &after, &mut set)?;
        }
        Ok(set)
    }
}

/// The `chown` calls of a step under proot carried out on disk, where no owner table is
/// kept and this process may chown (root): each on the inode the call named, if the
/// path still holds it.
fn chown_on_disk(root: &Path, calls: &[crate::fakeroot::OwnerCall]) -> Result<(), SnapshotError> {
    for call in calls {
        let path = root.join(&call.rel);
        let Some(now) = Meta::lstat(&path)? else {
            continue;
        };
        // Another inode there now (the file was removed, its number reused): not its.
        if now.ino != call.inode.1 || now.btime != call.born {
            continue;
        }
        std::os::unix::fs::lchown(&path, call.uid, call.gid)
            .map_err(SnapshotError::io("chown", &path))?;
    }
    Ok(())
}

/// Records as modified every path still in `root` whose owner or mode in the table went
/// from `before` to `after` with nothing else of it changed (`COPY --chown` over an
/// existing directory, `COPY --chmod=555` over one whose mode on disk stays 0755).
fn owner_changes(
    root: &Path,
    before: &Owners,
    after: &Owners,
    set: &mut ChangeSet,
) -> Result<(), SnapshotError> {
    let changed: Vec<PathBuf> = before
        .paths()
        .chain(after.paths())
        .filter(|rel| before.entry(rel) != after.entry(rel) && set.get(rel).is_none())
        .map(Path::to_path_buf)
        .collect();
    for rel in changed {
        if Meta::lstat(&root.join(&rel))?.is_some() {
            set.record(rel, ChangeKind::Modified)?;
        }
    }
    Ok(())
}

fn diff_tree(root: &Path, baseline: &Baseline) -> Result<ChangeSet, SnapshotError> {
    let current = scan(root, Path::new(""))?;
    debug_assert!(current.is_sorted_by(|a, b| a.0 < b.0));
    let mut set = ChangeSet::new();
    // Directories whose lower contents no longer show through (new, re-created, or a
    // file replaced by one): everything under them is added.
    let mut fresh: Option<&Path> = None;
    let mut to_compare = Vec::new();
    // Both lists are in path order: one merge pairs each path with its baseline entry.
    let mut old = baseline.entries.iter().peekable();
    for (rel, meta) in &current {
        while let Some((gone, _, _)) = old.next_if(|(p, _, _)| p < rel) {
            record_deletion(gone, &current, baseline, &mut set)?;
        }
        let before = old.next_if(|(p, _, _)| p == rel);
        if fresh.is_some_and(|f| rel.starts_with(f)) {
            set.record(rel.clone(), ChangeKind::Added)?;
            continue;
        }
        let Some((_, old, source)) = before else {
            set.record(rel.clone(), ChangeKind::Added)?;
            if meta.is_dir() {
                fresh = Some(rel);
            }
            continue;
        };
        if meta.kind != old.kind {
            set.record(rel.clone(), ChangeKind::Modified)?;
            if meta.is_dir() {
                fresh = Some(rel);
            }
        } else if meta.is_dir() && !meta.same_inode(old) {
            set.record(rel.clone(), ChangeKind::Modified)?;
            set.mark_opaque(rel.clone())?;
            fresh = Some(rel);
        } else if meta.same_inode(old) && meta.ctime == old.ctime {
            // Nothing can change an inode's data or attributes without moving its ctime.
        } else if (meta.is_dir() && !meta.same_dir_attrs(old))
            || (!meta.is_dir() && !meta.same_attrs(old))
        {
            set.record(rel.clone(), ChangeKind::Modified)?;
        } else {
            to_compare.push((rel, meta.kind, source));
        }
    }
    for (gone, _, _) in old {
        record_deletion(gone, &current, baseline, &mut set)?;
    }
    let modified: Vec<Result<Option<&PathBuf>, SnapshotError>> = to_compare
        .into_par_iter()
        .map(|(rel, kind, source)| {
            let path = root.join(rel);
            let same = match kind {
                EntryType::File => same_content(&path, source)?,
                EntryType::Symlink => fs::read_link(&path).ok() == fs::read_link(source).ok(),
                _ => true,
            } && layer_xattrs(&path)? == layer_xattrs(source)?;
            Ok((!same).then_some(rel))
        })
        .collect();
    for rel in modified {
        if let Some(rel) = rel? {
            set.record(rel.clone(), ChangeKind::Modified)?;
        }
    }
    Ok(set)
}

/// Records `rel`, gone since the baseline, if it is topmost: not under a directory that
/// is gone, replaced by a non-directory, or opaque. `current` is in path order and `set`
/// already holds what the merge found up to `rel` (its parent's opacity included).
fn record_deletion(
    rel: &Path,
    current: &[(PathBuf, Meta)],
    baseline: &Baseline,
    set: &mut ChangeSet,
) -> Result<(), SnapshotError> {
    let parent_ok = match rel.parent() {
        None => true,
        Some(p) if p.as_os_str().is_empty() => true,
        Some(p) => {
            current
                .binary_search_by(|(c, _)| c.as_path().cmp(p))
                .is_ok_and(|i| current[i].1.is_dir())
                && !set.is_opaque(p)
                && baseline.get(p).is_some_and(Meta::is_dir)
        }
    };
    if parent_ok {
        set.record(rel.to_path_buf(), ChangeKind::Deleted)?;
    }
    Ok(())
}

/// Every entry under `root/rel`, with its metadata, read in parallel; in path order (a
/// directory's entries sorted by name, each directory followed by its contents), which
/// the diff's merge relies on.
fn scan(root: &Path, rel: &Path) -> Result<Vec<(PathBuf, Meta)>, SnapshotError> {
    let entries = read_dir_sorted(&root.join(rel))?;
    // Each entry with what lies below it (nothing for a non-directory: no allocation).
    type Found = (PathBuf, Meta, Vec<(PathBuf, Meta)>);
    let parts: Vec<Result<Option<Found>, SnapshotError>> = entries
        .into_par_iter()
        .map(|(name, path)| {
            let Some(meta) = Meta::lstat(&path)? else {
                return Ok(None);
            };
            let rel = rel.join(name);
            let below = if meta.is_dir() {
                scan(root, &rel)?
            } else {
                Vec::new()
            };
            Ok(Some((rel, meta, below)))
        })
        .collect();
    let mut out = Vec::with_capacity(parts.len());
    for part in parts {
        if let Some((rel, meta, below)) = part? {
            out.push((rel, meta));
            out.extend(below);
        }
    }
    Ok(out)
}

/// Copies `src` (not followed if it is a link: a directory with all it holds, or one
/// file, link or node) to `dst`, which must not exist, with owners, modes, xattrs and
/// times: the chroot isolation's bind mounts, which it cannot mount.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> Result<(), SnapshotError> {
    let Some(meta) = Meta::lstat(src)? else {
        return Err(SnapshotError::io("read", src)(
            std::io::Error::from_raw_os_error(libc::ENOENT),
        ));
    };
    // Where owners cannot be given (crate::fakeroot), the copy is the build user's: a
    // throw-away table takes the owners instead.
    let chown = !fakeroot::active();
    let mut discarded = Owners::default();
    if meta.is_dir() {
        fs::create_dir(dst).map_err(SnapshotError::io("create directory", dst))?;
        Merge {
            layer: src,
            root: dst,
            sources: &mut HashMap::new(),
            links: &mut HashMap::new(),
            owners: (!chown).then(|| (Owners::default(), &mut discarded)),
        }
        .dir(Path::new(""))?;
    } else {
        create_like(src, dst, &meta)?;
    }
    copy_attrs(src, dst, &meta, chown)
}

/// One layer directory being merged onto the copy.
struct Merge<'a> {
    layer: &'a Path,
    root: &'a Path,
    sources: &'a mut HashMap<PathBuf, PathBuf>,
    links: &'a mut HashMap<(u64, u64), PathBuf>,
    /// Unprivileged: the layer's owner table and the root's (see [`crate::fakeroot`]).
    owners: Option<(Owners, &'a mut Owners)>,
}

impl Merge<'_> {
    /// Applies the layer's directory `rel` (overlayfs whiteouts) onto the merged copy.
    fn dir(&mut self, rel: &Path) -> Result<(), SnapshotError> {
        for (name, src) in read_dir_sorted(&self.layer.join(rel))? {
            let rel = rel.join(name);
            let dst = self.root.join(&rel);
            let Some(meta) = Meta::lstat(&src)? else {
                continue;
            };
            let existing = Meta::lstat(&dst)?;
            let keeps_dir =
                meta.is_dir() && existing.as_ref().is_some_and(Meta::is_dir) && !is_opaque(&src)?;
            if let Some((layer, root)) = &mut self.owners {
                if !keeps_dir {
                    root.remove_tree(&rel);
                }
                match layer.entry(&rel) {
                    _ if meta.is_whiteout() => {}
                    // A pinned entry stands for none here.
                    Some(entry) => root.set_entry(&rel, entry.unpinned()),
                    // A directory the layer holds only as the parent of what it changed
                    // keeps the owner and mode the layers below give it. (One the layer
                    // holds itself, root's with its mode on disk over a directory the
                    // layers below give another, is pinned in the layer's table.)
                    None if keeps_dir => {}
                    None => root.forget(&rel),
                }
            }
            let chown = self.owners.is_none();
            if meta.is_whiteout() {
                remove(&dst, existing.as_ref())?;
                continue;
            }
            if meta.is_dir() {
                if !keeps_dir {
                    remove(&dst, existing.as_ref())?;
                    fs::create_dir(&dst).map_err(SnapshotError::io("create directory", &dst))?;
                }
                self.dir(&rel)?;
                copy_attrs(&src, &dst, &meta, chown)?;
            } else {
                remove(&dst, existing.as_ref())?;
                let src_meta =
                    fs::symlink_metadata(&src).map_err(SnapshotError::io("stat", &src))?;
                let key = (src_meta.dev(), src_meta.ino());
                if meta.nlink > 1 {
                    if let Some(first) = self.links.get(&key) {
                        fs::hard_link(first, &dst).map_err(SnapshotError::io("link", &dst))?;
                        self.sources.insert(rel, src);
                        continue;
                    }
                }
                create_like(&src, &dst, &meta)?;
                copy_attrs(&src, &dst, &meta, chown)?;
                if meta.nlink > 1 {
                    self.links.insert(key, dst);
                }
            }
            self.sources.insert(rel, src);
        }
        Ok(())
    }
}

fn remove(dst: &Path, existing: Option<&Meta>) -> Result<(), SnapshotError> {
    match existing {
        None => Ok(()),
        Some(m) if m.is_dir() => {
            fs::remove_dir_all(dst).map_err(SnapshotError::io("remove directory", dst))
        }
        Some(_) => fs::remove_file(dst).map_err(SnapshotError::io("remove", dst)),
    }
}

/// Creates at `dst` an entry of the same type and content as `src`.
fn create_like(src: &Path, dst: &Path, meta: &Meta) -> Result<(), SnapshotError> {
    let file_type = match meta.kind {
        EntryType::File => {
            fs::copy(src, dst).map_err(SnapshotError::io("copy file to", dst))?;
            return Ok(());
        }
        EntryType::Symlink => {
            let target = fs::read_link(src).map_err(SnapshotError::io("read link", src))?;
            std::os::unix::fs::symlink(target, dst)
                .map_err(SnapshotError::io("create symlink", dst))?;
            return Ok(());
        }
        EntryType::Dir => {
            return fs::create_dir(dst).map_err(SnapshotError::io("create directory", dst));
        }
        EntryType::Fifo => FileType::Fifo,
        EntryType::Socket => FileType::Socket,
        EntryType::CharDev => FileType::CharacterDevice,
        EntryType::BlockDev => FileType::BlockDevice,
    };
    rustix::fs::mknodat(
        CWD,
        dst,
        file_type,
        Mode::from_raw_mode(meta.mode),
        meta.rdev,
    )
    .map_err(|e| SnapshotError::io("create node", dst)(e.into()))
}

/// Gives `dst` the mode, xattrs and modification time of `src`, and its owner when
/// `chown` (not when owners are kept in a table, see [`crate::fakeroot`]).
fn copy_attrs(src: &Path, dst: &Path, meta: &Meta, chown: bool) -> Result<(), SnapshotError> {
    if chown {
        std::os::unix::fs::lchown(dst, Some(meta.uid), Some(meta.gid))
            .map_err(SnapshotError::io("change owner of", dst))?;
    }
    if meta.kind != EntryType::Symlink {
        rustix::fs::chmod(dst, Mode::from_raw_mode(meta.mode))
            .map_err(|e| SnapshotError::io("change mode of", dst)(e.into()))?;
    }
    for (name, value) in layer_xattrs(src)? {
        xattr::set(dst, &name, &value).map_err(SnapshotError::io("set xattr on", dst))?;
    }
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: meta.mtime.0,
            tv_nsec: meta.mtime.1 as _,
        },
        last_modification: Timespec {
            tv_sec: meta.mtime.0,
            tv_nsec: meta.mtime.1 as _,
        },
    };
    rustix::fs::utimensat(CWD, dst, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| SnapshotError::io("set times of", dst)(e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_owner_changed_only_in_the_table_is_a_modification() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("e/s")).unwrap();
        fs::write(root.path().join("e/f"), "f").unwrap();
        let mut before = Owners::default();
        before.set(Path::new("e/f"), (7, 7));
        before.set(Path::new("gone"), (9, 9));
        let mut after = before.clone();
        after.set(Path::new("e/s"), (5, 5));
        after.set(Path::new("e/f"), (0, 0));
        after.remove_tree(Path::new("gone"));
        let mut set = ChangeSet::new();
        owner_changes(root.path(), &before, &after, &mut set).unwrap();
        assert_eq!(changes(&set), ["Modified e/f", "Modified e/s"]);
    }

    fn changes(set: &ChangeSet) -> Vec<String> {
        set.iter()
            .map(|c| format!("{:?} {}", c.kind, c.path.display()))
            .collect()
    }

    // The diff pairs the scan with the baseline by merging two path-ordered lists: paths
    // gone before, between and after the ones still there must all be found, and "a/x"
    // sorts before "a.b" component-wise but after it byte-wise.
    #[test]
    fn the_merge_finds_deletions_anywhere_in_path_order() {
        let lower = tempfile::tempdir().unwrap();
        for dir in ["a", "m", "z/deep"] {
            fs::create_dir_all(lower.path().join(dir)).unwrap();
        }
        for file in ["0", "a/x", "a.b", "m/k", "z/deep/y"] {
            fs::write(lower.path().join(file), b"1").unwrap();
        }
        let scratch = tempfile::tempdir().unwrap();
        let copy = CopySnapshotter::new();
        let snapshot = copy
            .prepare(&[lower.path().to_path_buf()], scratch.path())
            .unwrap();
        let root = snapshot.source_tree().to_path_buf();
        fs::remove_file(root.join("0")).unwrap();
        fs::remove_file(root.join("a/x")).unwrap();
        fs::write(root.join("a/n"), b"2").unwrap();
        fs::remove_dir_all(root.join("z")).unwrap();
        // Directory mtimes moved with the entries; put them back so that only the
        // entries themselves show up.
        for dir in ["", "a"] {
            let before = fs::metadata(lower.path().join(dir)).unwrap();
            let times = Timestamps {
                last_access: Timespec {
                    tv_sec: before.mtime(),
                    tv_nsec: before.mtime_nsec() as _,
                },
                last_modification: Timespec {
                    tv_sec: before.mtime(),
                    tv_nsec: before.mtime_nsec() as _,
                },
            };
            rustix::fs::utimensat(CWD, root.join(dir), &times, AtFlags::empty()).unwrap();
        }
        let set = copy.diff(&snapshot).unwrap();
        assert_eq!(
            changes(&set),
            ["Deleted 0", "Added a/n", "Deleted a/x", "Deleted z"]
        );
    }
}
