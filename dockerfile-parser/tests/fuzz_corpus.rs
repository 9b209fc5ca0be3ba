//! Replays the kept fuzz corpus (`fuzz/corpus/parse_lower`, crash inputs included)
//! through the fuzz target's own body: no input may panic.

#[path = "../../fuzz/common/parse_lower.rs"]
mod parse_lower;

use std::path::Path;

#[test]
fn fuzz_corpus_does_not_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/parse_lower");
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fuzz corpus {} is missing: {e}", dir.display()));
    let mut count = 0;
    for entry in entries {
        let path = entry.expect("readable corpus directory").path();
        let data = std::fs::read(&path).expect("readable corpus file");
        let outcome = std::panic::catch_unwind(|| parse_lower::run(&data));
        assert!(outcome.is_ok(), "{} panicked", path.display());
        count += 1;
    }
    assert!(
        count > 1000,
        "only {count} corpus inputs in {}",
        dir.display()
    );
    println!("fuzz corpus: {count} inputs, no panic");
}
