//! The tree comparison behind the round-trip test catches each difference it claims to.
#![allow(clippy::unwrap_used)]

mod support;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command as Process;

use support::require::require_root;
use support::tree::{compare_trees, leftover_mount_points, read_tree};

/// A small tree: a file, a hardlink pair, a symlink, a fifo and a directory.
fn sample(root: &Path) {
    fs::create_dir_all(root.join("d")).unwrap();
    fs::write(root.join("f"), "one\n").unwrap();
    fs::write(root.join("a"), "pair\n").unwrap();
    fs::hard_link(root.join("a"), root.join("b")).unwrap();
    symlink("f", root.join("s")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("p"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
}

/// Applies `mutate` to the second of two identical samples; the comparison must report
/// a line containing `needle`.
fn detects(needle: &str, mutate: impl Fn(&Path)) {
    let dir = tempfile::tempdir().unwrap();
    let (left, right) = (dir.path().join("left"), dir.path().join("right"));
    sample(&left);
    sample(&right);
    assert!(compare_trees(&read_tree(&right), &read_tree(&left)).is_empty());
    mutate(&right);
    let problems = compare_trees(&read_tree(&right), &read_tree(&left));
    assert!(
        problems.iter().any(|p| p.contains(needle)),
        "expected a difference mentioning {needle:?}, got {problems:?}"
    );
}

#[test]
fn comparison_catches_each_kind_of_difference() {
    require_root("it uses namespaces, overlay mounts and mknod");
    detects("extra new", |r| fs::write(r.join("new"), "").unwrap());
    detects("missing f", |r| fs::remove_file(r.join("f")).unwrap());
    detects("differs f", |r| fs::write(r.join("f"), "two\n").unwrap());
    detects("differs f", |r| fs::write(r.join("f"), "One\n").unwrap());
    detects("differs f", |r| {
        fs::set_permissions(r.join("f"), fs::Permissions::from_mode(0o4755)).unwrap()
    });
    detects("differs f", |r| {
        std::os::unix::fs::lchown(r.join("f"), Some(1000), Some(1000)).unwrap()
    });
    detects("differs s", |r| {
        fs::remove_file(r.join("s")).unwrap();
        symlink("a", r.join("s")).unwrap();
    });
    detects("differs p", |r| {
        fs::remove_file(r.join("p")).unwrap();
        fs::write(r.join("p"), "").unwrap();
    });
    detects("differs f", |r| {
        xattr::set(r.join("f"), "user.rbuild", b"1").unwrap()
    });
    detects("differs f", |r| {
        let status = Process::new("setcap")
            .arg("cap_net_raw+ep")
            .arg(r.join("f"))
            .status()
            .expect("setcap is missing: install libcap2-bin");
        assert!(status.success());
    });
    detects("hardlink groups differ", |r| {
        fs::remove_file(r.join("b")).unwrap();
        fs::copy(r.join("a"), r.join("b")).unwrap();
    });
}

#[test]
fn overlay_xattrs_are_ignored_and_mount_points_reported() {
    require_root("it uses namespaces, overlay mounts and mknod");
    let dir = tempfile::tempdir().unwrap();
    let (left, right) = (dir.path().join("left"), dir.path().join("right"));
    sample(&left);
    sample(&right);
    xattr::set(right.join("d"), "trusted.overlay.opaque", b"y").unwrap();
    assert!(compare_trees(&read_tree(&right), &read_tree(&left)).is_empty());
    fs::create_dir(right.join("proc")).unwrap();
    fs::create_dir(right.join("etc")).unwrap();
    fs::write(right.join("etc/hosts"), "").unwrap();
    assert_eq!(
        leftover_mount_points(&read_tree(&right)),
        ["proc", "etc/hosts"]
    );
}
