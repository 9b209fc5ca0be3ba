//! Fuzzes `image_json` (see `fuzz/common/image_json.rs`). Any panic or hang is a bug; every crash
//! input is kept in the corpus, which `builder-core/tests/fuzz_corpus.rs` replays in
//! every test run.
#![no_main]

#[path = "../common/image_json.rs"]
mod image_json;

libfuzzer_sys::fuzz_target!(|data: &[u8]| image_json::run(data));
