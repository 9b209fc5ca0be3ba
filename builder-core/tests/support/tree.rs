//! A tree read entry by entry, for comparing two directories as a container would see
//! them: type, mode, owner, size, content digest, symlink target, device number, xattrs
//! and hardlink groups. Times and overlayfs bookkeeping are left out unless the read
//! asks for them ([`Keep`]): the layer and store tests keep both, the exec round trips
//! neither.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// Sandbox mount points that must never be left behind in a step's tree.
pub const TRANSIENT_MOUNT_POINTS: [&str; 6] = [
    "proc",
    "dev",
    "sys",
    "etc/hosts",
    "etc/hostname",
    "etc/resolv.conf",
];

/// One entry of a tree, without times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// "file", "dir", "symlink", "fifo", "char", "block" or "socket".
    pub kind: &'static str,
    /// Permission bits including setuid, setgid and sticky.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Size of regular files only (directory sizes depend on the filesystem).
    pub size: Option<u64>,
    /// sha256 of a regular file's content.
    pub digest: Option<String>,
    pub target: Option<PathBuf>,
    /// Device number of character and block devices.
    pub rdev: Option<u64>,
    /// Extended attributes (overlayfs bookkeeping only with [`Keep::overlay_xattrs`]).
    pub xattrs: BTreeMap<OsString, Vec<u8>>,
    /// Seconds, of non-directories only (a directory's mtime moves as children are
    /// created), with [`Keep::times`].
    pub mtime: Option<i64>,
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:04o} {}:{}",
            self.kind, self.mode, self.uid, self.gid
        )?;
        if let Some(size) = self.size {
            write!(f, " size={size}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, " sha256={}", &digest[..12])?;
        }
        if let Some(target) = &self.target {
            write!(f, " -> {}", target.display())?;
        }
        if let Some(rdev) = self.rdev {
            write!(f, " rdev={rdev}")?;
        }
        for (name, value) in &self.xattrs {
            write!(f, " {}={:?}", name.to_string_lossy(), value)?;
        }
        if let Some(mtime) = self.mtime {
            write!(f, " mtime={mtime}")?;
        }
        Ok(())
    }
}

/// A whole tree below (not including) its root directory.
#[derive(Debug, Default)]
pub struct Tree {
    pub entries: BTreeMap<PathBuf, Entry>,
    /// Paths of non-directories sharing one inode, for every inode with two or more names.
    pub link_groups: BTreeSet<Vec<PathBuf>>,
}

fn kind_of(ft: fs::FileType) -> &'static str {
    if ft.is_file() {
        "file"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else {
        "socket"
    }
}

fn sha256_file(path: &Path) -> io::Result<String> {
    let mut hasher = Sha256::new();
    io::copy(&mut fs::File::open(path)?, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// What a read keeps besides the entries' type, mode, owner, size, content, target,
/// device number, other xattrs and hardlink groups.
#[derive(Debug, Clone, Copy, Default)]
pub struct Keep {
    /// The mtimes of non-directories.
    pub times: bool,
    /// overlayfs's own xattrs (`trusted.overlay.*`, `user.overlay.*`).
    pub overlay_xattrs: bool,
}

/// Reads every entry below `root` (symlinks are not followed), without times or
/// overlayfs xattrs.
pub fn read_tree(root: &Path) -> Tree {
    read_tree_keeping(root, Keep::default())
}

/// [`read_tree`], keeping what `keep` says.
pub fn read_tree_keeping(root: &Path, keep: Keep) -> Tree {
    let mut tree = Tree::default();
    let mut inodes: BTreeMap<(u64, u64), Vec<PathBuf>> = BTreeMap::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let entry = entry.unwrap_or_else(|e| panic!("failed to walk {}: {e}", root.display()));
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap().to_path_buf();
        let meta = fs::symlink_metadata(path)
            .unwrap_or_else(|e| panic!("failed to stat {}: {e}", path.display()));
        let ft = meta.file_type();
        let kind = kind_of(ft);
        let mut xattrs = BTreeMap::new();
        for name in xattr::list(path)
            .unwrap_or_else(|e| panic!("failed to list xattrs of {}: {e}", path.display()))
        {
            if !keep.overlay_xattrs && rbuild_core::layer::is_overlay_xattr(name.as_bytes()) {
                continue;
            }
            let value = xattr::get(path, &name)
                .unwrap_or_else(|e| panic!("failed to read xattr of {}: {e}", path.display()))
                .unwrap_or_default();
            xattrs.insert(name, value);
        }
        let (size, digest) = if ft.is_file() {
            let digest = sha256_file(path)
                .unwrap_or_else(|e| panic!("failed to read {}: {e}", path.display()));
            (Some(meta.len()), Some(digest))
        } else {
            (None, None)
        };
        let target = if ft.is_symlink() {
            Some(fs::read_link(path).unwrap())
        } else {
            None
        };
        let rdev = (ft.is_char_device() || ft.is_block_device()).then(|| meta.rdev());
        if !ft.is_dir() {
            inodes
                .entry((meta.dev(), meta.ino()))
                .or_default()
                .push(rel.clone());
        }
        tree.entries.insert(
            rel,
            Entry {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                size,
                digest,
                target,
                rdev,
                xattrs,
                mtime: (keep.times && !ft.is_dir()).then(|| meta.mtime()),
            },
        );
    }
    tree.link_groups = inodes.into_values().filter(|g| g.len() > 1).collect();
    tree
}

/// Every difference between `got` and `want`, one line each; empty when they agree.
pub fn compare_trees(got: &Tree, want: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    for (path, want_entry) in &want.entries {
        match got.entries.get(path) {
            None => out.push(format!("missing {}: want {want_entry}", path.display())),
            Some(got_entry) if got_entry != want_entry => out.push(format!(
                "differs {}: got {got_entry}, want {want_entry}",
                path.display()
            )),
            Some(_) => {}
        }
    }
    for (path, got_entry) in &got.entries {
        if !want.entries.contains_key(path) {
            out.push(format!("extra {}: {got_entry}", path.display()));
        }
    }
    if got.link_groups != want.link_groups {
        out.push(format!(
            "hardlink groups differ: got {:?}, want {:?}",
            got.link_groups, want.link_groups
        ));
    }
    out
}

/// The transient mount points present in `tree` (should be none).
pub fn leftover_mount_points(tree: &Tree) -> Vec<&'static str> {
    TRANSIENT_MOUNT_POINTS
        .into_iter()
        .filter(|p| tree.entries.contains_key(Path::new(p)))
        .collect()
}
