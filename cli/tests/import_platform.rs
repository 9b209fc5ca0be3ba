//! `rbuild import --platform`: a rootfs of another architecture imported as what it is,
//! and a stage built on it, whose steps the kernel runs through QEMU (binfmt_misc). The
//! groundwork of issue 19 (multi-platform images): the arm64 fixtures and the handlers
//! `scripts/binfmt-register` installs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use serde_json::Value;
use support::require::{require_arm64_emulation, require_root};
use support::run::{fixture, output, rbuild, success};

mod support;

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

/// The `platform` of the store's index entry named `name` (the store is an OCI layout).
fn index_platform(root: &Path, name: &str) -> Value {
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
        .unwrap_or_else(|| panic!("no index entry named {name}: {index}"))["platform"]
        .clone()
}

#[test]
fn import_records_the_platform_given_in_the_config_and_the_store_index() {
    require_root("fixture recipes need root");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let tar = fixture("busybox");
    success(
        rbuild(&root)
            .args(["import", "--platform", "linux/arm/v7"])
            .arg(&tar)
            .arg("armv7:latest"),
    );
    assert_eq!(
        inspected_platform(&root, "armv7"),
        ("arm".into(), "linux".into(), "v7".into())
    );
    assert_eq!(
        index_platform(&root, "armv7:latest"),
        serde_json::json!({"architecture": "arm", "os": "linux", "variant": "v7"})
    );

    // Without --platform: the host's, and no variant.
    success(rbuild(&root).arg("import").arg(&tar).arg("host:latest"));
    let (arch, os, variant) = inspected_platform(&root, "host");
    assert_eq!(os, "linux");
    assert_ne!(arch, "arm");
    assert_eq!(variant, Value::Null);
    assert_eq!(index_platform(&root, "host:latest").get("variant"), None);

    let bad = output(
        rbuild(&root)
            .args(["import", "--platform", "arm64"])
            .arg(&tar)
            .arg("bad"),
    );
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("\"arm64\" is not a platform: give OS/ARCH or OS/ARCH/VARIANT"),
        "{stderr}"
    );
}

#[test]
fn a_stage_on_an_arm64_base_runs_its_steps_under_qemu_and_stays_arm64() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    require_arm64_emulation();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let tar = fixture("busybox-arm64");
    success(
        rbuild(&root)
            .args(["import", "--platform", "linux/arm64"])
            .arg(&tar)
            .arg("busybox-arm64:latest"),
    );
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox-arm64\nRUN uname -m > /machine\n",
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    success(rbuild(&root).args([
        "build",
        "-o",
        &format!("type=local,dest={}", out_dir.display()),
        ctx.to_str().unwrap(),
    ]));
    assert_eq!(
        std::fs::read_to_string(out_dir.join("machine")).unwrap(),
        "aarch64\n"
    );
    // The `-o` above exports the files only; build again into the store to inspect.
    success(rbuild(&root).args(["build", "-t", "built:latest", ctx.to_str().unwrap()]));
    assert_eq!(
        inspected_platform(&root, "built"),
        ("arm64".into(), "linux".into(), Value::Null)
    );
}
