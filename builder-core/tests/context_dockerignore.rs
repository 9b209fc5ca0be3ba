//! Golden tests of `.dockerignore` handling: one directory per case under
//! `fixtures/dockerignore/`, checked by one loop. `UPDATE_GOLDEN=1` rewrites `expected`.
//!
//! A case holds:
//! - `tree`: the context, one entry a line: `d <path>`, `f <path>` (optionally
//!   `f <path>: <content>`, with `\n` for a newline) or `l <path> -> <target>`;
//! - `dockerignore` (optional): written to `.dockerignore` at the context root;
//! - `dockerfile` (optional): the Dockerfile's path in the context, to look for a
//!   `<Dockerfile>.dockerignore` beside it;
//! - `expected`: the included entries, in listing order, in the same notation.

use std::fs;
use std::path::{Path, PathBuf};

use rbuild_core::context::{ContextListing, EntryType, IgnoreRules};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/dockerignore")
}

fn build_tree(root: &Path, tree: &str) {
    for line in tree.lines().filter(|l| !l.trim().is_empty()) {
        let (kind, rest) = line.split_at(2);
        match kind.trim() {
            "d" => fs::create_dir_all(root.join(rest)).expect("create dir"),
            "f" => {
                let (path, content) = match rest.split_once(": ") {
                    Some((p, c)) => (p, c.replace("\\n", "\n")),
                    None => (rest, String::new()),
                };
                let path = root.join(path);
                fs::create_dir_all(path.parent().expect("parent")).expect("create parent");
                fs::write(path, content).expect("write file");
            }
            "l" => {
                let (path, target) = rest.split_once(" -> ").expect("l <path> -> <target>");
                let path = root.join(path);
                fs::create_dir_all(path.parent().expect("parent")).expect("create parent");
                std::os::unix::fs::symlink(target, path).expect("symlink");
            }
            other => panic!("unknown tree entry kind {other:?} in {line:?}"),
        }
    }
}

fn render(listing: &ContextListing) -> String {
    let mut out = String::new();
    for e in listing.entries() {
        let path = e.path.display();
        let line = match e.kind {
            EntryType::Dir => format!("d {path}"),
            EntryType::File => format!("f {path}"),
            EntryType::Symlink => format!(
                "l {path} -> {}",
                e.link_target.as_deref().unwrap_or(Path::new("")).display()
            ),
            other => format!("{other:?} {path}"),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[test]
fn dockerignore_golden_cases() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut cases: Vec<PathBuf> = fs::read_dir(fixtures())
        .expect("fixtures/dockerignore exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 5, "expected golden cases, found {cases:?}");
    let mut failures = Vec::new();
    for case in &cases {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        build_tree(root, &fs::read_to_string(case.join("tree")).expect("tree"));
        if let Ok(patterns) = fs::read_to_string(case.join("dockerignore")) {
            fs::write(root.join(".dockerignore"), patterns).expect("write .dockerignore");
        }
        let dockerfile = fs::read_to_string(case.join("dockerfile"))
            .ok()
            .map(|p| root.join(p.trim()));
        let rules = IgnoreRules::for_build(root, dockerfile.as_deref()).expect("rules");
        let listing = ContextListing::walk(root, &rules).expect("walk");
        let got = render(&listing);
        let expected_path = case.join("expected");
        if update {
            fs::write(&expected_path, &got).expect("write expected");
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!(
                "case {}:\n--- expected\n{expected}--- got\n{got}",
                case.display()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
