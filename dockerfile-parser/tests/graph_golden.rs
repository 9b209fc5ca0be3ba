//! Golden tests of lowering: each directory under `fixtures/graph/` holds a
//! `Dockerfile`, an `args` file (one option per line: `--target=NAME`,
//! `--build-arg=NAME=VALUE`) and `expected`, the text listing of the graph or the
//! rendered error. `UPDATE_GOLDEN=1 cargo test` rewrites `expected`.

use std::path::{Path, PathBuf};

use rbuild_dockerfile::{Environment, LowerOptions, lower, parse};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/graph")
}

fn options(args: &str, case: &Path) -> LowerOptions {
    let mut options = LowerOptions::default();
    let mut build_args = Environment::new();
    for line in args.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(target) = line.strip_prefix("--target=") {
            options.target = Some(target.to_owned());
        } else if let Some(arg) = line.strip_prefix("--build-arg=") {
            let (name, value) = arg
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: build arg without =: {line}", case.display()));
            build_args.set(name, value);
        } else {
            panic!("{}: unknown option in args: {line}", case.display());
        }
    }
    options.build_args = build_args;
    options
}

/// What `rbuild graph` prints for the case (errors as rendered on standard error).
fn run_case(dir: &Path) -> String {
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.join(name).display()))
    };
    let source = read("Dockerfile");
    let options = options(&read("args"), dir);
    let file = match parse(&source) {
        Ok(file) => file,
        Err(err) => return format!("parse error:\n{}", err.render("Dockerfile", &source)),
    };
    match lower(&file, &options) {
        Ok(graph) => graph.to_text(),
        Err(err) => format!("error:\n{}", err.render("Dockerfile", &source)),
    }
}

#[test]
fn golden_graphs() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", fixtures().display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 10,
        "expected the golden cases under {}",
        fixtures().display()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let got = run_case(case);
        let expected_path = case.join("expected");
        if update {
            std::fs::write(&expected_path, &got)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", expected_path.display()));
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_else(|e| {
            panic!(
                "cannot read {} ({e}); run with UPDATE_GOLDEN=1",
                expected_path.display()
            )
        });
        if got != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- got\n{got}",
                case.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
