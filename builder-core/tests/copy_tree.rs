//! COPY --from a root filesystem, and ownership rules for both kinds of source.

#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::{MetadataExt, PermissionsExt, lchown};
use std::path::Path;

use rbuild_core::copy::{CopyError, CopySource, copy};
use support::copy::{Context, dest, op, paths, populate, read, tree};
use support::require::require_root;

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001::/home/web:/bin/sh\n";
const GROUP: &str = "root:x:0:\nstaff:x:50:\nwebgrp:x:1001:\n";

fn with_users(root: &Path) {
    populate(root, &[("etc/passwd", PASSWD), ("etc/group", GROUP)]);
}

#[test]
fn copy_from_a_tree_keeps_owners() {
    require_root("it sets file owners");
    let stage = tempfile::tempdir().unwrap();
    populate(
        stage.path(),
        &[
            ("opt/app/bin/tool", "#!/bin/sh\n"),
            ("opt/app/lib/x.so", "elf"),
        ],
    );
    std::fs::set_permissions(
        stage.path().join("opt/app/bin/tool"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    lchown(stage.path().join("opt/app/bin/tool"), Some(1234), Some(99)).unwrap();
    lchown(stage.path().join("opt/app/lib"), Some(7), Some(8)).unwrap();
    let root = dest();
    let from = CopySource::Tree(stage.path());
    copy(
        &op("COPY --from=build /opt/app /usr/local/", "/"),
        &from,
        root.path(),
    )
    .unwrap();
    let seen = tree(root.path());
    let tool = &seen["usr/local/bin/tool"];
    assert_eq!((tool.uid, tool.gid, tool.mode), (1234, 99, 0o755));
    assert_eq!(
        (seen["usr/local/lib"].uid, seen["usr/local/lib"].gid),
        (7, 8)
    );
    // A missing source names itself.
    let err = copy(&op("COPY --from=build /nope /x", "/"), &from, root.path()).unwrap_err();
    assert!(matches!(err, CopyError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("\"/nope\" not found"), "{err}");
}

#[test]
fn tree_sources_resolve_symlinks_inside_the_tree() {
    let stage = tempfile::tempdir().unwrap();
    // /link points at an absolute path: inside the tree, not the host's /etc.
    populate(
        stage.path(),
        &[
            ("etc/os-release", "tree's own"),
            ("link", "->/etc"),
            ("f", "->/etc/os-release"),
        ],
    );
    let root = dest();
    let from = CopySource::Tree(stage.path());
    copy(
        &op("COPY --from=s /link/os-release /out/", "/"),
        &from,
        root.path(),
    )
    .unwrap();
    assert_eq!(read(root.path(), "out/os-release"), "tree's own");
    // A source that is a symlink is followed; its name is kept.
    copy(&op("COPY --from=s /f /out2/", "/"), &from, root.path()).unwrap();
    assert_eq!(read(root.path(), "out2/f"), "tree's own");
    assert_eq!(tree(root.path())["out2/f"].kind, 'f');
}

#[test]
fn context_files_become_root_owned_unless_chown() {
    require_root("it sets file owners");
    let ctx = Context::new(&[("a", "1"), ("d/b", "2")]);
    lchown(ctx.dir.path().join("a"), Some(4321), Some(4321)).unwrap();
    let ctx = Context::from_dir(ctx.dir, "");
    let root = dest();
    copy(&op("COPY a d /plain/", "/"), &ctx.source(), root.path()).unwrap();
    let seen = tree(root.path());
    assert_eq!((seen["plain/a"].uid, seen["plain/a"].gid), (0, 0));
}

#[test]
fn chown_by_name_number_and_group() {
    require_root("it sets file owners");
    let ctx = Context::new(&[("a", "1"), ("d/b", "2")]);
    let root = dest();
    with_users(root.path());
    copy(
        &op("COPY --chown=web a /named/", "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap();
    copy(
        &op("COPY --chown=web:staff a /both/", "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap();
    copy(
        &op("COPY --chown=42 a /num/", "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap();
    copy(
        &op("COPY --chown=42:7 d /deep/er/", "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap();
    let seen = tree(root.path());
    let owner = |p: &str| (seen[p].uid, seen[p].gid);
    // A name takes its primary group from /etc/passwd.
    assert_eq!(owner("named/a"), (1000, 1001));
    assert_eq!(owner("both/a"), (1000, 50));
    // A number alone is used for the group too (BuildKit's ChownOpt by id).
    assert_eq!(owner("num/a"), (42, 42));
    // Directories the copy creates get the --chown owner.
    assert_eq!(owner("named"), (1000, 1001));
    assert_eq!(owner("deep"), (42, 7));
    assert_eq!(owner("deep/er"), (42, 7));
    assert_eq!(owner("deep/er/b"), (42, 7));
    // issue 14 bug 9: a name the destination does not know is 0, as BuildKit's file
    // operations read it (no error); an unknown group keeps the user's group.
    copy(
        &op("COPY --chown=nobody a /x/", "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap();
    copy(
        &op("COPY --chown=1000:nosuchgroup a /y/", "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap();
    let seen = tree(root.path());
    assert_eq!((seen["x/a"].uid, seen["x/a"].gid), (0, 0));
    assert_eq!((seen["y/a"].uid, seen["y/a"].gid), (1000, 1000));
}

#[test]
fn chown_reads_passwd_inside_the_root_not_the_host() {
    require_root("it sets file owners");
    let ctx = Context::new(&[("a", "1")]);
    let root = dest();
    // /etc is a symlink with an absolute target: it must resolve inside the root.
    populate(
        root.path(),
        &[
            ("real/passwd", PASSWD),
            ("real/group", GROUP),
            ("etc", "->/real"),
        ],
    );
    copy(
        &op("COPY --chown=web a /x/", "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap();
    assert_eq!(
        std::fs::metadata(root.path().join("x/a")).unwrap().uid(),
        1000
    );
    assert_eq!(
        paths(root.path())
            .iter()
            .filter(|p| p.starts_with("x"))
            .count(),
        2
    );
}

#[test]
fn merged_usr_symlinks_and_links_out_of_the_source_directory() {
    // A narrowed listing (only what the sources reach) must give what a whole-tree
    // listing gives: through /lib -> usr/lib, and for a matched link whose target lies
    // elsewhere in the tree.
    let stage = tempfile::tempdir().unwrap();
    populate(
        stage.path(),
        &[
            ("usr/lib/libz.so.1", "zlib"),
            ("lib", "->usr/lib"),
            ("data/real", "R"),
            ("opt/a", "->/data/real"),
            ("opt/b", "b"),
            ("big/1", "unrelated"),
        ],
    );
    let root = dest();
    let from = CopySource::Tree(stage.path());
    copy(
        &op("COPY --from=s /lib/libz.so.1 /out/", "/"),
        &from,
        root.path(),
    )
    .unwrap();
    copy(&op("COPY --from=s /opt/* /star/", "/"), &from, root.path()).unwrap();
    copy(
        &op("COPY --from=s lib/lib*.so.? /w/", "/"),
        &from,
        root.path(),
    )
    .unwrap();
    assert_eq!(read(root.path(), "out/libz.so.1"), "zlib");
    assert_eq!(read(root.path(), "star/a"), "R");
    assert_eq!(read(root.path(), "star/b"), "b");
    assert_eq!(read(root.path(), "w/libz.so.1"), "zlib");
    let key = |line: &str| rbuild_core::copy::sources_digest(&op(line, "/"), &from).unwrap();
    // The key names the entries by their real paths, however the source reached them.
    assert_eq!(
        rbuild_core::copy::selected_sources(&op("COPY --from=s /lib/libz.so.1 /o/", "/"), &from)
            .unwrap()[0]
            .0,
        "usr/lib/libz.so.1"
    );
    assert_ne!(key("COPY --from=s /opt /o/"), key("COPY --from=s /usr /o/"));
}

#[test]
fn an_existing_directory_inside_the_copy_takes_the_copied_owner_and_mode() {
    // Checked against docker 20.10's BuildKit: `COPY d /e/` then
    // `COPY --chown=5:5 d /e/` leaves /e as it was and makes /e/s 5:5.
    require_root("it sets file owners");
    let ctx = Context::new(&[("d/f", "f"), ("d/s/g", "g")]);
    let root = dest();
    copy(&op("COPY d /e/", "/"), &ctx.source(), root.path()).unwrap();
    copy(
        &op("COPY --chown=5:5 --chmod=750 d /e/", "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap();
    let seen = tree(root.path());
    assert_eq!((seen["e"].uid, seen["e"].mode), (0, 0o755));
    assert_eq!(
        (seen["e/s"].uid, seen["e/s"].gid, seen["e/s"].mode),
        (5, 5, 0o750)
    );
    assert_eq!((seen["e/s/g"].uid, seen["e/s/g"].mode), (5, 0o750));
}
