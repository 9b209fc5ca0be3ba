//! `--squash` and `--squash-all`: one layer for what the build added (or for everything),
//! whiteouts of base files kept, those of the build's own files gone, history as docker's
//! `--squash` leaves it, and images skopeo and umoci accept.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Read;
use std::path::Path;
use std::process::Command;

use rbuild_core::{
    ContentStore, ExportTarget, ImageName, error_chain::error_chain, export::export, image::Image,
    solver::Squash,
};
use support::build::*;

/// Adds files, deletes one of them again, deletes base files (one in a directory the
/// build also writes to), and removes a directory it made.
const DOCKERFILE: &str = "FROM busybox
RUN echo a > /a && mkdir -p /d/e && echo b > /d/e/b && echo keep > /keep
RUN rm /a && rm /etc/passwd && echo c > /etc/c && rm /bin/vi
RUN rm -rf /d
ENV DONE=1
";

/// The names of the entries of layer `index` of `image`.
fn entries(store: &ContentStore, image: &Image, index: usize) -> Vec<String> {
    let (blob, _) = image.layers().unwrap()[index].clone();
    let mut plain = Vec::new();
    rbuild_core::layer::decompress(std::io::BufReader::new(store.open_blob(&blob).unwrap()))
        .unwrap()
        .read_to_end(&mut plain)
        .unwrap();
    tar::Archive::new(&plain[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect()
}

fn squashed(how: Squash) -> (tempfile::TempDir, ContentStore, Image, Image) {
    let (dir, store) = busybox_store();
    let base = store.resolve("busybox:latest").unwrap();
    let base = rbuild_core::image::load_image(&store, &base.descriptor).unwrap();
    let ctx = context(dir.path(), &[]);
    let (result, _) = build_with(&store, DOCKERFILE, &ctx, |r| r.spec.squash = how);
    let result = result.unwrap_or_else(|e| panic!("build failed: {}", error_chain(&e)));
    (dir, store, base, result.image)
}

/// The image's files are what the build made, whatever the squash.
fn assert_tree(store: &ContentStore, image: &Image, dir: &Path) {
    let root = rootfs(store, image, dir);
    assert_eq!(
        std::fs::read_to_string(root.join("keep")).unwrap(),
        "keep\n"
    );
    assert_eq!(std::fs::read_to_string(root.join("etc/c")).unwrap(), "c\n");
    for gone in ["a", "d", "etc/passwd", "bin/vi"] {
        assert!(
            std::fs::symlink_metadata(root.join(gone)).is_err(),
            "{gone} is in the image"
        );
    }
    assert!(root.join("bin/busybox").is_file());
}

#[test]
fn squash_merges_the_new_layers_and_keeps_the_base() {
    let (dir, store, base, image) = squashed(Squash::New);
    let layers = image.layers().unwrap();
    assert_eq!(layers.len(), 2, "the base layer and one merged layer");
    assert_eq!(layers[0], base.layers().unwrap()[0]);
    let mut names = entries(&store, &image, 1);
    names.sort();
    // Whiteouts of base files survive; /a and /d, added and removed by the build, leave
    // nothing, whiteouts included.
    assert_eq!(
        names,
        [
            "bin/",
            "bin/.wh.vi",
            "etc/",
            "etc/.wh.passwd",
            "etc/c",
            "keep"
        ]
    );
    assert_tree(&store, &image, dir.path());
    // History: the base's as it was, the build's steps as empty layers, one merge entry.
    let history = &image.config.history;
    let kept = base.config.history.len();
    assert_eq!(history[..kept], base.config.history[..]);
    let steps = &history[kept..history.len() - 1];
    assert_eq!(steps.len(), 4);
    assert!(steps.iter().all(|h| h.empty_layer), "{steps:?}");
    let merge = history.last().unwrap();
    assert!(!merge.empty_layer);
    let comment = merge.comment.as_deref().unwrap();
    assert!(
        comment.starts_with("merge sha256:")
            && comment.ends_with(&format!(" to {}", base.config_digest)),
        "{comment}"
    );
    assert_eq!(
        image.config.config.env.as_ref().unwrap().last().unwrap(),
        "DONE=1"
    );
}

#[test]
fn squash_all_makes_one_layer_without_whiteouts() {
    let (dir, store, _, image) = squashed(Squash::All);
    assert_eq!(image.layers().unwrap().len(), 1);
    let names = entries(&store, &image, 0);
    assert!(names.iter().all(|n| !n.contains(".wh.")), "{names:?}");
    assert!(names.iter().any(|n| n == "bin/busybox"), "{names:?}");
    assert_tree(&store, &image, dir.path());
    let history = &image.config.history;
    assert!(history[..history.len() - 1].iter().all(|h| h.empty_layer));
    assert!(!history.last().unwrap().empty_layer);
}

#[test]
fn skopeo_and_umoci_accept_squashed_images() {
    for tool in ["skopeo", "umoci"] {
        assert!(
            Command::new(tool).arg("--version").output().is_ok(),
            "this test needs `{tool}` on PATH, and it is missing"
        );
    }
    for how in [Squash::New, Squash::All] {
        let (dir, store, _, image) = squashed(how);
        let layout = dir.path().join("layout");
        let name: ImageName = "localhost/squashed:v1".parse().unwrap();
        export(
            &store,
            &ExportTarget::Oci {
                dest: layout.clone(),
                tar: false,
            },
            &image,
            &[name],
            &rbuild_core::progress::NullProgress,
        )
        .unwrap();
        let copy = dir.path().join("copy");
        run(Command::new("skopeo").args([
            "copy",
            &format!("oci:{}:v1", layout.display()),
            &format!("oci:{}:v1", copy.display()),
        ]));
        let bundle = dir.path().join("bundle");
        run(Command::new("umoci").args([
            "unpack",
            "--image",
            &format!("{}:v1", copy.display()),
            bundle.to_str().unwrap(),
        ]));
        let root = bundle.join("rootfs");
        assert_eq!(
            std::fs::read_to_string(root.join("keep")).unwrap(),
            "keep\n"
        );
        assert!(!root.join("etc/passwd").exists(), "{how:?}");
        assert!(!root.join("a").exists(), "{how:?}");
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
