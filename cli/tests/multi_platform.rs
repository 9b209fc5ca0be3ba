//! `rbuild build --platform linux/amd64,linux/arm64`: one build per target platform, one
//! after the other against the same store and cache (issue 19). A stage pinned to
//! `$BUILDPLATFORM` that does not use the target runs once and is found in the cache by
//! the next target; foreign steps run under QEMU and the summary counts them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use std::process::Command;

use serde_json::Value;
use support::registry::Registry;
use support::require::{require_arm64_emulation, require_root, require_x86_64_host};
use support::run::{fixture, output, rbuild, skopeo, success};

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

/// A Dockerfile whose image says the platform it was built for, in `/arch`.
const ARCH_DOCKERFILE: &str = "FROM busybox\nRUN uname -m > /arch\n";

#[test]
fn an_oci_output_of_several_platforms_holds_the_index_and_a_docker_archive_is_refused() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    require_arm64_emulation();
    let dir = tempfile::tempdir().unwrap();
    let (root, ctx) = store_and_context(dir.path(), ARCH_DOCKERFILE);
    let archive = dir.path().join("multi.tar");
    success(
        rbuild(&root)
            .args([
                "build",
                "-q",
                "--platform",
                "linux/amd64,linux/arm64",
                "-t",
                "multi:1",
            ])
            .arg("-o")
            .arg(format!("type=oci,dest={}", archive.display()))
            .arg(&ctx),
    );
    let raw = skopeo(&[
        "inspect",
        "--raw",
        &format!("oci-archive:{}", archive.display()),
    ]);
    let index: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(
        entry_platforms(&index),
        ["linux/amd64", "linux/arm64"],
        "{index}"
    );
    // The same index the store names.
    assert_eq!(
        format!("sha256:{}", sha256_hex(raw.as_bytes())),
        named(&root, "multi:1")["digest"].as_str().unwrap()
    );
    // Every platform's blobs are in it: a copy of all of them succeeds.
    let copy = dir.path().join("copy");
    skopeo(&[
        "copy",
        "--all",
        &format!("oci-archive:{}", archive.display()),
        &format!("oci:{}", copy.display()),
    ]);
    let copied: Value =
        serde_json::from_slice(&std::fs::read(copy.join("index.json")).unwrap()).unwrap();
    let top = copied["manifests"][0]["digest"].as_str().unwrap();
    assert_eq!(
        entry_platforms(&blob(&copy, top)),
        ["linux/amd64", "linux/arm64"]
    );

    let docker = dir.path().join("docker.tar");
    let out = output(
        rbuild(&root)
            .args(["build", "--platform", "linux/amd64,linux/arm64"])
            .arg("-o")
            .arg(format!("type=docker,dest={}", docker.display()))
            .arg(&ctx),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("a docker archive"), "{stderr}");
    assert!(stderr.contains("linux/amd64, linux/arm64"), "{stderr}");
    assert!(!docker.exists(), "a docker archive was written");
}

/// The hex SHA-256 of `bytes`, by sha256sum.
fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

#[test]
fn local_and_tar_outputs_of_several_platforms_write_one_directory_per_platform() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    require_arm64_emulation();
    require_x86_64_host();
    let dir = tempfile::tempdir().unwrap();
    let (root, ctx) = store_and_context(dir.path(), ARCH_DOCKERFILE);
    let local = dir.path().join("local");
    let tar = dir.path().join("rootfs.tar");
    success(
        rbuild(&root)
            .args(["build", "-q", "--platform", "linux/amd64,linux/arm64"])
            .arg("-o")
            .arg(format!("type=local,dest={}", local.display()))
            .arg("-o")
            .arg(format!("type=tar,dest={}", tar.display()))
            .arg(&ctx),
    );
    let mut dirs: Vec<String> = std::fs::read_dir(&local)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    assert_eq!(dirs, ["linux_amd64", "linux_arm64"]);
    let arch = |platform: &str| std::fs::read_to_string(local.join(platform).join("arch")).unwrap();
    assert_eq!(arch("linux_amd64"), "x86_64\n");
    assert_eq!(arch("linux_arm64"), "aarch64\n");
    assert!(local.join("linux_arm64/bin/busybox").is_file());

    let listing = Command::new("tar").arg("-tf").arg(&tar).output().unwrap();
    assert!(listing.status.success());
    let listing = String::from_utf8(listing.stdout).unwrap();
    let names: Vec<&str> = listing.lines().collect();
    for wanted in [
        "linux_amd64/",
        "linux_amd64/arch",
        "linux_amd64/bin/busybox",
        "linux_arm64/",
        "linux_arm64/arch",
        "linux_arm64/bin/busybox",
    ] {
        assert!(names.contains(&wanted), "{wanted} missing in:\n{listing}");
    }
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("linux_amd64/") || n.starts_with("linux_arm64/")),
        "{listing}"
    );
}

#[test]
fn a_push_of_several_platforms_sends_each_manifest_then_the_index() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    require_arm64_emulation();
    let reg = Registry::start(None);
    let dir = tempfile::tempdir().unwrap();
    let (root, ctx) = store_and_context(dir.path(), ARCH_DOCKERFILE);
    let name = format!("{}/multi/app:1", reg.addr);
    let out = success(
        rbuild(&root)
            .args([
                "build",
                "--platform",
                "linux/amd64,linux/arm64",
                "-t",
                &name,
                "--push",
            ])
            .arg(&ctx),
    );
    let local = named(&root, "multi/app:1")["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("pushed {name}: digest: {local}")),
        "{stderr}"
    );
    let remote = format!("docker://{name}");
    let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &remote]);
    let index: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        entry_platforms(&index),
        ["linux/amd64", "linux/arm64"],
        "{index}"
    );
    let copy = dir.path().join("copy");
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &remote,
        &format!("oci:{}", copy.display()),
    ]);
    // Each platform's image is there: skopeo picks the arm64 one when asked.
    let arm64 = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--override-arch",
        "arm64",
        "--format",
        "{{.Architecture}}",
        &remote,
    ]);
    assert_eq!(arm64.trim(), "arm64");

    // -o type=registry,name= pushes the index under its own name.
    let output_name = format!("{}/multi/output:1", reg.addr);
    success(
        rbuild(&root)
            .args(["build", "-q", "--platform", "linux/amd64,linux/arm64"])
            .arg("-o")
            .arg(format!("type=registry,name={output_name}"))
            .arg(&ctx),
    );
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{output_name}"),
    ]);
    let index: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        entry_platforms(&index),
        ["linux/amd64", "linux/arm64"],
        "{index}"
    );

    // rbuild push sends the index the store names, under another name.
    let other = format!("{}/multi/other:2", reg.addr);
    let pushed = success(rbuild(&root).args(["push", &name, &other]));
    let pushed = String::from_utf8_lossy(&pushed.stdout);
    assert!(pushed.contains(&local), "{pushed}");
    let raw = skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--raw",
        &format!("docker://{other}"),
    ]);
    let index: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        entry_platforms(&index),
        ["linux/amd64", "linux/arm64"],
        "{index}"
    );
}

/// A store (in the returned directory) whose `multi:1` is ARCH_DOCKERFILE built for
/// linux/amd64 and linux/arm64 in one command; fails unless arm64 binaries run here and
/// the host is x86_64.
fn multi_built() -> (tempfile::TempDir, PathBuf) {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    require_arm64_emulation();
    require_x86_64_host();
    let dir = tempfile::tempdir().unwrap();
    let (root, ctx) = store_and_context(dir.path(), ARCH_DOCKERFILE);
    success(
        rbuild(&root)
            .args(["build", "-q", "--platform", "linux/amd64,linux/arm64"])
            .args(["-t", "multi:1"])
            .arg(&ctx),
    );
    (dir, root)
}

#[test]
fn images_and_inspect_show_the_platforms_of_an_index_and_run_takes_the_one_asked_for() {
    let (_dir, root) = multi_built();
    let stdout =
        |args: &[&str]| String::from_utf8(success(rbuild(&root).args(args)).stdout).unwrap();

    let listed = stdout(&[
        "images",
        "--format",
        "{{.Repository}}:{{.Tag}} {{.Platforms}}",
        "multi",
    ]);
    assert_eq!(listed, "multi:1 linux/amd64,linux/arm64\n");
    let table = stdout(&["images"]);
    assert!(
        table.starts_with("REPOSITORY") && table.lines().next().unwrap().ends_with("PLATFORMS"),
        "{table}"
    );
    assert!(table.contains("linux/amd64,linux/arm64"), "{table}");

    let index_digest = named(&root, "multi:1")["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let inspected = |args: &[&str]| -> Value {
        let json: Value = serde_json::from_str(&stdout(args)).unwrap();
        json[0].clone()
    };
    let host = inspected(&["inspect", "multi:1"]);
    assert_eq!(host["Architecture"], "amd64");
    assert_eq!(
        host["Platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    assert_eq!(host["Index"]["Digest"], index_digest.as_str());
    assert_eq!(host["RepoTags"], serde_json::json!(["multi:1"]));
    let arm64 = inspected(&["inspect", "--platform", "linux/arm64", "multi:1"]);
    assert_eq!(arm64["Architecture"], "arm64");
    assert_ne!(arm64["ManifestDigest"], host["ManifestDigest"]);
    let out = output(rbuild(&root).args(["inspect", "--platform", "linux/riscv64", "multi:1"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("has no linux/riscv64 image (it has linux/amd64, linux/arm64)"),
        "{stderr}"
    );

    // history: the build machine's image by default, another platform's when asked (the
    // busybox layers of the two differ in size).
    let sizes = |platform: &[&str]| {
        let mut args = vec!["history", "--format", "{{.Size}}"];
        args.extend_from_slice(platform);
        args.push("multi:1");
        stdout(&args)
    };
    let (default, amd64, arm64) = (
        sizes(&[]),
        sizes(&["--platform", "linux/amd64"]),
        sizes(&["--platform", "linux/arm64"]),
    );
    assert_eq!(default, amd64);
    assert_ne!(amd64, arm64, "{amd64}");
    assert_eq!(arm64.lines().count(), amd64.lines().count(), "{arm64}");
    let out = output(rbuild(&root).args(["history", "--platform", "linux/riscv64", "multi:1"]));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has no linux/riscv64 image"),
        "{out:?}"
    );

    // run: the build machine's image by default, the arm64 one (under QEMU) when asked.
    assert_eq!(stdout(&["run", "multi:1", "cat", "/arch"]), "x86_64\n");
    assert_eq!(
        stdout(&[
            "run",
            "--platform",
            "linux/arm64",
            "multi:1",
            "cat",
            "/arch"
        ]),
        "aarch64\n"
    );
    assert_eq!(
        stdout(&[
            "run",
            "--platform",
            "linux/aarch64",
            "multi:1",
            "uname",
            "-m"
        ]),
        "aarch64\n"
    );
}

#[test]
fn run_of_an_image_no_binfmt_handler_runs_is_refused_naming_qemu() {
    require_root("fixture recipes need root");
    let binfmt = Path::new("/proc/sys/fs/binfmt_misc");
    assert!(
        binfmt.join("status").exists(),
        "this test needs binfmt_misc mounted at {} (scripts/binfmt-register mounts it)",
        binfmt.display()
    );
    let s390x_handlers = std::fs::read_dir(binfmt)
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path()).is_ok_and(|t| {
                t.lines()
                    .any(|l| l.starts_with("magic ") && l.ends_with("0016"))
            })
        })
        .count();
    assert_eq!(
        s390x_handlers, 0,
        "this test needs a platform no handler runs, and s390x has one registered"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    // Any rootfs will do: the run must be refused before anything runs in it.
    success(
        rbuild(&root)
            .args(["import", "--platform", "linux/s390x"])
            .arg(fixture("busybox"))
            .arg("s390x:1"),
    );
    let out = output(rbuild(&root).args(["run", "s390x:1", "true"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(125), "{stderr}");
    for needed in ["linux/s390x", "qemu-user-static"] {
        assert!(stderr.contains(needed), "{needed:?} missing in: {stderr}");
    }
}

#[test]
fn a_cache_export_of_several_platforms_holds_every_platforms_steps() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    require_arm64_emulation();
    let dir = tempfile::tempdir().unwrap();
    let (root, ctx) = store_and_context(dir.path(), CROSS_DOCKERFILE);
    let cache = dir.path().join("exported-cache");
    success(
        rbuild(&root)
            .args(["build", "-q", "--platform", "linux/amd64,linux/arm64"])
            .arg("--cache-to")
            .arg(format!("type=local,dest={},mode=max", cache.display()))
            .arg(&ctx),
    );
    // Another store with the same base images and no cache of its own.
    let other = dir.path().join("other");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&root)
        .arg(&other)
        .status()
        .unwrap();
    assert!(copied.success());
    std::fs::remove_dir_all(other.join("cache")).unwrap();
    let out = success(
        rbuild(&other)
            .args([
                "build",
                "--progress",
                "plain",
                "--platform",
                "linux/amd64,linux/arm64",
            ])
            .arg("--cache-from")
            .arg(format!("type=local,src={}", cache.display()))
            .arg(&ctx),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    for step in [
        "[linux/amd64 3/3] RUN uname -m | tee /arch",
        "[linux/arm64 3/3] RUN uname -m | tee /arch",
        "[linux/amd64 build 2/2] RUN uname -m > /built-on && echo \"native stage ran on $(uname -m)\"",
    ] {
        let blocks = step_blocks(&stderr, step);
        assert!(
            blocks
                .iter()
                .any(|b| b.iter().any(|l| l.ends_with(" CACHED"))),
            "{step} not cached:\n{stderr}"
        );
    }
    assert!(!stderr.contains("Ran emulated"), "{stderr}");
}

#[test]
fn a_reproducible_check_of_several_platforms_compares_each_platforms_image() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    require_arm64_emulation();
    let dir = tempfile::tempdir().unwrap();
    let (root, ctx) = store_and_context(dir.path(), CROSS_DOCKERFILE);
    let out = success(
        rbuild(&root)
            .args(["build", "--progress", "plain", "--reproducible-check"])
            .args(["--platform", "linux/amd64,linux/arm64"])
            .arg(&ctx),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("the same images of linux/amd64, linux/arm64 (image index sha256:"),
        "{stdout}"
    );

    // A step whose output differs each time: the platform whose image differs is named.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN cat /proc/sys/kernel/random/uuid > /id\n",
    )
    .unwrap();
    let out = output(
        rbuild(&root)
            .args(["build", "--progress", "plain", "--reproducible-check"])
            .args(["--platform", "linux/amd64,linux/arm64"])
            .arg(&ctx),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not reproducible"), "{stderr}");
    assert!(stderr.contains("linux/amd64: "), "{stderr}");
}

#[test]
fn a_warning_about_the_dockerfile_is_given_once_for_all_platforms() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    require_arm64_emulation();
    let dir = tempfile::tempdir().unwrap();
    let (root, ctx) = store_and_context(dir.path(), ARCH_DOCKERFILE);
    let out = success(
        rbuild(&root)
            .args(["build", "--progress", "plain", "--build-arg", "UNUSED=1"])
            .args(["--platform", "linux/amd64,linux/arm64"])
            .arg(&ctx),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr
            .contains("\n1 warning found:\n - one or more build-args [UNUSED] were not consumed\n"),
        "{stderr}"
    );
}

/// The JSON member `name` of the tar at `archive`.
fn tar_json(archive: &Path, name: &str) -> Value {
    let mut tar = tar::Archive::new(std::fs::File::open(archive).unwrap());
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap() == Path::new(name) {
            return serde_json::from_reader(&mut entry).unwrap();
        }
    }
    panic!("no {name} in {}", archive.display())
}

/// `rbuild save` of a name holding several platforms writes the index and every
/// platform's image (as docker saves an index whose content it has; it wrote the host's
/// image alone before), the docker archive's `manifest.json` listing the host's;
/// `--platform` saves that platform's image alone; `rbuild load` gives the index back.
#[test]
fn a_save_of_several_platforms_holds_the_index_and_load_gives_it_back() {
    let (dir, root) = multi_built();
    let index_digest = named(&root, "multi:1")["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let index = blob(&root, &index_digest);
    let config_of = |entry: usize| {
        let manifest = blob(&root, index["manifests"][entry]["digest"].as_str().unwrap());
        manifest["config"]["digest"].as_str().unwrap().to_owned()
    };

    let oci = dir.path().join("oci.tar");
    success(
        rbuild(&root)
            .args(["save", "--format", "oci", "-o"])
            .arg(&oci)
            .arg("multi:1"),
    );
    let raw = skopeo(&[
        "inspect",
        "--raw",
        &format!("oci-archive:{}", oci.display()),
    ]);
    assert_eq!(
        format!("sha256:{}", sha256_hex(raw.as_bytes())),
        index_digest
    );
    let copy = dir.path().join("copy");
    skopeo(&[
        "copy",
        "--all",
        &format!("oci-archive:{}", oci.display()),
        &format!("oci:{}", copy.display()),
    ]);

    let docker = dir.path().join("docker.tar");
    success(
        rbuild(&root)
            .args(["save", "-o"])
            .arg(&docker)
            .arg("multi:1"),
    );
    let layout = tar_json(&docker, "index.json");
    assert_eq!(layout["manifests"][0]["digest"], index_digest.as_str());
    let listed = tar_json(&docker, "manifest.json");
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(
        listed[0]["Config"],
        format!(
            "blobs/sha256/{}",
            config_of(0).trim_start_matches("sha256:")
        ),
        "the host's image is the one docker load reads"
    );
    let other = dir.path().join("other");
    success(rbuild(&other).args(["load", "-i"]).arg(&docker));
    assert_eq!(named(&other, "multi:1")["digest"], index_digest.as_str());
    let run = success(rbuild(&other).args([
        "run",
        "--rm",
        "--platform",
        "linux/arm64",
        "multi:1",
        "cat",
        "/arch",
    ]));
    assert_eq!(String::from_utf8_lossy(&run.stdout), "aarch64\n");

    let arm = dir.path().join("arm.tar");
    success(
        rbuild(&root)
            .args(["save", "--platform", "linux/arm64", "-o"])
            .arg(&arm)
            .arg("multi:1"),
    );
    let layout = tar_json(&arm, "index.json");
    assert_eq!(layout["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(
        layout["manifests"][0]["digest"], index["manifests"][1]["digest"],
        "{layout}"
    );
    let listed = tar_json(&arm, "manifest.json");
    assert_eq!(
        listed[0]["Config"],
        format!(
            "blobs/sha256/{}",
            config_of(1).trim_start_matches("sha256:")
        )
    );
    let out = output(
        rbuild(&root)
            .args(["save", "--platform", "linux/s390x", "-o"])
            .arg(dir.path().join("none.tar"))
            .arg("multi:1"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("linux/amd64, linux/arm64"),
        "{stderr}"
    );
}

#[test]
fn pull_with_a_platform_takes_that_platforms_image_of_an_index_and_keeps_the_others() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    require_arm64_emulation();
    require_x86_64_host();
    let reg = Registry::start(None);
    let dir = tempfile::tempdir().unwrap();
    // busybox:latest is an index of the amd64 and arm64 images.
    let (root, _) = store_and_context(dir.path(), ARCH_DOCKERFILE);
    let remote = format!("{}/multi/busybox:1", reg.addr);
    success(rbuild(&root).args(["push", "busybox:latest", &remote]));

    let pulled = dir.path().join("pulled");
    let stdout =
        |args: &[&str]| String::from_utf8(success(rbuild(&pulled).args(args)).stdout).unwrap();
    let platforms = || stdout(&["images", "--format", "{{.Platforms}}"]);
    stdout(&["pull", "-q", "--platform", "linux/arm64", &remote]);
    assert_eq!(platforms(), "linux/arm64\n");
    assert_eq!(stdout(&["run", &remote, "uname", "-m"]), "aarch64\n");
    // A second platform joins the first under the name, an index of both.
    stdout(&["pull", "-q", "--platform", "linux/amd64", &remote]);
    assert_eq!(platforms(), "linux/arm64,linux/amd64\n");
    assert_eq!(
        stdout(&["run", "--platform", "linux/arm64", &remote, "uname", "-m"]),
        "aarch64\n"
    );
    assert_eq!(
        stdout(&["run", "--platform", "linux/amd64", &remote, "uname", "-m"]),
        "x86_64\n"
    );

    let out = output(rbuild(&pulled).args(["pull", "--platform", "linux/riscv64", &remote]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("has no manifest for platform linux/riscv64"),
        "{stderr}"
    );
}

#[test]
fn pull_with_a_platform_refuses_a_single_image_of_another_platform_and_keeps_the_name() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    let reg = Registry::start(None);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    success(
        rbuild(&root)
            .args(["import", "--platform", "linux/arm64"])
            .arg(fixture("busybox-arm64"))
            .arg("arm64-only:1"),
    );
    let remote = format!("{}/single/busybox:1", reg.addr);
    success(rbuild(&root).args(["push", "arm64-only:1", &remote]));

    // The name already holds the arm64 image: a refused pull must leave it so.
    let pulled = dir.path().join("pulled");
    success(rbuild(&pulled).args(["pull", "-q", "--platform", "linux/arm64", &remote]));
    let listed = || {
        String::from_utf8(
            success(rbuild(&pulled).args(["images", "--format", "{{.ID}} {{.Platforms}}"])).stdout,
        )
        .unwrap()
    };
    let before = listed();
    let out = output(rbuild(&pulled).args(["pull", "--platform", "linux/amd64", &remote]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "image {remote} is for linux/arm64, not linux/amd64"
        )),
        "{stderr}"
    );
    assert_eq!(listed(), before);
    // Without --platform, the image is taken whatever its platform, as docker pull does.
    success(rbuild(&pulled).args(["pull", "-q", &remote]));
}

/// `FROM oci-archive://` (and `docker-archive://`) of an archive holding an index takes
/// each target platform's image, as `oci-layout://` does; it took the host's image for
/// every target (arm64 images with x86_64 binaries, configs saying arm64).
#[test]
fn a_base_from_a_multi_platform_archive_is_each_targets_own_image() {
    let (dir, root) = multi_built();
    let ctx = dir.path().join("from-archive");
    std::fs::create_dir_all(&ctx).unwrap();
    for format in ["oci", "docker"] {
        success(
            rbuild(&root)
                .args(["save", "--format", format, "-o"])
                .arg(ctx.join(format!("{format}.tar")))
                .arg("multi:1"),
        );
        std::fs::write(
            ctx.join("Dockerfile"),
            format!("FROM {format}-archive://{format}.tar\nRUN cp /arch /base-arch\n"),
        )
        .unwrap();
        let out = dir.path().join(format!("out-{format}"));
        success(
            rbuild(&root)
                .args(["build", "-q", "--platform", "linux/amd64,linux/arm64", "-o"])
                .arg(format!("type=local,dest={}", out.display()))
                .arg(&ctx),
        );
        for (platform, machine) in [("linux_amd64", "x86_64\n"), ("linux_arm64", "aarch64\n")] {
            assert_eq!(
                std::fs::read_to_string(out.join(platform).join("base-arch")).unwrap(),
                machine,
                "{format}-archive, {platform}"
            );
        }
    }
}
