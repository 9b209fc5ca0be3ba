//! `rbuild build --platform linux/amd64,linux/arm64`: one build per target platform, one
//! after the other against the same store and cache (issue 19). A stage pinned to
//! `$BUILDPLATFORM` that does not use the target runs once and is found in the cache by
//! the next target; foreign steps run under QEMU and the summary counts them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::require::require_root;
use support::run::{fixture, output, rbuild, success};

mod support;

/// The cross-compile pattern: a native stage that does not use the target, and a final
/// stage per target that copies its file and runs a step of the target's platform.
const CROSS_DOCKERFILE: &str = "\
FROM --platform=$BUILDPLATFORM busybox AS build
RUN uname -m > /built-on && echo \"native stage ran on $(uname -m)\"
FROM busybox
COPY --from=build /built-on /
RUN uname -m | tee /arch
";

/// A store holding `busybox:latest` for linux/amd64 and linux/arm64 (imported under the
/// one name), and a context directory holding `dockerfile`; both in `dir`.
fn store_and_context(dir: &Path, dockerfile: &str) -> (PathBuf, PathBuf) {
    let root = dir.join("store");
    success(
        rbuild(&root)
            .arg("import")
            .arg(fixture("busybox"))
            .arg("busybox:latest"),
    );
    success(
        rbuild(&root)
            .args(["import", "--platform", "linux/arm64"])
            .arg(fixture("busybox-arm64"))
            .arg("busybox:latest"),
    );
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    (root, ctx)
}

/// Fails unless binfmt_misc runs arm64 binaries through QEMU with the F flag, naming what
/// sets it up.
fn require_arm64_emulation() {
    let entry =
        std::fs::read_to_string("/proc/sys/fs/binfmt_misc/qemu-aarch64").unwrap_or_default();
    assert!(
        entry.starts_with("enabled")
            && entry
                .lines()
                .any(|l| l.starts_with("flags:") && l.contains('F')),
        "this test runs arm64 binaries: install qemu-user-static and run \
         scripts/binfmt-register as root (scripts/setup-host does both); \
         /proc/sys/fs/binfmt_misc/qemu-aarch64 says {entry:?}"
    );
}

/// Fails unless this is an x86_64 machine: the tests compare what `uname -m` says in
/// native and emulated steps.
fn require_x86_64_host() {
    assert_eq!(
        std::env::consts::ARCH,
        "x86_64",
        "these tests expect an x86_64 build machine (native steps say x86_64, emulated \
         ones aarch64)"
    );
}

/// The JSON blob `digest` of the store (an OCI layout).
fn blob(root: &Path, digest: &str) -> Value {
    let hex = digest.strip_prefix("sha256:").unwrap();
    let path = root.join("blobs/sha256").join(hex);
    serde_json::from_slice(&std::fs::read(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The store's descriptor of `name` (`multi:1`) in its `index.json`.
fn named(root: &Path, name: &str) -> Value {
    let index: Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .is_some_and(|n| n.ends_with(name))
        })
        .unwrap_or_else(|| panic!("no index entry named {name}: {index}"))
        .clone()
}

/// The `os/arch[/variant]` of each entry of an image index, in order.
fn entry_platforms(index: &Value) -> Vec<String> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let mut text = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            if let Some(v) = p["variant"].as_str() {
                text = format!("{text}/{v}");
            }
            text
        })
        .collect()
}

/// The plain progress lines of each step whose header ends with `name`, one list per
/// step number (a header printed again when the output comes back to a step is one).
fn step_blocks<'a>(stderr: &'a str, name: &str) -> Vec<Vec<&'a str>> {
    let mut numbers: Vec<&str> = Vec::new();
    for line in stderr.lines() {
        if let Some((number, header)) = line.split_once(' ') {
            if number.starts_with('#') && header.ends_with(name) && !numbers.contains(&number) {
                numbers.push(number);
            }
        }
    }
    numbers
        .iter()
        .map(|number| {
            let prefix = format!("{number} ");
            stderr
                .lines()
                .filter(|l| l.starts_with(&prefix) && !l.ends_with(name))
                .collect()
        })
        .collect()
}

#[test]
fn a_list_of_platforms_builds_each_target_reusing_the_native_stage_and_counts_emulated_steps() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    require_arm64_emulation();
    require_x86_64_host();
    let dir = tempfile::tempdir().unwrap();
    let (root, ctx) = store_and_context(dir.path(), CROSS_DOCKERFILE);
    let out = success(rbuild(&root).args([
        "build",
        "--progress",
        "plain",
        "--platform",
        "linux/amd64,linux/arm64,linux/aarch64",
        "-t",
        "multi:1",
        ctx.to_str().unwrap(),
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);

    // The native stage ran once, for the first target; the second found it cached.
    assert_eq!(
        stderr.matches("native stage ran on x86_64").count(),
        1,
        "{stderr}"
    );
    let native = "RUN uname -m > /built-on && echo \"native stage ran on $(uname -m)\"";
    let first = step_blocks(&stderr, &format!("[linux/amd64 build 2/2] {native}"));
    let second = step_blocks(&stderr, &format!("[linux/amd64->arm64 build 2/2] {native}"));
    assert_eq!((first.len(), second.len()), (1, 1), "{stderr}");
    assert!(
        first[0].iter().any(|l| l.contains(" DONE ")),
        "{:?}\n{stderr}",
        first[0]
    );
    assert!(
        second[0].iter().any(|l| l.ends_with(" CACHED")),
        "{:?}\n{stderr}",
        second[0]
    );

    // Each target's own step ran as that target; the arm64 one under QEMU.
    let amd64 = step_blocks(&stderr, "[linux/amd64 3/3] RUN uname -m | tee /arch");
    let arm64 = step_blocks(&stderr, "[linux/arm64 3/3] RUN uname -m | tee /arch");
    assert_eq!((amd64.len(), arm64.len()), (1, 1), "{stderr}");
    assert!(amd64[0].iter().any(|l| l.ends_with(" x86_64")), "{stderr}");
    assert!(arm64[0].iter().any(|l| l.ends_with(" aarch64")), "{stderr}");
    assert!(
        stderr.contains("\nRan emulated: 1 step for linux/arm64\n"),
        "{stderr}"
    );

    // linux/aarch64 is linux/arm64 again: two platforms, in the order given.
    let index = blob(&root, named(&root, "multi:1")["digest"].as_str().unwrap());
    assert_eq!(
        entry_platforms(&index),
        ["linux/amd64", "linux/arm64"],
        "{index}"
    );
}

#[test]
fn a_platform_list_with_an_empty_item_or_another_os_is_refused_before_building() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\n").unwrap();
    for (platforms, says) in [
        ("linux/amd64,", "has an empty item"),
        (",linux/amd64", "has an empty item"),
        ("windows/amd64", "Linux images only"),
        ("linux/amd64,arm64", "\"arm64\" is not a platform"),
    ] {
        let out =
            output(rbuild(&root).args(["build", "--platform", platforms, ctx.to_str().unwrap()]));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{platforms}: {stderr}");
        assert!(stderr.contains(says), "{platforms}: {stderr}");
        assert!(!stderr.contains("panicked"), "{platforms}: {stderr}");
    }
}

/// The manifest digest of image `name` built alone (`--platform` of one) in `root`.
fn manifest_digest(root: &Path, name: &str) -> String {
    named(root, name)["digest"].as_str().unwrap().to_owned()
}

#[test]
fn the_name_is_an_index_of_exactly_the_built_platforms_with_the_digests_each_has_alone() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    require_arm64_emulation();
    require_x86_64_host();
    let epoch = ["--source-date-epoch", "1700000000"];
    let dir = tempfile::tempdir().unwrap();
    let (root, ctx) = store_and_context(dir.path(), CROSS_DOCKERFILE);
    // Each platform built on its own first; the build of both below runs every step
    // again (--no-cache), on the same base images.
    for (platform, name) in [
        ("linux/arm64", "alone:arm64"),
        ("linux/amd64", "alone:amd64"),
    ] {
        success(
            rbuild(&root)
                .args(["build", "-q", "--platform", platform, "-t", name])
                .args(epoch)
                .arg(&ctx),
        );
    }
    // The name held another platform's image before: the build replaces it.
    success(
        rbuild(&root)
            .args(["import", "--platform", "linux/arm/v7"])
            .arg(fixture("busybox"))
            .arg("multi:1"),
    );
    let iidfile = dir.path().join("iid");
    let out = success(
        rbuild(&root)
            .args([
                "build",
                "-q",
                "--platform",
                "linux/arm64,linux/amd64",
                "-t",
                "multi:1",
            ])
            .arg("--iidfile")
            .arg(&iidfile)
            .args(epoch)
            .arg(&ctx),
    );
    let descriptor = named(&root, "multi:1");
    assert_eq!(
        descriptor["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{descriptor}"
    );
    let digest = descriptor["digest"].as_str().unwrap();
    // The build's ID is the index's, as BuildKit gives it for several platforms.
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), digest);
    assert_eq!(std::fs::read_to_string(&iidfile).unwrap(), digest);

    let index = blob(&root, digest);
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(
        entry_platforms(&index),
        ["linux/arm64", "linux/amd64"],
        "{index}"
    );
    let entries = index["manifests"].as_array().unwrap();
    for entry in entries {
        assert_eq!(
            entry["mediaType"], "application/vnd.oci.image.manifest.v1+json",
            "{index}"
        );
    }
    assert_eq!(
        [
            entries[0]["digest"].as_str().unwrap(),
            entries[1]["digest"].as_str().unwrap()
        ],
        [
            manifest_digest(&root, "alone:arm64").as_str(),
            manifest_digest(&root, "alone:amd64").as_str()
        ],
        "each platform's image is the one it has built alone"
    );
    // Each image's config says its platform.
    for (entry, arch) in entries.iter().zip(["arm64", "amd64"]) {
        let manifest = blob(&root, entry["digest"].as_str().unwrap());
        let config = blob(&root, manifest["config"]["digest"].as_str().unwrap());
        assert_eq!(config["architecture"], arch);
        assert_eq!(config["os"], "linux");
    }
}

#[test]
fn with_format_docker_the_name_is_a_docker_manifest_list() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    require_arm64_emulation();
    let dir = tempfile::tempdir().unwrap();
    let (root, ctx) = store_and_context(dir.path(), "FROM busybox\nRUN uname -m > /arch\n");
    success(
        rbuild(&root)
            .args([
                "build",
                "-q",
                "--format",
                "docker",
                "--platform",
                "linux/amd64,linux/arm64",
            ])
            .args(["-t", "list:1"])
            .arg(&ctx),
    );
    let descriptor = named(&root, "list:1");
    let list = "application/vnd.docker.distribution.manifest.list.v2+json";
    assert_eq!(descriptor["mediaType"], list, "{descriptor}");
    let index = blob(&root, descriptor["digest"].as_str().unwrap());
    assert_eq!(index["mediaType"], list);
    assert_eq!(entry_platforms(&index), ["linux/amd64", "linux/arm64"]);
    for entry in index["manifests"].as_array().unwrap() {
        assert_eq!(
            entry["mediaType"], "application/vnd.docker.distribution.manifest.v2+json",
            "{index}"
        );
    }
}
