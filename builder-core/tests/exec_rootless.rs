//! Unprivileged callers: what the sandbox does today without root.
//!
//! Rootless steps (a user namespace mapped with newuidmap/newgidmap) are not implemented
//! yet; until they are, an unprivileged caller must get an error that says which set-up
//! step failed, not a silent exit code. The test runs its helper as `nobody` through
//! `setpriv`.

#![allow(clippy::unwrap_used)]

mod exec_support;

use exec_support::{busybox_rootfs, require_root, shell};
use rbuild_core::{ExecError, Executor, OverlaySnapshotter, SandboxExecutor, Snapshotter, Stream};

#[test]
fn unprivileged_helper() {
    if std::env::var_os("RBUILD_ROOTLESS_HELPER").is_none() {
        return;
    }
    assert!(!rustix::process::geteuid().is_root());
    let dir = tempfile::tempdir().unwrap();
    busybox_rootfs(&dir.path().join("base"));
    let scratch = dir.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    let snapshot = OverlaySnapshotter::new()
        .prepare(&[dir.path().join("base")], &scratch)
        .unwrap();
    let result =
        SandboxExecutor::new().run(&snapshot, &shell("true"), &mut |_: Stream, _: &[u8]| {});
    match result {
        Err(e @ ExecError::Setup { .. }) => {
            let text = e.to_string();
            assert!(text.contains("create the step's namespaces"), "{text}");
            println!("ROOTLESS-CLEAR-ERROR");
        }
        other => panic!("expected a set-up error naming the namespaces, got {other:?}"),
    }
}

#[test]
fn unprivileged_caller_gets_a_clear_error() {
    require_root();
    assert!(
        std::path::Path::new("/usr/bin/setpriv").exists(),
        "setpriv (util-linux) is missing"
    );
    let out = std::process::Command::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "unprivileged_helper", "--nocapture"])
        .env("RBUILD_ROOTLESS_HELPER", "1")
        .env("TMPDIR", "/tmp")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ROOTLESS-CLEAR-ERROR"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
