//! Push to and pull from a real docker-registry on 127.0.0.1, checked with skopeo.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;

use oci_spec::image::{Descriptor, ImageIndexBuilder, MediaType, Platform, PlatformBuilder};
use rbuild_core::{
    ContentStore, Digest, ImageName,
    image::{ImageFormat, load_image, load_image_for, prune, verify},
    registry::{
        PushOptions, RegistryClient, RegistryError, RegistryOptions, UploadMode, pull, push,
    },
};
use support::images::{make_image, skopeo, skopeo_digest};
use support::registry::Registry;

/// Small chunks, so that the 1 MB busybox layer goes up in several PATCH requests.
fn client_chunk() -> u64 {
    256 << 10
}

fn client(reg: &Registry) -> RegistryClient {
    RegistryClient::with_credentials(
        &reg.addr,
        None,
        RegistryOptions::default()
            .with_chunk_size(client_chunk())
            .with_upload(UploadMode::Chunked),
    )
}

#[test]
fn pushed_image_reads_back_with_skopeo() {
    let reg = Registry::start(None);
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path().join("store")).unwrap();
    let image = make_image(&store, "local/busybox:1", "push", ImageFormat::Oci, "amd64");
    let dest: ImageName = format!("{}/rbuild/busybox:1", reg.addr).parse().unwrap();
    let client = client(&reg);
    let layer_size = image.manifest.layers()[0].size();
    assert!(
        layer_size > client_chunk() * 2,
        "the layer ({layer_size} bytes) must take the chunked upload path"
    );
    let digest = push(
        &client,
        &store,
        "local/busybox:1",
        &dest,
        &PushOptions::default(),
        &rbuild_core::progress::NullProgress,
    )
    .unwrap_or_else(|e| panic!("push failed: {e:?}\n{}", reg.log()));
    assert_eq!(digest, image.digest().unwrap());
    assert_eq!(
        skopeo_digest(&format!("{}/rbuild/busybox:1", reg.addr)),
        digest.to_string()
    );

    // Pushing again finds every blob present; the manifest is the same.
    let again = push(
        &client,
        &store,
        "local/busybox:1",
        &dest,
        &PushOptions::default(),
        &rbuild_core::progress::NullProgress,
    )
    .unwrap();
    assert_eq!(again, digest);

    // A second repository on the same registry gets its blobs by cross-repository mount.
    let other: ImageName = format!("{}/other/busybox:2", reg.addr).parse().unwrap();
    let mounted = push(
        &client,
        &store,
        "local/busybox:1",
        &other,
        &PushOptions::default().with_mount_from(Some("rbuild/busybox".to_owned())),
        &rbuild_core::progress::NullProgress,
    )
    .unwrap();
    assert_eq!(
        skopeo_digest(&format!("{}/other/busybox:2", reg.addr)),
        mounted.to_string()
    );

    let oci_dir = tmp.path().join("copied");
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/rbuild/busybox:1", reg.addr),
        &format!("oci:{}:copied", oci_dir.display()),
    ]);
    let index = std::fs::read_to_string(oci_dir.join("index.json")).unwrap();
    assert!(index.contains(digest.as_str()), "{index}");
}

#[test]
fn large_blobs_go_up_in_one_streamed_put() {
    let reg = Registry::start(None);
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path().join("store")).unwrap();
    let image = make_image(&store, "local/busybox:1", "mono", ImageFormat::Oci, "amd64");
    let client = RegistryClient::with_credentials(
        &reg.addr,
        None,
        RegistryOptions::default()
            .with_chunk_size(client_chunk())
            .with_upload(UploadMode::Monolithic),
    );
    let layer_size = image.manifest.layers()[0].size();
    assert!(
        layer_size > client_chunk(),
        "the layer ({layer_size} bytes) must take the streamed path"
    );
    let dest: ImageName = format!("{}/rbuild/mono:1", reg.addr).parse().unwrap();
    let digest = push(
        &client,
        &store,
        "local/busybox:1",
        &dest,
        &PushOptions::default(),
        &rbuild_core::progress::NullProgress,
    )
    .unwrap_or_else(|e| panic!("push failed: {e:?}\n{}", reg.log()));
    assert_eq!(
        skopeo_digest(&format!("{}/rbuild/mono:1", reg.addr)),
        digest.to_string()
    );
    // The registry holds the layer byte for byte.
    let layer = Digest::try_from(image.manifest.layers()[0].digest()).unwrap();
    assert_eq!(
        std::fs::read(reg.blob_data(layer.hex())).unwrap(),
        store.read(&layer).unwrap()
    );
}

/// Copies `local` from `store` into the registry with skopeo (`v2s2` for docker types).
fn skopeo_push(store: &ContentStore, local: &str, remote: &str, docker: bool) {
    let name: ImageName = local.parse().unwrap();
    let mut args = vec!["copy", "--dest-tls-verify=false"];
    if docker {
        args.extend(["--format", "v2s2"]);
    }
    let src = format!("oci:{}:{name}", store.root().display());
    let dst = format!("docker://{remote}");
    args.extend([src.as_str(), dst.as_str()]);
    skopeo(&args);
}

#[test]
fn pulls_oci_and_docker_images_pushed_by_skopeo() {
    let reg = Registry::start(None);
    let tmp = tempfile::tempdir().unwrap();
    let src = ContentStore::open(tmp.path().join("src")).unwrap();
    make_image(&src, "local/img:1", "pull", ImageFormat::Oci, "amd64");
    let client = client(&reg);
    for (repo, docker, media) in [
        ("pull/oci", false, rbuild_core::image::OCI_MANIFEST),
        ("pull/docker", true, rbuild_core::image::DOCKER_MANIFEST),
    ] {
        let remote = format!("{}/{repo}:1", reg.addr);
        skopeo_push(&src, "local/img:1", &remote, docker);
        let expected = skopeo_digest(&remote);

        let dst = ContentStore::open(tmp.path().join(repo.replace('/', "-"))).unwrap();
        let name: ImageName = remote.parse().unwrap();
        let desc = pull(
            &client,
            &dst,
            &name,
            rbuild_core::registry::PullPlatform::Host,
            &rbuild_core::progress::NullProgress,
        )
        .unwrap_or_else(|e| panic!("pull {remote} failed: {e:?}\n{}", reg.log()));
        assert_eq!(desc.digest().to_string(), expected);
        assert_eq!(desc.media_type().to_string(), media);
        assert!(verify(&dst).unwrap().is_empty());
        let found = dst.resolve(&remote).unwrap();
        let image = load_image(&dst, &found.descriptor).unwrap();
        assert_eq!(image.manifest.layers().len(), 1);
        for layer in image.manifest.layers() {
            let d = Digest::try_from(layer.digest()).unwrap();
            assert_eq!(dst.verify_blob(&d).unwrap(), layer.size());
        }
    }
}

fn platform(arch: &str) -> Platform {
    PlatformBuilder::default()
        .os("linux")
        .architecture(arch)
        .build()
        .unwrap()
}

#[test]
fn pull_of_an_index_picks_the_host_platform_or_the_one_asked_for_and_keeps_both_named() {
    let reg = Registry::start(None);
    let tmp = tempfile::tempdir().unwrap();
    let src = ContentStore::open(tmp.path().join("src")).unwrap();
    let host = rbuild_core::image::host_architecture();
    let other = if host == "arm64" { "amd64" } else { "arm64" };
    let mine = make_image(&src, "local/multi-a:1", "host", ImageFormat::Oci, host);
    let theirs = make_image(&src, "local/multi-b:1", "other", ImageFormat::Oci, other);
    let mut manifests = Vec::new();
    for (image, arch) in [(&theirs, other), (&mine, host)] {
        let mut d: Descriptor = image.descriptor.clone();
        d.set_annotations(None);
        d.set_platform(Some(platform(arch)));
        manifests.push(d);
    }
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .annotations(HashMap::new())
        .build()
        .unwrap();
    let blob = src.put(&serde_json::to_vec(&index).unwrap()).unwrap();
    let index_desc = Descriptor::new(MediaType::ImageIndex, blob.size, &blob.digest);
    src.tag(&"local/multi:1".parse().unwrap(), &index_desc)
        .unwrap();

    let remote = format!("{}/multi/arch:1", reg.addr);
    let name: ImageName = "local/multi:1".parse().unwrap();
    skopeo(&[
        "copy",
        "--all",
        "--dest-tls-verify=false",
        &format!("oci:{}:{name}", src.root().display()),
        &format!("docker://{remote}"),
    ]);
    let dst = ContentStore::open(tmp.path().join("dst")).unwrap();
    let desc = pull(
        &client(&reg),
        &dst,
        &remote.parse().unwrap(),
        rbuild_core::registry::PullPlatform::Host,
        &rbuild_core::progress::NullProgress,
    )
    .unwrap_or_else(|e| panic!("pull failed: {e:?}\n{}", reg.log()));
    assert_eq!(
        Digest::try_from(desc.digest()).unwrap(),
        mine.digest().unwrap()
    );
    let theirs_layer = Digest::try_from(theirs.manifest.layers()[0].digest()).unwrap();
    assert!(
        !dst.contains(&theirs_layer),
        "the other platform's layer was pulled"
    );
    assert!(verify(&dst).unwrap().is_empty());

    // Asked for the other platform, spelled as uname does: its entry, and the name
    // keeps the host's image beside it.
    let spelled = if other == "arm64" {
        "linux/aarch64"
    } else {
        "linux/x86_64"
    };
    let wanted = rbuild_dockerfile::Platform::parse(spelled).unwrap();
    let desc = pull(
        &client(&reg),
        &dst,
        &remote.parse().unwrap(),
        rbuild_core::registry::PullPlatform::Exactly(&wanted),
        &rbuild_core::progress::NullProgress,
    )
    .unwrap_or_else(|e| panic!("pull failed: {e:?}\n{}", reg.log()));
    assert_eq!(
        Digest::try_from(desc.digest()).unwrap(),
        theirs.digest().unwrap()
    );
    let named = dst.resolve(&remote).unwrap();
    let digest_for = |arch: &str| {
        let platform = rbuild_dockerfile::Platform::new("linux", arch, "");
        load_image_for(&dst, &named.descriptor, &platform)
            .unwrap()
            .map(|image| image.digest().unwrap())
    };
    assert_eq!(digest_for(other), Some(theirs.digest().unwrap()));
    assert_eq!(digest_for(host), Some(mine.digest().unwrap()));
    assert!(verify(&dst).unwrap().is_empty());
    // Both images are the name's: pruning keeps every blob.
    let report = prune(&dst, false).unwrap();
    assert!(report.blobs.is_empty(), "{:?}", report.blobs);
}

#[test]
fn corrupt_blob_in_the_registry_is_refused() {
    let reg = Registry::start(None);
    let tmp = tempfile::tempdir().unwrap();
    let src = ContentStore::open(tmp.path().join("src")).unwrap();
    let image = make_image(&src, "local/bad:1", "corrupt", ImageFormat::Oci, "amd64");
    let remote = format!("{}/bad/img:1", reg.addr);
    let name: ImageName = remote.parse().unwrap();
    let client = client(&reg);
    push(
        &client,
        &src,
        "local/bad:1",
        &name,
        &PushOptions::default(),
        &rbuild_core::progress::NullProgress,
    )
    .unwrap();

    let layer = Digest::try_from(image.manifest.layers()[0].digest()).unwrap();
    let data = reg.blob_data(layer.hex());
    let mut bytes = std::fs::read(&data).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&data, &bytes).unwrap();

    let dst = ContentStore::open(tmp.path().join("dst")).unwrap();
    let err = pull(
        &client,
        &dst,
        &name,
        rbuild_core::registry::PullPlatform::Host,
        &rbuild_core::progress::NullProgress,
    )
    .unwrap_err();
    match &err {
        RegistryError::DigestMismatch { expected, .. } => assert_eq!(expected, &layer),
        other => panic!("expected a digest mismatch, got {other:?}"),
    }
    assert!(err.to_string().contains("corrupt"), "{err}");
    assert!(!dst.contains(&layer), "the corrupt layer entered the store");
    assert!(dst.images().unwrap().is_empty(), "the image was named");
    assert!(verify(&dst).unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(dst.tmp_dir()).unwrap().count(),
        0,
        "temp files left"
    );
}
