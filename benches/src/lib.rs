//! Shared helpers for rbuild's benchmarks; the benchmarks live in `benches/benches/`.
#![deny(missing_docs)]
