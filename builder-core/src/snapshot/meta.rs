//! The metadata a diff compares, and the overlayfs conventions it must recognise.

use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::SnapshotError;
use crate::layer::{OVERLAY_OPAQUE_USER_XATTR, OVERLAY_OPAQUE_XATTR, is_overlay_xattr};

/// The kind of a filesystem entry, as far as a layer cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryType {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

/// What a diff compares of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    pub kind: EntryType,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
    pub ino: u64,
    /// Birth time where the filesystem records it: with `ino`, tells a re-created entry
    /// from the original even when the inode number is reused.
    pub btime: Option<std::time::SystemTime>,
    pub nlink: u64,
    pub rdev: u64,
}

impl Meta {
    pub fn of(m: &fs::Metadata) -> Meta {
        let ft = m.file_type();
        let kind = if ft.is_dir() {
            EntryType::Dir
        } else if ft.is_symlink() {
            EntryType::Symlink
        } else if ft.is_fifo() {
            EntryType::Fifo
        } else if ft.is_socket() {
            EntryType::Socket
        } else if ft.is_char_device() {
            EntryType::CharDev
        } else if ft.is_block_device() {
            EntryType::BlockDev
        } else {
            EntryType::File
        };
        Meta {
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            ino: m.ino(),
            btime: m.created().ok(),
            nlink: m.nlink(),
            rdev: m.rdev(),
        }
    }

    pub fn lstat(path: &Path) -> Result<Option<Meta>, SnapshotError> {
        match fs::symlink_metadata(path) {
            Ok(m) => Ok(Some(Meta::of(&m))),
            Err(e) if is_absent(&e) => Ok(None),
            Err(e) => Err(SnapshotError::io("stat", path)(e)),
        }
    }

    /// An overlayfs whiteout: a character device with device number 0:0.
    pub fn is_whiteout(&self) -> bool {
        self.kind == EntryType::CharDev && self.rdev == 0
    }

    /// Whether `self` is the same inode as `other`, not a new one with a reused number.
    pub fn same_inode(&self, other: &Meta) -> bool {
        self.ino == other.ino && self.btime == other.btime
    }

    pub fn is_dir(&self) -> bool {
        self.kind == EntryType::Dir
    }

    /// Whether what a directory entry records (not its contents) is the same.
    pub fn same_dir_attrs(&self, other: &Meta) -> bool {
        self.kind == other.kind
            && self.mode == other.mode
            && self.uid == other.uid
            && self.gid == other.gid
            && self.mtime == other.mtime
    }

    /// Whether a non-directory has the same recorded attributes (content aside).
    pub fn same_attrs(&self, other: &Meta) -> bool {
        self.same_dir_attrs(other)
            && self.size == other.size
            && self.nlink == other.nlink
            && self.rdev == other.rdev
    }
}

pub(crate) fn is_absent(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR))
}

/// The xattrs of `path` a layer would carry, sorted, overlay bookkeeping left out.
pub(crate) fn layer_xattrs(path: &Path) -> Result<Vec<(OsString, Vec<u8>)>, SnapshotError> {
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(SnapshotError::io("list xattrs of", path)(e)),
    };
    let mut out = Vec::new();
    for name in names {
        if !is_overlay_xattr(name.as_bytes()) {
            let value = xattr::get(path, &name)
                .map_err(SnapshotError::io("read xattr of", path))?
                .unwrap_or_default();
            out.push((name, value));
        }
    }
    out.sort();
    Ok(out)
}

/// Whether directory `path` carries an overlay opaque marker (either namespace).
pub(crate) fn is_opaque(path: &Path) -> Result<bool, SnapshotError> {
    for name in [OVERLAY_OPAQUE_XATTR, OVERLAY_OPAQUE_USER_XATTR] {
        match xattr::get(path, name) {
            Ok(Some(v)) if v == b"y" => return Ok(true),
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {}
            Err(e) => return Err(SnapshotError::io("read opaque xattr of", path)(e)),
        }
    }
    Ok(false)
}

/// The entries of directory `dir`, sorted by name.
pub(crate) fn read_dir_sorted(dir: &Path) -> Result<Vec<(OsString, PathBuf)>, SnapshotError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(SnapshotError::io("read directory", dir))? {
        let entry = entry.map_err(SnapshotError::io("read directory", dir))?;
        out.push((entry.file_name(), entry.path()));
    }
    out.sort();
    Ok(out)
}

/// Whether two regular files have the same bytes.
pub(crate) fn same_content(a: &Path, b: &Path) -> Result<bool, SnapshotError> {
    use std::io::Read;
    let mut fa = fs::File::open(a).map_err(SnapshotError::io("open", a))?;
    let mut fb = fs::File::open(b).map_err(SnapshotError::io("open", b))?;
    let mut ba = vec![0u8; 64 * 1024];
    let mut bb = vec![0u8; 64 * 1024];
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(SnapshotError::io("read", a))?;
        let nb = read_full(&mut fb, &mut bb).map_err(SnapshotError::io("read", b))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }

    fn read_full(f: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        Ok(n)
    }
}
