//! The examples of issue 19's "Done when", driven through the `rbuild` CLI as a user
//! drives it: `examples/hello-go` (a Go HTTP server, `GOOS`/`GOARCH` cross-compiling) and
//! `examples/hello-c` (Debian's cross gcc), each built for linux/amd64 and linux/arm64 in
//! one command with its compile stage on `$BUILDPLATFORM`. Each platform's image runs
//! (the arm64 one under QEMU) and says the platform its binary was compiled for; the
//! binaries are ELF files of their architecture; skopeo takes the OCI archive's index
//! (`inspect --raw`, `copy --all`); the index pushed to a docker-registry comes back, one
//! platform per `rbuild pull --platform`, into a store where both run again.
//!
//! Needs root, qemu-user-static registered with binfmt_misc (scripts/setup-host), skopeo,
//! docker-registry, and the golang, gcc, busybox and busybox-arm64 fixtures
//! (fixtures/base-images/make makes them when missing: golang takes minutes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::registry::Registry;
use support::require::{require_arm64_emulation, require_root, require_x86_64_host};
use support::run::{fixture, rbuild, skopeo, success, workspace};

mod support;

/// The platforms every example is built for, as `--platform` takes them.
const PLATFORMS: &str = "linux/amd64,linux/arm64";

/// ELF's `e_machine` of x86_64 and of aarch64 (System V ABI, "Machine Information").
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

/// A base image to import: the fixture, the platform it is for (the host's when `None`)
/// and the name the example's Dockerfile gives it.
struct Base {
    fixture: &'static str,
    platform: Option<&'static str>,
    name: &'static str,
}

/// A store in `dir` with `bases` imported.
fn store_with(dir: &Path, bases: &[Base]) -> PathBuf {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    require_arm64_emulation();
    require_x86_64_host();
    let root = dir.join("store");
    for base in bases {
        let mut import = rbuild(&root);
        import.arg("import");
        if let Some(platform) = base.platform {
            import.args(["--platform", platform]);
        }
        success(import.arg(fixture(base.fixture)).arg(base.name));
    }
    root
}

/// What one build of both platforms left: its progress output, the OCI archive
/// (`-o type=oci`) and each platform's filesystem (`-o type=local`, one directory per
/// platform).
struct Built {
    stderr: String,
    archive: PathBuf,
    local: PathBuf,
}

/// Builds `examples/<example>` for [`PLATFORMS`] in one command, named `name` in the
/// store, with an OCI archive and a local output of it.
fn build_both(root: &Path, dir: &Path, example: &str, name: &str) -> Built {
    let archive = dir.join(format!("{example}.oci.tar"));
    let local = dir.join(format!("{example}-rootfs"));
    let out = success(
        rbuild(root)
            .args(["build", "--progress", "plain", "--platform", PLATFORMS])
            .args(["-t", name])
            .arg("-o")
            .arg(format!("type=oci,dest={}", archive.display()))
            .arg("-o")
            .arg(format!("type=local,dest={}", local.display()))
            .arg(workspace().join("examples").join(example)),
    );
    Built {
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        archive,
        local,
    }
}

/// The plain progress lines of the first step whose header (`#N [...] ...`) starts with
/// `header`, header lines left out; empty when no step's does.
fn step_lines<'a>(stderr: &'a str, header: &str) -> Vec<&'a str> {
    let Some((number, full)) = stderr.lines().find_map(|line| {
        let (number, rest) = line.split_once(' ')?;
        (number.starts_with('#') && rest.starts_with(header)).then_some((number, rest))
    }) else {
        return Vec::new();
    };
    let prefix = format!("{number} ");
    stderr
        .lines()
        .filter(|l| l.strip_prefix(&prefix).is_some_and(|rest| rest != full))
        .collect()
}

/// Fails unless the step whose header starts with `header` ran (`DONE`) in the build
/// whose output is `stderr`.
fn assert_ran(stderr: &str, header: &str) {
    let lines = step_lines(stderr, header);
    assert!(
        lines.iter().any(|l| l.contains(" DONE ")),
        "step {header:?} did not run: {lines:?}\n{stderr}"
    );
}

/// Fails unless the step whose header starts with `header` was found in the cache in the
/// build whose output is `stderr`.
fn assert_cached(stderr: &str, header: &str) {
    let lines = step_lines(stderr, header);
    assert!(
        lines.iter().any(|l| l.ends_with(" CACHED")),
        "step {header:?} was not cached: {lines:?}\n{stderr}"
    );
}

/// The ELF machine (`e_machine`) of the 64-bit little-endian executable at `path`.
fn elf_machine(path: &Path) -> u16 {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.len() > 20 && bytes.starts_with(b"\x7fELF\x02\x01"),
        "{} is not a 64-bit little-endian ELF file",
        path.display()
    );
    u16::from_le_bytes([bytes[18], bytes[19]])
}

/// Fails unless each platform's binary at `binary` (a path in the image) in the local
/// output `local` is an ELF executable of that platform's architecture.
fn assert_binaries_are_of_their_platform(local: &Path, binary: &str) {
    for (platform, machine) in [("linux_amd64", EM_X86_64), ("linux_arm64", EM_AARCH64)] {
        let path = local.join(platform).join(binary);
        assert_eq!(elf_machine(&path), machine, "{}", path.display());
    }
}

/// The standard output of `rbuild run --platform PLATFORM IMAGE ARGS...` in `root`, for
/// each of linux/amd64 and linux/arm64.
fn run_each_platform(root: &Path, image: &str, args: &[&str]) -> [String; 2] {
    ["linux/amd64", "linux/arm64"].map(|platform| {
        let out = success(
            rbuild(root)
                .args(["run", "--network", "none", "--platform", platform, image])
                .args(args),
        );
        String::from_utf8(out.stdout).unwrap()
    })
}

/// The `os/arch` of each entry of the image index `raw` (JSON text), in order.
fn index_platforms(raw: &str) -> Vec<String> {
    let index: Value = serde_json::from_str(raw).unwrap_or_else(|e| panic!("{e}: {raw}"));
    assert_eq!(
        index["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{raw}"
    );
    index["manifests"]
        .as_array()
        .unwrap_or_else(|| panic!("no manifests: {raw}"))
        .iter()
        .map(|m| {
            let p = &m["platform"];
            format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            )
        })
        .collect()
}

/// The platforms of the index in the OCI layout at `layout` (what `skopeo copy` wrote).
fn layout_platforms(layout: &Path) -> Vec<String> {
    let top: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = top["manifests"][0]["digest"].as_str().unwrap();
    let blob = layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap());
    index_platforms(&std::fs::read_to_string(blob).unwrap())
}

/// Checks the OCI archive of a build of both platforms with skopeo: its index lists
/// linux/amd64 and linux/arm64, and a copy of all of it (every platform's blobs) succeeds.
fn assert_skopeo_takes_the_archive(archive: &Path, dir: &Path) {
    let source = format!("oci-archive:{}", archive.display());
    let raw = skopeo(&["inspect", "--raw", &source]);
    assert_eq!(index_platforms(&raw), ["linux/amd64", "linux/arm64"]);
    let copy = dir.join("archive-copy");
    skopeo(&["copy", "--all", &source, &format!("oci:{}", copy.display())]);
    assert_eq!(layout_platforms(&copy), ["linux/amd64", "linux/arm64"]);
}

/// Pushes `image` from the store at `root` to a docker-registry on 127.0.0.1; checks the
/// index there with skopeo (`inspect --raw`, `copy --all`); pulls it back into a new store
/// in `dir`, linux/amd64 then linux/arm64, and returns that store and the pulled name.
fn push_and_pull_back(
    root: &Path,
    dir: &Path,
    image: &str,
    registry: &Registry,
) -> (PathBuf, String) {
    let remote = format!("{}/examples/{image}", registry.addr);
    success(rbuild(root).args(["push", image, &remote]));
    let source = format!("docker://{remote}");
    let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &source]);
    assert_eq!(index_platforms(&raw), ["linux/amd64", "linux/arm64"]);
    let copy = dir.join("registry-copy");
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &source,
        &format!("oci:{}", copy.display()),
    ]);
    assert_eq!(layout_platforms(&copy), ["linux/amd64", "linux/arm64"]);

    let pulled = dir.join("pulled");
    for platform in ["linux/amd64", "linux/arm64"] {
        success(rbuild(&pulled).args(["pull", "-q", "--platform", platform, &remote]));
    }
    let listed = success(rbuild(&pulled).args(["images", "--format", "{{.Platforms}}"]));
    assert_eq!(
        String::from_utf8(listed.stdout).unwrap(),
        "linux/amd64,linux/arm64\n"
    );
    (pulled, remote)
}

#[test]
fn hello_go_builds_for_amd64_and_arm64_in_one_command_compiling_natively_and_serves_on_each() {
    let dir = tempfile::tempdir().unwrap();
    let root = store_with(
        dir.path(),
        &[Base {
            fixture: "golang",
            platform: None,
            name: "rbuild-fixtures/golang:bookworm",
        }],
    );
    let registry = Registry::start(None);
    let built = build_both(&root, dir.path(), "hello-go", "hello-go:1");
    let stderr = &built.stderr;

    // The compile stage is the build machine's: its shared steps ran once, for the first
    // target, and were found in the cache by the second; `go build` ran natively for each
    // target (it is the target's binary), and nothing ran under QEMU.
    let copy = "COPY go.mod main.go ./";
    assert_ran(stderr, &format!("[linux/amd64 build 3/4] {copy}"));
    assert_cached(stderr, &format!("[linux/amd64->arm64 build 3/4] {copy}"));
    let compile =
        "RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -o /out/hello-go .";
    assert_ran(stderr, &format!("[linux/amd64 build 4/4] {compile}"));
    assert_ran(stderr, &format!("[linux/amd64->arm64 build 4/4] {compile}"));
    assert!(!stderr.contains("Ran emulated"), "{stderr}");

    assert_binaries_are_of_their_platform(&built.local, "hello-go");
    // Each image's server answers over HTTP, the arm64 one under QEMU.
    assert_eq!(
        run_each_platform(&root, "hello-go:1", &["-self-check"]),
        [
            "Hello, World! from linux/amd64\n",
            "Hello, World! from linux/arm64\n"
        ]
    );
    assert_skopeo_takes_the_archive(&built.archive, dir.path());

    let (pulled, remote) = push_and_pull_back(&root, dir.path(), "hello-go:1", &registry);
    assert_eq!(
        run_each_platform(&pulled, &remote, &["-self-check"]),
        [
            "Hello, World! from linux/amd64\n",
            "Hello, World! from linux/arm64\n"
        ]
    );
}

#[test]
fn hello_c_builds_for_amd64_and_arm64_in_one_command_with_debians_cross_gcc_and_runs_on_each() {
    let dir = tempfile::tempdir().unwrap();
    let root = store_with(
        dir.path(),
        &[
            Base {
                fixture: "gcc",
                platform: None,
                name: "rbuild-fixtures/gcc:bookworm",
            },
            Base {
                fixture: "busybox",
                platform: None,
                name: "rbuild-fixtures/busybox:latest",
            },
            Base {
                fixture: "busybox-arm64",
                platform: Some("linux/arm64"),
                name: "rbuild-fixtures/busybox:latest",
            },
        ],
    );
    let registry = Registry::start(None);
    let built = build_both(&root, dir.path(), "hello-c", "hello-c:1");
    let stderr = &built.stderr;

    let copy = "COPY hello.c .";
    assert_ran(stderr, &format!("[linux/amd64 build 3/4] {copy}"));
    assert_cached(stderr, &format!("[linux/amd64->arm64 build 3/4] {copy}"));
    // The compile step's header is its RUN's lines joined; its start is enough.
    let compile = "RUN case \"$TARGETARCH\" in amd64) triplet=x86_64-linux-gnu ;;";
    assert_ran(stderr, &format!("[linux/amd64 build 4/4] {compile}"));
    assert_ran(stderr, &format!("[linux/amd64->arm64 build 4/4] {compile}"));
    assert!(!stderr.contains("Ran emulated"), "{stderr}");

    assert_binaries_are_of_their_platform(&built.local, "usr/local/bin/hello");
    assert_eq!(
        run_each_platform(&root, "hello-c:1", &[]),
        [
            "Hello, World! from linux/amd64\n",
            "Hello, World! from linux/arm64\n"
        ]
    );
    assert_skopeo_takes_the_archive(&built.archive, dir.path());

    let (pulled, remote) = push_and_pull_back(&root, dir.path(), "hello-c:1", &registry);
    assert_eq!(
        run_each_platform(&pulled, &remote, &["sh", "-c", "NAME=arm hello"]),
        [
            "Hello, arm! from linux/amd64\n",
            "Hello, arm! from linux/arm64\n"
        ]
    );
}
