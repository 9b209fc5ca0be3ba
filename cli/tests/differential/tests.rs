//! The comparator must fail: each kind of difference it claims to see is planted in a copy
//! of a tree and must be reported, with the right field, and nothing else. Needs root
//! (chown, mknod), as the suite itself does.

use std::fs::{self, File};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use crate::support::require::require_root;
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::json;

use crate::case::Divergences;
use crate::config;
use crate::tree::{self, Field};

/// An mtime well before any test runs, as a base image's or a context's files have.
fn old() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

fn write(root: &Path, rel: &str, content: &str, mode: u32) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().expect("a parent")).expect("creating parents");
    fs::write(&path, content).expect("writing a file");
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
    File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(old()))
        .expect("setting an mtime");
}

fn sh(script: &str, dir: &Path) {
    let status = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .status()
        .expect("running sh");
    assert!(status.success(), "`{script}` failed");
}

/// A small rootfs with one of every kind of entry the comparator looks at.
fn sample(root: &Path) {
    write(root, "etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644);
    write(root, "bin/busybox", "#!busybox\n", 0o755);
    write(root, "usr/bin/su", "su\n", 0o4755);
    write(root, "data/a", "shared\n", 0o640);
    write(root, "data/empty", "", 0o600);
    write(root, "data/c", "same\n", 0o644);
    write(root, "data/d", "same\n", 0o644);
    fs::hard_link(root.join("data/a"), root.join("data/b")).expect("hardlink");
    symlink("busybox", root.join("bin/sh")).expect("symlink");
    sh(
        "mkdir -p dev proc sys var/tmp && mknod dev/null c 1 3 && mkfifo var/fifo \
         && chown 1000:1000 data/a && chown 65534:65534 data/empty && chmod 1777 var/tmp \
         && touch -h -d @1700000000 dev/null var/fifo bin/sh",
        root,
    );
}

/// `sample` twice, the second altered by `alter`; the differences found.
fn differences_after(alter: &str) -> Vec<tree::Difference> {
    require_root("the comparator tests need root (chown, mknod), as the differential suite does");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    fs::create_dir(&a).expect("mkdir a");
    sample(&a);
    let status = Command::new("cp")
        .arg("-a")
        .arg(&a)
        .arg(&b)
        .status()
        .expect("running cp -a");
    assert!(status.success(), "cp -a failed");
    sh(alter, &b);
    let started = SystemTime::now();
    let snap = |p: &Path| tree::snapshot(p, started).expect("reading a tree");
    tree::compare(&snap(&a), &snap(&b))
}

/// The (path, field) pairs of `alter`'s differences.
fn found(alter: &str) -> Vec<(String, Field)> {
    differences_after(alter)
        .into_iter()
        .map(|d| (d.path, d.field))
        .collect()
}

fn one(path: &str, field: Field) -> Vec<(String, Field)> {
    vec![(path.to_owned(), field)]
}

#[test]
fn a_tree_equals_its_copy() {
    assert_eq!(differences_after("true"), vec![]);
}

#[test]
fn catches_a_mode_change() {
    assert_eq!(
        found("chmod 0644 bin/busybox"),
        one("/bin/busybox", Field::Mode)
    );
}

#[test]
fn catches_a_lost_setuid_bit() {
    assert_eq!(
        found("chmod u-s usr/bin/su"),
        one("/usr/bin/su", Field::Mode)
    );
}

#[test]
fn catches_a_lost_sticky_bit() {
    assert_eq!(found("chmod 0777 var/tmp"), one("/var/tmp", Field::Mode));
}

#[test]
fn catches_an_owner_change() {
    assert_eq!(
        found("chown -h 0 data/empty"),
        one("/data/empty", Field::Uid)
    );
}

#[test]
fn catches_a_group_change() {
    assert_eq!(found("chgrp 0 data/empty"), one("/data/empty", Field::Gid));
}

#[test]
fn catches_same_size_content_change() {
    // Same length, same mtime: only the digest tells.
    assert_eq!(
        found("printf '#!BUSYBOX\\n' > bin/busybox && touch -d @1700000000 bin/busybox"),
        one("/bin/busybox", Field::Content)
    );
}

#[test]
fn catches_a_size_change() {
    assert_eq!(
        found("printf 'x' > data/empty && touch -d @1700000000 data/empty"),
        vec![
            ("/data/empty".into(), Field::Size),
            ("/data/empty".into(), Field::Content)
        ]
    );
}

#[test]
fn catches_a_symlink_target_change() {
    assert_eq!(
        found("ln -sfn /bin/busybox bin/sh && touch -h -d @1700000000 bin/sh"),
        one("/bin/sh", Field::Link)
    );
}

#[test]
fn catches_a_type_change() {
    assert_eq!(
        found("rm bin/sh && cp -p bin/busybox bin/sh"),
        one("/bin/sh", Field::Type)
    );
}

#[test]
fn catches_a_broken_hardlink() {
    // b becomes a copy with the same content, mode, owner and mtime, only not linked.
    assert_eq!(
        found("cp -p data/a data/t && rm data/b && mv data/t data/b"),
        vec![
            ("/data/a".into(), Field::Hardlink),
            ("/data/b".into(), Field::Hardlink)
        ]
    );
}

#[test]
fn catches_a_new_hardlink() {
    // c and d were equal files; now they are one inode.
    assert_eq!(
        found("rm data/d && ln data/c data/d"),
        vec![
            ("/data/c".into(), Field::Hardlink),
            ("/data/d".into(), Field::Hardlink)
        ]
    );
}

#[test]
fn catches_a_missing_and_an_extra_entry() {
    assert_eq!(
        found("rm data/empty && echo new > data/new"),
        vec![
            ("/data/empty".into(), Field::Presence),
            ("/data/new".into(), Field::Presence)
        ]
    );
}

#[test]
fn catches_a_device_number_change() {
    assert_eq!(
        found("rm dev/null && mknod dev/null c 1 5 && touch -d @1700000000 dev/null"),
        one("/dev/null", Field::Device)
    );
}

#[test]
fn catches_a_changed_kept_mtime() {
    assert_eq!(
        found("touch -d @1700000001 etc/passwd"),
        one("/etc/passwd", Field::Mtime)
    );
}

#[test]
fn catches_a_kept_mtime_that_was_reset_during_the_build() {
    // `started` is taken after the alteration, so push the time into the future instead.
    assert_eq!(
        found("touch -d '+1 hour' etc/passwd"),
        one("/etc/passwd", Field::Mtime)
    );
}

#[test]
fn ignores_directory_mtimes() {
    assert_eq!(found("touch -d @1600000000 data etc"), vec![]);
}

#[test]
fn allows_the_stubs_buildkit_leaks_but_nothing_more() {
    assert_eq!(
        found("rmdir proc sys && : > etc/hosts && : > etc/resolv.conf && : > etc/hostname"),
        vec![]
    );
    // What `docker export` of a created container adds.
    assert_eq!(
        found(
            ": > .dockerenv && : > dev/console && mkdir dev/pts dev/shm && ln -s /proc/mounts etc/mtab"
        ),
        vec![]
    );
    assert_eq!(
        found("rm dev/null && : > dev/console && mkdir dev/pts dev/shm"),
        one("/dev/null", Field::Presence)
    );
    assert_eq!(
        found("mkdir -p dev/shm/x"),
        vec![
            ("/dev/shm".into(), Field::Presence),
            ("/dev/shm/x".into(), Field::Presence)
        ]
    );
    assert_eq!(
        found("ln -s /proc/self/mounts etc/mtab"),
        one("/etc/mtab", Field::Presence)
    );
    assert_eq!(
        found("echo 127.0.0.1 localhost > etc/hosts"),
        one("/etc/hosts", Field::Presence)
    );
    assert_eq!(
        found("rm dev/null && rmdir dev && mkdir -p sys/kernel"),
        vec![
            ("/dev".into(), Field::Presence),
            ("/dev/null".into(), Field::Presence),
            ("/sys/kernel".into(), Field::Presence)
        ]
    );
}

#[test]
fn allows_an_etc_holding_only_stubs() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    fs::create_dir_all(a.join("etc")).expect("mkdir");
    fs::create_dir_all(&b).expect("mkdir");
    fs::write(a.join("etc/hosts"), "").expect("write");
    let started = SystemTime::now();
    let snap = |p: &Path| tree::snapshot(p, started).expect("reading a tree");
    assert_eq!(tree::compare(&snap(&a), &snap(&b)), vec![]);
    fs::write(a.join("etc/other"), "").expect("write");
    let found: Vec<String> = tree::compare(&snap(&a), &snap(&b))
        .into_iter()
        .map(|d| d.path)
        .collect();
    assert_eq!(found, vec!["/etc".to_owned(), "/etc/other".to_owned()]);
}

#[test]
fn divergences_allow_only_what_they_name() {
    let d = Divergences::parse(
        "# why\n\nrbuild keeps the archive's owners.\nallow: /data/** uid\nallow-config: Env\n",
    )
    .expect("parsing");
    let diff = |path: &str, field| tree::Difference {
        path: path.into(),
        field,
        reference: String::new(),
        tested: String::new(),
    };
    assert!(d.allows(&diff("/data/x/y", Field::Uid)));
    assert!(!d.allows(&diff("/data/x/y", Field::Gid)));
    assert!(!d.allows(&diff("/etc/x", Field::Uid)));
    let env = config::ConfigDifference {
        field: "Env",
        reference: json!(null),
        tested: json!(["A=1"]),
    };
    assert!(d.allows_config(&env));
    assert!(!d.allows_config(&config::ConfigDifference {
        field: "Cmd",
        ..env
    }));
}

#[test]
fn divergences_need_an_explanation_and_known_fields() {
    assert!(Divergences::parse("allow: /x mode\n").is_err());
    assert!(Divergences::parse("Why.\nallow: /x colour\n").is_err());
    assert!(Divergences::parse("Why.\nallow-config: Colour\n").is_err());
    assert!(Divergences::parse("Why.\n\nallow: /x mode\n").is_err());
    assert!(Divergences::parse("Why.\nallow: /x *\n").is_ok());
}

#[test]
fn config_absent_and_empty_are_equal() {
    let docker = json!({"Env": null, "Cmd": null, "Labels": null, "Volumes": null,
        "Healthcheck": {"Test": ["CMD", "true"], "Interval": 0, "Retries": 3},
        "WorkingDir": "", "OnBuild": null});
    let rbuild = json!({"Healthcheck": {"Test": ["CMD", "true"], "Retries": 3}, "Labels": {}});
    assert_eq!(config::compare(&docker, &rbuild), vec![]);
}

#[test]
fn config_catches_each_field() {
    let base = json!({
        "Env": ["PATH=/bin", "A=1"], "Cmd": ["sh"], "Entrypoint": ["/bin/e"],
        "WorkingDir": "/w", "User": "1:2", "ExposedPorts": {"80/tcp": {}},
        "Volumes": {"/v": {}}, "Labels": {"a": "b"}, "StopSignal": "SIGINT",
        "Healthcheck": {"Test": ["CMD", "true"], "Interval": 1_000_000_000_u64},
        "OnBuild": ["RUN x"], "Shell": ["/bin/sh", "-c"],
    });
    for field in config::FIELDS {
        let mut changed = base.clone();
        changed[*field] = json!(null);
        let found: Vec<&str> = config::compare(&base, &changed)
            .iter()
            .map(|d| d.field)
            .collect();
        assert_eq!(found, vec![*field], "removing {field}");
    }
    let mut reordered = base.clone();
    reordered["Env"] = json!(["A=1", "PATH=/bin"]);
    assert_eq!(config::compare(&base, &reordered).len(), 1);
    let mut interval = base.clone();
    interval["Healthcheck"]["Interval"] = json!(2_000_000_000_u64);
    assert_eq!(config::compare(&base, &interval).len(), 1);
}

#[test]
fn a_case_reads_its_files() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let case = dir.path().join("some-case");
    fs::create_dir_all(case.join("context")).expect("mkdir");
    fs::write(case.join("Dockerfile"), "FROM busybox\n").expect("write");
    fs::write(case.join("args"), "# comment\nA=1\n\nB=\n").expect("write");
    fs::write(case.join("target"), "stage\n").expect("write");
    let loaded = crate::case::Case::load(&case).expect("loading the case");
    assert_eq!(loaded.name, "some-case");
    assert_eq!(loaded.context, case.join("context"));
    assert_eq!(loaded.build_args, vec!["A=1".to_owned(), "B=".to_owned()]);
    assert_eq!(loaded.target.as_deref(), Some("stage"));
    assert_eq!(loaded.buildkit_dockerfile, loaded.dockerfile);

    fs::write(case.join("args"), "NOVALUE\n").expect("write");
    assert!(crate::case::Case::load(&case).is_err(), "an arg without =");
    fs::write(case.join("args"), "").expect("write");
    fs::write(
        case.join("divergences.md"),
        "Why.\nbuildkit-dockerfile: Dockerfile.missing\n",
    )
    .expect("write");
    assert!(
        crate::case::Case::load(&case).is_err(),
        "a missing reference file"
    );
    fs::write(case.join("Dockerfile.missing"), "FROM busybox\n").expect("write");
    let loaded = crate::case::Case::load(&case).expect("loading the case");
    assert_eq!(loaded.buildkit_dockerfile, case.join("Dockerfile.missing"));
}

#[test]
fn a_negative_case_reads_its_fails_file() {
    use crate::case::Fails;
    let parsed =
        Fails::parse("BuildKit: unknown instruction FOO.\nrbuild-error: unknown instruction\n")
            .expect("parsing");
    assert_eq!(parsed.reason, "BuildKit: unknown instruction FOO.");
    assert_eq!(parsed.rbuild_error.as_deref(), Some("unknown instruction"));
    assert_eq!(Fails::parse("Why.\n").expect("parsing").rbuild_error, None);
    assert!(Fails::parse("rbuild-error: x\n").is_err(), "no explanation");
    assert!(Fails::parse("").is_err(), "empty");
    assert!(
        Fails::parse("Why.\nrbuild-error:\n").is_err(),
        "empty substring"
    );
    assert!(Fails::parse("Why.\nrbuild-error: a\nrbuild-error: b\n").is_err());

    let dir = tempfile::tempdir().expect("a temporary directory");
    let case = dir.path().join("bad-flag");
    fs::create_dir_all(&case).expect("mkdir");
    fs::write(case.join("Dockerfile"), "FROM busybox\nCOPY --nope a b\n").expect("write");
    fs::write(case.join("SOURCE"), "repository: https://github.com/o/n\n").expect("write");
    fs::write(case.join("fails"), "Unknown flag.\nrbuild-error: nope\n").expect("write");
    let loaded = crate::case::Case::load(&case).expect("loading the case");
    assert_eq!(
        loaded
            .fails
            .expect("a negative case")
            .rbuild_error
            .as_deref(),
        Some("nope")
    );
    fs::write(case.join("divergences.md"), "Why.\nallow: /x mode\n").expect("write");
    assert!(
        crate::case::Case::load(&case).is_err(),
        "divergences in a negative case"
    );
}

#[test]
fn a_multi_platform_case_reads_its_platform_list_and_refuses_a_bare_architecture() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let case = dir.path().join("platform-case");
    fs::create_dir_all(&case).expect("mkdir");
    fs::write(case.join("Dockerfile"), "FROM busybox\n").expect("write");
    let loaded = crate::case::Case::load(&case).expect("loading the case");
    assert!(loaded.platforms.is_empty(), "{:?}", loaded.platforms);
    fs::write(case.join("platforms"), "linux/arm64, linux/amd64\n").expect("write");
    let loaded = crate::case::Case::load(&case).expect("loading the case");
    assert_eq!(loaded.platforms, ["linux/arm64", "linux/amd64"]);
    fs::write(case.join("platforms"), "linux/amd64,arm64\n").expect("write");
    let refused = crate::case::Case::load(&case).expect_err("a bare architecture");
    assert!(refused.contains("`arm64` is not os/arch"), "{refused}");
}

#[test]
fn a_store_name_is_spelled_as_rbuilds_index_json_spells_it() {
    use crate::builders::store_ref_name;
    assert_eq!(
        store_ref_name("busybox:latest"),
        "docker.io/library/busybox:latest"
    );
    assert_eq!(
        store_ref_name("busybox"),
        "docker.io/library/busybox:latest"
    );
    assert_eq!(
        store_ref_name("rbuild-fixtures/python3:bookworm"),
        "docker.io/rbuild-fixtures/python3:bookworm"
    );
    assert_eq!(
        store_ref_name("localhost:5000/a/b:1"),
        "localhost:5000/a/b:1"
    );
}
