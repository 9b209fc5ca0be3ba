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
