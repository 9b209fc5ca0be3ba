//! `rbuild build --platform`: one target platform, end to end (issue 19). The stages'
//! bases are the images of that platform (one name holding an amd64 and an arm64 image),
//! their foreign steps run through QEMU (binfmt_misc), `TARGETARCH` and the image config
//! say the target, a `FROM --platform=$BUILDPLATFORM` stage runs natively (the
//! cross-compile pattern), and a platform no handler runs is refused before its step.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::require::{require_arm64_emulation, require_root, require_x86_64_host};
use support::run::{fixture, output, rbuild, success};

mod support;

/// A store holding `busybox:latest` for linux/amd64 and linux/arm64 (imported under the
/// one name), and a context directory; both in `dir`.
fn store_with_two_busyboxes(dir: &Path) -> (PathBuf, PathBuf) {
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
    (root, ctx)
}

/// Builds `ctx` for `platform` into the directory `out` and as `name` in the store.
fn build_for(root: &Path, ctx: &Path, platform: &str, out: &Path, name: &str) {
    let ctx = ctx.to_str().unwrap();
    success(rbuild(root).args([
        "build",
        "--platform",
        platform,
        "-o",
        &format!("type=local,dest={}", out.display()),
        ctx,
    ]));
    success(rbuild(root).args(["build", "--platform", platform, "-t", name, ctx]));
}

/// The `Architecture`, `Os` and `Variant` `rbuild inspect` shows for `name`.
fn inspected_platform(root: &Path, name: &str) -> (Value, Value, Value) {
    let out = success(rbuild(root).args(["inspect", name]));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let image = &json[0];
    (
        image["Architecture"].clone(),
        image["Os"].clone(),
        image["Variant"].clone(),
    )
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn a_build_for_arm64_takes_the_arm64_image_of_a_name_and_runs_its_steps_under_qemu() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    require_arm64_emulation();
    require_x86_64_host();
    let dir = tempfile::tempdir().unwrap();
    let (root, ctx) = store_with_two_busyboxes(dir.path());
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nARG TARGETARCH\nRUN uname -m > /m && echo $TARGETARCH > /t\n",
    )
    .unwrap();

    let arm64 = dir.path().join("arm64");
    build_for(&root, &ctx, "linux/arm64", &arm64, "built:arm64");
    assert_eq!(read(arm64.join("m")), "aarch64\n");
    assert_eq!(read(arm64.join("t")), "arm64\n");
    assert_eq!(
        inspected_platform(&root, "built:arm64"),
        ("arm64".into(), "linux".into(), Value::Null)
    );

    // Spelled as uname does, it is the same platform (and the same cached steps).
    let aarch64 = dir.path().join("aarch64");
    build_for(&root, &ctx, "linux/aarch64", &aarch64, "built:aarch64");
    assert_eq!(read(aarch64.join("t")), "arm64\n");
    assert_eq!(
        inspected_platform(&root, "built:aarch64"),
        inspected_platform(&root, "built:arm64")
    );

    // Without --platform, the host's image of the name.
    let host = dir.path().join("host");
    success(rbuild(&root).args([
        "build",
        "-o",
        &format!("type=local,dest={}", host.display()),
        ctx.to_str().unwrap(),
    ]));
    assert_eq!(read(host.join("m")), "x86_64\n");
    assert_eq!(read(host.join("t")), "amd64\n");
}

#[test]
fn a_stage_from_buildplatform_runs_natively_with_the_targets_args_and_caches_per_platform() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    require_arm64_emulation();
    require_x86_64_host();
    let dir = tempfile::tempdir().unwrap();
    let (root, ctx) = store_with_two_busyboxes(dir.path());
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM --platform=$BUILDPLATFORM busybox AS build\n\
         ARG TARGETARCH\n\
         RUN uname -m > /m; echo $TARGETARCH > /t\n\
         FROM busybox\n\
         COPY --from=build /m /t /\n",
    )
    .unwrap();

    let arm64 = dir.path().join("arm64");
    build_for(&root, &ctx, "linux/arm64", &arm64, "cross:arm64");
    assert_eq!(read(arm64.join("m")), "x86_64\n");
    assert_eq!(read(arm64.join("t")), "arm64\n");
    assert_eq!(
        inspected_platform(&root, "cross:arm64"),
        ("arm64".into(), "linux".into(), Value::Null)
    );

    // The same Dockerfile for amd64, after the arm64 build filled the cache.
    let amd64 = dir.path().join("amd64");
    build_for(&root, &ctx, "linux/amd64", &amd64, "cross:amd64");
    assert_eq!(read(amd64.join("m")), "x86_64\n");
    assert_eq!(read(amd64.join("t")), "amd64\n");
    assert_eq!(
        inspected_platform(&root, "cross:amd64"),
        ("amd64".into(), "linux".into(), Value::Null)
    );
    // The final stage is built on each platform's own busybox.
    let layer_of = |name: &str| {
        let out = success(rbuild(&root).args(["inspect", name]));
        let json: Value = serde_json::from_slice(&out.stdout).unwrap();
        json[0]["RootFS"]["diff_ids"][0].clone()
    };
    assert!(layer_of("cross:arm64").is_string());
    assert_ne!(layer_of("cross:arm64"), layer_of("cross:amd64"));

    // A last stage on the native stage ran as amd64, but the image is for the target.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM --platform=$BUILDPLATFORM busybox AS build\n\
         RUN uname -m > /m\n\
         FROM build\n",
    )
    .unwrap();
    let native = dir.path().join("native");
    build_for(&root, &ctx, "linux/arm64", &native, "native:arm64");
    assert_eq!(read(native.join("m")), "x86_64\n");
    assert_eq!(
        inspected_platform(&root, "native:arm64"),
        ("arm64".into(), "linux".into(), Value::Null)
    );
}

#[test]
fn a_platform_no_binfmt_handler_runs_is_refused_before_its_step_naming_qemu() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    let binfmt = Path::new("/proc/sys/fs/binfmt_misc");
    assert!(
        binfmt.join("status").exists(),
        "this test needs binfmt_misc mounted at {} (scripts/binfmt-register mounts it)",
        binfmt.display()
    );
    let s390x: Vec<String> = std::fs::read_dir(binfmt)
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path()).is_ok_and(|t| {
                t.lines()
                    .any(|l| l.starts_with("magic ") && l.ends_with("0016"))
            })
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        s390x.is_empty(),
        "this test needs a platform no handler runs, and s390x has {s390x:?} registered"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    // Any rootfs will do: the step must be refused before anything runs in it.
    success(
        rbuild(&root)
            .args(["import", "--platform", "linux/s390x"])
            .arg(fixture("busybox"))
            .arg("s390x:latest"),
    );
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM s390x\nRUN echo ran > /x\n").unwrap();
    let out = output(rbuild(&root).args([
        "build",
        "--progress",
        "plain",
        "--platform",
        "linux/s390x",
        ctx.to_str().unwrap(),
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for needed in ["linux/s390x", "qemu-user-static", "scripts/binfmt-register"] {
        assert!(stderr.contains(needed), "{needed:?} missing in: {stderr}");
    }
    assert!(!stderr.contains("exec format error"), "{stderr}");
}

#[test]
fn a_base_the_store_has_for_another_platform_only_is_pulled_and_the_failure_says_so() {
    require_root("fixture recipes need root");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    // A registry nothing listens on: the pull fails at once.
    success(
        rbuild(&root)
            .arg("import")
            .arg(fixture("busybox"))
            .arg("localhost:1/only-host:latest"),
    );
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM localhost:1/only-host\n").unwrap();
    let out = output(rbuild(&root).args([
        "build",
        "--platform",
        "linux/arm64/v8",
        ctx.to_str().unwrap(),
    ]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("failed to pull image localhost:1/only-host"),
        "{stderr}"
    );
    assert!(
        stderr.contains("the store has it for linux/amd64 only"),
        "{stderr}"
    );
}
