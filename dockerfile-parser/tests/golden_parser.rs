//! Golden tests: every directory under `fixtures/parser/` holds a `Dockerfile` and the
//! expected outputs of parsing it:
//!
//! - `ast`: the syntax-tree dump (when the syntax parses),
//! - `syntax.json`: the whole syntax tree (directives, heredocs, spans), pretty JSON,
//! - `instructions.json`: the typed stages, pretty JSON (when typing succeeds),
//! - `error`: the rendered error (when either step fails).
//!
//! Run with `UPDATE_GOLDEN=1` to rewrite the expected files from the current output
//! (then review the diff).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The output files a case may have.
const OUTPUTS: [&str; 4] = ["ast", "syntax.json", "instructions.json", "error"];

fn pretty<T: serde::Serialize>(value: &T) -> String {
    let mut json = serde_json::to_string_pretty(value).expect("serializing");
    json.push('\n');
    json
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/parser")
}

fn outputs(source: &str) -> BTreeMap<&'static str, String> {
    let mut out = BTreeMap::new();
    match rbuild_dockerfile::parse_syntax(source) {
        Err(e) => {
            out.insert("error", e.render("Dockerfile", source));
        }
        Ok(tree) => {
            out.insert("ast", rbuild_dockerfile::dump(&tree));
            out.insert("syntax.json", pretty(&tree));
            match rbuild_dockerfile::parse_tree(&tree, source) {
                Ok(file) => {
                    out.insert("instructions.json", pretty(&file));
                }
                Err(e) => {
                    out.insert("error", e.render("Dockerfile", source));
                }
            }
        }
    }
    out
}

#[test]
fn parser_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let dir = fixtures_dir();
    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fixtures directory {} is missing: {e}", dir.display()))
        .map(|e| e.expect("reading fixtures").path())
        .filter(|p| p.join("Dockerfile").is_file())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no cases under {}", dir.display());
    let mut failures = Vec::new();
    for case in &cases {
        let source = fs::read_to_string(case.join("Dockerfile")).expect("reading Dockerfile");
        let got = outputs(&source);
        for name in OUTPUTS {
            let path = case.join(name);
            let expected = fs::read_to_string(&path).ok();
            let actual = got.get(name);
            if expected.as_ref() == actual {
                continue;
            }
            if update {
                match actual {
                    Some(text) => fs::write(&path, text).expect("writing golden file"),
                    None => fs::remove_file(&path).expect("removing stale golden file"),
                }
                continue;
            }
            failures.push(format!(
                "{}/{name}:\n--- expected\n{}\n--- got\n{}",
                case.display(),
                expected.as_deref().unwrap_or("(no file)"),
                actual.map_or("(no output)", String::as_str)
            ));
        }
    }
    println!(
        "golden: {} cases, {} mismatches",
        cases.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{}\n(run with UPDATE_GOLDEN=1 to accept)",
        failures.join("\n")
    );
}
