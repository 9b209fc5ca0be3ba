//! Manifests that lie (issue 9, item 4): a real docker-registry serves manifests whose
//! descriptors give a layer or the config a wrong size or a wrong digest. Each pull is
//! refused with an error naming the blob, no name is created, the store verifies, and
//! the verified blobs fetched before the lie was found are left nameless for prune.
//! (`registry_push_pull.rs` covers a blob whose content was changed in the registry.)
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;

use rbuild_core::{
    ContentStore, Digest, ImageName,
    image::{ImageFormat, verify},
    registry::{PushOptions, RegistryClient, RegistryOptions, pull, push},
};
use serde_json::Value;
use support::images::make_image;
use support::registry::Registry;

/// A change that makes a manifest lie.
type Lie = Box<dyn Fn(&mut Value)>;

/// Uploads `manifest` as `<repo>:<tag>` with curl (the registry stores what it is given
/// once every blob it names exists).
fn put_manifest(reg: &Registry, repo: &str, tag: &str, manifest: &[u8]) {
    let url = format!("http://{}/v2/{repo}/manifests/{tag}", reg.addr);
    let out = Command::new("curl")
        .args(["-sS", "-f", "-X", "PUT", "-H"])
        .arg("Content-Type: application/vnd.oci.image.manifest.v1+json")
        .arg("--data-binary")
        .arg("@-")
        .arg(&url)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(manifest)?;
            child.wait_with_output()
        })
        .expect("running curl");
    assert!(
        out.status.success(),
        "PUT {url} failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        reg.log()
    );
}

#[test]
fn manifests_that_lie_about_sizes_or_digests_are_refused() {
    let reg = Registry::start(None);
    let tmp = tempfile::tempdir().unwrap();
    let src = ContentStore::open(tmp.path().join("src")).unwrap();
    make_image(&src, "local/liar:1", "liar", ImageFormat::Oci, "amd64");
    let honest: ImageName = format!("{}/liar/img:honest", reg.addr).parse().unwrap();
    let client = RegistryClient::with_credentials(&reg.addr, None, RegistryOptions::default());
    push(
        &client,
        &src,
        "local/liar:1",
        &honest,
        &PushOptions::default(),
        &rbuild_core::progress::NullProgress,
    )
    .unwrap();
    let image = src.resolve("local/liar:1").unwrap();
    let manifest: Value =
        serde_json::from_slice(&src.read(&image.digest().unwrap()).unwrap()).unwrap();

    let other = Digest::of(b"not this blob");
    let cases: Vec<(&str, Lie)> = vec![
        (
            "layer-smaller",
            Box::new(|m| {
                let size = m["layers"][0]["size"].as_u64().unwrap();
                m["layers"][0]["size"] = (size - 100).into();
            }),
        ),
        (
            "layer-bigger",
            Box::new(|m| {
                let size = m["layers"][0]["size"].as_u64().unwrap();
                m["layers"][0]["size"] = (size + 100).into();
            }),
        ),
        (
            "config-smaller",
            Box::new(|m| {
                let size = m["config"]["size"].as_u64().unwrap();
                m["config"]["size"] = (size - 1).into();
            }),
        ),
        (
            "config-wrong-digest",
            Box::new(|m| {
                // A digest of a blob the registry does have: the layer's.
                m["config"]["digest"] = m["layers"][0]["digest"].clone();
            }),
        ),
    ];
    for (tag, lie) in &cases {
        let mut lying = manifest.clone();
        lie(&mut lying);
        put_manifest(&reg, "liar/img", tag, &serde_json::to_vec(&lying).unwrap());
        let name: ImageName = format!("{}/liar/img:{tag}", reg.addr).parse().unwrap();
        let dst = ContentStore::open(tmp.path().join(format!("dst-{tag}"))).unwrap();
        let err = pull(
            &client,
            &dst,
            &name,
            rbuild_core::registry::PullPlatform::Host,
            &rbuild_core::progress::NullProgress,
        )
        .unwrap_err();
        println!("{tag}: {err}");
        let text = err.to_string();
        assert!(
            text.contains("sha256:"),
            "{tag}: the error names no blob: {text}"
        );
        assert!(
            dst.images().unwrap().is_empty(),
            "{tag}: the image was named"
        );
        assert!(
            verify(&dst).unwrap().is_empty(),
            "{tag}: the store does not verify"
        );
        let blobs = dst.blobs().unwrap();
        println!(
            "{tag}: {} blobs in the store after the refused pull",
            blobs.len()
        );
        assert!(
            !blobs.contains(&other),
            "{tag}: a blob that was never asked for is in the store"
        );
        assert_eq!(
            std::fs::read_dir(dst.tmp_dir()).unwrap().count(),
            0,
            "{tag}: temp files left"
        );
        // Blobs that were downloaded and verified before the lie was found stay, intact
        // and nameless, as in containerd's content store; prune removes them.
        rbuild_core::image::prune(&dst, false).unwrap();
        assert!(dst.blobs().unwrap().is_empty(), "{tag}: prune left blobs");
    }
    // The honest manifest still pulls.
    let dst = ContentStore::open(tmp.path().join("dst-honest")).unwrap();
    pull(
        &client,
        &dst,
        &honest,
        rbuild_core::registry::PullPlatform::Host,
        &rbuild_core::progress::NullProgress,
    )
    .unwrap();
    assert!(verify(&dst).unwrap().is_empty());
}
