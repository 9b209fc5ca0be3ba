//! Small images to move through registries, and skopeo to look at what arrived.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use rbuild_core::{
    ContentStore, ImageName,
    export::import_rootfs,
    image::{Image, ImageConfig, ImageFormat, ImageSpec},
    layer::LayerOptions,
};

/// A rootfs tar holding busybox-static (about 2 MB) and a marker file.
pub fn busybox_rootfs(marker: &str) -> Vec<u8> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .expect("missing busybox: install the Debian package busybox-static");
    let mut b = tar::Builder::new(Vec::new());
    b.append_path_with_name(busybox, "bin/busybox").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(marker.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    b.append_data(&mut h, "etc/marker", marker.as_bytes())
        .unwrap();
    b.into_inner().unwrap()
}

/// Imports a busybox image for `architecture` into `store` and names it `name`.
pub fn make_image(
    store: &ContentStore,
    name: &str,
    marker: &str,
    format: ImageFormat,
    architecture: &str,
) -> Image {
    let mut config = ImageConfig::for_host();
    config.architecture = architecture.to_owned();
    let spec = ImageSpec::new(config).with_format(format);
    let image = import_rootfs(
        store,
        &busybox_rootfs(marker)[..],
        &spec,
        &LayerOptions::default(),
    )
    .unwrap();
    let name: ImageName = name.parse().unwrap();
    store.tag(&name, &image.descriptor).unwrap();
    image
}

/// Runs skopeo and returns its stdout, failing the test with its stderr.
pub fn skopeo(args: &[&str]) -> String {
    super::require::require_tool("skopeo", "skopeo");
    let out = Command::new("skopeo")
        .args(args)
        .env_remove("DOCKER_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The digest skopeo reads for `docker://<reference>`.
pub fn skopeo_digest(reference: &str) -> String {
    skopeo(&[
        "inspect",
        "--tls-verify=false",
        "--format",
        "{{.Digest}}",
        &format!("docker://{reference}"),
    ])
    .trim()
    .to_owned()
}
