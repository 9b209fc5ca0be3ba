//! The change matrix: each RUN gives the expected change set with both snapshotters.
#![allow(clippy::unwrap_used)]

mod support;

use rbuild_core::{
    exec::{Executor, RuncExecutor, SandboxExecutor},
    snapshot::{CopySnapshotter, OverlaySnapshotter, Snapshotter},
};
use support::exec::matrix::MATRIX;
use support::exec::{base, render, run_step, shell};
use support::require::require_root;

fn check_matrix(snapshotter: &dyn Snapshotter, executor: &dyn Executor) {
    require_root("it uses namespaces, overlay mounts and mknod");
    let base = base();
    let mut failures = Vec::new();
    for (name, cmd, expected) in MATRIX {
        let out = run_step(snapshotter, executor, &base.lowers, &shell(cmd));
        assert!(out.status.success(), "{name}: {cmd} failed: {}", out.stderr);
        let got = render(&out.changes);
        if got != *expected {
            failures.push(format!(
                "{name}: {cmd}\n--- expected\n{expected}--- got\n{got}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn overlay_matrix() {
    check_matrix(&OverlaySnapshotter::new(), &SandboxExecutor::new());
}

#[test]
fn copy_matrix() {
    check_matrix(&CopySnapshotter::new(), &SandboxExecutor::new());
}

#[test]
fn overlay_matrix_runc() {
    check_matrix(&OverlaySnapshotter::new(), &RuncExecutor::default());
}

#[test]
fn copy_matrix_runc() {
    check_matrix(&CopySnapshotter::new(), &RuncExecutor::default());
}
