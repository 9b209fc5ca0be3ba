//! What a step's layer costs in memory per file: the change set of a tree and the
//! writing of its tar must stay a few dozen bytes per path, so that a `COPY` of a
//! million small files fits in a bounded amount of memory (issue 18, item 3).
//!
//! A counting allocator measures the peak of live heap bytes; the test compares the
//! growth between two trees of the same directory width, never a time.

#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rbuild_core::layer::{Compression, LayerOptions, tree_changes, write_layer_to};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on unchanged to the system allocator, which upholds
// GlobalAlloc's contract; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's layout, as GlobalAlloc::alloc requires.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from System.alloc/realloc above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from System with `layout`; the caller checked new_size.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let grown = new_size - layout.size();
                let now = LIVE.fetch_add(grown, Ordering::Relaxed) + grown;
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One measurement at a time: the counters are the process's.
static SERIAL: Mutex<()> = Mutex::new(());

/// `dirs` directories of 1000 files of a few bytes each, under `root/tree`.
fn make_tree(root: &Path, dirs: usize) {
    for d in 0..dirs {
        let dir = root.join("tree").join(format!("d{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..1000 {
            std::fs::write(dir.join(format!("f{f:04}")), format!("file {d}/{f}\n")).unwrap();
        }
    }
}

/// The peak of live heap bytes above what was live before, while the change set of a
/// tree of `dirs` x 1000 files is made and its (uncompressed) layer written.
fn peak_of_layer(dirs: usize) -> usize {
    let dir = tempfile::tempdir().unwrap();
    make_tree(dir.path(), dirs);
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let options = LayerOptions::default().with_compression(Compression::None);
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let changes = tree_changes(dir.path()).unwrap();
    assert_eq!(changes.len(), 1 + dirs * 1001);
    let (_, diff_id) = write_layer_to(std::io::sink(), dir.path(), &changes, &options).unwrap();
    drop(changes);
    let peak = PEAK.load(Ordering::Relaxed) - before;
    assert!(diff_id.to_string().starts_with("sha256:"));
    peak
}

#[test]
fn a_layers_change_set_and_tar_cost_a_few_dozen_bytes_per_file() {
    let small = peak_of_layer(10);
    let large = peak_of_layer(40);
    let per_file = large.saturating_sub(small) / 30_000;
    eprintln!("peak heap: 10k files {small} B, 40k files {large} B, {per_file} B per file");
    // A path of this tree is ~20 bytes; a change keeps it once plus ~16 bytes, and the
    // writer's order ~24 bytes more. A key per entry (a vector per path component, as
    // the layer writer once sorted by) is ~300 bytes.
    assert!(
        per_file <= 120,
        "the change set and layer writer grow by {per_file} bytes per file (10k files: \
         {small} B, 40k files: {large} B)"
    );
}
