//! The layers' compression through the binary (issue 15, item 10):
//! - `--compression zstd` holds for the steps found in the cache too (they were stored
//!   gzip by an earlier build): the image is the one a cold zstd build makes, and a
//!   repeat build stores nothing new. The base image's layers stay as they are unless
//!   `-o ...,force-compression=true`, as in BuildKit.
//! - A docker archive with zstd layers gets a warning: docker 20.10 cannot load it.
//!
//! The image ID is the config digest, which names the uncompressed layers (diff_ids) and
//! so is the same for every compression, as docker's; the manifest digest tells the
//! images apart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

mod support;

use support::run::{busybox_setup, output, rbuild, success};

const DOCKERFILE: &str = "\
FROM busybox:latest
RUN echo one > /one
RUN echo two > /two
";

const GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// Builds the context as `tag` with `args`; returns (image ID, manifest digest, stderr).
fn build(root: &Path, ctx: &Path, tag: &str, args: &[&str]) -> (String, String, String) {
    let out = success(
        rbuild(root)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", "--progress", "plain", "-t", tag])
            .args(args)
            .arg(ctx),
    );
    let id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .find_map(|l| l.strip_prefix("Image ID: ").map(str::to_owned))
        .expect("the build prints its image ID");
    let inspect = success(rbuild(root).args(["inspect", "-f", "{{.ManifestDigest}}", tag]));
    let manifest = String::from_utf8_lossy(&inspect.stdout).trim().to_owned();
    (
        id,
        manifest,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The layer media types of the manifest `digest` in the store at `root`.
fn layer_types(root: &Path, digest: &str) -> Vec<String> {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    let bytes = std::fs::read(root.join("blobs/sha256").join(hex)).expect("the manifest blob");
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap().to_owned())
        .collect()
}

fn blob_count(root: &Path) -> usize {
    std::fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .count()
}

#[test]
fn zstd_holds_for_cached_steps_and_gives_the_cold_builds_image() {
    let (_dir, root, ctx) = busybox_setup(&[("Dockerfile", DOCKERFILE)]);
    let (gzip_id, gzip, _) = build(&root, &ctx, "g", &[]);
    assert_eq!(layer_types(&root, &gzip), [GZIP, GZIP, GZIP]);

    // Every step cached, stored gzip: the layers of this build are zstd all the same.
    let (cached_id, cached, log) = build(&root, &ctx, "z", &["--compression", "zstd"]);
    assert!(log.contains("3 steps, 3 cached"), "all cached:\n{log}");
    assert_eq!(
        layer_types(&root, &cached),
        [GZIP, ZSTD, ZSTD],
        "the base image's layer stays gzip, the build's own are zstd"
    );
    assert_ne!(cached, gzip, "a zstd image is not the gzip one");
    assert_eq!(
        cached_id, gzip_id,
        "the config (image ID) names diff_ids only"
    );

    // Again: the same image, and no blob stored twice.
    let blobs = blob_count(&root);
    let (_, again, _) = build(&root, &ctx, "z", &["--compression", "zstd"]);
    assert_eq!(again, cached);
    assert_eq!(
        blob_count(&root),
        blobs,
        "a repeat build stores nothing new"
    );

    // A cold zstd build makes the same image as the converted one.
    let (cold_id, cold, _) = build(&root, &ctx, "zc", &["--no-cache", "--compression", "zstd"]);
    assert_eq!(
        cold, cached,
        "cold and all-cached zstd builds give one image"
    );
    assert_eq!(cold_id, cached_id);
    assert_eq!(
        blob_count(&root),
        blobs,
        "the cold build's blobs are the converted ones"
    );

    // Back to gzip from zstd cache entries: the first gzip image again.
    let (_, gzip_again, _) = build(&root, &ctx, "g2", &[]);
    assert_eq!(gzip_again, gzip);

    // -o ...,compression=zstd asks the same; force-compression converts the base layer.
    let dest = root.parent().unwrap().join("forced.tar");
    let spec = format!(
        "type=oci,dest={},compression=zstd,force-compression=true",
        dest.display()
    );
    let (_, forced, _) = build(&root, &ctx, "zf", &["-o", &spec]);
    assert_eq!(layer_types(&root, &forced), [ZSTD, ZSTD, ZSTD]);
}

#[test]
fn two_different_compressions_are_refused() {
    let (dir, root, ctx) = busybox_setup(&[("Dockerfile", DOCKERFILE)]);
    let spec = format!(
        "type=oci,dest={},compression=zstd",
        dir.path().join("x.tar").display()
    );
    let out = output(
        rbuild(&root)
            .args(["build", "--compression", "gzip", "-o", &spec])
            .arg(&ctx),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("asks for zstd layers but --compression for gzip"),
        "{err}"
    );
}

#[test]
fn a_docker_archive_with_zstd_layers_warns_that_docker_20_10_cannot_load_it() {
    let (dir, root, ctx) = busybox_setup(&[("Dockerfile", DOCKERFILE)]);
    let archive = dir.path().join("image.tar");
    let spec = format!("type=docker,dest={},compression=zstd", archive.display());
    let (_, manifest, log) = build(&root, &ctx, "d", &["--no-cache", "-o", &spec]);
    assert!(log.contains("docker 20.10 cannot load it"), "{log}");
    assert!(layer_types(&root, &manifest).contains(&ZSTD.to_owned()));
    assert!(archive.is_file());

    let saved = dir.path().join("saved.tar");
    let out = success(
        rbuild(&root)
            .args(["save", "--format", "docker", "-o"])
            .arg(&saved)
            .arg("d"),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: the docker archive has zstd layers"),
        "{err}"
    );

    // --format docker: the docker media type BuildKit gives a zstd layer.
    let (_, docker, _) = build(
        &root,
        &ctx,
        "dd",
        &["--compression", "zstd", "--format", "docker"],
    );
    assert!(
        layer_types(&root, &docker)
            .contains(&"application/vnd.docker.image.rootfs.diff.tar.zstd".to_owned())
    );

    // gzip: no warning.
    let gz = format!("type=docker,dest={}", dir.path().join("gz.tar").display());
    let (_, _, log) = build(&root, &ctx, "g", &["-o", &gz]);
    assert!(!log.contains("zstd"), "{log}");
}
