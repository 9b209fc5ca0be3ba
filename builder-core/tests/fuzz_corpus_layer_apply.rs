//! Replays the kept `layer_apply` fuzz corpus (`fuzz/corpus/layer_apply`, crash inputs included)
//! through the fuzz target's own body: no input may panic.

#[path = "../../fuzz/common/layer_apply.rs"]
mod layer_apply;

use std::path::Path;

/// Fewer kept inputs than this means the corpus was lost or not minimised into place.
const MIN_INPUTS: usize = 10;

#[test]
fn fuzz_corpus_layer_apply_does_not_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/layer_apply");
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fuzz corpus {} is missing: {e}", dir.display()));
    let mut count = 0;
    for entry in entries {
        let path = entry.expect("readable corpus directory").path();
        let data = std::fs::read(&path).expect("readable corpus file");
        let outcome = std::panic::catch_unwind(|| layer_apply::run(&data));
        assert!(outcome.is_ok(), "{} panicked", path.display());
        count += 1;
    }
    assert!(
        count >= MIN_INPUTS,
        "only {count} corpus inputs in {}",
        dir.display()
    );
    println!("fuzz corpus: {count} inputs, no panic");
}
