//! Every exporter's output is accepted by skopeo, umoci and podman, and builds are
//! reproducible with a source date epoch.

#![allow(clippy::unwrap_used)]

mod support;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;

use rbuild_core::{
    ContentStore, ExportTarget, ImageName,
    export::export,
    image::{Image, ImageConfig, ImageFormat, ImageSpec, assemble, rfc3339},
    layer::{Compression, LayerOptions, tree_changes, write_layer},
};
use support::require::{require_root, require_tool};
use support::storage::*;

const EPOCH: u64 = 1_700_000_000;

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

fn source_tree(root: &Path) {
    fs::create_dir_all(root.join("app/bin")).unwrap();
    fs::write(root.join("app/hello.txt"), "hello from rbuild\n").unwrap();
    fs::write(root.join("app/bin/run"), "#!/bin/sh\necho hi\n").unwrap();
    symlink("bin/run", root.join("app/run")).unwrap();
}

/// Builds a one-layer image from `source_tree` into `store`.
fn build(store: &ContentStore, src: &Path, format: ImageFormat, compression: Compression) -> Image {
    let options = LayerOptions::default()
        .with_compression(compression)
        .with_source_date_epoch(EPOCH);
    let layer = write_layer(store, src, &tree_changes(src).unwrap(), &options).unwrap();
    let mut config = ImageConfig::for_host();
    config.created = Some(rfc3339(EPOCH));
    config.config.cmd = Some(vec!["/app/run".to_owned()]);
    config.config.env = Some(vec!["PATH=/usr/bin:/bin".to_owned()]);
    config.config.working_dir = Some("/app".to_owned());
    config.history.push(rbuild_core::image::History {
        created: Some(rfc3339(EPOCH)),
        created_by: Some("COPY . /app".to_owned()),
        ..Default::default()
    });
    let spec = ImageSpec::new(config).with_format(format);
    assemble(store, &spec, &[layer]).unwrap()
}

#[test]
fn same_input_and_epoch_give_identical_digests() {
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let mut digests = Vec::new();
        for _ in 0..2 {
            let tmp = tempfile::tempdir().unwrap();
            let src = tmp.path().join("src");
            source_tree(&src);
            let store = ContentStore::open(tmp.path().join("store")).unwrap();
            let image = build(&store, &src, ImageFormat::Oci, compression);
            let layers = image.layers().unwrap();
            digests.push((layers, image.config_digest.clone(), image.digest().unwrap()));
        }
        assert_eq!(digests[0], digests[1], "{}", compression.name());
    }
}

#[test]
fn skopeo_umoci_and_podman_accept_every_export() {
    require_root("podman load writes to a root-owned store");
    for (tool, package) in [
        ("skopeo", "skopeo"),
        ("umoci", "umoci"),
        ("podman", "podman"),
        ("tar", "tar"),
    ] {
        require_tool(tool, package);
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    source_tree(&src);
    let store = ContentStore::open(tmp.path().join("store")).unwrap();
    let name: ImageName = "localhost/rbuild-export-test:v1".parse().unwrap();
    let names = [name.clone()];
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();

    for format in [ImageFormat::Oci, ImageFormat::Docker] {
        let image = build(&store, &src, format, Compression::Gzip);
        let tag = format!("{format:?}").to_lowercase();
        let oci_tar = out.join(format!("{tag}-oci.tar"));
        let oci_dir = out.join(format!("{tag}-oci-dir"));
        let docker_tar = out.join(format!("{tag}-docker.tar"));
        let targets = [
            ExportTarget::Oci {
                dest: oci_tar.clone(),
                tar: true,
            },
            ExportTarget::Oci {
                dest: oci_dir.clone(),
                tar: false,
            },
            ExportTarget::Docker {
                dest: docker_tar.clone(),
            },
        ];
        for target in &targets {
            export(
                &store,
                target,
                &image,
                &names,
                &rbuild_core::progress::NullProgress,
            )
            .unwrap();
        }
        // An OCI layout lists OCI manifests only (skopeo's oci: transport ignores docker
        // media types), so OCI outputs are checked for OCI-format images.
        let mut refs = vec![format!("docker-archive:{}", docker_tar.display())];
        if format == ImageFormat::Oci {
            refs.push(format!("oci:{}:v1", oci_dir.display()));
            refs.push(format!("oci-archive:{}", oci_tar.display()));
        }
        for r in &refs {
            let inspect = run(Command::new("skopeo").args(["inspect", "--raw", r]));
            assert!(inspect.contains("sha256:"), "{r}: {inspect}");
            let info = run(Command::new("skopeo").args(["inspect", r]));
            assert!(
                info.contains("/app/run") || info.contains("\"Layers\""),
                "{r}: {info}"
            );
            let copy = out.join(format!("copy-{}", r.len()));
            let _ = fs::remove_dir_all(&copy);
            run(Command::new("skopeo").args([
                "copy",
                r,
                &format!("oci:{}:copied", copy.display()),
            ]));
        }

        // umoci unpacks the layout into the tree we started from.
        if format == ImageFormat::Oci {
            let bundle = out.join(format!("{tag}-bundle"));
            run(Command::new("umoci").args([
                "unpack",
                "--image",
                &format!("{}:v1", oci_dir.display()),
                bundle.to_str().unwrap(),
            ]));
            let rootfs = bundle.join("rootfs");
            assert_eq!(
                fs::read_to_string(rootfs.join("app/hello.txt")).unwrap(),
                "hello from rbuild\n"
            );
            assert_eq!(
                fs::read_link(rootfs.join("app/run")).unwrap(),
                Path::new("bin/run")
            );
        }

        // podman loads the docker archive, into a private store.
        let proot = out.join(format!("{tag}-podman"));
        let loaded = run(Command::new("podman").args([
            "--root",
            proot.join("root").to_str().unwrap(),
            "--runroot",
            proot.join("run").to_str().unwrap(),
            "--storage-driver",
            "vfs",
            "load",
            "-i",
            docker_tar.to_str().unwrap(),
        ]));
        assert!(
            loaded.contains("rbuild-export-test"),
            "podman load said: {loaded}"
        );
        let _ = Command::new("umount")
            .arg("-R")
            .arg(proot.join("run"))
            .status();

        // local and tar give the rootfs.
        let local = out.join(format!("{tag}-local"));
        export(
            &store,
            &ExportTarget::Local {
                dest: local.clone(),
            },
            &image,
            &names,
            &rbuild_core::progress::NullProgress,
        )
        .unwrap();
        let mut want = expected_snapshot(&src);
        for node in want.entries.values_mut() {
            // The layer clamped every mtime to the epoch.
            node.mtime = node.mtime.map(|_| EPOCH as i64);
        }
        assert_same_tree("type=local", &snapshot(&local), &want);
        let rootfs_tar = out.join(format!("{tag}-rootfs.tar"));
        export(
            &store,
            &ExportTarget::Tar {
                dest: rootfs_tar.clone(),
            },
            &image,
            &names,
            &rbuild_core::progress::NullProgress,
        )
        .unwrap();
        let listing = run(Command::new("tar").arg("-tf").arg(&rootfs_tar));
        assert!(listing.lines().any(|l| l == "app/hello.txt"), "{listing}");

        // type=image names it in the store.
        export(
            &store,
            &ExportTarget::Image,
            &image,
            &names,
            &rbuild_core::progress::NullProgress,
        )
        .unwrap();
        let found = store.resolve("localhost/rbuild-export-test:v1").unwrap();
        assert_eq!(found.digest().unwrap(), image.digest().unwrap());
    }
}

/// A private dockerd (scripts/dockerd, its own state directory), stopped on drop whatever
/// the test's outcome.
struct PrivateDockerd {
    state: tempfile::TempDir,
}

impl PrivateDockerd {
    fn start() -> Self {
        let state = tempfile::Builder::new()
            .prefix("rbuild-dockerd-")
            .tempdir_in("/tmp")
            .unwrap();
        let dockerd = PrivateDockerd { state };
        run(&mut dockerd.script("start"));
        dockerd
    }

    fn script(&self, verb: &str) -> Command {
        let mut cmd =
            Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/dockerd"));
        cmd.arg(verb).env("RBUILD_DOCKERD_DIR", self.state.path());
        cmd
    }

    /// The docker CLI talking to this daemon.
    fn docker(&self) -> Command {
        let env = run(&mut self.script("env"));
        let host = env
            .lines()
            .find_map(|l| l.strip_prefix("DOCKER_HOST="))
            .unwrap_or_else(|| panic!("scripts/dockerd env printed no DOCKER_HOST: {env}"))
            .to_owned();
        let mut cmd = Command::new("/usr/bin/docker");
        cmd.env("DOCKER_HOST", host);
        cmd
    }
}

impl Drop for PrivateDockerd {
    fn drop(&mut self) {
        let _ = self.script("stop").output();
    }
}

#[test]
fn docker_load_accepts_the_docker_archive() {
    require_root("dockerd runs as root");
    for (tool, package) in [("dockerd", "docker.io"), ("containerd", "containerd")] {
        require_tool(tool, package);
    }
    assert!(
        Path::new("/usr/bin/docker").exists(),
        "/usr/bin/docker is missing (Debian package docker.io)"
    );
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    source_tree(&src);
    let store = ContentStore::open(dir.path().join("store")).unwrap();
    let name: ImageName = "localhost/rbuild-docker-load:v1".parse().unwrap();
    let dockerd = PrivateDockerd::start();
    for format in [ImageFormat::Docker, ImageFormat::Oci] {
        let image = build(&store, &src, format, Compression::Gzip);
        let archive = dir.path().join(format!("{format:?}.tar"));
        let target = ExportTarget::Docker {
            dest: archive.clone(),
        };
        export(
            &store,
            &target,
            &image,
            std::slice::from_ref(&name),
            &rbuild_core::progress::NullProgress,
        )
        .unwrap();
        let loaded = run(dockerd.docker().arg("load").arg("-i").arg(&archive));
        assert!(
            loaded.contains("rbuild-docker-load:v1"),
            "docker load said: {loaded}"
        );
        let inspect = run(dockerd.docker().args([
            "image",
            "inspect",
            "localhost/rbuild-docker-load:v1",
            "--format",
            "{{.Id}} {{json .Config.Cmd}} {{.Config.WorkingDir}}",
        ]));
        assert_eq!(
            inspect.trim(),
            format!("{} [\"/app/run\"] /app", image.config_digest),
            "{format:?} image as docker sees it"
        );
    }
}
