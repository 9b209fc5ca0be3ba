//! Disk full (issue 9, item 3): a store on a 64 MiB tmpfs and builds that need more.
//! Each fails with exit code 1 and a "no space left on device" error naming what was
//! being written, and the store verifies afterwards; once space is freed the same store
//! builds again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::reliability::*;
use support::require::require_root;

/// The size of the tmpfs the store lives on.
const STORE_MIB: u64 = 64;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mib: u64) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .expect("running mount(8)");
        assert!(
            out.status.success(),
            "mounting a tmpfs at {} failed (needs root and mount(8)): {}",
            dir.display(),
            stderr(&out)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn build(root: &Path, ctx: &Path, dockerfile: &str) -> std::process::Output {
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    rbuild(
        root,
        &["build", "--progress", "plain", ctx.to_str().unwrap()],
    )
}

fn assert_no_space(out: &std::process::Output, writing: &[&str], case: &str) {
    let err = stderr(out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{case}: expected exit code 1, stderr: {err}"
    );
    assert!(
        err.contains("No space left on device") || err.contains("no space left on device"),
        "{case}: the error does not say the disk is full: {err}"
    );
    assert!(
        writing.iter().any(|w| err.contains(w)),
        "{case}: the error names none of {writing:?}: {err}"
    );
    for line in err.lines().filter(|l| l.contains("space")) {
        println!("{case}: {line}");
    }
}

#[test]
fn a_full_store_fails_the_build_clearly_and_stays_consistent() {
    require_root("builds mount overlays and run steps in namespaces");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let _tmpfs = Tmpfs::mount(&root, STORE_MIB);
    import_busybox(&root);
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();

    // 1. A COPY of 40 MB of incompressible data fits in the step's snapshot but not
    // beside it as a layer blob: writing the layer fails.
    std::fs::write(ctx.join("big"), noise(3, 40 << 20)).unwrap();
    let out = build(&root, &ctx, "FROM busybox\nCOPY big /big\n");
    assert_no_space(&out, &["layer", "blob"], "COPY of 40 MB");
    assert_verifies(&root, "after the COPY build");
    std::fs::remove_file(ctx.join("big")).unwrap();

    // 2. A RUN step that fills the disk itself fails as a step; rbuild reports the
    // step's own error and the store still verifies.
    let out = build(
        &root,
        &ctx,
        "FROM busybox\nRUN dd if=/dev/zero of=/fill bs=1M count=100\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("No space left on device"),
        "{}",
        stderr(&out)
    );
    assert_verifies(&root, "after the RUN that filled the disk");

    // 3. With the space back (nothing of the failed builds is left), the store builds.
    let scratch = scratch_entries(&root);
    assert!(
        scratch.is_empty(),
        "failed builds left scratch: {scratch:?}"
    );
    std::fs::write(ctx.join("small"), noise(4, 1 << 20)).unwrap();
    let out = build(
        &root,
        &ctx,
        "FROM busybox\nCOPY small /small\nRUN test -s /small\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_verifies(&root, "at the end");
}
