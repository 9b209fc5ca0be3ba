//! How a build stacks its layers, through the binary on the busybox fixture, as root and
//! as the unprivileged `rbuild-rootless` (scripts/test creates it): issue 14, bugs 1 and 2.
//! - A layer that holds `tmp/sub/b` but no entry for `tmp/` must not show `/tmp` as
//!   0:0 0755 above the lower layer's 1777 (its unpacked directory takes the lower
//!   directory's attributes, as containerd's applier gives them).
//! - Two byte-identical layers in one stack must mount (one unpacked directory per place
//!   in the stack), and the image must keep both, as BuildKit's does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

mod support;

use support::run::{busybox_setup, fixture, rbuild, success};

const ROOTLESS_USER: &str = "rbuild-rootless";

/// issue 14 bug 1, as found: `/tmp` and `/home/app` lost their modes and owners in the
/// steps after a layer that implied them.
const IMPLIED_PARENTS: &str = "\
FROM busybox:latest
RUN mkdir -p /tmp/sub && touch /tmp/sub/a
RUN touch /tmp/sub/b
USER nobody
RUN touch /tmp/y
USER root
RUN echo 'app:x:1000:1000:app:/home/app:/bin/sh' >> /etc/passwd && echo 'app:x:1000:' >> /etc/group && mkdir -p /home/app && chown 1000:1000 /home/app && chmod 750 /home/app
USER app
WORKDIR /home/app/work
RUN touch x
USER root
RUN touch /home/app/work/y
USER 1000:1000
RUN echo written > /home/app/f
";

/// issue 14 bug 2: the second step makes the same layer as the first (same bytes, same
/// mtime), then a step runs on both.
const IDENTICAL_LAYERS: &str = "\
FROM busybox:latest
RUN echo a > /a && touch -d '2001-02-03 04:05:06' /a
RUN echo a > /a && touch -d '2001-02-03 04:05:06' /a
RUN cat /a > /b
";

fn mode_owner(path: &Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (m.mode() & 0o7777, m.uid(), m.gid())
}

/// Builds `dockerfile` into `<dir>/out` (`-o type=local`) as root, tagged `t`.
fn build_as_root(dockerfile: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let (dir, root, ctx) = busybox_setup(&[("Dockerfile", dockerfile)]);
    let out = dir.path().join("out");
    let dest = format!("type=local,dest={}", out.display());
    success(
        rbuild(&root)
            .args(["build", "--progress", "plain", "-t", "t", "-o", &dest])
            .arg(&ctx),
    );
    (dir, root, out)
}

/// Builds `dockerfile` into `<dir>/out` as `rbuild-rootless`, in a store of its own.
fn build_rootless(dockerfile: &str) -> (tempfile::TempDir, PathBuf) {
    support::require::require_root("it uses namespaces, overlay mounts and fixture recipes");
    let dir = tempfile::tempdir().unwrap();
    let (root, ctx, out) = (
        dir.path().join("store"),
        dir.path().join("ctx"),
        dir.path().join("out"),
    );
    std::fs::create_dir(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let status = Command::new("chown")
        .args(["-R", ROOTLESS_USER])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "chown to {ROOTLESS_USER}");
    let mut import = rbuild(&root);
    import
        .arg("import")
        .arg(fixture("busybox"))
        .arg("busybox:latest");
    success(&mut support::attack::as_user(ROOTLESS_USER, &import));
    let mut build = rbuild(&root);
    build
        .args(["build", "--progress", "plain", "-o"])
        .arg(format!("type=local,dest={}", out.display()))
        .arg(&ctx);
    success(&mut support::attack::as_user(ROOTLESS_USER, &build));
    (dir, out)
}

#[test]
fn implied_parents_keep_the_lower_directorys_owner_and_mode() {
    let (_dir, _root, out) = build_as_root(IMPLIED_PARENTS);
    // BuildKit 28.5 on the same Dockerfile (docker export of its image).
    assert_eq!(mode_owner(&out.join("tmp")), (0o1777, 0, 0));
    assert_eq!(mode_owner(&out.join("tmp/sub")), (0o755, 0, 0));
    assert_eq!(mode_owner(&out.join("tmp/y")), (0o644, 65534, 65534));
    assert_eq!(mode_owner(&out.join("home/app")), (0o750, 1000, 1000));
    assert_eq!(mode_owner(&out.join("home/app/work")), (0o755, 1000, 1000));
    assert_eq!(mode_owner(&out.join("home/app/f")), (0o644, 1000, 1000));
}

#[test]
fn implied_parents_keep_the_lower_directorys_mode_rootless() {
    // Only the /tmp half: the rest needs `chown 1000`, which a rootless step cannot
    // do on a store made with a single-uid mapping.
    let tmp_only = IMPLIED_PARENTS
        .lines()
        .take(5)
        .collect::<Vec<_>>()
        .join("\n");
    let (_dir, out) = build_rootless(&tmp_only);
    assert_eq!(mode_owner(&out.join("tmp")).0, 0o1777);
    assert!(out.join("tmp/y").is_file());
}

#[test]
fn the_same_layer_twice_in_a_stack_builds_and_both_are_kept() {
    let (_dir, root, out) = build_as_root(IDENTICAL_LAYERS);
    assert_eq!(std::fs::read(out.join("b")).unwrap(), b"a\n");
    let inspect = success(rbuild(&root).args(["inspect", "t"]));
    let json: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let diff_ids = find(&json, "diff_ids").expect("inspect shows the config's diff_ids");
    let diff_ids: Vec<&str> = diff_ids
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert_eq!(diff_ids.len(), 4, "{diff_ids:?}");
    assert_eq!(
        diff_ids[1], diff_ids[2],
        "the two steps' layers: {diff_ids:?}"
    );
}

#[test]
fn the_same_layer_twice_in_a_stack_builds_rootless() {
    let (_dir, out) = build_rootless(IDENTICAL_LAYERS);
    assert_eq!(std::fs::read(out.join("b")).unwrap(), b"a\n");
}

/// The first value under `key` anywhere in `value`.
fn find<'a>(value: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    match value {
        serde_json::Value::Object(map) => map
            .get(key)
            .or_else(|| map.values().find_map(|v| find(v, key))),
        serde_json::Value::Array(items) => items.iter().find_map(|v| find(v, key)),
        _ => None,
    }
}
