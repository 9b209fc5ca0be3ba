//! Helpers shared by the storage tests: tree snapshots (the [`Tree`] of `support::tree`,
//! with times and overlayfs xattrs) and copies.
#![allow(dead_code)]
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub use super::tree::Tree;
use super::tree::{Keep, compare_trees, read_tree_keeping};

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

/// A snapshot of the tree under `root`, by relative path; `root` itself left out: every
/// entry with its mtime (not directories') and all its xattrs, overlayfs's included.
pub fn snapshot(root: &Path) -> Tree {
    read_tree_keeping(
        root,
        Keep {
            times: true,
            overlay_xattrs: true,
        },
    )
}

/// A snapshot with overlay xattrs removed: what a layer is expected to reproduce.
pub fn expected_snapshot(root: &Path) -> Tree {
    read_tree_keeping(
        root,
        Keep {
            times: true,
            overlay_xattrs: false,
        },
    )
}

/// Asserts two snapshots are equal, listing each differing path.
pub fn assert_same_tree(what: &str, got: &Tree, want: &Tree) {
    let problems = compare_trees(got, want);
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
