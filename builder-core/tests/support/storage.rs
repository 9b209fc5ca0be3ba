//! Helpers shared by the storage tests: tree snapshots and preconditions.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rbuild_core::{Digest, layer::is_overlay_xattr};

/// Everything a layer must carry about one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    pub content: Option<Digest>,
    pub link: Option<PathBuf>,
    pub rdev: u64,
    /// Seconds; directories are left out (their mtimes move as children are created).
    pub mtime: Option<i64>,
    /// The first path (in walk order) sharing this inode, when it has several links.
    pub hardlink_of: Option<PathBuf>,
}

pub fn xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut names = vec![0u8; 4096];
    let n = rustix::fs::llistxattr(path, &mut names[..]).unwrap_or(0);
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let mut value = vec![0u8; 4096];
        let got = rustix::fs::lgetxattr(path, name, &mut value[..]).unwrap();
        value.truncate(got);
        out.insert(name.to_vec(), value);
    }
    out
}

/// A snapshot of the tree under `root`, by relative path; `root` itself left out.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<(u64, u64), PathBuf> = HashMap::new();
    for entry in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(root).unwrap().to_path_buf();
        let meta = fs::symlink_metadata(entry.path()).unwrap();
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else if ft.is_fifo() {
            "fifo"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else {
            "other"
        };
        let hardlink_of = (ft.is_file() && meta.nlink() > 1).then(|| {
            inodes
                .entry((meta.dev(), meta.ino()))
                .or_insert_with(|| rel.clone())
                .clone()
        });
        out.insert(
            rel,
            Node {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                xattrs: xattrs(entry.path()),
                content: ft
                    .is_file()
                    .then(|| Digest::of(&fs::read(entry.path()).unwrap())),
                link: ft
                    .is_symlink()
                    .then(|| fs::read_link(entry.path()).unwrap()),
                rdev: if ft.is_char_device() || ft.is_block_device() {
                    meta.rdev()
                } else {
                    0
                },
                mtime: (!ft.is_dir()).then(|| meta.mtime()),
                hardlink_of,
            },
        );
    }
    out
}

/// A snapshot with overlay xattrs removed: what a layer is expected to reproduce.
pub fn expected_snapshot(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut snap = snapshot(root);
    for node in snap.values_mut() {
        node.xattrs.retain(|k, _| !is_overlay_xattr(k));
    }
    snap
}

/// Asserts two snapshots are equal, listing each differing path.
pub fn assert_same_tree(what: &str, got: &BTreeMap<PathBuf, Node>, want: &BTreeMap<PathBuf, Node>) {
    let mut problems = Vec::new();
    for (path, w) in want {
        match got.get(path) {
            None => problems.push(format!("missing {path:?}")),
            Some(g) if g != w => problems.push(format!("{path:?}: got {g:?}, want {w:?}")),
            _ => {}
        }
    }
    for path in got.keys() {
        if !want.contains_key(path) {
            problems.push(format!("unexpected {path:?}"));
        }
    }
    assert!(problems.is_empty(), "{what}:\n{}", problems.join("\n"));
}

pub fn os(bytes: &[u8]) -> &OsStr {
    OsStr::from_bytes(bytes)
}

/// Copies a tree with `cp -a` (keeps owners, modes, xattrs, hardlinks, devices).
pub fn copy_tree(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp -a {} {}",
        from.display(),
        to.display()
    );
}
