//! The cache-key input of a copy: what changes it and what never does.

#![allow(clippy::unwrap_used)]

mod support;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, SystemTime};

use rbuild_core::{
    Digest,
    copy::{CopySource, selected_sources, sources_digest},
};
use support::copy::{Context, op, populate};

fn digest_of(dir: &tempfile::TempDir, line: &str) -> Digest {
    let rules = rbuild_core::context::IgnoreRules::none();
    let listing = rbuild_core::context::ContextListing::walk(dir.path(), &rules).unwrap();
    let hashes = rbuild_core::context::ContextHashes::compute(&listing, None).unwrap();
    let from = CopySource::Context {
        root: dir.path(),
        listing: &listing,
        hashes: &hashes,
    };
    sources_digest(&op(line, "/"), &from).unwrap()
}

#[test]
fn mtime_never_changes_the_key_content_and_mode_do() {
    let dir = tempfile::tempdir().unwrap();
    populate(
        dir.path(),
        &[("src/a", "1"), ("src/b", "2"), ("other", "x")],
    );
    let line = "COPY src /app/";
    let first = digest_of(&dir, line);
    assert_eq!(digest_of(&dir, line), first, "the digest is deterministic");
    fs::File::options()
        .write(true)
        .open(dir.path().join("src/a"))
        .unwrap()
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(5))
        .unwrap();
    assert_eq!(digest_of(&dir, line), first, "mtime is not part of the key");
    fs::write(dir.path().join("other"), "changed").unwrap();
    assert_eq!(
        digest_of(&dir, line),
        first,
        "an unselected file is not part of it"
    );
    fs::write(dir.path().join("src/a"), "changed").unwrap();
    let content = digest_of(&dir, line);
    assert_ne!(content, first, "content is");
    fs::set_permissions(dir.path().join("src/b"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_ne!(digest_of(&dir, line), content, "mode is");
    fs::write(dir.path().join("src/new"), "n").unwrap();
    let added = digest_of(&dir, line);
    fs::remove_file(dir.path().join("src/new")).unwrap();
    std::os::unix::fs::symlink("a", dir.path().join("src/new")).unwrap();
    assert_ne!(digest_of(&dir, line), added, "type and link target are");
}

#[test]
fn a_lone_files_mode_is_part_of_the_key() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path(), &[("run.sh", "#!/bin/sh\n")]);
    let before = digest_of(&dir, "COPY run.sh /bin/");
    fs::set_permissions(dir.path().join("run.sh"), fs::Permissions::from_mode(0o755)).unwrap();
    assert_ne!(digest_of(&dir, "COPY run.sh /bin/"), before);
}

#[test]
fn the_ops_own_options_are_part_of_the_key() {
    let dir = tempfile::tempdir().unwrap();
    populate(dir.path(), &[("f", "1"), ("g.log", "2")]);
    let keys = [
        "COPY f /a/",
        "COPY f /b/",
        "COPY --chown=1:1 f /a/",
        "COPY --chmod=600 f /a/",
        "ADD f /a/",
        "COPY --parents f /a/",
        "COPY . /a/",
        "COPY --exclude=*.log . /a/",
    ]
    .map(|l| digest_of(&dir, l));
    for (i, a) in keys.iter().enumerate() {
        for b in &keys[i + 1..] {
            assert_ne!(a, b);
        }
    }
    // The destination counts as written after the workdir is applied.
    assert_eq!(
        digest_of(&dir, "COPY f /a/"),
        digest_of(&dir, "COPY f /a/./")
    );
}

#[test]
fn tree_sources_key_on_owner_and_content() {
    support::require::require_root("it sets file owners");
    let stage = tempfile::tempdir().unwrap();
    populate(stage.path(), &[("opt/x", "1")]);
    let step = op("COPY --from=s /opt /o/", "/");
    let key = |p: &std::path::Path| sources_digest(&step, &CopySource::Tree(p)).unwrap();
    let first = key(stage.path());
    fs::write(stage.path().join("opt/x"), "2").unwrap();
    let second = key(stage.path());
    assert_ne!(first, second);
    std::os::unix::fs::lchown(stage.path().join("opt/x"), Some(5), Some(5)).unwrap();
    assert_ne!(key(stage.path()), second);
}

#[test]
fn selected_sources_name_each_source_with_its_digest() {
    let ctx = Context::new(&[("a.txt", "alpha"), ("d/b", "beta")]);
    let step = op("COPY a.txt d <<EOF /x/\nhi\nEOF", "/");
    let list = selected_sources(&step, &ctx.source()).unwrap();
    let names: Vec<&str> = list.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(names, ["a.txt", "d", "<<EOF"]);
    assert_eq!(list[0].1, Digest::of(b"alpha"));
}
