//! Push and pull of a ~500 MB gzip image to a docker-registry on 127.0.0.1: rbuild next
//! to `skopeo copy` (from the store's OCI layout, so both move the very same blobs) in the
//! same run.
//!
//! Each contender gets a fresh registry, so no blob is already there or mountable. Run with
//! `cargo bench -p rbuild-benches --bench registry_push_pull`; `LAYER_BENCH_SRC` names the
//! source tree (default /var/tmp/rbuild-bench-src, which the layer_write bench creates).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rbuild_core::{
    ContentStore, ImageName,
    export::import_rootfs,
    image::ImageSpec,
    layer::{Compression, LayerOptions},
    registry::{
        PullPlatform, PushOptions, RegistryClient, RegistryOptions, UploadMode, pull, push,
    },
};

/// The name of the image in the source store.
const LOCAL: &str = "bench/big:1";

/// Stops the bench; a panic (not `exit`) so that the registries and temp dirs are dropped.
fn fail(msg: String) -> ! {
    panic!("registry_push_pull: {msg}")
}

/// A `docker-registry serve` with filesystem storage under `dir`; killed on drop.
struct Registry {
    child: Child,
    addr: String,
}

impl Registry {
    fn start(dir: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap_or_else(|e| fail(format!("finding a free port: {e}")))
            .port();
        let addr = format!("127.0.0.1:{port}");
        std::fs::create_dir_all(dir).unwrap_or_else(|e| fail(format!("creating {dir:?}: {e}")));
        let config = dir.join("config.yml");
        let yaml = format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.join("data").display()
        );
        std::fs::write(&config, yaml).unwrap_or_else(|e| fail(format!("writing {config:?}: {e}")));
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                fail(format!(
                    "starting docker-registry (Debian package docker-registry): {e}"
                ))
            });
        let reg = Self { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(mut s) = TcpStream::connect(&reg.addr) {
                let req = format!("GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n", reg.addr);
                let mut answer = String::new();
                if s.write_all(req.as_bytes()).is_ok()
                    && s.read_to_string(&mut answer).is_ok()
                    && answer.contains(" 200 ")
                {
                    return reg;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        fail(format!("docker-registry did not answer on {}", reg.addr))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .unwrap_or_else(|e| fail(format!("running skopeo (Debian package skopeo): {e}")));
    if !out.status.success() {
        fail(format!(
            "skopeo {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
}

fn timed(work: impl FnOnce()) -> f64 {
    let start = Instant::now();
    work();
    start.elapsed().as_secs_f64()
}

/// Imports the source tree as a one-layer gzip image (not timed).
fn source_image(src: &Path, store: &ContentStore) -> u64 {
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(src)
        .args(["-cf", "-", "."])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| fail(format!("running tar: {e}")));
    let stdout = tar
        .stdout
        .take()
        .unwrap_or_else(|| fail("tar has no stdout".to_owned()));
    let options = LayerOptions::default().with_compression(Compression::Gzip);
    let image = import_rootfs(store, stdout, &ImageSpec::default(), &options)
        .unwrap_or_else(|e| fail(format!("importing {src:?}: {e}")));
    let _ = tar.wait();
    let name: ImageName = LOCAL.parse().unwrap_or_else(|e| fail(format!("{e}")));
    store
        .tag(&name, &image.descriptor)
        .unwrap_or_else(|e| fail(format!("tagging {LOCAL}: {e}")));
    image.size()
}

fn main() {
    let src = std::env::var_os("LAYER_BENCH_SRC")
        .map_or_else(|| PathBuf::from("/var/tmp/rbuild-bench-src"), PathBuf::from);
    if !src.is_dir() {
        fail(format!(
            "source tree {src:?} is missing: run the layer_write bench once or set LAYER_BENCH_SRC"
        ));
    }
    let work = tempfile::tempdir_in("/var/tmp").unwrap_or_else(|e| fail(e.to_string()));
    let store = ContentStore::open(work.path().join("src"))
        .unwrap_or_else(|e| fail(format!("opening the source store: {e}")));
    let size = source_image(&src, &store);
    println!(
        "image from {} : {} MB of gzip blobs",
        src.display(),
        size / 1_000_000
    );

    let reg_rbuild = Registry::start(&work.path().join("reg-rbuild"));
    let reg_skopeo = Registry::start(&work.path().join("reg-skopeo"));
    let remote_rbuild = format!("{}/bench/big:1", reg_rbuild.addr);
    let remote_skopeo = format!("{}/bench/big:1", reg_skopeo.addr);
    let client = RegistryClient::with_credentials(&reg_rbuild.addr, None, Default::default());
    let dest: ImageName = remote_rbuild
        .parse()
        .unwrap_or_else(|e| fail(format!("{e}")));

    let rbuild_push = timed(|| {
        push(
            &client,
            &store,
            LOCAL,
            &dest,
            &PushOptions::default(),
            &rbuild_core::progress::NullProgress,
        )
        .unwrap_or_else(|e| fail(format!("rbuild push: {e}")));
    });
    // The store is an OCI layout whose index names images in their normalized form.
    let local: ImageName = LOCAL.parse().unwrap_or_else(|e| fail(format!("{e}")));
    let oci_src = format!("oci:{}:{local}", store.root().display());
    let skopeo_push = timed(|| {
        skopeo(&[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &oci_src,
            &format!("docker://{remote_skopeo}"),
        ]);
    });
    let pulled = ContentStore::open(work.path().join("pulled"))
        .unwrap_or_else(|e| fail(format!("opening the pull store: {e}")));
    let rbuild_pull = timed(|| {
        pull(
            &client,
            &pulled,
            &dest,
            PullPlatform::Host,
            &rbuild_core::progress::NullProgress,
        )
        .unwrap_or_else(|e| fail(format!("rbuild pull: {e}")));
    });
    let oci_dst = format!("oci:{}:big", work.path().join("skopeo-pulled").display());
    let skopeo_pull = timed(|| {
        skopeo(&[
            "copy",
            "--quiet",
            "--src-tls-verify=false",
            &format!("docker://{remote_skopeo}"),
            &oci_dst,
        ]);
    });

    // The chunked upload (16 MiB PATCHes), still available, on a registry of its own.
    let reg_chunked = Registry::start(&work.path().join("reg-chunked"));
    let chunked = RegistryClient::with_credentials(
        &reg_chunked.addr,
        None,
        RegistryOptions::default().with_upload(UploadMode::Chunked),
    );
    let dest_chunked: ImageName = format!("{}/bench/big:1", reg_chunked.addr)
        .parse()
        .unwrap_or_else(|e| fail(format!("{e}")));
    let chunked_push = timed(|| {
        push(
            &chunked,
            &store,
            LOCAL,
            &dest_chunked,
            &PushOptions::default(),
            &rbuild_core::progress::NullProgress,
        )
        .unwrap_or_else(|e| fail(format!("rbuild chunked push: {e}")));
    });

    let mb = size as f64 / 1_000_000.0;
    println!(
        "{:<12} {:>10} {:>10} {:>10} {:>8}",
        "op", "rbuild s", "skopeo s", "ratio", "MB/s"
    );
    for (op, r, s) in [
        ("push", rbuild_push, skopeo_push),
        ("push-chunked", chunked_push, skopeo_push),
        ("pull", rbuild_pull, skopeo_pull),
    ] {
        println!(
            "{op:<12} {r:>10.2} {s:>10.2} {:>10.2} {:>8.0}",
            r / s,
            mb / r
        );
    }
}
