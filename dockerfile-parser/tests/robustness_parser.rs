//! Hostile input: no prefix, suffix or byte-level damage of any known Dockerfile may
//! make the parser panic; it must answer with a tree or an error.

use std::fs;
use std::path::{Path, PathBuf};

/// Every Dockerfile under the golden fixtures and the conformance vectors.
fn corpus() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let conformance = match std::env::var_os("RBUILD_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => root.join("../../shared/conformance"),
    };
    let dirs = [
        root.join("../fixtures/parser"),
        conformance.join("buildkit/parser"),
        conformance.join("buildkit/parser-negative"),
    ];
    let mut files = Vec::new();
    for dir in dirs {
        let entries = fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("corpus directory {} is missing: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("reading corpus").path().join("Dockerfile");
            if let Ok(text) = fs::read_to_string(&path) {
                files.push(text);
            }
        }
    }
    assert!(files.len() > 50, "corpus too small: {}", files.len());
    files
}

fn parse_all(source: &str) {
    if let Ok(tree) = rbuild_dockerfile::parse_syntax(source) {
        let _ = rbuild_dockerfile::dump(&tree);
        if let Err(e) = rbuild_dockerfile::parse_tree(&tree, source) {
            let _ = e.render("Dockerfile", source);
        }
    } else if let Err(e) = rbuild_dockerfile::parse(source) {
        let _ = e.render("Dockerfile", source);
    }
}

#[test]
fn truncations_and_splices_never_panic() {
    let files = corpus();
    let mut inputs = 0usize;
    for text in &files {
        let boundaries: Vec<usize> = (0..=text.len())
            .filter(|&i| text.is_char_boundary(i))
            .collect();
        for &cut in boundaries.iter().step_by(3) {
            parse_all(&text[..cut]);
            parse_all(&text[cut..]);
            inputs += 2;
        }
        // Damage: replace each character in turn by characters the parser treats
        // specially.
        for &at in boundaries.iter().step_by(7) {
            let Some(c) = text[at..].chars().next() else {
                continue;
            };
            for replacement in [
                "\\", "`", "\"", "'", "[", "<<", "=", "--", "\n", "\r", "\t", "é", "\u{feff}",
            ] {
                let damaged = format!(
                    "{}{}{}",
                    &text[..at],
                    replacement,
                    &text[at + c.len_utf8()..]
                );
                parse_all(&damaged);
                inputs += 1;
            }
        }
    }
    println!("robustness: {inputs} inputs parsed without panic");
}
