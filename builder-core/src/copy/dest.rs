//! The destination root: every path resolved inside it as in a chroot.
//!
//! Paths are opened with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`: a symlink
//! met on the way, absolute or full of `..`, resolves against the root, never outside
//! it. The last component of what is written is then handled with `*at` calls on its
//! parent's descriptor and `O_NOFOLLOW`, so nothing written follows a link.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Mutex;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno;

use super::CopyError;
use crate::context::MAX_SYMLINK_HOPS;
use crate::fakeroot::{self, Owners};

/// The step's root filesystem, open.
pub(crate) struct DestRoot {
    fd: OwnedFd,
    path: PathBuf,
    /// When no owner can be given on disk (crate::fakeroot): the root's owner table and the build user's ids, which stand for
    /// 0:0 on disk (see [`crate::fakeroot`]).
    owners: Option<(Mutex<Owners>, (u32, u32))>,
}

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// `rel` as a path openat2 accepts: `.` for the root itself.
fn at(rel: &Path) -> &Path {
    if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    }
}

/// The parent and last component of `rel`; the root has no parent.
pub(crate) fn split(rel: &Path) -> Option<(&Path, &OsStr)> {
    Some((rel.parent().unwrap_or(Path::new("")), rel.file_name()?))
}

/// Timestamps with both times set to `mtime_ns` (nanoseconds since the epoch).
pub(crate) fn times(mtime_ns: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime_ns.div_euclid(1_000_000_000),
        tv_nsec: mtime_ns.rem_euclid(1_000_000_000) as _,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

impl DestRoot {
    pub fn open(path: &Path) -> Result<Self, CopyError> {
        let fd = rustix::fs::open(
            path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| CopyError::Dest {
            op: "open destination root",
            path: path.display().to_string(),
            source: e.into(),
        })?;
        let owners = if fakeroot::active() {
            let table = Owners::load(path).map_err(|e| CopyError::Dest {
                op: "read owner table",
                path: fakeroot::table_path(path).display().to_string(),
                source: e,
            })?;
            Some((Mutex::new(table), fakeroot::build_ids()))
        } else {
            None
        };
        Ok(Self {
            fd,
            path: path.to_path_buf(),
            owners,
        })
    }

    /// Gives the entry `name` of `dir`, the file at `rel`, the `owner` and the mode
    /// (`(mode, is_dir)`, if any) it has in the image: on disk what the build user can
    /// work with when they are kept in the table (see [`DestRoot::disk_mode`],
    /// [`DestRoot::disk_owner`]), themselves otherwise.
    pub fn give(
        &self,
        dir: &OwnedFd,
        name: &OsStr,
        rel: &Path,
        owner: (u32, u32),
        mode: Option<(u32, bool)>,
    ) -> io::Result<()> {
        let mode = mode.map(|(mode, is_dir)| self.disk_mode(rel, mode, is_dir));
        set_owner_mode(dir, name, self.disk_owner(rel, owner), mode)
    }

    /// The owner to give `rel` on disk for it to have `owner` in the image: `owner`
    /// itself, or unprivileged the build user's ids, `owner` being recorded in the
    /// root's table instead (a chown to anyone else would fail).
    pub fn disk_owner(&self, rel: &Path, owner: (u32, u32)) -> (u32, u32) {
        match &self.owners {
            None => owner,
            Some((table, build)) => {
                table
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .set(rel, owner);
                *build
            }
        }
    }

    /// The mode to give `rel` on disk for it to have `mode` in the image: `mode` itself,
    /// or when owners are kept in a table one that lets the builder fill and read the
    /// tree, `mode` being recorded in the table when it differs (crate::fakeroot).
    pub fn disk_mode(&self, rel: &Path, mode: u32, is_dir: bool) -> u32 {
        match &self.owners {
            None => mode,
            Some((table, _)) => {
                let disk = fakeroot::disk_mode(mode, is_dir);
                table
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .set_mode(rel, mode, disk);
                disk
            }
        }
    }

    /// Records that `rel` is a hard link of `first`: it has the same owner and mode.
    pub fn share_entry(&self, rel: &Path, first: &Path) {
        if let Some((table, _)) = &self.owners {
            let mut table = table
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let entry = table.entry(first).unwrap_or_default();
            table.set_entry(rel, entry);
        }
    }

    /// Writes the owner table back beside the root, when there is one.
    pub fn save_owners(&self) -> Result<(), CopyError> {
        let Some((table, _)) = &self.owners else {
            return Ok(());
        };
        table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .save(&self.path)
            .map_err(|e| CopyError::Dest {
                op: "write owner table",
                path: fakeroot::table_path(&self.path).display().to_string(),
                source: e,
            })
    }

    /// Opens directory `rel`, following symlinks inside the root.
    pub fn open_dir(&self, rel: &Path) -> io::Result<OwnedFd> {
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
        Ok(rustix::fs::openat2(
            &self.fd,
            at(rel),
            flags,
            Mode::empty(),
            RESOLVE,
        )?)
    }

    /// The status of `rel`, following symlinks inside the root; `None` if missing.
    pub fn stat(&self, rel: &Path) -> io::Result<Option<Stat>> {
        let flags = OFlags::PATH | OFlags::CLOEXEC;
        match rustix::fs::openat2(&self.fd, at(rel), flags, Mode::empty(), RESOLVE) {
            Ok(fd) => Ok(Some(rustix::fs::fstat(&fd)?)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `rel` is a directory (after symlinks inside the root).
    pub fn is_dir(&self, rel: &Path) -> io::Result<bool> {
        Ok(self
            .stat(rel)?
            .is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory))
    }

    /// Creates directory `rel` and its missing parents, each with `mode`, `owner` and
    /// the current time, as BuildKit's `MkdirAll` does for a copy's destination.
    pub fn mkdir_all(&self, rel: &Path, owner: (u32, u32), mode: u32) -> Result<(), CopyError> {
        if self.is_dir(rel).map_err(CopyError::dest("stat", rel))? {
            return Ok(());
        }
        let mut sofar = PathBuf::new();
        for comp in rel.components() {
            sofar.push(comp);
            match self.stat(&sofar).map_err(CopyError::dest("stat", &sofar))? {
                Some(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
                Some(_) => {
                    return Err(CopyError::Conflict {
                        what: "a directory".to_owned(),
                        path: format!("/{}", sofar.display()),
                        reason: "a file stands where a directory is needed",
                    });
                }
                None => {
                    let Some((parent, name)) = split(&sofar) else {
                        continue;
                    };
                    let dir = self
                        .open_dir(parent)
                        .map_err(CopyError::dest("open", parent))?;
                    let disk_mode = self.disk_mode(&sofar, mode, true);
                    make_dir(&dir, name, disk_mode, self.disk_owner(&sofar, owner))
                        .map_err(CopyError::dest("create", &sofar))?;
                }
            }
        }
        Ok(())
    }

    /// `rel` with every symlink in it resolved inside the root, the last component
    /// included, as continuity's `RootPath` (which BuildKit resolves a copy's
    /// destination with): a dangling link resolves to where its target would be.
    pub fn resolve(&self, rel: &Path) -> io::Result<PathBuf> {
        let mut out = PathBuf::new();
        let mut queue: Vec<OsString> = Vec::new();
        push_components(&mut queue, rel);
        let mut hops = 0;
        while let Some(comp) = queue.pop() {
            if comp == ".." {
                out.pop();
                continue;
            }
            let dir = match self.open_dir(&out) {
                Ok(dir) => dir,
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
                    out.push(&comp);
                    continue;
                }
                Err(e) => return Err(e),
            };
            match rustix::fs::readlinkat(&dir, comp.as_os_str(), Vec::new()) {
                Ok(target) => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(Errno::LOOP.into());
                    }
                    let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                    if target.is_absolute() {
                        out.clear();
                    }
                    push_components(&mut queue, &target);
                }
                Err(Errno::INVAL | Errno::NOENT) => out.push(&comp),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// Reads a small file of the root (`/etc/passwd`); `None` if it is missing.
    pub fn read_text(&self, rel: &Path) -> io::Result<Option<String>> {
        let flags = OFlags::RDONLY | OFlags::CLOEXEC;
        match rustix::fs::openat2(&self.fd, rel, flags, Mode::empty(), RESOLVE) {
            Ok(fd) => {
                let mut text = String::new();
                File::from(fd).read_to_string(&mut text)?;
                Ok(Some(text))
            }
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Pushes the components of `path` on a stack, the first one last; `.` and `/` drop
/// out, `..` stays.
fn push_components(queue: &mut Vec<OsString>, path: &Path) {
    let start = queue.len();
    for comp in path.components() {
        match comp {
            Component::Normal(n) => queue.push(n.to_os_string()),
            Component::ParentDir => queue.push(OsString::from("..")),
            _ => {}
        }
    }
    queue[start..].reverse();
}

/// Creates directory `name` in `dir` with exactly `mode` and `owner`.
pub(crate) fn make_dir(
    dir: &OwnedFd,
    name: &OsStr,
    mode: u32,
    owner: (u32, u32),
) -> io::Result<()> {
    rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700))?;
    set_owner_mode(dir, name, owner, Some(mode))
}

/// Sets the owner of `name` in `dir` (not following it), then its mode (after the
/// chown, which clears setuid and setgid bits).
fn set_owner_mode(
    dir: &OwnedFd,
    name: &OsStr,
    owner: (u32, u32),
    mode: Option<u32>,
) -> io::Result<()> {
    rustix::fs::chownat(
        dir,
        name,
        Some(rustix::fs::Uid::from_raw(owner.0)),
        Some(rustix::fs::Gid::from_raw(owner.1)),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    if let Some(mode) = mode {
        rustix::fs::chmodat(dir, name, Mode::from_raw_mode(mode), AtFlags::empty())?;
    }
    Ok(())
}

/// What stands at `name` in `dir`, not following it.
pub(crate) fn lstat_at(dir: &OwnedFd, name: &OsStr) -> io::Result<Option<FileType>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Sets the times of `name` in `dir`, not following it.
pub(crate) fn set_mtime(dir: &OwnedFd, name: &OsStr, mtime_ns: i64) -> io::Result<()> {
    rustix::fs::utimensat(dir, name, &times(mtime_ns), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}
