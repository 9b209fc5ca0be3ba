//! Mount points created for a step only, and removed without a trace afterwards.
//!
//! The sandbox mounts `/proc`, `/dev`, `/sys` and `/etc/{hosts,hostname,resolv.conf}`
//! over whatever the image has. When the image lacks one, an empty directory or file is
//! created as the mount point in the step's writable directory before the step (with an
//! overlay, parent directories are created in the upper directory with the lower's
//! owner and mode) and removed after it. The touched directories get their modification
//! times back, unless the step itself changed them, so the change set never shows them.
//!
//! The writable directory is the step's: after the step ran, any component of a stub's
//! path may be a link the step planted (to a host directory) or something else the step
//! put there. Every operation therefore goes through directory descriptors opened
//! beneath the writable directory without following links (`openat2` with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV`), and a stub is removed
//! only if the entry at its path is still the inode rbuild created; anything else is
//! the step's and is left alone. Files made for the step only (the chroot isolation's
//! `/dev/null` and `/etc/resolv.conf`, which it cannot mount) stand for mounts: whatever
//! but a directory is at their path after the step is removed.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;

use crate::snapshot::{LowerView, SnapshotError};

pub(super) type Mtime = (i64, i64);
/// Device and inode of an entry rbuild created.
type Ident = (u64, u64);

pub(super) const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

/// The stubs of one step.
#[derive(Debug)]
pub(crate) struct Stubs {
    writable: PathBuf,
    /// Relative paths created as mount points, in creation order, with their inodes.
    created: Vec<(PathBuf, Ident)>,
    /// Directories created in the writable dir only to hold a stub (overlay upper).
    materialized: Vec<(PathBuf, Ident)>,
    /// Touched directories and the modification time the step must see unchanged.
    dirs: BTreeMap<PathBuf, Mtime>,
    /// Files made for the step only ([`Stubs::add_device`], [`Stubs::add_file`]): after
    /// the step, whatever is at their path but a directory is removed, as if they had
    /// been mounts (what the step writes there, or puts in their place, never reaches
    /// the layer).
    step_only: Vec<PathBuf>,
    /// Directories standing for a file system of the step's own ([`Stubs::own_dir`]),
    /// with the names they held before the step.
    own_dirs: Vec<(PathBuf, Vec<OsString>)>,
}

/// What a stub is.
#[derive(Clone, Copy)]
enum Stub<'a> {
    /// An empty directory.
    Dir,
    /// An empty regular file.
    File,
    /// A character device of this number.
    Device(u64),
    /// A regular file holding these bytes, of this mode and owner.
    Data(&'a [u8], u32, (u32, u32)),
    /// A symbolic link to this target.
    Link(&'a str),
}

impl Stubs {
    pub fn new(writable: &Path) -> Self {
        Stubs {
            writable: writable.to_path_buf(),
            created: Vec::new(),
            materialized: Vec::new(),
            dirs: BTreeMap::new(),
            step_only: Vec::new(),
            own_dirs: Vec::new(),
        }
    }

    /// Makes sure `rel` exists as a directory (`want_dir`) or regular file, creating it
    /// when absent. False when it cannot serve as a mount point (wrong type, or reached
    /// through a symbolic link, which must not be followed from the host).
    pub fn ensure(
        &mut self,
        view: &LowerView,
        rel: &Path,
        want_dir: bool,
    ) -> Result<bool, SnapshotError> {
        let kind = if want_dir { Stub::Dir } else { Stub::File };
        self.ensure_kind(view, rel, kind)
    }

    /// Where the image has nothing at `rel`, creates the character device `rdev` there
    /// for the step only (the chroot isolation's `/dev/null` and kin, which it cannot
    /// mount). True when created; an entry the image has is left as it is. After the
    /// step, what is at `rel` is removed unless it is a directory, as a mount would
    /// have kept it from the layer.
    pub fn add_device(
        &mut self,
        view: &LowerView,
        rel: &Path,
        rdev: u64,
    ) -> Result<bool, SnapshotError> {
        if view.crosses_symlink(rel)? || view.lookup(rel)?.is_some() {
            return Ok(false);
        }
        self.ensure_kind(view, rel, Stub::Device(rdev))
    }

    /// Where the image has nothing at `rel`, creates a file holding `data` for the step
    /// only (the chroot isolation's `/etc/resolv.conf`, `/etc/hosts` and secrets). True when
    /// created; after the step, what is at `rel` is removed unless it is a directory:
    /// the file whatever it then holds, or what the step put in its place (`sed -i`
    /// renames a copy of it there), which a mount would have kept from the layer.
    pub fn add_file(
        &mut self,
        view: &LowerView,
        rel: &Path,
        data: &[u8],
        mode: u32,
        owner: (u32, u32),
    ) -> Result<bool, SnapshotError> {
        if view.crosses_symlink(rel)? || view.lookup(rel)?.is_some() {
            return Ok(false);
        }
        self.ensure_kind(view, rel, Stub::Data(data, mode, owner))
    }

    /// Where the image has nothing at `rel`, creates a symbolic link to `target` for the
    /// step only (`/dev/stdin` and kin under proot, which the sandbox's `/dev` has). True
    /// when created; after the step, what is at `rel` is removed unless it is a directory.
    pub fn add_link(
        &mut self,
        view: &LowerView,
        rel: &Path,
        target: &str,
    ) -> Result<bool, SnapshotError> {
        if view.crosses_symlink(rel)? || view.lookup(rel)?.is_some() {
            return Ok(false);
        }
        self.ensure_kind(view, rel, Stub::Link(target))
    }

    fn ensure_kind(
        &mut self,
        view: &LowerView,
        rel: &Path,
        kind: Stub<'_>,
    ) -> Result<bool, SnapshotError> {
        if view.crosses_symlink(rel)? {
            return Ok(false);
        }
        if let Some(entry) = view.lookup(rel)? {
            return Ok(match kind {
                Stub::Dir => entry.is_dir,
                Stub::File => entry.is_file,
                Stub::Device(_) | Stub::Data(..) | Stub::Link(_) => false,
            });
        }
        let parent = rel.parent().unwrap_or(Path::new(""));
        if !parent.as_os_str().is_empty() && !self.ensure(view, parent, true)? {
            return Ok(false);
        }
        self.materialize(view, parent)?;
        self.remember(view, parent)?;
        let root = self.open_root()?;
        let Some((dir, name)) = open_parent(&root, &self.writable, rel)? else {
            return Ok(false);
        };
        let path = self.writable.join(rel);
        let fail = |e: Errno| SnapshotError::io("create mount point", &path)(e.into());
        let ident = match kind {
            Stub::Dir => {
                rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o777)).map_err(fail)?;
                ident_at(&dir, name).map_err(fail)?
            }
            Stub::Device(rdev) => {
                rustix::fs::mknodat(
                    &dir,
                    name,
                    FileType::CharacterDevice,
                    Mode::from_raw_mode(0o666),
                    rdev,
                )
                .map_err(fail)?;
                self.step_only.push(rel.to_path_buf());
                // The umask took bits off: every step may use these.
                let ident = ident_at(&dir, name).map_err(fail)?;
                rustix::fs::chmodat(&dir, name, Mode::from_raw_mode(0o666), AtFlags::empty())
                    .map_err(fail)?;
                ident
            }
            Stub::Link(target) => {
                rustix::fs::symlinkat(target, &dir, name).map_err(fail)?;
                self.step_only.push(rel.to_path_buf());
                ident_at(&dir, name).map_err(fail)?
            }
            Stub::File | Stub::Data(..) => {
                let file = rustix::fs::openat(
                    &dir,
                    name,
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::WRONLY
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o644),
                )
                .map_err(fail)?;
                if let Stub::Data(data, mode, (uid, gid)) = kind {
                    rustix::io::write(&file, data).map_err(fail)?;
                    // Where owners cannot be given (crate::fakeroot) the file stays the
                    // build user's, which a step sees as its own.
                    if (uid, gid) != (0, 0) && !crate::fakeroot::active() {
                        rustix::fs::fchown(
                            &file,
                            Some(rustix::process::Uid::from_raw(uid)),
                            Some(rustix::process::Gid::from_raw(gid)),
                        )
                        .map_err(fail)?;
                    }
                    rustix::fs::fchmod(&file, Mode::from_raw_mode(mode)).map_err(fail)?;
                    self.step_only.push(rel.to_path_buf());
                }
                let st = rustix::fs::fstat(&file).map_err(fail)?;
                (st.st_dev, st.st_ino)
            }
        };
        self.created.push((rel.to_path_buf(), ident));
        Ok(true)
    }

    /// Makes directory `rel` of a plain directory root stand for a file system of the
    /// step's own, as a mount would (the chroot isolation's `/dev`): after the step,
    /// what it holds that it did not hold now is removed, and it gets its time back.
    /// Called before any stub is added in it (those go too). Nothing where `rel` is
    /// reached through a link.
    pub fn own_dir(&mut self, view: &LowerView, rel: &Path) -> Result<(), SnapshotError> {
        if view.crosses_symlink(rel)? {
            return Ok(());
        }
        let root = self.open_root()?;
        let Some(dir) = open_dir(&root, &self.writable, rel)? else {
            // Absent: a stub made for the step, removed with what it then holds.
            self.own_dirs.push((rel.to_path_buf(), Vec::new()));
            return Ok(());
        };
        let names = list(&dir)
            .map_err(|e| SnapshotError::io("list", &self.writable.join(rel))(e.into()))?;
        self.remember(view, rel)?;
        self.own_dirs.push((rel.to_path_buf(), names));
        Ok(())
    }

    /// Gives the touched directories back their times before the step starts.
    pub fn seal(&self) -> Result<(), SnapshotError> {
        let root = self.open_root()?;
        for (rel, mtime) in &self.dirs {
            set_mtime(&root, &self.writable, rel, *mtime)?;
        }
        Ok(())
    }

    /// Removes every stub that is still what rbuild created; restores the times of
    /// directories the step did not change.
    pub fn remove(self) -> Result<(), SnapshotError> {
        let root = self.open_root()?;
        let mut after = BTreeMap::new();
        for rel in self.dirs.keys() {
            after.insert(rel.clone(), mtime_of(&root, &self.writable, rel)?);
        }
        for (rel, before) in &self.own_dirs {
            let path = self.writable.join(rel);
            let Some(dir) = open_dir(&root, &self.writable, rel)? else {
                continue;
            };
            let fail =
                |e: Errno| SnapshotError::io("remove what the step made in", &path)(e.into());
            for name in list(&dir).map_err(fail)? {
                if !before.contains(&name) {
                    remove_tree(&dir, &name).map_err(fail)?;
                }
            }
            // What the step made is gone: the time the step saw before it is right.
            if let (Some(seen), Some(sealed)) = (after.get_mut(rel), self.dirs.get(rel)) {
                if seen.is_some() {
                    *seen = Some(*sealed);
                }
            }
        }
        for (rel, ident) in self
            .created
            .iter()
            .rev()
            .chain(self.materialized.iter().rev())
        {
            let path = self.writable.join(rel);
            // A component is now a link or something else the step made: not ours.
            let Some((dir, name)) = open_parent(&root, &self.writable, rel)? else {
                continue;
            };
            let st = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue,
                Err(e) => return Err(SnapshotError::io("stat", &path)(e.into())),
            };
            let kind = FileType::from_raw_mode(st.st_mode);
            let step_only = self.step_only.contains(rel);
            if (st.st_dev, st.st_ino) != *ident && !(step_only && kind != FileType::Directory) {
                continue;
            }
            let result = match kind {
                FileType::Directory => rustix::fs::unlinkat(&dir, name, AtFlags::REMOVEDIR),
                _ if step_only => rustix::fs::unlinkat(&dir, name, AtFlags::empty()),
                FileType::RegularFile if st.st_size == 0 => {
                    rustix::fs::unlinkat(&dir, name, AtFlags::empty())
                }
                FileType::CharacterDevice => rustix::fs::unlinkat(&dir, name, AtFlags::empty()),
                _ => Ok(()),
            };
            match result {
                // The step put something in it: it is the step's now.
                Ok(()) | Err(Errno::NOTEMPTY) | Err(Errno::NOENT) => {}
                Err(e) => return Err(SnapshotError::io("remove mount point", &path)(e.into())),
            }
        }
        for rel in self.dirs.keys() {
            let Some(seen) = after.get(rel).copied().flatten() else {
                continue;
            };
            // Unchanged by the step, `seen` is the sealed time; else it is the step's.
            set_mtime(&root, &self.writable, rel, seen)?;
        }
        Ok(())
    }

    /// Creates `dir` and its missing parents in the writable directory, copying owner
    /// and mode from the merged view.
    fn materialize(&mut self, view: &LowerView, dir: &Path) -> Result<(), SnapshotError> {
        let root = self.open_root()?;
        let mut prefix = PathBuf::new();
        for component in dir.components() {
            prefix.push(component);
            let path = self.writable.join(&prefix);
            let Some((parent_fd, name)) = open_parent(&root, &self.writable, &prefix)? else {
                return Err(SnapshotError::io("create directory", &path)(
                    Errno::LOOP.into(),
                ));
            };
            match rustix::fs::statat(&parent_fd, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(_) => continue,
                Err(Errno::NOENT) => {}
                Err(e) => return Err(SnapshotError::io("stat", &path)(e.into())),
            }
            self.remember(view, &prefix)?;
            let Some(entry) = view.lookup(&prefix)? else {
                continue;
            };
            let parent = prefix.parent().unwrap_or(Path::new(""));
            self.remember(view, parent)?;
            let path = path.as_path();
            let fail = |action| move |e: Errno| SnapshotError::io(action, path)(e.into());
            rustix::fs::mkdirat(&parent_fd, name, Mode::from_raw_mode(0o700))
                .map_err(fail("create directory"))?;
            let made = rustix::fs::openat(
                &parent_fd,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(fail("open directory"))?;
            let owner = (
                Some(rustix::process::Uid::from_raw(entry.meta.uid)),
                Some(rustix::process::Gid::from_raw(entry.meta.gid)),
            );
            match rustix::fs::fchown(&made, owner.0, owner.1) {
                // Rootless: the caller cannot give away files; the layers are its own.
                Ok(()) | Err(Errno::PERM) => {}
                Err(e) => return Err(fail("change owner of")(e)),
            }
            rustix::fs::fchmod(&made, Mode::from_raw_mode(entry.meta.mode))
                .map_err(fail("change mode of"))?;
            let st = rustix::fs::fstat(&made).map_err(fail("stat"))?;
            self.materialized
                .push((prefix.clone(), (st.st_dev, st.st_ino)));
        }
        Ok(())
    }

    /// Records the current merged-view time of directory `rel` once.
    fn remember(&mut self, view: &LowerView, rel: &Path) -> Result<(), SnapshotError> {
        if rel.as_os_str().is_empty() || self.dirs.contains_key(rel) {
            return Ok(());
        }
        if let Some(entry) = view.lookup(rel)? {
            self.dirs.insert(rel.to_path_buf(), entry.meta.mtime);
        }
        Ok(())
    }

    /// The writable directory itself (rbuild's, not the step's: no link is followed).
    fn open_root(&self) -> Result<OwnedFd, SnapshotError> {
        rustix::fs::open(
            &self.writable,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| SnapshotError::io("open", &self.writable)(e.into()))
    }
}

/// The directory holding `rel`, opened beneath `root` without following any link, and
/// the entry's name in it. None when a component is missing, is not a directory or is
/// a link (the step's doing: nothing of rbuild's is there any more).
pub(super) fn open_parent<'a>(
    root: &OwnedFd,
    writable: &Path,
    rel: &'a Path,
) -> Result<Option<(OwnedFd, &'a OsStr)>, SnapshotError> {
    let Some(name) = rel.file_name() else {
        return Ok(None);
    };
    let parent = match rel.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match rustix::fs::openat2(
        root,
        parent,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        RESOLVE,
    ) {
        Ok(fd) => Ok(Some((fd, name))),
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::XDEV) => Ok(None),
        Err(e) => Err(SnapshotError::io("open", &writable.join(parent))(e.into())),
    }
}

/// Directory `rel` opened beneath `root` for listing, without following any link; None
/// when it is missing, not a directory or reached through a link.
fn open_dir(root: &OwnedFd, writable: &Path, rel: &Path) -> Result<Option<OwnedFd>, SnapshotError> {
    match rustix::fs::openat2(
        root,
        rel,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        RESOLVE,
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::XDEV) => Ok(None),
        Err(e) => Err(SnapshotError::io("open", &writable.join(rel))(e.into())),
    }
}

/// The names in directory `dir`, but `.` and `..`.
fn list(dir: &OwnedFd) -> Result<Vec<OsString>, Errno> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(&name).to_owned());
        }
    }
    Ok(names)
}

/// Removes entry `name` of `dir` and, for a directory, all it holds, following no link.
pub(super) fn remove_tree(dir: &OwnedFd, name: &OsStr) -> Result<(), Errno> {
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
        return match with_write_access(dir, || rustix::fs::unlinkat(dir, name, AtFlags::empty())) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e),
        };
    }
    // Not into a file system a root step mounted there (it has no mount namespace of
    // its own): that and what holds it stay.
    let sub = match rustix::fs::openat2(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        RESOLVE,
    ) {
        Ok(sub) => sub,
        Err(Errno::XDEV) => return Ok(()),
        Err(e) => return Err(e),
    };
    for child in list(&sub)? {
        remove_tree(&sub, &child)?;
    }
    match with_write_access(dir, || rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)) {
        Ok(()) | Err(Errno::NOENT | Errno::NOTEMPTY) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Runs `op`, a change to the entries of directory `dir`; where that is refused for want
/// of write permission (a step under proot left the directory `chmod 555`: the build
/// user owns it but, unlike root, needs the permission), runs it again with the owner's
/// write and search bits added, and gives the directory its mode back.
pub(super) fn with_write_access<T>(
    dir: &OwnedFd,
    op: impl Fn() -> Result<T, Errno>,
) -> Result<T, Errno> {
    match op() {
        Err(Errno::ACCESS) => {}
        other => return other,
    }
    let mode = rustix::fs::fstat(dir)?.st_mode & 0o7777;
    // The descriptor may be an O_PATH one, which fchmod refuses: its /proc name reaches
    // the same directory.
    let path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(dir));
    rustix::fs::chmod(&path, Mode::from_raw_mode(mode | 0o300))?;
    let result = op();
    let _ = rustix::fs::chmod(&path, Mode::from_raw_mode(mode));
    result
}

fn ident_at(dir: &OwnedFd, name: &OsStr) -> Result<Ident, Errno> {
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok((st.st_dev, st.st_ino))
}

/// The time of directory `rel`; None when it is gone or no longer a directory.
pub(super) fn mtime_of(
    root: &OwnedFd,
    writable: &Path,
    rel: &Path,
) -> Result<Option<Mtime>, SnapshotError> {
    let Some((dir, name)) = open_parent(root, writable, rel)? else {
        return Ok(None);
    };
    match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            Ok(Some((st.st_mtime, st.st_mtime_nsec as i64)))
        }
        Ok(_) | Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(SnapshotError::io("stat", &writable.join(rel))(e.into())),
    }
}

/// Sets the times of directory `rel`, if it still is one beneath the root.
pub(super) fn set_mtime(
    root: &OwnedFd,
    writable: &Path,
    rel: &Path,
    mtime: Mtime,
) -> Result<(), SnapshotError> {
    let Some((dir, name)) = open_parent(root, writable, rel)? else {
        return Ok(());
    };
    match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
        Ok(_) | Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(SnapshotError::io("stat", &writable.join(rel))(e.into())),
    }
    let ts = Timespec {
        tv_sec: mtime.0,
        tv_nsec: mtime.1 as _,
    };
    let times = Timestamps {
        last_access: ts,
        last_modification: ts,
    };
    match rustix::fs::utimensat(&dir, name, &times, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(SnapshotError::io("set times of", &writable.join(rel))(
            e.into(),
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::snapshot::{OverlaySnapshotter, Snapshotter};

    /// The step moved the stubs' top directory away and left a link to a host
    /// directory with the same shape: removal leaves the host directory alone, and
    /// the moved stubs (the step's now) too.
    #[test]
    fn removal_does_not_follow_a_link_the_step_planted() {
        let dir = tempfile::tempdir().unwrap();
        let low = dir.path().join("low");
        std::fs::create_dir_all(&low).unwrap();
        let scratch = dir.path().join("scratch");
        std::fs::create_dir(&scratch).unwrap();
        let snapshot = OverlaySnapshotter::new().prepare(&[low], &scratch).unwrap();
        let upper = snapshot.root().writable_dir().to_path_buf();
        let mut stubs = Stubs::new(&upper);
        assert!(
            stubs
                .ensure(&snapshot.view(), Path::new("a/b/s"), true)
                .unwrap()
        );
        stubs.seal().unwrap();
        // What the step does: mv /a /a.old && ln -s VICTIM /a.
        let victim = dir.path().join("victim");
        std::fs::create_dir_all(victim.join("b/s")).unwrap();
        std::fs::rename(upper.join("a"), upper.join("a.old")).unwrap();
        std::os::unix::fs::symlink(&victim, upper.join("a")).unwrap();
        stubs.remove().unwrap();
        assert!(
            victim.join("b/s").is_dir(),
            "the host directory was removed"
        );
        assert!(upper.join("a").is_symlink());
        assert!(
            upper.join("a.old/b/s").is_dir(),
            "the step's directories were removed"
        );
    }

    /// A stub the step replaced by a directory of its own (same path, other inode)
    /// is the step's: it stays.
    #[test]
    fn removal_keeps_what_the_step_put_in_place_of_a_stub() {
        let dir = tempfile::tempdir().unwrap();
        let low = dir.path().join("low");
        std::fs::create_dir_all(&low).unwrap();
        let scratch = dir.path().join("scratch");
        std::fs::create_dir(&scratch).unwrap();
        let snapshot = OverlaySnapshotter::new().prepare(&[low], &scratch).unwrap();
        let upper = snapshot.root().writable_dir().to_path_buf();
        let mut stubs = Stubs::new(&upper);
        assert!(
            stubs
                .ensure(&snapshot.view(), Path::new("m"), true)
                .unwrap()
        );
        std::fs::create_dir(upper.join("n")).unwrap();
        std::fs::remove_dir(upper.join("m")).unwrap();
        std::fs::rename(upper.join("n"), upper.join("m")).unwrap();
        stubs.remove().unwrap();
        assert!(upper.join("m").is_dir());
    }
}
