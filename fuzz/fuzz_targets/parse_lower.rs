//! Fuzzes the whole Dockerfile front end (see `fuzz/common/parse_lower.rs`). Any panic,
//! hang or super-linear blow-up is a bug; every crash input is added to the corpus,
//! which `dockerfile-parser/tests/fuzz_corpus.rs` replays in every test run.
#![no_main]

#[path = "../common/parse_lower.rs"]
mod parse_lower;

libfuzzer_sys::fuzz_target!(|data: &[u8]| parse_lower::run(data));
