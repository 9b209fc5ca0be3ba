//! Rootless steps: as an unprivileged user the sandbox maps the caller to root in a new
//! user namespace (its subordinate id ranges through newuidmap/newgidmap, or a single
//! mapping) and mounts the overlay with `userxattr`. The worker test runs as the user
//! named by `RBUILD_ROOTLESS_USER` (scripts/test creates `rbuild-rootless` with
//! /etc/subuid and /etc/subgid ranges) through `setpriv`; it runs a matrix of steps and
//! checks their change sets as the root matrix does.

#![allow(clippy::unwrap_used)]

mod support;

use rbuild_core::{
    exec::{IdMapping, Network, SandboxExecutor},
    snapshot::OverlaySnapshotter,
};
use support::exec::{busybox_rootfs, render, run_step, shell};
use support::require::require_root;

/// (command, expected change set): the root matrix minus what needs real root outside
/// (chown to unmapped ids, file capabilities, a second layer with whiteouts).
const MATRIX: &[(&str, &str)] = &[
    ("true", ""),
    ("echo hi > /data/new", "M data\nA data/new\n"),
    ("echo more >> /data/file", "M data/file\n"),
    ("chmod 600 /data/file", "M data/file\n"),
    ("rm /data/file", "M data\nD data/file\n"),
    ("rm -rf /data/dir", "M data\nD data/dir\n"),
    (
        "rm -rf /data/dir && mkdir /data/dir",
        "M data\nM data/dir\nO data/dir\n",
    ),
    (
        "mv /data/dir /data/moved",
        "M data\nD data/dir\nA data/moved\nA data/moved/a\nA data/moved/sub\nA data/moved/sub/b\n",
    ),
    ("rm /data/file && mkdir /data/file", "M data\nM data/file\n"),
    ("ln -s file /data/sym", "M data\nA data/sym\n"),
    (
        "ln /data/file /data/hard",
        "M data\nM data/file\nA data/hard\n",
    ),
    ("setfattr -n user.rbuild -v 1 /data/file", "M data/file\n"),
    ("mkfifo /data/fifo", "M data\nA data/fifo\n"),
    ("touch /etc/newfile", "M etc\nA etc/newfile\n"),
    (
        "test $(id -u) = 0 && test $$ = 1 && test $(hostname) = rbuild && cat /proc/1/status /etc/hosts > /dev/null",
        "",
    ),
    // The same confinement as root (exec_boundary.rs): docker's capabilities (without
    // NET_RAW on the default network), the seccomp filter, no mounts.
    (
        "grep CapEff /proc/self/status | grep -q 00000000a80405fb && grep Seccomp: /proc/self/status | grep -q 2 && ! mount -t tmpfs none /tmp 2>/dev/null",
        "",
    ),
];

#[test]
#[ignore = "the worker of rootless_matrix_as_unprivileged_user, which runs it as that user"]
fn unprivileged_helper() {
    assert!(
        std::env::var_os("RBUILD_ROOTLESS_HELPER").is_some(),
        "run through rootless_matrix_as_unprivileged_user"
    );
    assert!(!rustix::process::geteuid().is_root());
    let ranges = std::env::var_os("RBUILD_ROOTLESS_RANGES").is_some_and(|v| v == "1");
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("base");
    busybox_rootfs(&base);
    let lowers = vec![base];
    let mut failures = Vec::new();
    for mapping in [IdMapping::Helpers, IdMapping::SelfOnly] {
        let executor = SandboxExecutor::new().with_id_mapping(mapping);
        for (cmd, expected) in MATRIX {
            let out = run_step(&OverlaySnapshotter::new(), &executor, &lowers, &shell(cmd));
            let got = render(&out.changes);
            if !out.status.success() || got != *expected {
                failures.push(format!(
                    "{mapping:?} {cmd}: {:?} {}\n--- expected\n{expected}--- got\n{got}",
                    out.status, out.stderr
                ));
            }
        }
        // With subordinate ranges the helpers map two ranges (self as root, then the
        // user's subordinate ids); otherwise, or with SelfOnly, only self.
        let ranged = ranges && matches!(mapping, IdMapping::Helpers);
        if ranged {
            let cmd = "chown 1:1 /data/file && test $(stat -c %u:%g /data/file) = 1:1";
            let out = run_step(&OverlaySnapshotter::new(), &executor, &lowers, &shell(cmd));
            let got = render(&out.changes);
            if !out.status.success() || got != "M data/file\n" {
                failures.push(format!(
                    "{mapping:?} {cmd}: {:?} {}\n{got}",
                    out.status, out.stderr
                ));
            }
        }
        let mut spec = shell("ls /sys/class/net; grep -c . /proc/self/uid_map");
        spec.network = Network::None;
        let out = run_step(&OverlaySnapshotter::new(), &executor, &lowers, &spec);
        let expected = if ranged { "lo\n2\n" } else { "lo\n1\n" };
        if out.stdout != expected {
            failures.push(format!(
                "{mapping:?} network none: {:?} {}",
                out.stdout, out.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    println!("ROOTLESS-MATRIX-OK");
}

/// The uid and gid of the unprivileged user the rootless run uses.
fn rootless_user() -> (String, String, String) {
    let name = std::env::var("RBUILD_ROOTLESS_USER").unwrap_or_else(|_| "rbuild-rootless".into());
    let id = |flag: &str| {
        let out = std::process::Command::new("id")
            .args([flag, &name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "the unprivileged test user {name:?} does not exist: scripts/test creates it \
             (or set RBUILD_ROOTLESS_USER to an existing unprivileged user)"
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let (uid, gid) = (id("-u"), id("-g"));
    assert_ne!(uid, "0", "{name} must not be root");
    (name, uid, gid)
}

#[test]
fn rootless_matrix_as_unprivileged_user() {
    require_root("it uses namespaces, overlay mounts and mknod");
    assert!(
        std::path::Path::new("/usr/bin/setpriv").exists(),
        "setpriv (util-linux) is missing"
    );
    let (name, uid, gid) = rootless_user();
    let has_ranges = std::fs::read_to_string("/etc/subuid")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with(&format!("{name}:")) || l.starts_with(&format!("{uid}:")));
    println!("rootless run as {name} ({uid}:{gid}), subordinate ids: {has_ranges}");
    let out = std::process::Command::new("/usr/bin/setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--clear-groups",
        ])
        .arg(std::env::current_exe().unwrap())
        .args(["--exact", "unprivileged_helper", "--ignored", "--nocapture"])
        .env("RBUILD_ROOTLESS_HELPER", "1")
        .env("RBUILD_ROOTLESS_RANGES", if has_ranges { "1" } else { "0" })
        .env("TMPDIR", "/tmp")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ROOTLESS-MATRIX-OK"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
