//! Helpers shared by the build tests: a store holding the busybox fixture, builds of
//! Dockerfile text, and reading files of a built image.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use rbuild_core::{
    BuildError, BuildRequest, BuildResult, Builder, ContentStore, ContextSource, DockerfileInput,
    ExportTarget, ImageName,
    export::{export, import_rootfs},
    image::{Image, ImageConfig, ImageSpec, tag_image},
    layer::LayerOptions,
    progress::Collect,
};

use super::require::require_root;

/// The busybox rootfs tarball from `fixtures/base-images/make busybox` (built once and
/// cached outside the clone by the script).
pub fn busybox_tarball() -> PathBuf {
    fixture_tarball("busybox")
}

/// A fixture tarball by name, made (or found in its cache) by the fixture script.
pub fn fixture_tarball(name: &str) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/base-images/make");
    let out = Command::new(&script)
        .arg(name)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} {name} failed (it needs root and busybox-static): {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// A fresh store (in a temp dir) with the busybox fixture imported as `busybox:latest`.
pub fn busybox_store() -> (tempfile::TempDir, ContentStore) {
    require_root("builds mount overlays and run steps in namespaces");
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path().join("store")).unwrap();
    import(&store, &busybox_tarball(), "busybox:latest");
    (dir, store)
}

/// Imports rootfs tarball `tar` into `store` as `name`, with docker's default PATH.
pub fn import(store: &ContentStore, tar: &Path, name: &str) -> Image {
    import_with(store, tar, name, &LayerOptions::default())
}

/// [`import`] with the layer written as `options` say.
pub fn import_with(store: &ContentStore, tar: &Path, name: &str, options: &LayerOptions) -> Image {
    let mut config = ImageConfig::for_host();
    config.config.env = Some(vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
    ]);
    let spec = ImageSpec::new(config);
    let image = import_rootfs(store, File::open(tar).unwrap(), &spec, options).unwrap();
    let name: ImageName = name.parse().unwrap();
    tag_image(store, &name, &image).unwrap();
    image
}

/// A build context directory with these files.
pub fn context(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
    let ctx = dir.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    for (path, content) in files {
        let path = ctx.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    ctx
}

/// Builds `dockerfile` with context `ctx`, letting `adjust` change the request.
pub fn build_with(
    store: &ContentStore,
    dockerfile: &str,
    ctx: &Path,
    adjust: impl FnOnce(&mut BuildRequest),
) -> (Result<BuildResult, BuildError>, Collect) {
    let mut request = BuildRequest::new(
        DockerfileInput::Text {
            name: "Dockerfile".to_owned(),
            text: dockerfile.to_owned(),
        },
        ContextSource::Directory(ctx.to_path_buf()),
    );
    adjust(&mut request);
    let events = Collect::new();
    let result = Builder::new(store.clone()).build(&request, &events);
    (result, events)
}

/// Builds and expects success.
pub fn build(store: &ContentStore, dockerfile: &str, ctx: &Path) -> BuildResult {
    let (result, _) = build_with(store, dockerfile, ctx, |_| {});
    result.unwrap_or_else(|e| {
        panic!(
            "build failed: {}",
            rbuild_core::error_chain::error_chain(&e)
        )
    })
}

/// The image's root filesystem, unpacked into a new directory under `dir`.
pub fn rootfs(store: &ContentStore, image: &Image, dir: &Path) -> PathBuf {
    let dest = tempfile::tempdir_in(dir).unwrap().keep();
    export(
        store,
        &ExportTarget::Local { dest: dest.clone() },
        image,
        &[],
        &rbuild_core::progress::NullProgress,
    )
    .unwrap();
    dest
}

/// The content of `path` in the image, as text.
pub fn read(store: &ContentStore, image: &Image, dir: &Path, path: &str) -> String {
    let root = rootfs(store, image, dir);
    std::fs::read_to_string(root.join(path.trim_start_matches('/')))
        .unwrap_or_else(|e| panic!("reading {path} from the image: {e}"))
}

/// (step name, cached) of every reported step, in the order they ended.
pub fn cached(result: &BuildResult) -> Vec<(String, bool)> {
    result
        .steps
        .iter()
        .map(|s| (s.name.clone(), s.cached))
        .collect()
}
