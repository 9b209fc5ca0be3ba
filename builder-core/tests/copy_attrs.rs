//! What a copied entry keeps: mode, mtime, xattrs, hardlinks, symlinks; `--chmod`; and
//! destinations that never leave the root.

#![allow(clippy::unwrap_used)]

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, SystemTime};

use rbuild_core::copy::copy;
use support::copy::{Context, dest, op, paths, populate, read, tree};

fn set_mtime(path: &std::path::Path, secs: u64) {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[test]
fn mode_and_mtime_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path(), &[("bin/run", "x"), ("conf", "c")]);
    fs::set_permissions(
        dir.path().join("bin/run"),
        fs::Permissions::from_mode(0o4751),
    )
    .unwrap();
    fs::set_permissions(dir.path().join("bin"), fs::Permissions::from_mode(0o700)).unwrap();
    set_mtime(&dir.path().join("conf"), 1_000_000_000);
    let ctx = Context::from_dir(dir, "");
    let root = dest();
    copy(&op("COPY . /app/", "/"), &ctx.source(), root.path()).unwrap();
    let seen = tree(root.path());
    assert_eq!(seen["app/bin/run"].mode, 0o4751);
    assert_eq!(seen["app/bin"].mode, 0o700);
    let meta = fs::metadata(root.path().join("app/conf")).unwrap();
    assert_eq!(meta.mtime(), 1_000_000_000);
}

#[test]
fn directory_mtimes_are_the_sources_after_filling_them() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path(), &[("d/sub/f", "x")]);
    let t = fs::File::open(dir.path().join("d/sub")).unwrap();
    t.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(12345))
        .unwrap();
    let ctx = Context::from_dir(dir, "");
    let root = dest();
    copy(&op("COPY d /x", "/"), &ctx.source(), root.path()).unwrap();
    assert_eq!(
        fs::metadata(root.path().join("x/sub")).unwrap().mtime(),
        12345
    );
}

#[test]
fn chmod_applies_to_files_and_directories() {
    let ctx = Context::new(&[("d/f", "x"), ("d/s/g", "y"), ("h", "z")]);
    let root = dest();
    copy(
        &op("COPY --chmod=640 d /o/", "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap();
    copy(
        &op("COPY --chmod=u+x,go-r h /o/", "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap();
    let seen = tree(root.path());
    assert_eq!(seen["o/f"].mode, 0o640);
    assert_eq!(seen["o/s"].mode, 0o640);
    assert_eq!(seen["o/s/g"].mode, 0o640);
    assert_eq!(seen["o/h"].mode, 0o700);
    // The destination directory created for the copy takes the octal mode (less
    // dockerd's umask, 0022); a symbolic one would leave it 0755.
    assert_eq!(seen["o"].mode, 0o640);
    let err = copy(
        &op("COPY --chmod=9z h /p/", "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("invalid --chmod=9z"), "{err}");
}

/// Issue 14, bug 13: checked against docker 28.5, the directories `COPY --chmod`
/// creates for its destination take the octal mode less dockerd's umask (special bits
/// dropped), and the --chown owner; a symbolic mode leaves them 0755; existing ones
/// are left alone.
#[test]
fn chmod_gives_the_directories_a_copy_creates_its_mode() {
    support::require::require_root("it sets file owners");
    let ctx = Context::new(&[("foo", "x"), ("d/f", "y")]);
    let root = dest();
    std::fs::create_dir(root.path().join("old")).unwrap();
    std::fs::set_permissions(root.path().join("old"), fs::Permissions::from_mode(0o700)).unwrap();
    for line in [
        "COPY --chmod=770 foo /parent/sub/foo",
        "COPY --chmod=600 --chown=100:200 foo /p3/a/b/foo",
        "COPY --chmod=4755 foo /p2/sub/",
        "COPY --chmod=705 d /p5/y",
        "COPY --chmod=u+x,go=r foo /sym/a/foo",
        "COPY --chmod=770 foo /old/new/",
        "COPY --chmod=750 <<EOF /hd/a/\nhello\nEOF",
    ] {
        copy(&op(line, "/"), &ctx.source(), root.path()).unwrap_or_else(|e| panic!("{line}: {e}"));
    }
    let seen = tree(root.path());
    let dir = |p: &str| (seen[p].kind, seen[p].mode, seen[p].uid, seen[p].gid);
    assert_eq!(dir("parent"), ('d', 0o750, 0, 0));
    assert_eq!(dir("parent/sub"), ('d', 0o750, 0, 0));
    assert_eq!(dir("p3"), ('d', 0o600, 100, 200));
    assert_eq!(dir("p3/a/b"), ('d', 0o600, 100, 200));
    assert_eq!(dir("p2/sub"), ('d', 0o755, 0, 0));
    assert_eq!(dir("p5"), ('d', 0o705, 0, 0));
    assert_eq!(dir("p5/y"), ('d', 0o705, 0, 0));
    assert_eq!(dir("sym/a"), ('d', 0o755, 0, 0));
    assert_eq!(dir("old"), ('d', 0o700, 0, 0));
    assert_eq!(dir("old/new"), ('d', 0o750, 0, 0));
    assert_eq!(dir("hd/a"), ('d', 0o750, 0, 0));
    assert_eq!(seen["parent/sub/foo"].mode, 0o770);
    assert_eq!(seen["p2/sub/foo"].mode, 0o4755);
}

#[test]
fn xattrs_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path(), &[("f", "x")]);
    let f = dir.path().join("f");
    xattr::set(&f, "user.rbuild.test", b"yes")
        .expect("the temp directory's filesystem must support user xattrs for this test");
    let ctx = Context::from_dir(dir, "");
    let root = dest();
    copy(&op("COPY f /g", "/"), &ctx.source(), root.path()).unwrap();
    let value = xattr::get(root.path().join("g"), "user.rbuild.test").unwrap();
    assert_eq!(value.as_deref(), Some(&b"yes"[..]));
}

#[test]
fn hardlinks_between_copied_files_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path(), &[("d/a", "shared"), ("d/other", "o")]);
    fs::hard_link(dir.path().join("d/a"), dir.path().join("d/b")).unwrap();
    let ctx = Context::from_dir(dir, "");
    let root = dest();
    copy(&op("COPY d /h/", "/"), &ctx.source(), root.path()).unwrap();
    let a = fs::metadata(root.path().join("h/a")).unwrap();
    let b = fs::metadata(root.path().join("h/b")).unwrap();
    let o = fs::metadata(root.path().join("h/other")).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.nlink(), 2);
    assert_ne!(a.ino(), o.ino());
    // Across sources they are not: each source is copied on its own, as in BuildKit.
    let root = dest();
    copy(&op("COPY d/a d/b /s/", "/"), &ctx.source(), root.path()).unwrap();
    let a = fs::metadata(root.path().join("s/a")).unwrap();
    let b = fs::metadata(root.path().join("s/b")).unwrap();
    assert_ne!(a.ino(), b.ino());
}

#[test]
fn symlinks_inside_a_directory_are_copied_as_links() {
    let ctx = Context::new(&[
        ("d/real", "r"),
        ("d/rel", "->real"),
        ("d/abs", "->/etc/passwd"),
        ("d/dangling", "->nowhere"),
    ]);
    let root = dest();
    copy(&op("COPY d /l/", "/"), &ctx.source(), root.path()).unwrap();
    let seen = tree(root.path());
    assert_eq!(
        (seen["l/rel"].kind, seen["l/rel"].data.as_str()),
        ('l', "real")
    );
    assert_eq!(seen["l/abs"].data, "/etc/passwd");
    assert_eq!(seen["l/dangling"].kind, 'l');
}

#[test]
fn a_context_symlink_source_never_leads_outside_the_context() {
    let outside = tempfile::tempdir().unwrap();
    populate(outside.path(), &[("secret", "host secret")]);
    let target = format!("->{}/secret", outside.path().display());
    let ctx = Context::new(&[("leak", &target), ("up", "->../../../../..")]);
    let root = dest();
    // The link's absolute target means the context root, where there is no such file.
    let err = copy(&op("COPY leak /x", "/"), &ctx.source(), root.path()).unwrap_err();
    assert!(err.to_string().contains("COPY failed"), "{err}");
    assert!(!root.path().join("x").exists());
}

#[test]
fn destination_symlinks_resolve_inside_the_root() {
    let ctx = Context::new(&[("f", "payload")]);
    let host = tempfile::tempdir().unwrap();
    let root = dest();
    // /escape -> the host directory by absolute path; /up -> ../../..
    let escape = format!("->{}", host.path().display());
    populate(root.path(), &[("escape", &escape), ("up", "->../../../..")]);
    copy(&op("COPY f /escape/", "/"), &ctx.source(), root.path()).unwrap();
    copy(&op("COPY f /up/g", "/"), &ctx.source(), root.path()).unwrap();
    assert!(
        fs::read_dir(host.path()).unwrap().next().is_none(),
        "wrote outside the root"
    );
    // Both resolved as in a chroot: the host path recreated inside, `..` clamped at /.
    let inside = host.path().strip_prefix("/").unwrap().join("f");
    assert_eq!(read(root.path(), inside.to_str().unwrap()), "payload");
    assert_eq!(read(root.path(), "g"), "payload");
}

#[test]
fn a_destination_symlink_is_followed_inside_the_root() {
    // As BuildKit (fsutil resolves the whole destination with RootPath): the file
    // lands where the link points, the link stays.
    let ctx = Context::new(&[("f", "new")]);
    let root = dest();
    populate(root.path(), &[("target", "keep"), ("link", "->/target")]);
    copy(&op("COPY f /link", "/"), &ctx.source(), root.path()).unwrap();
    assert_eq!(read(root.path(), "target"), "new");
    assert_eq!(tree(root.path())["link"].kind, 'l');
    assert_eq!(paths(root.path()), ["link", "target"]);
}

#[test]
fn a_symlink_inside_a_copied_directory_replaces_a_destination_file() {
    let ctx = Context::new(&[("d/x", "->elsewhere")]);
    let root = dest();
    populate(root.path(), &[("o/x", "old file")]);
    copy(&op("COPY d /o/", "/"), &ctx.source(), root.path()).unwrap();
    let seen = tree(root.path());
    assert_eq!(
        (seen["o/x"].kind, seen["o/x"].data.as_str()),
        ('l', "elsewhere")
    );
}

#[test]
fn a_large_directory_copied_in_parallel_keeps_everything() {
    // Enough files for the parallel path, with hardlinks, links, nested directories,
    // and a destination that already holds some of the names.
    let dir = tempfile::tempdir().unwrap();
    for d in 0..8 {
        for f in 0..100 {
            let p = dir.path().join(format!("big/d{d}/s/f{f}"));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(&p, format!("{d}/{f}")).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o600 + f % 2 * 0o44)).unwrap();
        }
    }
    fs::hard_link(
        dir.path().join("big/d0/s/f0"),
        dir.path().join("big/d7/s/hl"),
    )
    .unwrap();
    std::os::unix::fs::symlink("s/f1", dir.path().join("big/d3/link")).unwrap();
    let ctx = Context::from_dir(dir, "");
    let root = dest();
    populate(
        root.path(),
        &[("app/d1/s/f5", "old"), ("app/d2/s/f6", "->elsewhere")],
    );
    let stats = copy(&op("COPY big /app/", "/"), &ctx.source(), root.path()).unwrap();
    assert_eq!(stats.files, 801);
    let seen = tree(root.path());
    for d in 0..8 {
        for f in 0..100 {
            let e = &seen[&format!("app/d{d}/s/f{f}")];
            assert_eq!(
                (e.kind, e.data.as_str()),
                ('f', format!("{d}/{f}").as_str())
            );
            assert_eq!(e.mode, 0o600 + f % 2 * 0o44);
        }
    }
    assert_eq!(seen["app/d3/link"].data, "s/f1");
    let a = fs::metadata(root.path().join("app/d0/s/f0")).unwrap();
    let b = fs::metadata(root.path().join("app/d7/s/hl")).unwrap();
    assert_eq!(a.ino(), b.ino());
    // A directory standing where a file goes is still an error.
    let root = dest();
    fs::create_dir_all(root.path().join("app/d4/s/f9/x")).unwrap();
    let err = copy(&op("COPY big /app/", "/"), &ctx.source(), root.path()).unwrap_err();
    assert!(err.to_string().contains("cannot copy"), "{err}");
}

#[test]
fn a_context_edited_into_a_symlink_after_listing_is_not_followed() {
    let outside = tempfile::tempdir().unwrap();
    populate(outside.path(), &[("f", "host secret")]);
    let ctx = Context::new(&[("d/f", "listed")]);
    // Between the listing and the copy, d becomes a link out of the context.
    fs::rename(ctx.dir.path().join("d"), ctx.dir.path().join("moved")).unwrap();
    std::os::unix::fs::symlink(outside.path(), ctx.dir.path().join("d")).unwrap();
    let root = dest();
    let err = copy(&op("COPY d/f /x", "/"), &ctx.source(), root.path()).unwrap_err();
    assert!(
        err.to_string().contains("failed to read copy source"),
        "{err}"
    );
    assert!(!root.path().join("x").exists());
}
