//! Replays the kept fuzz corpora of builder-core's targets (`fuzz/corpus/<target>`,
//! crash inputs included) through each fuzz target's own body: no input may panic.

#[path = "../../fuzz/common/dockerignore.rs"]
mod dockerignore;
#[path = "../../fuzz/common/image_json.rs"]
mod image_json;
#[path = "../../fuzz/common/layer_apply.rs"]
mod layer_apply;

use std::path::Path;

/// Fewer kept inputs than this means the corpus was lost or not minimised into place.
const MIN_INPUTS: usize = 10;

/// Runs every input of `fuzz/corpus/<target>` through `run`, failing on a panic or on a
/// corpus with fewer than [`MIN_INPUTS`] inputs.
fn replay(target: &str, run: impl Fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fuzz corpus {} is missing: {e}", dir.display()));
    let mut count = 0;
    for entry in entries {
        let path = entry.expect("readable corpus directory").path();
        let data = std::fs::read(&path).expect("readable corpus file");
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(&data)));
        assert!(outcome.is_ok(), "{} panicked", path.display());
        count += 1;
    }
    assert!(
        count >= MIN_INPUTS,
        "only {count} corpus inputs in {}",
        dir.display()
    );
    println!("fuzz corpus {target}: {count} inputs, no panic");
}

#[test]
fn fuzz_corpus_dockerignore_does_not_panic() {
    replay("dockerignore", dockerignore::run);
}

#[test]
fn fuzz_corpus_image_json_does_not_panic() {
    replay("image_json", image_json::run);
}

#[test]
fn fuzz_corpus_layer_apply_does_not_panic() {
    replay("layer_apply", layer_apply::run);
}
