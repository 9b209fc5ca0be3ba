//! Fuzzes `layer_apply` (see `fuzz/common/layer_apply.rs`). Any panic or hang is a bug; every crash
//! input is kept in the corpus, which `builder-core/tests/fuzz_corpus.rs` replays in
//! every test run.
#![no_main]

#[path = "../common/layer_apply.rs"]
mod layer_apply;

libfuzzer_sys::fuzz_target!(|data: &[u8]| layer_apply::run(data));
