//! Helpers of the archives attack suite: hostile tars written header by header (names as
//! raw bytes, so `..`, absolute paths and control characters go in as an attacker
//! writes them), OCI and docker archives assembled from such tars, and digests.
#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::attack::{as_user, run};
use super::run::fixture;

use sha2::{Digest as _, Sha256};

/// The hex sha256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `rbuild` binary under test: `RBUILD_ATTACK_BIN` when set (to run the attacks
/// against another build, e.g. the one before a fix), else this package's.
pub fn rbuild(root: &Path) -> Command {
    let bin = std::env::var_os("RBUILD_ATTACK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_rbuild")));
    let mut cmd = Command::new(bin);
    cmd.env("RBUILD_ROOT", root);
    cmd
}

/// Entry kinds, as the tar type flag.
pub const FILE: u8 = b'0';
pub const HARDLINK: u8 = b'1';
pub const SYMLINK: u8 = b'2';
pub const CHAR: u8 = b'3';
pub const DIR: u8 = b'5';

/// A tar archive built from raw headers.
#[derive(Default)]
pub struct RawTar {
    buf: Vec<u8>,
}

fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    field[..width].copy_from_slice(&text.as_bytes()[text.len() - width..]);
    field[width] = 0;
}

impl RawTar {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one entry: `name` and `link` are written as given (truncated to 100 bytes;
    /// use [`RawTar::pax`] before it for longer ones).
    pub fn entry(
        &mut self,
        name: &[u8],
        kind: u8,
        link: &[u8],
        mode: u32,
        data: &[u8],
    ) -> &mut Self {
        self.entry_dev(name, kind, link, mode, data, 0, 0)
    }

    #[allow(clippy::too_many_arguments)]
    pub fn entry_dev(
        &mut self,
        name: &[u8],
        kind: u8,
        link: &[u8],
        mode: u32,
        data: &[u8],
        major: u64,
        minor: u64,
    ) -> &mut Self {
        let mut h = [0u8; 512];
        let n = name.len().min(100);
        h[..n].copy_from_slice(&name[..n]);
        octal(&mut h[100..108], u64::from(mode));
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        octal(&mut h[124..136], data.len() as u64);
        octal(&mut h[136..148], 1_700_000_000);
        h[156] = kind;
        let l = link.len().min(100);
        h[157..157 + l].copy_from_slice(&link[..l]);
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        octal(&mut h[329..337], major);
        octal(&mut h[337..345], minor);
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|b| u64::from(*b)).sum();
        let text = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(text.as_bytes());
        self.buf.extend_from_slice(&h);
        self.buf.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    /// Appends a PAX extended header (type `x`) with `records` for the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (key, value) in records {
            let body_len = key.len() + value.len() + 3; // ' ', '=', '\n'
            let mut len = body_len + 1;
            while len.to_string().len() + body_len != len {
                len = len.to_string().len() + body_len;
            }
            data.extend_from_slice(len.to_string().as_bytes());
            data.push(b' ');
            data.extend_from_slice(key.as_bytes());
            data.push(b'=');
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        self.entry(b"PaxHeaders/x", b'x', b"", 0o644, &data)
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(name.as_bytes(), FILE, b"", 0o644, data)
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(name.as_bytes(), DIR, b"", 0o755, b"")
    }

    /// The archive with its two zero end blocks.
    pub fn finish(&self) -> Vec<u8> {
        let mut out = self.buf.clone();
        out.extend(std::iter::repeat_n(0u8, 1024));
        out
    }
}

/// A minimal image config with `diff_ids`.
pub fn config_json(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids.iter().map(|d| format!("sha256:{d}")).collect::<Vec<_>>()},
    }))
    .expect("a config serializes")
}

/// A descriptor as JSON.
pub fn descriptor(media: &str, digest: &str, size: u64) -> serde_json::Value {
    serde_json::json!({"mediaType": media, "digest": format!("sha256:{digest}"), "size": size})
}

pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// An image manifest naming `config` and `layers` (digest, size).
pub fn manifest_json(config: (&str, u64), layers: &[(&str, u64)]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": descriptor(CONFIG, config.0, config.1),
        "layers": layers.iter().map(|(d, s)| descriptor(LAYER, d, *s)).collect::<Vec<_>>(),
    }))
    .expect("a manifest serializes")
}

/// An index naming `manifests`, each with an optional full name.
pub fn index_json(manifests: &[(serde_json::Value, Option<&str>)]) -> Vec<u8> {
    let list: Vec<serde_json::Value> = manifests
        .iter()
        .map(|(d, name)| {
            let mut d = d.clone();
            if let Some(name) = name {
                d["annotations"] = serde_json::json!({"io.containerd.image.name": name});
            }
            d
        })
        .collect();
    serde_json::to_vec(
        &serde_json::json!({"schemaVersion": 2, "mediaType": INDEX, "manifests": list}),
    )
    .expect("an index serializes")
}

/// An OCI archive (`oci-layout`, `index.json`, blobs) of one image with one layer
/// `layer_tar`, named `name`; returns the archive's bytes.
pub fn oci_archive(layer_tar: &[u8], name: &str) -> Vec<u8> {
    let layer = sha256(layer_tar);
    let config = config_json(std::slice::from_ref(&layer));
    let cdig = sha256(&config);
    let manifest = manifest_json(
        (&cdig, config.len() as u64),
        &[(&layer, layer_tar.len() as u64)],
    );
    let mdig = sha256(&manifest);
    let index = index_json(&[(
        descriptor(MANIFEST, &mdig, manifest.len() as u64),
        Some(name),
    )]);
    let mut tar = RawTar::new();
    tar.file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)
        .file("index.json", &index)
        .file(&format!("blobs/sha256/{mdig}"), &manifest)
        .file(&format!("blobs/sha256/{cdig}"), &config)
        .file(&format!("blobs/sha256/{layer}"), layer_tar);
    tar.finish()
}

/// Whether the store at `root` holds a blob with hex digest `hex`.
pub fn store_has(root: &Path, hex: &str) -> bool {
    root.join("blobs/sha256").join(hex).exists()
}

/// Every byte of `out`'s stderr and stdout that a terminal would act on: ESC, BEL, CR.
pub fn raw_controls(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .copied()
        .filter(|b| matches!(b, 0x1b | 0x07 | b'\r' | 0x9b))
        .collect()
}

// Shared by the attack_archive*.rs suites.

pub const ROOTLESS: &str = "rbuild-rootless";

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A temp dir the unprivileged user can use too.
pub fn shared_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).expect("chmod");
    dir
}

/// Writes `bytes` to `dir/name` and returns the path.
pub fn put(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).expect("writing a test file");
    path
}

/// `rbuild load -i archive` against the store at `root`, as `user` when given.
pub fn load(root: &Path, archive: &Path, user: Option<&str>) -> Result<Output, String> {
    let mut cmd = rbuild(root);
    cmd.arg("load").arg("-i").arg(archive);
    match user {
        Some(u) => run(&mut as_user(u, &cmd)),
        None => run(&mut cmd),
    }
}

/// A store at `dir/name` with busybox imported as `busybox:latest`.
pub fn busybox_store(dir: &Path, name: &str) -> PathBuf {
    let root = dir.join(name);
    super::run::import(&root, &fixture("busybox"), "busybox:latest", &[]);
    root
}

/// The hex digests of the blobs of the store at `root`.
pub fn store_blobs(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(root.join("blobs/sha256"))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Holds when stdout and stderr carry no raw ESC, BEL or CR byte.
pub fn no_raw_controls(out: &Output) -> Result<(), String> {
    let mut all = out.stderr.clone();
    all.extend_from_slice(&out.stdout);
    let raw = raw_controls(&all);
    if raw.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "raw control bytes {raw:x?} reached the terminal: {:?}",
            String::from_utf8_lossy(&all)
        ))
    }
}

/// Flips one byte in the middle of blob `hex` of the store at `root`.
pub fn flip(root: &Path, hex: &str) {
    let path = root.join("blobs/sha256").join(hex);
    let mut bytes = fs::read(&path).expect("reading a blob");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    fs::write(&path, bytes).expect("writing a blob");
}

/// The layer blobs of the image `name` in the store at `root` (through `rbuild inspect`).
pub fn layer_blobs(root: &Path, name: &str) -> Vec<String> {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join("index.json")).expect("index")).expect("json");
    let mut out = Vec::new();
    for m in index["manifests"].as_array().expect("manifests") {
        let ann = &m["annotations"]["org.opencontainers.image.ref.name"];
        if ann.as_str().is_some_and(|n| n.contains(name)) {
            let d = m["digest"]
                .as_str()
                .expect("digest")
                .trim_start_matches("sha256:");
            let manifest: serde_json::Value = serde_json::from_slice(
                &fs::read(root.join("blobs/sha256").join(d)).expect("manifest"),
            )
            .expect("json");
            for l in manifest["layers"].as_array().expect("layers") {
                out.push(
                    l["digest"]
                        .as_str()
                        .expect("digest")
                        .trim_start_matches("sha256:")
                        .to_owned(),
                );
            }
        }
    }
    out
}

/// A 4 MiB file with data only at its start and end (a hole between).
pub fn make_sparse(path: &Path) {
    use std::os::unix::fs::FileExt as _;
    let f = fs::File::create(path).expect("creating a sparse file");
    f.set_len(4 << 20).expect("truncate");
    f.write_all_at(b"head", 0).expect("head");
    f.write_all_at(b"tail", (4 << 20) - 4).expect("tail");
    let blocks = f.metadata().expect("stat").blocks();
    assert!(
        blocks < 64,
        "the file system here does not keep holes: sparse attempts cannot run"
    );
}

/// Every path under `root`.
pub fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        if let Ok(rd) = fs::read_dir(&p) {
            for e in rd.flatten() {
                let path = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(path.clone());
                }
                out.push(path);
            }
        }
    }
    out
}
