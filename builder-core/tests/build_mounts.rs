//! `RUN --mount` on the busybox fixture: cache mounts outlive builds and never reach a
//! layer, tmpfs mounts are the step's own, bind mounts show the context read-only (or a
//! throw-away copy with `rw`), and secrets reach the step and nothing else.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use rbuild_core::{
    digest::Hasher,
    error_chain::error_chain,
    layer::Compression,
    solver::{BuildSecret, CACHE_MOUNTS_DIR, SecretSource, prune_cache_mounts},
};
use support::build::{build, build_with, busybox_store, cached, context, read, rootfs};

const CACHE_DOCKERFILE: &str = "FROM busybox
COPY a /a
RUN --mount=type=cache,target=/var/cache/t sh -c 'cat /var/cache/t/f > /seen 2>/dev/null || echo none > /seen; cat /a >> /var/cache/t/f'
";

/// BuildKit leaves the directories it creates as `RUN --mount` targets in the image,
/// empty (differential case run-mounts); rbuild does the same. True when `path` is a
/// directory holding nothing but such empty directories.
/// True when nothing but empty directories is at `path`, or nothing at all: mount points
/// a step needed and their new parents are removed after it (issue 13), those the image
/// had stay, empty.
fn only_empty_dirs(path: &std::path::Path) -> bool {
    if std::fs::symlink_metadata(path).is_err() {
        return true;
    }
    path.is_dir()
        && std::fs::read_dir(path)
            .unwrap()
            .all(|e| only_empty_dirs(&e.unwrap().path()))
}

#[test]
fn a_cache_mount_outlives_the_build_and_never_reaches_the_layer() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[("a", "1\n")]);
    let first = build(&store, CACHE_DOCKERFILE, &ctx);
    assert_eq!(read(&store, &first.image, dir.path(), "/seen"), "none\n");
    let root = rootfs(&store, &first.image, dir.path());
    assert!(
        only_empty_dirs(&root.join("var/cache/t")),
        "the cache mount's target is in the layer only as an empty directory"
    );
    assert!(store.root().join(CACHE_MOUNTS_DIR).is_dir());

    // A change above the RUN: it runs again and sees what the first build left.
    std::fs::write(ctx.join("a"), "2\n").unwrap();
    let second = build(&store, CACHE_DOCKERFILE, &ctx);
    assert_eq!(
        cached(&second).iter().map(|(_, c)| *c).collect::<Vec<_>>(),
        [false, false]
    );
    assert_eq!(read(&store, &second.image, dir.path(), "/seen"), "1\n");
    let root = rootfs(&store, &second.image, dir.path());
    assert!(!root.join("var/cache/t/f").exists());

    assert_eq!(prune_cache_mounts(&store).unwrap(), 1);
    std::fs::write(ctx.join("a"), "3\n").unwrap();
    let third = build(&store, CACHE_DOCKERFILE, &ctx);
    assert_eq!(read(&store, &third.image, dir.path(), "/seen"), "none\n");
}

#[test]
fn cache_mounts_with_one_id_share_a_directory_and_take_their_owner_and_mode() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let dockerfile = "FROM busybox
RUN --mount=type=cache,id=shared,target=/one,sharing=locked,uid=1000,gid=1000,mode=0700 sh -c 'echo from-one > /one/f'
RUN --mount=type=cache,id=shared,target=/two,sharing=private sh -c 'cat /two/f > /seen && stat -c %u:%g:%a /two > /owner'
";
    let result = build(&store, dockerfile, &ctx);
    assert_eq!(
        read(&store, &result.image, dir.path(), "/seen"),
        "from-one\n"
    );
    assert_eq!(
        read(&store, &result.image, dir.path(), "/owner"),
        "1000:1000:700\n"
    );
    let root = rootfs(&store, &result.image, dir.path());
    assert!(only_empty_dirs(&root.join("one")) && only_empty_dirs(&root.join("two")));
}

#[test]
fn a_tmpfs_mount_is_the_steps_own_and_leaves_nothing_in_the_layer() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let dockerfile = "FROM busybox
RUN --mount=type=tmpfs,target=/scratch,size=1m sh -c 'echo x > /scratch/f && grep \" /scratch tmpfs \" /proc/mounts > /mounts'
";
    let result = build(&store, dockerfile, &ctx);
    let mounts = read(&store, &result.image, dir.path(), "/mounts");
    assert!(mounts.contains("size=1024k"), "{mounts}");
    let root = rootfs(&store, &result.image, dir.path());
    assert!(only_empty_dirs(&root.join("scratch")));
}

#[test]
fn a_bind_mount_shows_the_context_read_only_and_its_content_is_in_the_key() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[("src/hello", "hello\n")]);
    let dockerfile = "FROM busybox
RUN --mount=type=bind,source=src,target=/src sh -c 'cat /src/hello > /out; if touch /src/x 2>/dev/null; then echo writable; else echo read-only; fi > /ro'
";
    let first = build(&store, dockerfile, &ctx);
    assert_eq!(read(&store, &first.image, dir.path(), "/out"), "hello\n");
    assert_eq!(read(&store, &first.image, dir.path(), "/ro"), "read-only\n");
    let root = rootfs(&store, &first.image, dir.path());
    assert!(only_empty_dirs(&root.join("src")));
    assert!(!ctx.join("src/x").exists());

    let again = build(&store, dockerfile, &ctx);
    assert_eq!(
        cached(&again).iter().map(|(_, c)| *c).collect::<Vec<_>>(),
        [true]
    );
    std::fs::write(ctx.join("src/hello"), "changed\n").unwrap();
    let changed = build(&store, dockerfile, &ctx);
    assert_eq!(
        cached(&changed).iter().map(|(_, c)| *c).collect::<Vec<_>>(),
        [false]
    );
    assert_eq!(
        read(&store, &changed.image, dir.path(), "/out"),
        "changed\n"
    );
}

#[test]
fn a_rw_bind_mount_takes_writes_that_are_thrown_away() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[("src/hello", "hello\n")]);
    let dockerfile = "FROM busybox
RUN --mount=type=bind,source=src,target=/src,rw sh -c 'echo new > /src/hello && cat /src/hello > /out'
";
    let result = build(&store, dockerfile, &ctx);
    assert_eq!(read(&store, &result.image, dir.path(), "/out"), "new\n");
    assert_eq!(
        std::fs::read_to_string(ctx.join("src/hello")).unwrap(),
        "hello\n"
    );
    let root = rootfs(&store, &result.image, dir.path());
    assert!(only_empty_dirs(&root.join("src")));
}

#[test]
fn a_bind_mount_outside_the_context_is_refused() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let dockerfile = "FROM busybox
RUN --mount=type=bind,source=../..,target=/src true
";
    let (result, _) = build_with(&store, dockerfile, &ctx, |_| {});
    let message = error_chain(&result.unwrap_err());
    assert!(message.contains("leaves the build context"), "{message}");
}

/// Every byte sequence under `dir` (files only), to search for a secret.
fn contains_in_tree(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(dir).follow_links(false) {
        let entry = entry.unwrap();
        if !entry.file_type().is_file() {
            continue;
        }
        let bytes = std::fs::read(entry.path()).unwrap();
        if bytes.windows(needle.len()).any(|w| w == needle) {
            found.push(entry.path().display().to_string());
        }
    }
    found
}

#[test]
fn a_secret_reaches_the_step_and_nothing_else() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let secret_text = "s3cr3t-value-6b1f0c";
    let secret_file = dir.path().join("token.txt");
    std::fs::write(&secret_file, secret_text).unwrap();
    let dockerfile = "FROM busybox
RUN --mount=type=secret,id=tok sh -c 'sha256sum < /run/secrets/tok > /file-sum && stat -c %a:%u /run/secrets/tok > /file-ok'
RUN --mount=type=secret,id=fromenv,env=TOK,required sh -c 'printf %s \"$TOK\" | sha256sum > /env-sum'
RUN --mount=type=secret,id=absent sh -c 'test ! -e /run/secrets/absent && echo absent > /absent-ok'
";
    // The steps show only a digest of the secret: the Dockerfile must not hold it.
    let mut hasher = Hasher::new();
    hasher.update(secret_text.as_bytes());
    let digest = hasher.finish();
    let sum = format!("{}  -\n", digest.as_str().trim_start_matches("sha256:"));
    let (result, events) = build_with(&store, dockerfile, &ctx, |r| {
        r.spec.compression = Compression::None;
        r.options.secrets = vec![
            BuildSecret {
                id: "tok".to_owned(),
                source: SecretSource::File(secret_file.clone()),
            },
            // Secrets from the builder's environment are tested through the binary
            // (cli/tests/build_mounts_cli.rs): setting a variable here would race
            // other threads.
            BuildSecret {
                id: "fromenv".to_owned(),
                source: SecretSource::File(secret_file.clone()),
            },
        ];
    });
    let result = result.unwrap_or_else(|e| panic!("build failed: {}", error_chain(&e)));
    assert_eq!(
        read(&store, &result.image, dir.path(), "/file-ok"),
        "400:0\n"
    );
    assert_eq!(read(&store, &result.image, dir.path(), "/file-sum"), sum);
    assert_eq!(read(&store, &result.image, dir.path(), "/env-sum"), sum);
    assert_eq!(
        read(&store, &result.image, dir.path(), "/absent-ok"),
        "absent\n"
    );
    let root = rootfs(&store, &result.image, dir.path());
    // As BuildKit: the secret file is gone, its new directory stays, empty.
    assert!(only_empty_dirs(&root.join("run/secrets")));
    // Layers are uncompressed here, so the text would show in a blob as it is.
    let found = contains_in_tree(store.root(), secret_text.as_bytes());
    assert!(found.is_empty(), "the secret is in the store: {found:?}");
    let output = format!("{:?}", events.events());
    assert!(
        !output.contains(secret_text),
        "the secret is in the progress output"
    );
    assert!(!format!("{result:?}").contains(secret_text));
}

#[test]
fn a_required_secret_that_is_missing_fails_the_step() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let dockerfile = "FROM busybox
RUN --mount=type=secret,id=missing,required=true true
";
    let (result, _) = build_with(&store, dockerfile, &ctx, |_| {});
    let message = error_chain(&result.unwrap_err());
    assert!(
        message.contains("secret missing is required but was not given to the build"),
        "{message}"
    );
}

#[test]
fn a_bind_mount_from_a_stage_or_an_image_is_read_only_and_its_rw_writes_are_thrown_away() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let dockerfile = "FROM busybox AS tools
RUN mkdir -p /opt/tool && echo tool-v1 > /opt/tool/version
FROM busybox
RUN --mount=type=bind,from=tools,source=/opt/tool,target=/t sh -c 'cat /t/version > /out; if touch /t/x 2>/dev/null; then echo writable; else echo read-only; fi > /ro'
RUN --mount=type=bind,from=tools,target=/t,rw sh -c 'echo changed > /t/opt/tool/version && cat /t/opt/tool/version > /out2'
RUN --mount=type=bind,from=tools,source=opt/tool/version,target=/v cat /v > /out3
RUN --mount=type=bind,from=busybox,source=/bin/busybox,target=/bb sh -c 'test -x /bb && echo ok > /img'
";
    let result = build(&store, dockerfile, &ctx);
    let file = |path| read(&store, &result.image, dir.path(), path);
    assert_eq!(file("/out"), "tool-v1\n");
    assert_eq!(file("/ro"), "read-only\n");
    assert_eq!(file("/out2"), "changed\n");
    assert_eq!(
        file("/out3"),
        "tool-v1\n",
        "rw writes must not reach the stage"
    );
    assert_eq!(file("/img"), "ok\n");
    let root = rootfs(&store, &result.image, dir.path());
    // Mount targets the step needed are removed with their new parents.
    assert!(
        only_empty_dirs(&root.join("t")),
        "/t is in the image with content"
    );
    for path in ["v", "bb", "opt"] {
        assert!(!root.join(path).exists(), "/{path} is in the image");
    }

    // The stage's content is in the key of the steps that bind it.
    let changed = dockerfile.replace("tool-v1", "tool-v2");
    let again = build(&store, &changed, &ctx);
    assert!(
        cached(&again).iter().all(|(_, c)| !c),
        "{:?}",
        cached(&again)
    );
    assert_eq!(read(&store, &again.image, dir.path(), "/out"), "tool-v2\n");
}

#[test]
fn a_context_bind_mount_leaves_out_what_dockerignore_excludes() {
    let (dir, store) = busybox_store();
    let ctx = context(
        dir.path(),
        &[
            ("src/keep", "kept\n"),
            ("src/secret.key", "ignored\n"),
            ("other", "x\n"),
            (".dockerignore", "**/*.key\nother\n"),
        ],
    );
    let dockerfile = "FROM busybox
RUN --mount=type=bind,target=/ctx sh -c 'ls -a /ctx /ctx/src > /whole'
RUN --mount=type=bind,source=src,target=/src sh -c 'ls /src > /sub; cat /src/keep >> /sub'
";
    let result = build(&store, dockerfile, &ctx);
    let whole = read(&store, &result.image, dir.path(), "/whole");
    assert!(whole.contains("keep") && whole.contains("src"), "{whole}");
    assert!(
        !whole.contains("secret.key") && !whole.contains("other"),
        "{whole}"
    );
    assert_eq!(
        read(&store, &result.image, dir.path(), "/sub"),
        "keep\nkept\n"
    );
    let (result, _) = build_with(
        &store,
        "FROM busybox\nRUN --mount=type=bind,source=other,target=/o true\n",
        &ctx,
        |_| {},
    );
    let message = error_chain(&result.unwrap_err());
    assert!(
        message.contains("is excluded by .dockerignore"),
        "{message}"
    );
}
