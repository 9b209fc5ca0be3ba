//! `--exclude`, `--parents`, `--link` and heredoc sources.

#![allow(clippy::unwrap_used)]

mod support;

use rbuild_core::copy::copy;
use support::copy::{Context, dest, op, paths, read, tree};

#[test]
fn exclude_leaves_out_matching_entries_below_a_source() {
    let ctx = Context::new(&[
        ("app/main.py", "m"),
        ("app/debug.log", "l"),
        ("app/logs/old.log", "o"),
        ("app/cache/x", "x"),
        ("app/keep.txt", "k"),
    ]);
    let root = dest();
    // Patterns are relative to the source, .dockerignore style: `*` stays in one
    // component, so `*.log` at the context root leaves app/debug.log alone.
    let step = op(
        "COPY --exclude=*.log --exclude=app/cache --exclude=app/*.log . /c/",
        "/",
    );
    copy(&step, &ctx.source(), root.path()).unwrap();
    assert_eq!(
        paths(root.path()),
        [
            "c",
            "c/app",
            "c/app/keep.txt",
            "c/app/logs",
            "c/app/logs/old.log",
            "c/app/main.py"
        ]
    );
    let root = dest();
    copy(
        &op("COPY --exclude=**/*.log --exclude=cache app /a/", "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap();
    assert_eq!(
        paths(root.path()),
        ["a", "a/keep.txt", "a/logs", "a/main.py"]
    );
}

#[test]
fn exclude_applies_to_wildcard_matches() {
    let ctx = Context::new(&[("a.txt", "a"), ("b.txt", "b"), ("c.txt", "c")]);
    let root = dest();
    copy(
        &op("COPY --exclude=b.txt *.txt /t/", "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap();
    assert_eq!(paths(root.path()), ["t", "t/a.txt", "t/c.txt"]);
}

#[test]
fn parents_keep_the_source_path() {
    let ctx = Context::new(&[("x/a.txt", "xa"), ("y/a.txt", "ya"), ("x/sub/b.txt", "b")]);
    let root = dest();
    copy(
        &op("COPY --parents ./x/a.txt ./y/a.txt /p/", "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap();
    assert_eq!(read(root.path(), "p/x/a.txt"), "xa");
    assert_eq!(read(root.path(), "p/y/a.txt"), "ya");
    let root = dest();
    copy(
        &op("COPY --parents */a.txt x/sub /q/", "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap();
    assert_eq!(
        paths(root.path()),
        [
            "q",
            "q/x",
            "q/x/a.txt",
            "q/x/sub",
            "q/x/sub/b.txt",
            "q/y",
            "q/y/a.txt"
        ]
    );
}

#[test]
fn parents_pivot_at_dot_slash() {
    let ctx = Context::new(&[("x/y/a.txt", "a"), ("x/y/z/b.txt", "b")]);
    let root = dest();
    copy(
        &op("COPY --parents ./x/./y/a.txt /p/", "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap();
    assert_eq!(paths(root.path()), ["p", "p/y", "p/y/a.txt"]);
    let root = dest();
    copy(
        &op("COPY --parents x/./y/z /p/", "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap();
    assert_eq!(paths(root.path()), ["p", "p/y", "p/y/z", "p/y/z/b.txt"]);
}

#[test]
fn parents_directories_take_the_sources_mode() {
    let dir = tempfile::tempdir().unwrap();
    support::copy::populate(dir.path(), &[("x/a", "a")]);
    std::fs::set_permissions(
        dir.path().join("x"),
        std::os::unix::fs::PermissionsExt::from_mode(0o750),
    )
    .unwrap();
    let ctx = Context::from_dir(dir, "");
    let root = dest();
    copy(
        &op("COPY --parents x/a /p/", "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap();
    assert_eq!(tree(root.path())["p/x"].mode, 0o750);
}

#[test]
fn link_gives_the_same_result() {
    let ctx = Context::new(&[("d/a", "1"), ("d/b/c", "2")]);
    let plain = dest();
    let linked = dest();
    copy(&op("COPY d /o/", "/"), &ctx.source(), plain.path()).unwrap();
    copy(&op("COPY --link d /o/", "/"), &ctx.source(), linked.path()).unwrap();
    assert_eq!(tree(plain.path()), tree(linked.path()));
}

#[test]
fn heredocs_are_written_as_files() {
    let ctx = Context::new(&[]);
    let root = dest();
    let step = op("COPY <<EOF /etc/motd\nhello\nworld\nEOF", "/");
    copy(&step, &ctx.source(), root.path()).unwrap();
    assert_eq!(read(root.path(), "etc/motd"), "hello\nworld\n");
    let seen = tree(root.path());
    assert_eq!((seen["etc/motd"].mode, seen["etc/motd"].uid), (0o644, 0));
    // Several heredocs into a directory take their names.
    let step = op("COPY <<one <<two /d/\n1\none\n2\ntwo", "/");
    copy(&step, &ctx.source(), root.path()).unwrap();
    assert_eq!(read(root.path(), "d/one"), "1\n");
    assert_eq!(read(root.path(), "d/two"), "2\n");
    let step = op("COPY --chmod=755 <<EOF /run.sh\n#!/bin/sh\nEOF", "/");
    copy(&step, &ctx.source(), root.path()).unwrap();
    assert_eq!(tree(root.path())["run.sh"].mode, 0o755);
}
