//! Attacks on the one OCI layout type (issue 17 item 4) through the CLI: layouts read
//! as `FROM oci-layout://` bases and `--cache-from type=local` caches whose blobs are
//! larger than their descriptors say, and layouts written by `-o type=oci,tar=false` and
//! `--cache-to type=local` into a directory that already holds a damaged blob.
//!
//! `RBUILD_ATTACK_BIN=/path/to/rbuild` runs them against another build of rbuild.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::attack_archives::{
    CONFIG, LAYER, MANIFEST, RawTar, config_json, descriptor, index_json, rbuild, sha256,
};
use support::reliability::corrupt_blobs;
use support::require::require_root;
use support::run::fixture;

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// A tmpfs of `mib` MiB mounted at `dir`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, mib: u64) -> Tmpfs {
        fs::create_dir_all(dir).unwrap();
        let out = run(Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0755"),
                "tmpfs",
            ])
            .arg(dir));
        assert!(
            out.status.success(),
            "mounting a tmpfs at {} failed (needs root and mount(8)): {}",
            dir.display(),
            text(&out)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A sparse file of `len` bytes at `path` (no disk used where it lies, `len` bytes
/// read by whoever reads it).
fn sparse(path: &Path, len: u64) {
    let _ = fs::remove_file(path);
    fs::File::create(path).unwrap().set_len(len).unwrap();
}

/// The build context `dir/name` holding `dockerfile`.
fn context(dir: &Path, name: &str, dockerfile: &str) -> PathBuf {
    let ctx = dir.join(name);
    fs::create_dir_all(&ctx).unwrap();
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    ctx
}

/// The files left in the store's scratch directory.
fn scratch(root: &Path) -> Vec<String> {
    fs::read_dir(root.join("tmp"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A blob that claims a few bytes but holds 256 MiB (a sparse file: free to make, costly
/// to copy) is refused for its size as soon as it has said more than its descriptor,
/// not copied whole into the store first: on a 32 MiB store that copy fills the disk.
#[test]
fn a_layout_blob_larger_than_its_descriptor_is_not_copied_whole_into_the_store() {
    require_root("mounts a tmpfs for the store");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let _tmpfs = Tmpfs::mount(&root, 32);

    // An image whose one layer descriptor says 1024 bytes; the blob under that digest is
    // 256 MiB of zeros.
    let layer = RawTar::new().file("marker", b"one").finish();
    let lhex = sha256(&layer);
    let config = config_json(std::slice::from_ref(&lhex));
    let chex = sha256(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": descriptor(CONFIG, &chex, config.len() as u64),
        "layers": [descriptor(LAYER, &lhex, layer.len() as u64)],
    }))
    .unwrap();
    let mhex = sha256(&manifest);
    let layout = dir.path().join("layout");
    fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    fs::write(
        layout.join("index.json"),
        index_json(&[(descriptor(MANIFEST, &mhex, manifest.len() as u64), None)]),
    )
    .unwrap();
    fs::write(layout.join(format!("blobs/sha256/{mhex}")), &manifest).unwrap();
    fs::write(layout.join(format!("blobs/sha256/{chex}")), &config).unwrap();
    sparse(&layout.join(format!("blobs/sha256/{lhex}")), 256 << 20);

    let ctx = context(
        dir.path(),
        "ctx",
        &format!("FROM oci-layout://{}\n", layout.display()),
    );
    let out = run(rbuild(&root)
        .args(["build", "--progress", "plain", "--allow"])
        .arg(format!("fs.read={}", layout.display()))
        .arg(&ctx));
    let all = text(&out);
    assert!(!out.status.success(), "built from an overlong layer: {all}");
    assert!(
        !all.to_lowercase().contains("no space left"),
        "the overlong blob was copied into the store until the disk was full: {all}"
    );
    assert!(
        all.contains("descriptor says"),
        "refused without naming the descriptor's size: {all}"
    );
    assert_eq!(scratch(&root), Vec::<String>::new(), "scratch left behind");
}

/// The same through `--cache-from type=local,src=DIR`: the layer blob of a cache hit,
/// replaced by 256 MiB of zeros, is not copied whole into a 64 MiB store (the build
/// fails naming the blob, never with the disk full).
#[test]
fn a_local_cache_blob_larger_than_its_descriptor_is_not_copied_whole_into_the_store() {
    require_root("mounts a tmpfs for the store; builds run steps in namespaces");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let _tmpfs = Tmpfs::mount(&root, 64);
    support::run::import(&root, &fixture("busybox"), "busybox:latest", &[]);
    let cache = dir.path().join("cache");
    let ctx = context(
        dir.path(),
        "ctx",
        "FROM busybox\nRUN echo cached > /cached\n",
    );
    let out = run(rbuild(&root)
        .args(["build", "--progress", "plain", "--cache-to"])
        .arg(format!("type=local,dest={}", cache.display()))
        .arg(&ctx));
    assert!(out.status.success(), "exporting the cache: {}", text(&out));
    // The store forgets the step (and its unnamed layer), so the next build takes it
    // from the cache.
    let out = run(rbuild(&root).args(["builder", "prune", "-a", "-f"]));
    assert!(out.status.success(), "builder prune: {}", text(&out));
    // The cache's layer blob (the one that is no JSON document) becomes 256 MiB of zeros.
    let mut replaced = 0;
    for entry in fs::read_dir(cache.join("blobs/sha256")).unwrap().flatten() {
        if !is_json(&entry.path()) {
            sparse(&entry.path(), 256 << 20);
            replaced += 1;
        }
    }
    assert_eq!(replaced, 1, "the cache should hold one layer blob");

    let out = run(rbuild(&root)
        .args(["build", "--progress", "plain", "--cache-from"])
        .arg(format!("type=local,src={}", cache.display()))
        .arg(&ctx));
    let all = text(&out);
    assert!(
        all.contains(&cache.display().to_string()),
        "the cache's blob was never read, which tests nothing: {all}"
    );
    assert!(
        !all.to_lowercase().contains("no space left"),
        "the overlong cache blob was copied into the store until the disk was full: {all}"
    );
    assert_eq!(scratch(&root), Vec::<String>::new(), "scratch left behind");
}

fn is_json(path: &Path) -> bool {
    fs::read(path).is_ok_and(|b| serde_json::from_slice::<serde_json::Value>(&b).is_ok())
}

/// A store with busybox and the context `FROM busybox` + one `RUN`.
fn busybox_build(dir: &Path) -> (PathBuf, PathBuf) {
    let root = dir.join("store");
    support::run::import(&root, &fixture("busybox"), "busybox:latest", &[]);
    let ctx = context(dir, "ctx", "FROM busybox\nRUN echo hi > /hi\n");
    (root, ctx)
}

/// Damages every blob of the layout at `dir` that `pick` chooses (cut to 10 bytes);
/// returns how many.
fn damage(dir: &Path, pick: impl Fn(&Path) -> bool) -> usize {
    let mut n = 0;
    for entry in fs::read_dir(dir.join("blobs/sha256")).unwrap().flatten() {
        if pick(&entry.path()) {
            let file = fs::OpenOptions::new()
                .write(true)
                .open(entry.path())
                .unwrap();
            file.set_len(10).unwrap();
            n += 1;
        }
    }
    n
}

/// Exporting an OCI layout into a directory that holds an earlier export with a damaged
/// blob (a cut copy, a disk error) writes the blob again: the layout is whole after the
/// export succeeds, as it was before the layout type.
#[test]
fn an_oci_dir_export_over_a_damaged_blob_writes_it_again() {
    require_root("builds run steps in namespaces");
    let dir = tempfile::tempdir().unwrap();
    let (root, ctx) = busybox_build(dir.path());
    let dest = dir.path().join("oci");
    let export = || {
        let out = run(rbuild(&root)
            .args(["build", "--progress", "plain", "-t", "t1", "-o"])
            .arg(format!("type=oci,dest={},tar=false", dest.display()))
            .arg(&ctx));
        assert!(out.status.success(), "exporting: {}", text(&out));
    };
    export();
    assert!(damage(&dest, |_| true) > 0);
    export();
    assert_eq!(
        corrupt_blobs(&dest),
        Vec::<String>::new(),
        "the export succeeded but left damaged blobs in its layout"
    );
}

/// The same for `--cache-to type=local,dest=DIR`: its manifest, config and layers.
#[test]
fn a_local_cache_export_over_damaged_blobs_writes_them_again() {
    require_root("builds run steps in namespaces");
    let dir = tempfile::tempdir().unwrap();
    let (root, ctx) = busybox_build(dir.path());
    let cache = dir.path().join("cache");
    let export = || {
        let out = run(rbuild(&root)
            .args(["build", "--progress", "plain", "--cache-to"])
            .arg(format!("type=local,dest={}", cache.display()))
            .arg(&ctx));
        assert!(out.status.success(), "exporting the cache: {}", text(&out));
    };
    export();
    assert!(damage(&cache, |_| true) > 0);
    export();
    assert_eq!(
        corrupt_blobs(&cache),
        Vec::<String>::new(),
        "the cache export succeeded but left damaged blobs in its layout"
    );
}
