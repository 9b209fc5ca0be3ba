//! What a test needs of the machine, checked first: a test that lacks a privilege, a
//! tool or a user fails saying what is missing, never passes silently.
//!
//! Shared by the tests of rbuild-core and rbuild-cli (the CLI's `tests/support/mod.rs`
//! includes this file), so it uses nothing of either crate.
#![allow(dead_code)]

use std::process::Command;

/// Fails the test unless it runs as root, saying why root is needed.
pub fn require_root(why: &str) {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert!(euid == 0, "this test must run as root: {why}");
}

/// Fails the test unless `tool` is on PATH, naming the Debian package that has it.
pub fn require_tool(tool: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "missing tool {tool}: install the Debian package {package} to run this test"
    );
}

/// Fails the test unless user `user` exists; `how` says how to create it.
pub fn require_user(user: &str, how: &str) {
    let ok = Command::new("id")
        .arg(user)
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "missing user {user}: {how}");
}

/// Fails unless binfmt_misc runs arm64 binaries through QEMU with the F flag, naming what
/// sets it up.
pub fn require_arm64_emulation() {
    let entry =
        std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64").unwrap_or_default();
    assert!(
        entry.starts_with("enabled")
            && entry
                .lines()
                .any(|l| l.starts_with("flags:") && l.contains('F')),
        "this test runs arm64 binaries: install qemu-user-static and run \
         scripts/binfmt-register as root (scripts/setup-host does both); \
         /proc/sys/fs/binfmt_misc/qemu-aarch64 says {entry:?}"
    );
}

/// Fails unless this is an x86_64 machine: the tests compare what `uname -m` says in
/// native and emulated steps.
pub fn require_x86_64_host() {
    assert_eq!(
        std::env::consts::ARCH,
        "x86_64",
        "these tests expect an x86_64 build machine (native steps say x86_64, emulated \
         ones aarch64)"
    );
}
