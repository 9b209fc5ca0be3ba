//! Who may use a store, and how it deletes.
//!
//! A store holds every image's files (setuid binaries among them), cache mounts and
//! context hashes, and root deletes inside it; so it belongs to the account that uses
//! it and nobody else may enter it. Opening a store checks (like git's
//! `safe.directory`) that its root and its top-level directories are real directories
//! owned by the caller, and takes their modes back to 0700. Every deletion under the
//! store walks from a descriptor of the root with `O_NOFOLLOW | O_DIRECTORY`, so a
//! symbolic link planted at any depth is removed, never followed.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::{StoreError, io_err};

/// The mode of the store root and of its top-level directories.
pub(super) const STORE_MODE: u32 = 0o700;

/// Directories of the store, created 0700 (and checked) when it is opened, so that the
/// modules writing in them never create them with looser modes.
pub(crate) const STORE_DIRS: &[&str] = &[
    "blobs",
    "blobs/sha256",
    "tmp",
    "layers",
    "layerdb",
    "cache",
    "cache-mounts",
    "archive-loads",
    "contexthash",
];

/// Why a store is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UnsafeStore {
    /// A directory of the store belongs to another account.
    #[error(
        "refusing store directory {path}: it belongs to uid {owner}, not to uid {me} running \
         rbuild (another account could plant files that rbuild would run or delete as uid \
         {me}); use a store of your own (--root or RBUILD_ROOT), or `chown -R {me} {path}` \
         if it is yours"
    )]
    Foreign {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The caller.
        me: u32,
    },
    /// A directory of the store is a symbolic link or not a directory.
    #[error(
        "refusing store directory {path}: it is {what}, not a real directory (rbuild would \
         follow it out of the store); remove it, or use another store"
    )]
    NotADirectory {
        /// The entry.
        path: PathBuf,
        /// What it is.
        what: &'static str,
    },
    /// The store root is a symbolic link another account owns.
    #[error(
        "refusing store root {path}: it is a symbolic link owned by uid {owner} (neither uid \
         {me} running rbuild nor root); point --root at the real directory"
    )]
    ForeignLink {
        /// The link.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The caller.
        me: u32,
    },
}

fn me() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Creates (0700) or checks the store root at `root`: returns its canonical path and a
/// descriptor of it, after checking it and its top-level directories.
pub(super) fn open_root(root: &Path) -> Result<(PathBuf, OwnedFd), StoreError> {
    let me = me();
    match fs::symlink_metadata(root) {
        Ok(meta) if meta.file_type().is_symlink() => {
            if meta.uid() != me && meta.uid() != 0 {
                return Err(UnsafeStore::ForeignLink {
                    path: root.to_path_buf(),
                    owner: meta.uid(),
                    me,
                }
                .into());
            }
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent).map_err(io_err("create directory", parent))?;
            }
            match fs::DirBuilder::new().mode(STORE_MODE).create(root) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    return Err(io_err("create directory", root)(e));
                }
                _ => {}
            }
        }
        Err(e) => return Err(io_err("inspect", root)(e)),
    }
    let canonical = fs::canonicalize(root).map_err(io_err("resolve", root))?;
    let fd = rustix::fs::open(
        &canonical,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| refusal_or_io(&canonical, e))?;
    check_dir(&fd, &canonical)?;
    for dir in STORE_DIRS {
        if let Some(sub) = open_dir_at(fd.as_fd(), &canonical, Path::new(dir), true)? {
            check_dir(&sub, &canonical.join(dir))?;
        }
    }
    Ok((canonical, fd))
}

/// Checks that `fd` is owned by the caller and takes its mode back to 0700.
fn check_dir(fd: &OwnedFd, path: &Path) -> Result<(), StoreError> {
    let stat = rustix::fs::fstat(fd).map_err(|e| io_err("inspect", path)(e.into()))?;
    let me = me();
    if stat.st_uid != me {
        return Err(UnsafeStore::Foreign {
            path: path.to_path_buf(),
            owner: stat.st_uid,
            me,
        }
        .into());
    }
    if stat.st_mode & 0o077 != 0 {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(STORE_MODE))
            .map_err(|e| io_err("restrict the mode of", path)(e.into()))?;
    }
    Ok(())
}

fn refusal_or_io(path: &Path, e: rustix::io::Errno) -> StoreError {
    if e == rustix::io::Errno::LOOP || e == rustix::io::Errno::NOTDIR {
        let what = match fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => "a symbolic link",
            _ => "not a directory",
        };
        UnsafeStore::NotADirectory {
            path: path.to_path_buf(),
            what,
        }
        .into()
    } else {
        io_err("open directory", path)(e.into())
    }
}

/// Opens directory `rel` (relative, normal components only) beneath `dir`, never
/// following a symbolic link; `None` if it does not exist (unless `create`, which makes
/// each missing component 0700). `shown` is `dir`'s path, for messages.
pub(super) fn open_dir_at(
    dir: BorrowedFd<'_>,
    shown: &Path,
    rel: &Path,
    create: bool,
) -> Result<Option<OwnedFd>, StoreError> {
    let mut current: Option<OwnedFd> = None;
    let mut path = shown.to_path_buf();
    for component in rel.components() {
        let Component::Normal(name) = component else {
            return Err(io_err("open directory", &shown.join(rel))(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a plain relative path",
            )));
        };
        path.push(name);
        let parent = current.as_ref().map_or(dir, AsFd::as_fd);
        if create {
            match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(STORE_MODE)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(io_err("create directory", &path)(e.into())),
            }
        }
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(parent, name, flags, Mode::empty()) {
            Ok(fd) => current = Some(fd),
            Err(rustix::io::Errno::NOENT) => return Ok(None),
            Err(e) => return Err(refusal_or_io(&path, e)),
        }
    }
    Ok(current)
}

/// `/proc/self/fd/<dir>/<name>`: `name` in the directory `dir` is, whatever path led
/// there (std's `remove_dir_all` then never follows links inside the tree).
fn proc_path(dir: BorrowedFd<'_>, name: &OsStr) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    p.push(name);
    p
}

/// Removes entry `name` of directory `dir` and everything under it, following no
/// symbolic link; `false` if it did not exist. `shown` is its path, for messages.
pub(super) fn remove_at(dir: BorrowedFd<'_>, name: &OsStr, shown: &Path) -> io::Result<bool> {
    let stat = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(rustix::io::Errno::NOENT) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    let removed = if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
        // overlayfs leaves work directories without permissions: open them first.
        if let Ok(sub) = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            let _ = rustix::fs::fchmod(&sub, Mode::from_raw_mode(STORE_MODE));
        }
        match fs::remove_dir_all(proc_path(dir, name)) {
            // Deeper directories without permissions (overlayfs's work/incompat/volatile
            // is 000, and a rootless step may chmod 000 its own) stop an unprivileged
            // owner: open them up and try once more.
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                open_up(dir, name)?;
                fs::remove_dir_all(proc_path(dir, name))
            }
            other => other,
        }
    } else {
        rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(io::Error::from)
    };
    match removed {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("{}: {e}", shown.display()),
        )),
    }
}

/// Gives every directory of the tree at `name` in `dir` (links never followed) its
/// owner's full permissions, so that the owner can remove it without privileges. The
/// walk keeps one descriptor per level in a stack of its own, no recursion.
fn open_up(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    // Held by an O_PATH descriptor first and changed through it, so a directory
    // swapped for a link in between is never followed.
    let open = |parent: BorrowedFd<'_>, name: &OsStr| -> io::Result<OwnedFd> {
        let held = rustix::fs::openat(
            parent,
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let magic = format!("/proc/self/fd/{}", held.as_raw_fd());
        rustix::fs::chmod(magic.as_str(), Mode::from_raw_mode(STORE_MODE))?;
        Ok(rustix::fs::openat(&held, ".", flags, Mode::empty())?)
    };
    let mut stack = vec![open(dir, name)?];
    let mut pending: Vec<Vec<std::ffi::OsString>> = Vec::new();
    pending.push(subdirs(stack[0].as_fd())?);
    while let Some(names) = pending.last_mut() {
        let Some(child) = names.pop() else {
            pending.pop();
            stack.pop();
            continue;
        };
        let Some(parent) = stack.last() else {
            break;
        };
        let Ok(sub) = open(parent.as_fd(), &child) else {
            continue;
        };
        pending.push(subdirs(sub.as_fd())?);
        stack.push(sub);
    }
    Ok(())
}

/// The names of the directories in `dir` (symbolic links are not directories here).
fn subdirs(dir: BorrowedFd<'_>) -> io::Result<Vec<std::ffi::OsString>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            out.push(entry.file_name());
        }
    }
    Ok(out)
}

/// The names in directory `dir`, without `.` and `..`.
pub(super) fn entries(
    dir: BorrowedFd<'_>,
    shown: &Path,
) -> Result<Vec<std::ffi::OsString>, StoreError> {
    let listing = fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))
        .map_err(io_err("list", shown))?;
    let mut out = Vec::new();
    for entry in listing {
        out.push(entry.map_err(io_err("list", shown))?.file_name());
    }
    Ok(out)
}

impl super::ContentStore {
    /// Removes `path` (a file or a whole tree, which must lie under the store root)
    /// walking from the root with `O_NOFOLLOW`: a symbolic link at any depth is removed,
    /// never followed. `false` if it did not exist.
    pub fn remove_tree(&self, path: &Path) -> Result<bool, StoreError> {
        let rel = path.strip_prefix(self.root()).map_err(|_| {
            io_err("remove", path)(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("not under the store root {}", self.root().display()),
            ))
        })?;
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            return Err(io_err("remove", path)(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the store root itself",
            )));
        };
        let root = self.root_fd();
        let dir = if parent.as_os_str().is_empty() {
            None
        } else {
            match open_dir_at(root, self.root(), parent, false)? {
                Some(dir) => Some(dir),
                None => return Ok(false),
            }
        };
        let dir = dir.as_ref().map_or(root, AsFd::as_fd);
        remove_at(dir, name, path).map_err(io_err("remove", path))
    }

    /// Opens (creating it 0600) the lock file at `path` under the store root, walking
    /// from the root without following a symbolic link at any depth: a link planted
    /// as a lock file makes rbuild neither create nor open a file elsewhere.
    pub(crate) fn open_lock_file(&self, path: &Path) -> Result<fs::File, StoreError> {
        let bad = |why: &str| {
            io_err("open lock", path)(io::Error::new(io::ErrorKind::InvalidInput, why.to_owned()))
        };
        let rel = path
            .strip_prefix(self.root())
            .map_err(|_| bad("not under the store root"))?;
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            return Err(bad("not a file of the store"));
        };
        let root = self.root_fd();
        let dir = if parent.as_os_str().is_empty() {
            None
        } else {
            Some(
                open_dir_at(root, self.root(), parent, false)?
                    .ok_or_else(|| bad("its directory does not exist"))?,
            )
        };
        let dir = dir.as_ref().map_or(root, AsFd::as_fd);
        rustix::fs::openat(
            dir,
            name,
            OFlags::CREATE | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map(fs::File::from)
        .map_err(|e| {
            if e == rustix::io::Errno::LOOP {
                bad("it is a symbolic link; remove it")
            } else {
                io_err("open lock", path)(e.into())
            }
        })
    }

    /// Removes every entry of directory `rel` (under the root) whose name `pick` accepts,
    /// following no symbolic link; returns how many went.
    pub(crate) fn remove_entries(
        &self,
        rel: &Path,
        pick: impl Fn(&str) -> bool,
    ) -> Result<usize, StoreError> {
        remove_entries(self.root_fd(), self.root(), rel, pick)
    }
}

/// See [`ContentStore::remove_entries`](super::ContentStore::remove_entries).
pub(super) fn remove_entries(
    root: BorrowedFd<'_>,
    shown: &Path,
    rel: &Path,
    pick: impl Fn(&str) -> bool,
) -> Result<usize, StoreError> {
    let path = shown.join(rel);
    let Some(dir) = open_dir_at(root, shown, rel, false)? else {
        return Ok(0);
    };
    let mut count = 0;
    for name in entries(dir.as_fd(), &path)? {
        if !pick(&name.to_string_lossy()) {
            continue;
        }
        let entry = path.join(&name);
        if remove_at(dir.as_fd(), &name, &entry).map_err(io_err("remove", &entry))? {
            count += 1;
        }
    }
    Ok(count)
}
