//! Interop: an image pushed by rbuild to a docker-registry on 127.0.0.1 pulls with podman.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command;

use rbuild_core::{
    ContentStore, ImageName,
    image::ImageFormat,
    registry::{PushOptions, RegistryClient, push},
};
use support::images::make_image;
use support::registry::Registry;
use support::require::require_tool;

/// Runs podman against a private store (`vfs`, so no overlay mount is needed) and returns
/// its stdout, failing the test with its stderr.
fn podman(root: &std::path::Path, args: &[&str]) -> String {
    require_tool("podman", "podman");
    // An empty auth file of its own, so that no credentials of the host are used.
    let auth = root.join("auth.json");
    if !auth.exists() {
        std::fs::create_dir_all(root).unwrap();
        std::fs::write(&auth, "{}").unwrap();
    }
    let out = Command::new("podman")
        .arg("--root")
        .arg(root.join("root"))
        .arg("--runroot")
        .arg(root.join("run"))
        .args([
            "--storage-driver",
            "vfs",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ])
        .args(args)
        .env_remove("DOCKER_CONFIG")
        .env("REGISTRY_AUTH_FILE", &auth)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "podman {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn podman_pulls_an_image_pushed_by_rbuild() {
    require_tool("podman", "podman");
    let reg = Registry::start(None);
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path().join("store")).unwrap();
    for (format, repo) in [
        (ImageFormat::Oci, "interop/oci"),
        (ImageFormat::Docker, "interop/docker"),
    ] {
        let local = format!("local/{repo}:1");
        let image = make_image(&store, &local, repo, format, "amd64");
        let remote = format!("{}/{repo}:1", reg.addr);
        let dest: ImageName = remote.parse().unwrap();
        let client = RegistryClient::with_credentials(&reg.addr, None, Default::default());
        let manifest = push(
            &client,
            &store,
            &local,
            &dest,
            &PushOptions::default(),
            &rbuild_core::progress::NullProgress,
        )
        .unwrap_or_else(|e| panic!("push {remote} failed: {e:?}\n{}", reg.log()));

        let podman_root = tmp
            .path()
            .join(format!("podman-{}", repo.replace('/', "-")));
        podman(
            &podman_root,
            &["pull", "--quiet", "--tls-verify=false", &remote],
        );
        let inspected = podman(
            &podman_root,
            &[
                "image",
                "inspect",
                "--format",
                "{{.Id}} {{.Digest}}",
                &remote,
            ],
        );
        let mut fields = inspected.split_whitespace();
        let id = fields.next().unwrap_or_default();
        let digest = fields.next().unwrap_or_default();
        // podman's image id is the hex of the config digest.
        let config = image.manifest.config().digest().to_string();
        assert_eq!(
            format!("sha256:{id}"),
            config,
            "podman's image id differs from the config rbuild pushed ({inspected})"
        );
        assert_eq!(
            digest,
            manifest.to_string(),
            "manifest digest ({inspected})"
        );
    }
}
