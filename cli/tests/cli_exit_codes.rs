//! Exit codes through the binary: 0 on success, 1 when an operation fails (with a message
//! naming what failed on what), 2 on a usage error (clap's).

use std::process::{Command, Output};

fn rbuild(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args(args)
        .output()
        .expect("running the rbuild binary")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn version_succeeds() {
    let out = rbuild(&["version"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(&format!("rbuild {}", env!("CARGO_PKG_VERSION"))),
        "unexpected version output: {stdout}"
    );
}

#[test]
fn an_unknown_flag_is_a_usage_error() {
    let out = rbuild(&["version", "--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--no-such-flag"),
        "usage error does not name the flag: {}",
        stderr(&out)
    );
}

#[test]
fn an_unknown_flag_before_any_subcommand_is_a_usage_error() {
    let out = rbuild(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = rbuild(&["completion", "no-such-shell"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no-such-shell"),
        "usage error does not name the value: {}",
        stderr(&out)
    );
}

#[test]
fn a_missing_dockerfile_fails_naming_the_file() {
    let out = rbuild(&["graph", "-f", "/nonexistent/Dockerfile"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("/nonexistent/Dockerfile"),
        "error does not name the file: {}",
        stderr(&out)
    );
}

#[test]
fn an_invalid_dockerfile_fails() {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let path = dir.path().join("Dockerfile");
    std::fs::write(&path, "FROM\n").expect("writing the Dockerfile");
    let out = rbuild(&["graph", "-f", path.to_str().expect("UTF-8 temp path")]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!stderr(&out).is_empty(), "no error message");
}

#[test]
fn help_and_version_flags_succeed() {
    for args in [&["--help"][..], &["--version"], &["help"], &["graph", "-h"]] {
        let out = rbuild(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        assert!(!out.stdout.is_empty(), "{args:?} printed nothing");
    }
}

/// Regression: `rbuild debug instructions | head -1` panicked with "failed printing to
/// stdout: Broken pipe" because Rust ignores SIGPIPE; it must end quietly instead.
#[test]
fn closed_stdout_ends_quietly_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let dockerfile = dir.path().join("Dockerfile");
    let mut text = String::from("FROM busybox\n");
    for i in 0..2000 {
        text.push_str(&format!("RUN echo step {i}\n"));
    }
    std::fs::write(&dockerfile, text).unwrap();
    let script = format!(
        "'{}' debug instructions -f '{}' | head -c 10 >/dev/null",
        env!("CARGO_BIN_EXE_rbuild"),
        dockerfile.display()
    );
    let out = std::process::Command::new("bash")
        .args(["-o", "pipefail", "-c", &script])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
}
