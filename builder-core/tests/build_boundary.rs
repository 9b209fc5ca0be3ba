//! The sandbox boundary at the build level: symbolic links in the image do not lead
//! WORKDIR or COPY out of the root, and `RUN --security=insecure` needs
//! `--allow security.insecure`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rbuild_core::{error_chain::error_chain, solver::Entitlement};
use support::build::{build, build_with, busybox_store, context, read, rootfs};

/// A directory of the host that a step's symlink will point at; the test checks that
/// nothing appears in it.
fn host_target() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap().to_owned();
    (dir, path)
}

#[test]
fn a_symlinked_workdir_is_created_inside_the_root() {
    let (dir, store) = busybox_store();
    let (host, path) = host_target();
    let ctx = context(dir.path(), &[]);
    let dockerfile = format!(
        "FROM busybox\nRUN ln -s / /esc\nWORKDIR /esc{path}/x\nRUN pwd > /pwd && echo in > made\n"
    );
    let result = build(&store, &dockerfile, &ctx);
    assert!(
        !host.path().join("x").exists(),
        "WORKDIR created {path}/x on the host"
    );
    let root = rootfs(&store, &result.image, dir.path());
    let inside = root.join(path.trim_start_matches('/')).join("x");
    assert_eq!(
        std::fs::read_to_string(inside.join("made")).unwrap(),
        "in\n"
    );
    // The step's working directory is that same directory, reached through the link.
    assert_eq!(
        read(&store, &result.image, dir.path(), "/pwd"),
        format!("{path}/x\n")
    );
}

#[test]
fn a_copy_to_a_symlinked_destination_lands_inside_the_root() {
    let (dir, store) = busybox_store();
    let (host, path) = host_target();
    let ctx = context(dir.path(), &[("a", "copied\n")]);
    let dockerfile = format!("FROM busybox\nRUN ln -s {path} /dest\nCOPY a /dest/\n");
    let result = build(&store, &dockerfile, &ctx);
    assert!(
        !host.path().join("a").exists(),
        "COPY wrote {path}/a on the host"
    );
    let root = rootfs(&store, &result.image, dir.path());
    let inside = root.join(path.trim_start_matches('/')).join("a");
    assert_eq!(std::fs::read_to_string(inside).unwrap(), "copied\n");
}

const INSECURE: &str = "FROM busybox
RUN mount -t tmpfs none /tmp 2>/dev/null && echo mounted > /default || echo refused > /default
RUN --security=insecure mount -t tmpfs none /tmp && umount /tmp && echo mounted > /insecure
";

#[test]
fn insecure_steps_need_the_entitlement() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let (refused, _) = build_with(&store, INSECURE, &ctx, |_| {});
    let message = error_chain(&refused.expect_err("an insecure step was not refused"));
    assert!(
        message.starts_with(
            "Dockerfile:3:1: RUN --security=insecure is not allowed: pass --allow security.insecure"
        ),
        "{message}"
    );

    let (allowed, _) = build_with(&store, INSECURE, &ctx, |r| {
        r.options.allow.push(Entitlement::SecurityInsecure);
    });
    let image = allowed.unwrap().image;
    assert_eq!(read(&store, &image, dir.path(), "/default"), "refused\n");
    assert_eq!(read(&store, &image, dir.path(), "/insecure"), "mounted\n");
}
