//! Deep layer stacks: 127 lowers whose paths together pass the 4096-byte option limit.

#![allow(clippy::unwrap_used)]

mod support;

use std::fs;

use rbuild_core::{
    exec::SandboxExecutor,
    snapshot::{CopySnapshotter, OverlaySnapshotter, Snapshotter},
};
use support::exec::{busybox_rootfs, render, run_step, shell};
use support::require::require_root;

fn check(snapshotter: &dyn Snapshotter) {
    require_root("it uses namespaces, overlay mounts and mknod");
    let dir = tempfile::tempdir().unwrap();
    let mut lowers = Vec::new();
    let base = dir.path().join("base");
    busybox_rootfs(&base);
    lowers.push(base);
    for i in 1..127 {
        let layer = dir
            .path()
            .join(format!("a-layer-directory-with-a-rather-long-name-{i:03}"));
        fs::create_dir_all(layer.join("layers")).unwrap();
        fs::write(layer.join("layers").join(i.to_string()), "").unwrap();
        fs::write(layer.join("shared"), format!("{i}\n")).unwrap();
        lowers.push(layer);
    }
    assert_eq!(lowers.len(), 127);
    let option_len: usize = lowers.iter().map(|l| l.as_os_str().len() + 1).sum();
    assert!(
        option_len > 4096,
        "the stack must not fit a lowerdir= option"
    );
    let out = run_step(
        snapshotter,
        &SandboxExecutor::new(),
        &lowers,
        &shell("cat /shared; ls /layers | wc -l; rm /layers/1; echo 127 > /shared"),
    );
    assert!(out.status.success(), "{}", out.stderr);
    assert_eq!(out.stdout, "126\n126\n");
    assert_eq!(render(&out.changes), "M layers\nD layers/1\nM shared\n");
}

#[test]
fn overlay_mounts_127_layers() {
    check(&OverlaySnapshotter::new());
}

#[test]
fn copy_merges_127_layers() {
    check(&CopySnapshotter::new());
}
