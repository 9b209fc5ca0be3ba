//! The body of the `dockerignore` fuzz target, shared with the corpus replay test in
//! `builder-core/tests/fuzz_corpus.rs`: `.dockerignore` text is parsed into
//! `IgnoreRules`, then queried on fixed paths and on paths taken from the input itself.

use rbuild_core::context::IgnoreRules;

/// Paths every rule set is asked about, whatever the input.
const FIXED_PATHS: &[&str] = &[
    "",
    ".",
    "a",
    "a/b",
    "a/b/c.txt",
    "Dockerfile",
    ".dockerignore",
    "node_modules/pkg/index.js",
    "..",
    "a/../b",
];

/// Most input-derived paths queried per input, so that one input stays cheap.
const MAX_DERIVED_PATHS: usize = 16;

/// Parses `data` as a `.dockerignore` and queries the rules; returns normally unless
/// something panics.
pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(rules) = IgnoreRules::parse(text) else {
        return;
    };
    let _ = rules.is_empty();
    // Each pattern line, stripped of the exception mark and of slashes, is a path the
    // author had in mind: the likeliest to hit the matching corners.
    let derived = text
        .lines()
        .map(|line| line.trim().trim_start_matches('!').trim_matches('/'))
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .take(MAX_DERIVED_PATHS);
    for path in FIXED_PATHS.iter().copied().chain(derived) {
        let _ = rules.is_excluded(path);
        let _ = rules.may_include_beneath(path);
    }
}
