//! cgroup limits: a process-count and a memory limit bite, and the groups go away.

#![allow(clippy::unwrap_used)]

mod support;

use std::fs;
use std::sync::Mutex;

/// The tests check that no group of this process is left: they must not overlap.
static SERIAL: Mutex<()> = Mutex::new(());

use rbuild_core::{
    exec::{Executor, RuncExecutor, SandboxExecutor},
    snapshot::OverlaySnapshotter,
};
use support::exec::{base, run_step, shell};
use support::require::require_root;

fn rbuild_groups() -> Vec<String> {
    let mut out = Vec::new();
    for root in [
        "/sys/fs/cgroup",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/pids",
    ] {
        if let Ok(entries) = fs::read_dir(root) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(&format!("rbuild-{}-", std::process::id())) {
                    out.push(format!("{root}/{name}"));
                }
            }
        }
    }
    out
}

fn pids_limit_stops_forks(executor: &dyn Executor) {
    require_root("it uses namespaces, overlay mounts and mknod");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let base = base();
    let mut spec = shell("for i in 1 2 3 4 5 6 7 8 9 10; do sleep 1 & done; wait");
    spec.limits.pids = Some(4);
    let out = run_step(&OverlaySnapshotter::new(), executor, &base.lowers, &spec);
    assert!(
        out.stderr.contains("fork"),
        "no fork failure under pids.max=4: {:?}",
        out.stderr
    );
    assert!(rbuild_groups().is_empty(), "{:?}", rbuild_groups());
}

fn memory_limit_kills_a_hog(executor: &dyn Executor) {
    require_root("it uses namespaces, overlay mounts and mknod");
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let base = base();
    // dd fills a 100 MB buffer.
    let mut spec = shell("dd if=/dev/zero of=/dev/null bs=100M count=1");
    spec.limits.memory = Some(32 * 1024 * 1024);
    let out = run_step(&OverlaySnapshotter::new(), executor, &base.lowers, &spec);
    assert!(!out.status.success(), "the hog survived a 32 MiB limit");
    assert!(rbuild_groups().is_empty(), "{:?}", rbuild_groups());

    spec.limits.memory = None;
    let out = run_step(&OverlaySnapshotter::new(), executor, &base.lowers, &spec);
    assert!(out.status.success(), "without a limit: {}", out.stderr);
}

#[test]
fn sandbox_pids_limit_stops_forks() {
    pids_limit_stops_forks(&SandboxExecutor::new());
}

#[test]
fn sandbox_memory_limit_kills_a_hog() {
    memory_limit_kills_a_hog(&SandboxExecutor::new());
}

#[test]
fn runc_pids_limit_stops_forks() {
    pids_limit_stops_forks(&RuncExecutor::default());
}

#[test]
fn runc_memory_limit_kills_a_hog() {
    memory_limit_kills_a_hog(&RuncExecutor::default());
}
