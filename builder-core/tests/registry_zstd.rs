//! zstd layers both ways: an image skopeo pushed with zstd layers is pulled and built
//! FROM, and skopeo and buildah accept the zstd images rbuild writes (Debian 12's umoci,
//! 0.4.7, predates zstd: see the buildah test).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::Command;

use rbuild_core::{
    ContentStore, ExportTarget, ImageName, error_chain::error_chain, export::export, image::Image,
    layer::Compression,
};

/// The zstd layer media type (image-spec media-types.md).
const OCI_ZSTD_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

fn export_layout(store: &ContentStore, image: &Image, dest: &Path, name: &str) {
    let name: ImageName = name.parse().unwrap();
    export(
        store,
        &ExportTarget::Oci {
            dest: dest.to_path_buf(),
            tar: false,
        },
        image,
        &[name],
        &rbuild_core::progress::NullProgress,
    )
    .unwrap();
}

fn layer_types(image: &Image) -> Vec<String> {
    image
        .manifest
        .layers()
        .iter()
        .map(|l| l.media_type().to_string())
        .collect()
}

#[test]
fn an_image_with_zstd_layers_is_pulled_and_built_from() {
    let reg = support::registry::Registry::start(None);
    let (dir, store) = support::build::busybox_store();
    let base = rbuild_core::image::load_image(
        &store,
        &store.resolve("busybox:latest").unwrap().descriptor,
    )
    .unwrap();
    let layout = dir.path().join("layout");
    export_layout(&store, &base, &layout, "localhost/busybox:v1");
    let reference = format!("{}/zstd/busybox:v1", reg.addr);
    support::images::skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-compress-format",
        "zstd",
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{reference}"),
    ]);

    // A fresh store: FROM pulls the zstd image.
    let other = tempfile::tempdir().unwrap();
    let fresh = ContentStore::open(other.path().join("store")).unwrap();
    let ctx = support::build::context(other.path(), &[]);
    let dockerfile = format!("FROM {reference}\nRUN echo built > /built\n");
    let (result, _) = support::build::build_with(&fresh, &dockerfile, &ctx, |_| {});
    let result = result.unwrap_or_else(|e| panic!("build failed: {}", error_chain(&e)));
    let types = layer_types(&result.image);
    assert_eq!(types[0], OCI_ZSTD_LAYER, "{types:?}");
    assert_eq!(
        support::build::read(&fresh, &result.image, other.path(), "/built"),
        "built\n"
    );
    assert!(
        support::build::rootfs(&fresh, &result.image, other.path())
            .join("bin/busybox")
            .is_file()
    );
}

/// An image rbuild built with zstd layers (the base's stays gzip), exported as an OCI
/// layout at `<dir>/layout:v1` and copied by skopeo to `<dir>/copy:v1`.
fn zstd_image_copied_by_skopeo(dir: &Path, store: &ContentStore) {
    let ctx = support::build::context(dir, &[("hello.txt", "hello\n")]);
    let (result, _) = support::build::build_with(
        store,
        "FROM busybox\nCOPY hello.txt /hello.txt\nRUN echo ran > /ran\n",
        &ctx,
        |r| r.spec.compression = Compression::Zstd,
    );
    let image = result
        .unwrap_or_else(|e| panic!("build failed: {}", error_chain(&e)))
        .image;
    let types = layer_types(&image);
    assert_eq!(types[1..], [OCI_ZSTD_LAYER, OCI_ZSTD_LAYER], "{types:?}");
    let layout = dir.join("layout");
    export_layout(store, &image, &layout, "localhost/zstd:v1");
    let copy = dir.join("copy");
    support::images::skopeo(&[
        "copy",
        &format!("oci:{}:v1", layout.display()),
        &format!("oci:{}:v1", copy.display()),
    ]);
    // skopeo kept the layers as they were.
    let raw = support::images::skopeo(&["inspect", "--raw", &format!("oci:{}:v1", copy.display())]);
    assert_eq!(raw.matches(OCI_ZSTD_LAYER).count(), 2, "{raw}");
}

#[test]
fn skopeo_accepts_zstd_images_rbuild_writes() {
    let (dir, store) = support::build::busybox_store();
    zstd_image_copied_by_skopeo(dir.path(), &store);
}

/// umoci reads zstd layers from 0.5.0 on (its CHANGELOG.md); Debian 12 ships 0.4.7, which
/// refuses them as an unknown media type, and no newer package is reachable here. The
/// second independent unpacker of rbuild's zstd images is therefore buildah (through
/// containers/image and containers/storage, not skopeo's copy path): it makes a
/// container from the copied layout and mounts its root, whose files are checked.
#[test]
fn buildah_unpacks_zstd_images_rbuild_writes() {
    support::require::require_tool("buildah", "buildah");
    let (dir, store) = support::build::busybox_store();
    zstd_image_copied_by_skopeo(dir.path(), &store);
    let root = dir.path().join("buildah-root");
    let runroot = dir.path().join("buildah-run");
    let buildah = |args: &[&str]| {
        let out = Command::new("buildah")
            .args([
                "--root",
                root.to_str().unwrap(),
                "--runroot",
                runroot.to_str().unwrap(),
            ])
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "buildah {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    // buildah names the image after the layout's path, which must be lower case: the
    // temp dir's name is not, so the layout is reached through a lower-case link.
    let link = std::env::temp_dir().join(format!("rbuild-zstd-{}", std::process::id()));
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(dir.path().join("copy"), &link).unwrap();
    let image = format!("oci:{}:v1", link.display());
    let container = buildah(&["from", "--pull-never", "--quiet", &image]);
    let mounted = std::path::PathBuf::from(buildah(&["mount", &container]));
    let hello = std::fs::read_to_string(mounted.join("hello.txt"));
    let ran = std::fs::read_to_string(mounted.join("ran"));
    let busybox = mounted.join("bin/busybox").is_file();
    buildah(&["umount", &container]);
    buildah(&["rm", &container]);
    // vfs layers are plain directories, some read-only: buildah removes them itself.
    buildah(&["rmi", "--all", "--force"]);
    std::fs::remove_file(&link).unwrap();
    assert_eq!(hello.unwrap(), "hello\n");
    assert_eq!(ran.unwrap(), "ran\n");
    assert!(
        busybox,
        "the gzip base layer under the zstd ones is missing"
    );
}
