//! Hashing a build context of 100k small files: the walk alone, hashing cold (no
//! index: every file is read) and warm (an index from the previous run: nothing is
//! read). Files are in the page cache in both cases; "cold" means no hash index.

use std::fs;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use rbuild_core::context::{ContextHashes, ContextListing, INDEX_DIR, IgnoreRules};

const FILES: usize = 100_000;
const PER_DIR: usize = 500;

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn make_context(root: &Path) {
    for i in 0..FILES {
        let dir = root.join(format!("dir{:03}", i / PER_DIR));
        if i % PER_DIR == 0 {
            fs::create_dir_all(&dir).expect("create context directory");
        }
        fs::write(
            dir.join(format!("file{i:06}.txt")),
            format!("small file number {i}\n"),
        )
        .expect("write context file");
    }
}

fn bench(c: &mut Criterion) {
    let scratch =
        Scratch(std::env::temp_dir().join(format!("rbuild-bench-context-{}", std::process::id())));
    let ctx = scratch.0.join("ctx");
    make_context(&ctx);
    let rules = IgnoreRules::none();

    let mut group = c.benchmark_group("context_hash_100k");
    group.sample_size(10);
    group.bench_function("walk", |b| {
        b.iter(|| ContextListing::walk(&ctx, &rules).expect("walk"))
    });
    let listing = ContextListing::walk(&ctx, &rules).expect("walk");
    group.bench_function("hash_cold_no_index", |b| {
        b.iter(|| ContextHashes::compute(&listing, None).expect("hash"))
    });
    let index_dir = scratch.0.join("store").join(INDEX_DIR);
    ContextHashes::compute(&listing, Some(&index_dir)).expect("prime index");
    group.bench_function("hash_warm_with_index", |b| {
        b.iter(|| {
            let hashes = ContextHashes::compute(&listing, Some(&index_dir)).expect("hash");
            assert_eq!(hashes.stats().files_read, 0);
            hashes
        })
    });
    group.bench_function("walk_and_hash_warm", |b| {
        b.iter(|| {
            let listing = ContextListing::walk(&ctx, &rules).expect("walk");
            ContextHashes::compute(&listing, Some(&index_dir)).expect("hash")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
