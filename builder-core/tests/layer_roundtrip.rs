//! Change-set matrix: write a layer from a hand-made change set, apply it on the lower
//! tree, and compare with the upper tree (content, type, mode, owner, xattrs, links,
//! hardlink identity, mtimes).

#![allow(clippy::unwrap_used)]

mod support;

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::path::Path;

use rbuild_core::{
    ContentStore,
    change::{ChangeKind, ChangeSet},
    layer::{ApplyMode, Compression, LayerOptions, apply_layer, tree_changes, write_layer},
};
use rustix::fs::{FileType, Mode, XattrFlags};
use support::require::require_root;
use support::storage::*;

type Setup = fn(&Path, &mut ChangeSet);

fn write(path: &Path, body: &str) {
    fs::write(path, body).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn setx(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, XattrFlags::empty()).unwrap();
}

/// A v2 `security.capability` value granting cap_net_raw (bit 13), effective.
/// Layout from linux/capability.h, `struct vfs_cap_data`.
fn cap_net_raw() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0x0200_0001u32.to_le_bytes());
    v.extend_from_slice(&(1u32 << 13).to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v
}

/// The lower tree every row starts from.
fn lower(root: &Path) {
    fs::create_dir_all(root.join("a")).unwrap();
    write(&root.join("a/keep.txt"), "keep");
    write(&root.join("f"), "old");
    chmod(&root.join("f"), 0o644);
    fs::create_dir_all(root.join("d/sub")).unwrap();
    write(&root.join("d/one"), "1");
    write(&root.join("d/two"), "2");
    write(&root.join("d/sub/three"), "3");
    fs::create_dir_all(root.join("x/y")).unwrap();
    write(&root.join("x/y/z"), "z");
    write(&root.join("p"), "file p");
    fs::create_dir_all(root.join("q/inner")).unwrap();
    write(&root.join("q/inner/file"), "q");
}

fn rec(set: &mut ChangeSet, path: &str, kind: ChangeKind) {
    set.record(path, kind).unwrap();
}

const ROWS: &[(&str, Setup)] = &[
    ("add", |u, s| {
        write(&u.join("a/new.txt"), "new");
        chown(u.join("a/new.txt"), Some(1000), Some(1001)).unwrap();
        rec(s, "a", ChangeKind::Modified);
        rec(s, "a/new.txt", ChangeKind::Added);
    }),
    ("modify", |u, s| {
        write(&u.join("f"), "new content, longer");
        rec(s, "f", ChangeKind::Modified);
    }),
    ("delete file", |u, s| {
        fs::remove_file(u.join("d/one")).unwrap();
        rec(s, "d", ChangeKind::Modified);
        rec(s, "d/one", ChangeKind::Deleted);
    }),
    ("delete dir", |u, s| {
        fs::remove_dir_all(u.join("x")).unwrap();
        rec(s, "x", ChangeKind::Deleted);
    }),
    ("delete and recreate dir (opaque)", |u, s| {
        fs::remove_dir_all(u.join("d")).unwrap();
        fs::create_dir_all(u.join("d/sub")).unwrap();
        write(&u.join("d/sub/fresh"), "fresh");
        write(&u.join("d/c"), "c");
        rec(s, "d", ChangeKind::Modified);
        s.mark_opaque("d").unwrap();
        rec(s, "d/c", ChangeKind::Added);
        rec(s, "d/sub", ChangeKind::Added);
        rec(s, "d/sub/fresh", ChangeKind::Added);
    }),
    ("file to dir", |u, s| {
        fs::remove_file(u.join("p")).unwrap();
        fs::create_dir(u.join("p")).unwrap();
        write(&u.join("p/child"), "child");
        rec(s, "p", ChangeKind::Modified);
        rec(s, "p/child", ChangeKind::Added);
    }),
    ("dir to file", |u, s| {
        fs::remove_dir_all(u.join("q")).unwrap();
        write(&u.join("q"), "now a file");
        rec(s, "q", ChangeKind::Modified);
    }),
    ("symlink", |u, s| {
        symlink("a/keep.txt", u.join("rel-link")).unwrap();
        symlink("/nowhere/absolute", u.join("abs-link")).unwrap();
        rec(s, "rel-link", ChangeKind::Added);
        rec(s, "abs-link", ChangeKind::Added);
    }),
    ("hardlink pair", |u, s| {
        write(&u.join("h1"), "shared body");
        fs::hard_link(u.join("h1"), u.join("a/h2")).unwrap();
        rec(s, "a", ChangeKind::Modified);
        rec(s, "a/h2", ChangeKind::Added);
        rec(s, "h1", ChangeKind::Added);
    }),
    ("chmod only", |u, s| {
        chmod(&u.join("f"), 0o600);
        rec(s, "f", ChangeKind::Modified);
    }),
    ("xattr only", |u, s| {
        setx(&u.join("f"), "user.rbuild.test", b"value");
        setx(&u.join("f"), "trusted.overlay.origin", b"must not leak");
        rec(s, "f", ChangeKind::Modified);
    }),
    ("setuid file and capability", |u, s| {
        write(&u.join("suid"), "#!/bin/true");
        chown(u.join("suid"), Some(1000), Some(1000)).unwrap();
        chmod(&u.join("suid"), 0o4755);
        write(&u.join("sgid-sticky"), "x");
        chmod(&u.join("sgid-sticky"), 0o3755);
        write(&u.join("ping"), "caps");
        chmod(&u.join("ping"), 0o755);
        setx(&u.join("ping"), "security.capability", &cap_net_raw());
        rec(s, "ping", ChangeKind::Added);
        rec(s, "sgid-sticky", ChangeKind::Added);
        rec(s, "suid", ChangeKind::Added);
    }),
    ("fifo and devices", |u, s| {
        let m = Mode::from_raw_mode(0o640);
        rustix::fs::mknodat(rustix::fs::CWD, u.join("fifo"), FileType::Fifo, m, 0).unwrap();
        let null = rustix::fs::makedev(1, 3);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            u.join("null"),
            FileType::CharacterDevice,
            m,
            null,
        )
        .unwrap();
        let blk = rustix::fs::makedev(7, 0);
        rustix::fs::mknodat(
            rustix::fs::CWD,
            u.join("loop"),
            FileType::BlockDevice,
            m,
            blk,
        )
        .unwrap();
        rec(s, "fifo", ChangeKind::Added);
        rec(s, "loop", ChangeKind::Added);
        rec(s, "null", ChangeKind::Added);
    }),
    ("200-character name", |u, s| {
        let name = "n".repeat(200);
        let deep = format!("{}/{}", "d".repeat(150), name);
        fs::create_dir(u.join("d".repeat(150))).unwrap();
        write(&u.join(&deep), "long");
        symlink(&deep, u.join(format!("{name}.link"))).unwrap();
        rec(s, &"d".repeat(150), ChangeKind::Added);
        rec(s, &deep, ChangeKind::Added);
        rec(s, &format!("{name}.link"), ChangeKind::Added);
    }),
    ("non-UTF-8 name", |u, s| {
        let name = os(b"caf\xe9-\xff");
        write(&u.join(name), "latin-1");
        s.record(name, ChangeKind::Added).unwrap();
    }),
];

fn round_trip(row: &str, setup: Setup, compression: Compression) {
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path().join("store")).unwrap();
    let (low, up, target) = (
        tmp.path().join("lower"),
        tmp.path().join("upper"),
        tmp.path().join("target"),
    );
    for d in [&low, &up, &target] {
        fs::create_dir(d).unwrap();
    }
    lower(&low);
    copy_tree(&low, &up);
    let mut changes = ChangeSet::new();
    setup(&up, &mut changes);

    let options = LayerOptions::default().with_compression(compression);
    let base = write_layer(&store, &low, &tree_changes(&low).unwrap(), &options).unwrap();
    let diff = write_layer(&store, &up, &changes, &options).unwrap();
    for layer in [&base, &diff] {
        let got = apply_layer(
            store.open_blob(&layer.blob.digest).unwrap(),
            &target,
            ApplyMode::Merged,
        )
        .unwrap_or_else(|e| panic!("{row}: applying failed: {e}"));
        assert_eq!(got, layer.diff_id, "{row}: diff_id of the applied stream");
    }
    assert_same_tree(
        &format!("{row} ({})", compression.name()),
        &snapshot(&target),
        &expected_snapshot(&up),
    );
}

#[test]
fn change_set_matrix_round_trips() {
    require_root("layers carry owners, devices and trusted/security xattrs");
    for (row, setup) in ROWS {
        round_trip(row, *setup, Compression::Gzip);
    }
}

#[test]
fn change_set_matrix_round_trips_with_zstd_and_plain() {
    require_root("layers carry owners, devices and trusted/security xattrs");
    for (row, setup) in ROWS {
        round_trip(row, *setup, Compression::Zstd);
        round_trip(row, *setup, Compression::None);
    }
}
