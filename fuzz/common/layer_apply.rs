//! The body of the `layer_apply` fuzz target, shared with the corpus replay test in
//! `builder-core/tests/fuzz_corpus.rs`: arbitrary bytes are applied as a
//! layer blob (as given, and wrapped in gzip) in both apply modes into a fresh directory.
//! Applying must never panic, and must never write outside its target: a sentinel
//! directory next to the target, and the parent of both, are checked afterwards.

use std::fs;
use std::io::Write;
use std::path::Path;

use rbuild_core::layer::{ApplyMode, apply_layer};

/// Inputs longer than this are cut: a layer's interesting structure is in its first
/// headers, and a short input keeps each run (two modes, two encodings) fast.
pub const MAX_INPUT: usize = 64 * 1024;

/// The file inside the sentinel directory, and what it holds.
const SENTINEL_FILE: &str = "keep";
const SENTINEL_TEXT: &[u8] = b"untouched\n";

/// Applies `data` every way the target does; panics on a crash or on a write outside
/// the target directory.
pub fn run(data: &[u8]) {
    let data = &data[..data.len().min(MAX_INPUT)];
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).expect("gzip into memory");
    let gzipped = gz.finish().expect("gzip into memory");
    for blob in [data, gzipped.as_slice()] {
        for mode in [ApplyMode::Merged, ApplyMode::OverlayLower] {
            apply_contained(blob, mode);
        }
    }
}

/// Applies `blob` into `<tmp>/target` and checks that `<tmp>` holds exactly `target`
/// and an unchanged `sentinel` afterwards.
fn apply_contained(blob: &[u8], mode: ApplyMode) {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let target = tmp.path().join("target");
    let sentinel = tmp.path().join("sentinel");
    fs::create_dir(&target).expect("create target");
    fs::create_dir(&sentinel).expect("create sentinel");
    fs::write(sentinel.join(SENTINEL_FILE), SENTINEL_TEXT).expect("write sentinel");
    let _ = apply_layer(blob, &target, mode);
    assert_eq!(
        names(tmp.path()),
        ["sentinel", "target"],
        "layer applied in {mode:?} wrote next to its target"
    );
    assert_eq!(
        names(&sentinel),
        [SENTINEL_FILE],
        "layer applied in {mode:?} wrote into the sentinel directory"
    );
    let meta = fs::symlink_metadata(sentinel.join(SENTINEL_FILE)).expect("sentinel file");
    assert!(
        meta.file_type().is_file(),
        "layer applied in {mode:?} replaced the sentinel file"
    );
    assert_eq!(
        fs::read(sentinel.join(SENTINEL_FILE)).expect("read sentinel"),
        SENTINEL_TEXT,
        "layer applied in {mode:?} changed the sentinel file"
    );
    // Whatever the layer left (read-only dirs, odd modes) must not stop the cleanup.
    make_removable(&target);
}

/// The sorted entry names of `dir`.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("list directory")
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Gives every directory under `dir` owner rwx so the temporary directory can go.
fn make_removable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.file_type().is_dir() {
        return;
    }
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            make_removable(&entry.path());
        }
    }
}
