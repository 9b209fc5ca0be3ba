//! The command line of reproducible builds and squashing: `SOURCE_DATE_EPOCH` from the
//! environment or `--source-date-epoch`, `--reproducible-check`'s verdicts and exit
//! codes, `--squash` and `--squash-all`.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use support::require::require_root;
use support::run::{fixture, import, output, rbuild, scratch_entries, success};

/// A store with busybox and a context holding `dockerfile`.
fn setup(dir: &Path, dockerfile: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    let root = dir.join("store");
    import(&root, &fixture("busybox"), "busybox:latest", &[]);
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    (root, ctx)
}

/// `rbuild inspect`'s JSON of `name`.
fn inspect(root: &Path, name: &str) -> serde_json::Value {
    let out = success(rbuild(root).args(["inspect", name]));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    match value {
        serde_json::Value::Array(mut items) => items.remove(0),
        other => other,
    }
}

#[test]
fn the_epoch_comes_from_the_environment_or_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let (root, ctx) = setup(dir.path(), "FROM busybox\nRUN echo hi > /hi\n");
    let ctx = ctx.to_str().unwrap();
    success(
        rbuild(&root)
            .env("SOURCE_DATE_EPOCH", "1600000000")
            .args(["build", "-q", "-t", "env", ctx]),
    );
    assert_eq!(inspect(&root, "env")["Created"], "2020-09-13T12:26:40Z");
    success(rbuild(&root).args([
        "build",
        "-q",
        "--source-date-epoch",
        "1500000000",
        "-t",
        "flag",
        ctx,
    ]));
    assert_eq!(inspect(&root, "flag")["Created"], "2017-07-14T02:40:00Z");
    let out = output(rbuild(&root).args(["build", "-q", "--source-date-epoch", "soon", ctx]));
    assert_eq!(out.status.code(), Some(2), "a usage error");
}

#[test]
fn the_reproducible_check_says_equal_or_names_the_difference() {
    let dir = tempfile::tempdir().unwrap();
    let (root, ctx) = setup(dir.path(), "FROM busybox\nRUN echo same > /same\n");
    let out = success(rbuild(&root).args([
        "build",
        "--progress",
        "plain",
        "--reproducible-check",
        ctx.to_str().unwrap(),
    ]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(
            "reproducible: two builds from an empty cache gave the same image sha256:"
        ),
        "{stdout}"
    );

    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN cat /proc/sys/kernel/random/uuid > /t\n",
    )
    .unwrap();
    let out = output(rbuild(&root).args([
        "build",
        "--progress",
        "plain",
        "--reproducible-check",
        ctx.to_str().unwrap(),
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: build is not reproducible: sha256:")
            && stderr.contains(": /t (layer 2) differs in content (sha256:"),
        "{stderr}"
    );
    assert!(
        scratch_entries(&root).is_empty(),
        "{:?}",
        scratch_entries(&root)
    );
    // It keeps nothing, so it takes no names or outputs.
    let out = output(rbuild(&root).args([
        "build",
        "--reproducible-check",
        "-t",
        "x",
        ctx.to_str().unwrap(),
    ]));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn squash_and_squash_all_set_the_layer_count() {
    let dir = tempfile::tempdir().unwrap();
    let (root, ctx) = setup(
        dir.path(),
        "FROM busybox\nRUN echo a > /a\nRUN echo b > /b\nRUN rm /a\n",
    );
    let ctx = ctx.to_str().unwrap();
    let layers = |name: &str| {
        inspect(&root, name)["RootFS"]["diff_ids"]
            .as_array()
            .unwrap()
            .len()
    };
    success(rbuild(&root).args(["build", "-q", "-t", "plain", ctx]));
    assert_eq!(layers("plain"), 4);
    success(rbuild(&root).args(["build", "-q", "--squash", "-t", "squashed", ctx]));
    assert_eq!(layers("squashed"), 2);
    success(rbuild(&root).args(["build", "-q", "--squash-all", "-t", "all", ctx]));
    assert_eq!(layers("all"), 1);
    let out = output(rbuild(&root).args(["build", "--squash", "--squash-all", ctx]));
    assert_eq!(out.status.code(), Some(2));
}
