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

/// Runs `cmd`; a run past a minute is killed and fails the test (a record that blocks
/// the build must not hang the suite).
fn within_a_minute(cmd: &mut std::process::Command) -> std::process::Output {
    use std::time::{Duration, Instant};
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting rbuild");
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rbuild still ran after a minute (blocked on a cache record?)");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// The store's conversion records (`<root>/cache/converted/*`) and cache records are
/// files anything may have left wrong: a crash, a full disk, a hand. A record that names
/// another layer's blob, a wrong size, or is a symlink, a FIFO or junk is not trusted:
/// the layer is converted again, and the image is the right one.
#[test]
fn wrong_conversion_and_cache_records_are_not_trusted() {
    let (_dir, root, ctx) = busybox_setup(&[("Dockerfile", DOCKERFILE)]);
    build(&root, &ctx, "g", &[]);
    let (_, good, _) = build(&root, &ctx, "z", &["--compression", "zstd"]);
    let converted = root.join("cache/converted");
    let mut records: Vec<_> = std::fs::read_dir(&converted)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    records.sort();
    assert_eq!(records.len(), 2, "two layers converted: {records:?}");
    let saved: Vec<String> = records
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let restore = || {
        for (path, text) in records.iter().zip(&saved) {
            let _ = std::fs::remove_file(path);
            std::fs::write(path, text).unwrap();
        }
    };
    let (a, b) = (&records[0], &records[1]);
    let cases: Vec<(&str, Spoil)> = vec![
        (
            "the records swapped (each names the other layer's blob)",
            Box::new(|| {
                std::fs::write(a, &saved[1]).unwrap();
                std::fs::write(b, &saved[0]).unwrap();
            }),
        ),
        (
            "a wrong size",
            Box::new(|| {
                let (digest, _) = saved[0].trim().split_once(' ').unwrap();
                std::fs::write(a, format!("{digest} 99999\n")).unwrap();
            }),
        ),
        (
            "the gzip blob it was converted from",
            Box::new(|| {
                let gzip = layer_blob(&root, "g", 1);
                std::fs::write(a, format!("{gzip} {}\n", blob_size(&root, &gzip))).unwrap();
            }),
        ),
        (
            "a symlink to the other record",
            Box::new(|| {
                std::fs::remove_file(a).unwrap();
                std::os::unix::fs::symlink(b, a).unwrap();
            }),
        ),
        (
            "a FIFO",
            Box::new(|| {
                std::fs::remove_file(a).unwrap();
                mkfifo(a);
            }),
        ),
        (
            "a truncated line",
            Box::new(|| std::fs::write(a, &saved[0][..30]).unwrap()),
        ),
    ];
    for (what, spoil) in &cases {
        restore();
        spoil();
        let out = within_a_minute(
            rbuild(&root)
                .env("SOURCE_DATE_EPOCH", "1700000000")
                .args(["build", "--progress", "plain", "-t", "again"])
                .args(["--compression", "zstd"])
                .arg(&ctx),
        );
        assert!(
            out.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let inspect =
            success(rbuild(&root).args(["inspect", "-f", "{{.ManifestDigest}}", "again"]));
        assert_eq!(
            String::from_utf8_lossy(&inspect.stdout).trim(),
            good,
            "{what}: the image is the one the right conversion gives"
        );
        let verify = output(rbuild(&root).args(["store", "verify"]));
        assert!(
            verify.status.success(),
            "{what}: {}",
            String::from_utf8_lossy(&verify.stdout)
        );
    }

    // A cache entry or a step record that is a FIFO is a miss, not a hang.
    for entry in std::fs::read_dir(root.join("cache")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            std::fs::remove_file(&path).unwrap();
            mkfifo(&path);
        }
    }
    for entry in std::fs::read_dir(root.join("cache/steps")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::remove_file(&path).unwrap();
        mkfifo(&path);
    }
    let out = within_a_minute(
        rbuild(&root)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", "--progress", "plain", "-t", "fifo"])
            .arg(&ctx),
    );
    assert!(
        out.status.success(),
        "FIFO cache records: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Leaves a record wrong in one way.
type Spoil<'a> = Box<dyn Fn() + 'a>;

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("running mkfifo");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// The digest of layer `index` of the image `tag` in the store at `root`.
fn layer_blob(root: &Path, tag: &str, index: usize) -> String {
    let inspect = success(rbuild(root).args(["inspect", "-f", "{{.ManifestDigest}}", tag]));
    let digest = String::from_utf8_lossy(&inspect.stdout).trim().to_owned();
    let hex = digest.strip_prefix("sha256:").unwrap();
    let bytes = std::fs::read(root.join("blobs/sha256").join(hex)).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    manifest["layers"][index]["digest"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn blob_size(root: &Path, digest: &str) -> u64 {
    let hex = digest.strip_prefix("sha256:").unwrap();
    std::fs::metadata(root.join("blobs/sha256").join(hex))
        .unwrap()
        .len()
}

/// A cached layer whose blob is damaged (it no longer unpacks to its diff_id) fails the
/// conversion with an error naming the blob and the diff_id and telling how to find such
/// blobs, never an image with that content.
#[test]
fn a_damaged_cached_layer_fails_the_conversion_naming_it() {
    let (_dir, root, ctx) = busybox_setup(&[("Dockerfile", DOCKERFILE)]);
    build(&root, &ctx, "g", &[]);
    let blob = layer_blob(&root, "g", 2);
    let path = root
        .join("blobs/sha256")
        .join(blob.strip_prefix("sha256:").unwrap());
    // Valid gzip of other content: only the diff_id check can tell.
    let other = root.parent().unwrap().join("other");
    std::fs::write(&other, "not the layer").unwrap();
    let gz = std::process::Command::new("gzip")
        .args(["-n", "-c"])
        .arg(&other)
        .output()
        .expect("running gzip");
    assert!(gz.status.success(), "gzip failed");
    std::fs::write(&path, gz.stdout).unwrap();
    let out = output(
        rbuild(&root)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["build", "--progress", "plain", "-t", "z"])
            .args(["--compression", "zstd"])
            .arg(&ctx),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the build failed: {err}");
    assert!(
        err.contains(blob.strip_prefix("sha256:").unwrap()),
        "names the blob: {err}"
    );
    assert!(err.contains("diff_id"), "says what does not match: {err}");
    assert!(
        err.contains("rbuild store verify"),
        "tells how to find damage: {err}"
    );
    assert!(
        !output(rbuild(&root).args(["inspect", "z"]))
            .status
            .success(),
        "no image was named"
    );
}
