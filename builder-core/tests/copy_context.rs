//! COPY from the build context: sources, wildcards, destinations.

#![allow(clippy::unwrap_used)]

mod support;

use rbuild_core::copy::{CopyError, copy};
use support::copy::{Context, dest, op, paths, read, tree};

#[test]
fn a_file_to_a_new_path_and_into_a_directory() {
    let ctx = Context::new(&[("app.py", "print('hi')\n"), ("b.txt", "b")]);
    let root = dest();
    copy(
        &op("COPY app.py /srv/main.py", "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap();
    copy(&op("COPY b.txt /srv/", "/"), &ctx.source(), root.path()).unwrap();
    assert_eq!(read(root.path(), "srv/main.py"), "print('hi')\n");
    assert_eq!(read(root.path(), "srv/b.txt"), "b");
    // An existing directory receives the file inside it, slash or not.
    copy(&op("COPY app.py /srv", "/"), &ctx.source(), root.path()).unwrap();
    assert_eq!(read(root.path(), "srv/app.py"), "print('hi')\n");
}

#[test]
fn several_sources_to_a_non_directory_are_copied_in_turn() {
    // As docker 20.10's BuildKit: no error; a later file replaces an earlier one, and
    // a directory's contents cannot go where a file is.
    let ctx = Context::new(&[("a", "1"), ("b", "2"), ("d/x", "x")]);
    let root = dest();
    copy(&op("COPY a b /out", "/"), &ctx.source(), root.path()).unwrap();
    assert_eq!(read(root.path(), "out"), "2");
    let err = copy(&op("COPY a d /other", "/"), &ctx.source(), root.path()).unwrap_err();
    assert!(matches!(err, CopyError::Conflict { .. }), "{err}");
    copy(&op("COPY a b /dir/", "/"), &ctx.source(), root.path()).unwrap();
    assert_eq!(read(root.path(), "dir/a"), "1");
    assert_eq!(read(root.path(), "dir/b"), "2");
}

#[test]
fn a_directory_copies_its_contents() {
    let ctx = Context::new(&[("src/a.rs", "a"), ("src/sub/b.rs", "b"), ("other", "o")]);
    let root = dest();
    copy(&op("COPY src /app", "/"), &ctx.source(), root.path()).unwrap();
    assert_eq!(
        paths(root.path()),
        ["app", "app/a.rs", "app/sub", "app/sub/b.rs"]
    );
    // `.` is the whole context.
    let root = dest();
    copy(&op("COPY . /ctx/", "/"), &ctx.source(), root.path()).unwrap();
    assert!(paths(root.path()).contains(&"ctx/src/sub/b.rs".to_owned()));
    assert!(paths(root.path()).contains(&"ctx/other".to_owned()));
}

#[test]
fn wildcards_match_one_component_and_flatten_directories() {
    let ctx = Context::new(&[
        ("a.txt", "a"),
        ("b.txt", "b"),
        ("c.md", "c"),
        ("dir1/x", "x"),
        ("dir2/y", "y"),
        ("sub/d.txt", "d"),
    ]);
    let root = dest();
    copy(&op("COPY *.txt /t/", "/"), &ctx.source(), root.path()).unwrap();
    assert_eq!(paths(root.path()), ["t", "t/a.txt", "t/b.txt"]);
    // A directory matched by a wildcard copies its contents, as BuildKit does.
    let root = dest();
    copy(&op("COPY dir? /d/", "/"), &ctx.source(), root.path()).unwrap();
    assert_eq!(paths(root.path()), ["d", "d/x", "d/y"]);
    let root = dest();
    copy(
        &op("COPY [ab].txt s*/*.txt /m/", "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap();
    assert_eq!(paths(root.path()), ["m", "m/a.txt", "m/b.txt", "m/d.txt"]);
}

#[test]
fn missing_sources_are_errors_naming_them() {
    let ctx = Context::new(&[("a", "1")]);
    let root = dest();
    let err = copy(&op("COPY nope /x", "/"), &ctx.source(), root.path()).unwrap_err();
    let chain = format!("{err}: {}", std::error::Error::source(&err).unwrap());
    assert!(
        chain.contains("COPY failed") && chain.contains("\"nope\" not found"),
        "{chain}"
    );
    // A wildcard matching nothing is no error and changes nothing, as in BuildKit
    // (its frontend sets AllowEmptyWildcard).
    let stats = copy(&op("COPY *.none /x/", "/"), &ctx.source(), root.path()).unwrap();
    assert_eq!(stats, Default::default());
    assert!(paths(root.path()).is_empty());
    // A COPY of a URL is refused.
    let err = copy(&op("COPY http://h/f /x/", "/"), &ctx.source(), root.path()).unwrap_err();
    assert!(
        err.to_string().contains("source can't be a URL for COPY"),
        "{err}"
    );
    // A wildcard matching nothing is allowed beside a source that matches.
    copy(&op("COPY a maybe* /y/", "/"), &ctx.source(), root.path()).unwrap();
    assert_eq!(read(root.path(), "y/a"), "1");
}

#[test]
fn relative_destinations_follow_the_workdir() {
    let ctx = Context::new(&[("f", "1")]);
    let root = dest();
    copy(&op("COPY f rel/g", "/work/dir"), &ctx.source(), root.path()).unwrap();
    copy(&op("COPY f .", "/work/dir"), &ctx.source(), root.path()).unwrap();
    copy(
        &op("COPY f ../up/", "/work/dir"),
        &ctx.source(),
        root.path(),
    )
    .unwrap();
    assert_eq!(read(root.path(), "work/dir/rel/g"), "1");
    assert_eq!(read(root.path(), "work/dir/f"), "1");
    assert_eq!(read(root.path(), "work/up/f"), "1");
}

#[test]
fn dockerignored_files_are_never_copied() {
    let ctx = Context::with_ignore(
        &[("src/a", "a"), ("src/secret.key", "k"), ("top.key", "t")],
        "**/*.key\n",
    );
    let root = dest();
    copy(&op("COPY . /c/", "/"), &ctx.source(), root.path()).unwrap();
    assert_eq!(paths(root.path()), ["c", "c/src", "c/src/a"]);
    let err = copy(&op("COPY top.key /x", "/"), &ctx.source(), root.path()).unwrap_err();
    assert!(matches!(err, CopyError::Resolve(_)), "{err}");
}

#[test]
fn a_file_replaces_a_file_but_never_a_directory() {
    let ctx = Context::new(&[("f", "new"), ("d/f", "inner")]);
    let root = dest();
    std::fs::write(root.path().join("f"), "old").unwrap();
    copy(&op("COPY f /f", "/"), &ctx.source(), root.path()).unwrap();
    assert_eq!(read(root.path(), "f"), "new");
    std::fs::create_dir_all(root.path().join("x/f/inside")).unwrap();
    let err = copy(&op("COPY d /x/", "/"), &ctx.source(), root.path()).unwrap_err();
    assert!(matches!(err, CopyError::Conflict { .. }), "{err}");
    let seen = tree(root.path());
    assert_eq!(seen["x/f"].kind, 'd');
}

#[test]
fn a_symlink_named_as_source_is_followed_inside_the_context() {
    // Checked against docker 20.10's BuildKit: `COPY top /t/` with top -> d/real gives
    // the file /t/top; an absolute target means the context root.
    let ctx = Context::new(&[
        ("d/real", "real"),
        ("top", "->d/real"),
        ("abs", "->/d/real"),
    ]);
    let root = dest();
    copy(&op("COPY top abs /t/", "/"), &ctx.source(), root.path()).unwrap();
    let seen = tree(root.path());
    assert_eq!(
        (seen["t/top"].kind, seen["t/top"].data.as_str()),
        ('f', "real")
    );
    assert_eq!(
        (seen["t/abs"].kind, seen["t/abs"].data.as_str()),
        ('f', "real")
    );
}

#[test]
fn two_sources_merge_into_the_same_directories() {
    let ctx = Context::new(&[("one/s/f", "1"), ("two/s/f", "2"), ("two/s/g", "g")]);
    let root = dest();
    copy(&op("COPY one two /d/", "/"), &ctx.source(), root.path()).unwrap();
    assert_eq!(read(root.path(), "d/s/f"), "2");
    assert_eq!(read(root.path(), "d/s/g"), "g");
}

#[test]
fn a_source_linking_to_the_root_copies_the_whole_context() {
    let ctx = Context::new(&[("f", "1"), ("d/g", "2"), ("all", "->/"), ("up", "->..")]);
    for line in ["COPY all /x/", "COPY up /x/"] {
        let root = dest();
        copy(&op(line, "/"), &ctx.source(), root.path()).unwrap();
        let seen = paths(root.path());
        assert!(seen.contains(&"x/d/g".to_owned()), "{line}: {seen:?}");
        assert!(seen.contains(&"x/f".to_owned()), "{line}: {seen:?}");
    }
}
