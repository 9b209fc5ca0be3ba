//! Where `FROM docker-archive://` / `oci-archive://` / `oci-layout://` paths resolve: in
//! the build context (its root for `/` and `..`, symlinks kept inside), elsewhere only
//! beneath a directory the invoker allowed with `--allow fs.read=DIR`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Output;

use support::run::{busybox_setup, output, rbuild, success};

mod support;

fn build(root: &Path, ctx: &Path, dockerfile: &str, extra: &[&str]) -> Output {
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    output(
        rbuild(root)
            .args(["build", "--progress", "plain"])
            .args(extra)
            .arg(ctx),
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn archive_paths_resolve_in_the_context_unless_a_directory_is_allowed() {
    let (dir, root, ctx) = busybox_setup(&[]);
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let archive = outside.join("base.tar");
    success(rbuild(&root).args(["save", "busybox", "-o"]).arg(&archive));
    std::fs::create_dir_all(ctx.join("sub")).unwrap();
    std::fs::copy(&archive, ctx.join("sub/base.tar")).unwrap();

    // In the context: relative, with `..` that stays at its root, and absolute under it.
    for from in [
        "docker-archive://sub/base.tar".to_owned(),
        "docker-archive://../../sub/base.tar".to_owned(),
        format!("docker-archive://{}", ctx.join("sub/base.tar").display()),
    ] {
        let out = build(&root, &ctx, &format!("FROM {from}\nRUN true\n"), &[]);
        assert!(out.status.success(), "{from}: {}", stderr(&out));
    }

    // Outside the context: refused, at the FROM's line, naming the entitlement.
    let df = format!(
        "FROM busybox\nFROM docker-archive://{}\n",
        archive.display()
    );
    let out = build(&root, &ctx, &df, &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("Dockerfile:2:1"), "{err}");
    assert!(err.contains("outside the build context"), "{err}");
    assert!(err.contains("--allow fs.read="), "{err}");

    // A symlink in the context to the outside archive resolves inside the context.
    std::os::unix::fs::symlink(&archive, ctx.join("link.tar")).unwrap();
    let out = build(&root, &ctx, "FROM docker-archive://link.tar\n", &[]);
    assert!(
        !out.status.success(),
        "a link out of the context was followed"
    );

    // Allowed by the invoker: the directory, not its parent's other files.
    let allow = format!("fs.read={}", outside.display());
    let out = build(&root, &ctx, &df, &["--allow", &allow]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(dir.path().join("other.tar"), "x").unwrap();
    let escape = format!("FROM docker-archive://{}/../other.tar\n", outside.display());
    let out = build(&root, &ctx, &escape, &["--allow", &allow]);
    assert!(
        stderr(&out).contains("outside the build context"),
        "{}",
        stderr(&out)
    );

    // A FIFO in the context is refused, not waited on; a directory is not an archive.
    assert!(
        std::process::Command::new("mkfifo")
            .arg(ctx.join("fifo"))
            .status()
            .unwrap()
            .success()
    );
    let out = build(&root, &ctx, "FROM docker-archive://fifo\n", &[]);
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );
    let out = build(&root, &ctx, "FROM oci-archive://sub\n", &[]);
    assert!(
        stderr(&out).contains("not a regular file"),
        "{}",
        stderr(&out)
    );

    // `--allow fs.read` needs its directory.
    let out = build(&root, &ctx, "FROM busybox\n", &["--allow", "fs.read"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("fs.read=DIR"), "{}", stderr(&out));
}

/// The store remembers which image an archive loaded as (`<root>/archive-loads/`); a
/// record there that is a FIFO or a symlink is a miss (the archive is read again), never
/// a build blocked on it or one that follows the link.
#[test]
fn an_archive_load_record_that_is_a_fifo_is_a_miss_not_a_hang() {
    use std::time::{Duration, Instant};
    let (_dir, root, ctx) = busybox_setup(&[]);
    success(
        rbuild(&root)
            .args(["save", "busybox", "-o"])
            .arg(ctx.join("base.tar")),
    );
    let df = "FROM docker-archive://base.tar\nRUN true\n";
    let out = build(&root, &ctx, df, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let records: Vec<_> = std::fs::read_dir(root.join("archive-loads"))
        .expect("the load is remembered in <root>/archive-loads")
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!records.is_empty(), "a record was written");
    for record in &records {
        std::fs::remove_file(record).unwrap();
        let status = std::process::Command::new("mkfifo")
            .arg(record)
            .status()
            .expect("running mkfifo");
        assert!(status.success(), "mkfifo");
    }
    let mut child = rbuild(&root)
        .args(["build", "--progress", "plain", "--no-cache"])
        .arg(&ctx)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the build still ran after a minute: blocked on the FIFO record");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}
