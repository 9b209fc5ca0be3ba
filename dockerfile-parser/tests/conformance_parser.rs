//! BuildKit's parser test vectors: every `buildkit/parser/<case>` must dump exactly as
//! its `result`, every `buildkit/parser-negative/<case>` must be rejected.
//!
//! The vectors live outside the repository; `RBUILD_CONFORMANCE_DIR` points at them
//! (default: `<workspace>/../shared/conformance`). A missing directory fails the test.

use std::fs;
use std::path::{Path, PathBuf};

fn conformance_dir() -> PathBuf {
    match std::env::var_os("RBUILD_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance"),
    }
}

/// The case directories under `buildkit/<suite>`, sorted; panics when there are none.
fn cases(suite: &str) -> Vec<PathBuf> {
    let dir = conformance_dir().join("buildkit").join(suite);
    let entries = fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "conformance directory {} is missing ({e}); set RBUILD_CONFORMANCE_DIR",
            dir.display()
        )
    });
    let mut cases: Vec<PathBuf> = entries
        .map(|e| e.expect("reading conformance directory").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no cases in {}", dir.display());
    cases
}

fn read(path: &Path) -> String {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    String::from_utf8(bytes).unwrap_or_else(|e| panic!("{} is not UTF-8: {e}", path.display()))
}

#[test]
fn parser_cases_dump_as_buildkit() {
    let mut failures = Vec::new();
    let all = cases("parser");
    for case in &all {
        let source = read(&case.join("Dockerfile"));
        let expected = read(&case.join("result"));
        match rbuild_dockerfile::parse_syntax(&source) {
            Ok(tree) => {
                let got = rbuild_dockerfile::dump(&tree);
                if got != expected {
                    failures.push(format!(
                        "{}:\n--- expected\n{expected}--- got\n{got}",
                        case.display()
                    ));
                }
            }
            Err(e) => failures.push(format!("{}: unexpected error: {e}", case.display())),
        }
    }
    println!(
        "parser: {} passed, {} failed",
        all.len() - failures.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn parser_negative_cases_are_rejected() {
    let mut failures = Vec::new();
    let all = cases("parser-negative");
    for case in &all {
        let source = read(&case.join("Dockerfile"));
        // Rejected by the syntax tree or by the typed instructions, never accepted,
        // and never by panicking.
        let outcome = std::panic::catch_unwind(|| {
            let syntax = rbuild_dockerfile::parse_syntax(&source);
            let typed = rbuild_dockerfile::parse(&source);
            syntax.is_err() || typed.is_err()
        });
        match outcome {
            Ok(true) => {}
            Ok(false) => failures.push(format!("{}: accepted", case.display())),
            Err(_) => failures.push(format!("{}: panicked", case.display())),
        }
    }
    println!(
        "parser-negative: {} passed, {} failed",
        all.len() - failures.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
