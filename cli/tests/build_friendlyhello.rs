//! The seed application: `examples/friendlyhello` builds with `rbuild -t friendlyhello`
//! on the python3 fixture (`rbuild-fixtures/python3:bookworm`), installs Flask from PyPI
//! (network needed), has docker's config, rebuilds fully cached, and `--explain-cache`
//! names an edited app.py.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rbuild_core::{
    Compression, ContentStore, ImageConfig, ImageName, ImageSpec, LayerOptions, import_rootfs,
    tag_image,
};
use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the cli crate sits in the workspace")
        .to_path_buf()
}

fn rbuild(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args(args)
        .env("RBUILD_ROOT", root)
        .output()
        .expect("running the rbuild binary")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Imports the python3 fixture as `rbuild-fixtures/python3:bookworm`, uncompressed (the
/// same image `rbuild import` makes, minus gzip, which a debug build makes slow).
fn import_python3(root: &Path) {
    let script = repo().join("fixtures/base-images/make");
    let made = Command::new(&script).arg("python3").output().unwrap();
    assert!(
        made.status.success(),
        "{} python3 failed (needs root, debootstrap and the Debian mirror): {}",
        script.display(),
        stderr(&made)
    );
    let tar = PathBuf::from(String::from_utf8(made.stdout).unwrap().trim());
    let store = ContentStore::open(root).unwrap();
    let mut config = ImageConfig::for_host();
    config.config.env = Some(vec![
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
    ]);
    let spec = ImageSpec {
        config,
        ..ImageSpec::default()
    };
    let options = LayerOptions {
        compression: Compression::None,
        ..LayerOptions::default()
    };
    let image = import_rootfs(&store, File::open(tar).unwrap(), &spec, &options).unwrap();
    let name: ImageName = "rbuild-fixtures/python3:bookworm".parse().unwrap();
    tag_image(&store, &name, &image).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn friendlyhello_builds_with_flask_and_docker_config_then_rebuilds_cached() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "this test must run as root: builds mount overlays and run steps in namespaces"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    import_python3(&root);
    let app = dir.path().join("friendlyhello");
    copy_dir(&repo().join("examples/friendlyhello"), &app);
    let app_arg = app.to_str().unwrap();

    let out = rbuild(
        &root,
        &["--progress", "plain", "-t", "friendlyhello", app_arg],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let inspect = rbuild(&root, &["inspect", "friendlyhello"]);
    let json: Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let config = &json[0]["Config"];
    assert_eq!(config["Cmd"], serde_json::json!(["python", "app.py"]));
    assert!(config["ExposedPorts"].get("80/tcp").is_some(), "{config}");
    assert!(
        config["Env"]
            .as_array()
            .unwrap()
            .contains(&Value::String("NAME=World".into())),
        "{config}"
    );
    assert_eq!(config["WorkingDir"], "/app");

    // Flask is in the layer of the pip step (the last one).
    let manifest = json[0]["ManifestDigest"].as_str().unwrap();
    let blob = |digest: &str| {
        root.join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let manifest: Value = serde_json::from_slice(&std::fs::read(blob(manifest)).unwrap()).unwrap();
    let last = manifest["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let listing = Command::new("tar")
        .arg("-tzf")
        .arg(blob(&last))
        .output()
        .unwrap();
    assert!(listing.status.success(), "{}", stderr(&listing));
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing
            .lines()
            .any(|l| l.contains("-packages/flask/__init__.py")),
        "flask is not in the pip layer"
    );

    let again = rbuild(
        &root,
        &["--progress", "plain", "-t", "friendlyhello", app_arg],
    );
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let err = stderr(&again);
    let started = err.lines().filter(|l| l.contains("] ")).count();
    let cached = err.lines().filter(|l| l.ends_with(" CACHED")).count();
    assert_eq!((started, cached), (4, 4), "{err}");

    std::fs::write(
        app.join("app.py"),
        std::fs::read_to_string(app.join("app.py")).unwrap() + "\n# edited\n",
    )
    .unwrap();
    let edited = rbuild(
        &root,
        &[
            "--progress",
            "plain",
            "--explain-cache",
            "-t",
            "friendlyhello",
            app_arg,
        ],
    );
    assert_eq!(edited.status.code(), Some(0), "{}", stderr(&edited));
    let err = stderr(&edited);
    let add = err
        .lines()
        .find(|l| l.contains("ADD . /app:"))
        .unwrap_or_else(|| panic!("no explanation for ADD: {err}"));
    assert!(add.contains("app.py"), "{add}");
}
