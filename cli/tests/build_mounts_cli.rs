//! `rbuild build --secret` and `rbuild prune --cache-mounts` through the binary, on the
//! busybox fixture imported with `rbuild import`: a secret reaches its step but neither
//! the store nor the progress output (every mode); cache mounts stay until pruned.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod support;

/// A store with busybox and a context holding `dockerfile`.
fn setup(dockerfile: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    support::run::busybox_setup(&[("Dockerfile", dockerfile)])
}

fn rbuild(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args(args)
        .env("RBUILD_ROOT", root)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("running the rbuild binary")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The files under `dir` holding `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            std::fs::read(e.path())
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
        })
        .map(|e| e.path().to_path_buf())
        .collect()
}

#[test]
fn a_secret_reaches_its_step_but_not_the_store_nor_any_progress_output() {
    let secret = "cli-secret-9f27d1e4";
    let (dir, root, ctx) = setup(
        "FROM busybox
RUN --mount=type=secret,id=file_tok,required cat /run/secrets/file_tok > /dev/null
RUN --mount=type=secret,id=file_tok --mount=type=secret,id=env_tok,env=TOK sh -c 'test -s /run/secrets/file_tok && test -n \"$TOK\" && wc -c < /run/secrets/file_tok > /len && printf %s \"$TOK\" | wc -c >> /len'
",
    );
    let file = dir.path().join("tok");
    std::fs::write(&file, secret).unwrap();
    let src = format!("id=file_tok,src={}", file.display());
    for mode in ["plain", "rawjson", "tty"] {
        let out = rbuild(
            &root,
            &[
                "build",
                "--no-cache",
                "--compression",
                "uncompressed",
                "--progress",
                mode,
                "--secret",
                &src,
                "--secret",
                "id=env_tok,env=RBUILD_CLI_TEST_TOK",
                "-t",
                "secret-test",
                ctx.to_str().unwrap(),
            ],
            &[("RBUILD_CLI_TEST_TOK", secret)],
        );
        assert_eq!(out.status.code(), Some(0), "{mode}: {}", stderr(&out));
        for stream in [&out.stdout, &out.stderr] {
            assert!(
                !stream.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "the secret is in the {mode} progress output"
            );
        }
    }
    let found = files_containing(&root, secret.as_bytes());
    assert!(found.is_empty(), "the secret is in the store: {found:?}");
    let missing = rbuild(&root, &["build", "--no-cache", ctx.to_str().unwrap()], &[]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        stderr(&missing).contains("secret file_tok is required but was not given to the build"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn prune_cache_mounts_removes_the_cache_directories() {
    let (_dir, root, ctx) = setup(
        "FROM busybox
RUN --mount=type=cache,target=/c,id=pip touch /c/kept
",
    );
    let out = rbuild(&root, &["build", "-q", ctx.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let cache = root.join("cache-mounts/pip");
    assert!(cache.join("kept").is_file());
    let out = rbuild(&root, &["prune"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        cache.join("kept").is_file(),
        "a plain prune keeps cache mounts"
    );
    let out = rbuild(&root, &["prune", "--cache-mounts"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deleted: 1 cache mounts"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(!cache.exists());
}

/// A mount target reached through the image's symbolic links is mounted where they lead,
/// inside the step's root, as BuildKit (runc) resolves a mount destination: `/x -> /data`
/// puts `target=/x/c` at `/data/c`, a relative link from WORKDIR too, and a link to an
/// absolute path that exists only on the host stays in the root. Seen refused before
/// ("reached through a symbolic link") where docker 28.5 builds.
#[test]
fn mount_targets_follow_the_images_symlinks_inside_the_root() {
    let host = tempfile::tempdir().expect("a host dir");
    let (_dir, root, ctx) = setup(&format!(
        "FROM busybox
RUN mkdir /data /w && ln -s /data /x && ln -s ../data/y /w/y && ln -s {host} /h
WORKDIR /w
RUN --mount=type=cache,target=/x/c,id=through-link touch /x/c/kept \\
 && test -f /data/c/kept
RUN --mount=type=tmpfs,target=y test -d /data/y && touch y/t && test -f /data/y/t
RUN --mount=type=tmpfs,target=/h touch /h/CANARY && test -f {host}/CANARY
",
        host = host.path().display()
    ));
    let out = rbuild(&root, &["build", "-q", ctx.to_str().unwrap()], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(root.join("cache-mounts/through-link/kept").is_file());
    assert!(
        !host.path().join("CANARY").exists(),
        "a mount through an absolute link reached the host"
    );
}
