//! Tar-bomb limits through the CLI (issue 9, item 4): `ADD` of a local archive past
//! `RBUILD_ARCHIVE_MAX_ENTRIES` fails naming the archive and the limit, and the store
//! verifies afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::reliability::*;
use support::require::require_root;

#[test]
fn add_of_an_archive_past_the_entry_limit_is_refused() {
    require_root("builds mount overlays and run steps in namespaces");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    import_busybox(&root);
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    for i in 0..500 {
        std::fs::write(files.join(format!("f{i}")), "").unwrap();
    }
    let made = std::process::Command::new("tar")
        .arg("-cf")
        .arg(ctx.join("many.tar"))
        .arg("-C")
        .arg(&files)
        .arg(".")
        .output()
        .expect("running tar(1)");
    assert!(made.status.success(), "tar failed: {}", stderr(&made));
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nADD many.tar /x/\n").unwrap();
    let build = |limit: &str| {
        command(
            &root,
            &["build", "--progress", "plain", ctx.to_str().unwrap()],
        )
        .env("RBUILD_ARCHIVE_MAX_ENTRIES", limit)
        .output()
        .unwrap()
    };
    // The base layer (busybox: a few hundred entries) is unpacked once, without limits
    // from the environment, so that the limit below meets only the ADD's archive.
    let warm = dir.path().join("warm");
    std::fs::create_dir_all(&warm).unwrap();
    std::fs::write(warm.join("Dockerfile"), "FROM busybox\nRUN true\n").unwrap();
    let out = rbuild(
        &root,
        &["build", "--progress", "plain", warm.to_str().unwrap()],
    );
    assert!(out.status.success(), "warm-up build: {}", stderr(&out));
    let out = build("100");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("failed to extract archive")
            && err.contains("many.tar: it has more than 100 entries")
            && err.contains("more than 100 entries")
            && err.contains("RBUILD_ARCHIVE_MAX_ENTRIES=100"),
        "{err}"
    );
    for line in err.lines().filter(|l| l.contains("entries")) {
        println!("{line}");
    }
    assert_verifies(&root, "after the refused ADD");
    let out = build("not-a-number");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid RBUILD_ARCHIVE_MAX_ENTRIES"),
        "{}",
        stderr(&out)
    );
    // Within the limit the same archive is extracted (501 entries with "./").
    let out = build("501");
    assert!(out.status.success(), "{}", stderr(&out));
}
