//! Fuzzes `dockerignore` (see `fuzz/common/dockerignore.rs`). Any panic or hang is a bug; every crash
//! input is kept in the corpus, which `builder-core/tests/fuzz_corpus.rs` replays in
//! every test run.
#![no_main]

#[path = "../common/dockerignore.rs"]
mod dockerignore;

libfuzzer_sys::fuzz_target!(|data: &[u8]| dockerignore::run(data));
