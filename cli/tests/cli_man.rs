//! `rbuild man`: the roff pages are titled as man(7) asks and `man -l` renders them
//! without a warning. `man` (man-db) is installed by `scripts/setup-host`; when it is
//! missing the rendering tests fail saying so.

use std::path::Path;
use std::process::{Command, Output};

fn rbuild(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args(args)
        .output()
        .expect("running the rbuild binary")
}

/// Renders the page at `path` with `man -l` and returns the text, asserting that man
/// exits 0 and reports nothing on standard error (groff prints its warnings there).
fn render(path: &Path) -> String {
    let man = Command::new("man")
        .arg("-l")
        .arg(path)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "80")
        .env("MAN_KEEP_FORMATTING", "")
        .output();
    let out = match man {
        Ok(out) => out,
        Err(e) => panic!("man is not available (scripts/setup-host installs man-db): {e}"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "man -l {} failed ({}): {stderr}",
        path.display(),
        out.status
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn man_prints_the_rbuild_page() {
    let out = rbuild(&["man"]);
    assert!(out.status.success(), "rbuild man failed");
    let roff = String::from_utf8(out.stdout).expect("roff is UTF-8");
    assert!(
        roff.lines().any(|l| l.starts_with(".TH RBUILD 1 ")),
        "no `.TH RBUILD 1` line in:\n{roff}"
    );
    for sub in ["graph", "images", "completion", "man", "version"] {
        assert!(
            roff.contains(&format!("rbuild\\-{sub}(1)")),
            "rbuild.1 does not refer to rbuild-{sub}(1)"
        );
    }
}

#[test]
fn man_renders_the_rbuild_page() {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let path = dir.path().join("rbuild.1");
    let out = rbuild(&["man"]);
    assert!(out.status.success(), "rbuild man failed");
    std::fs::write(&path, &out.stdout).expect("writing rbuild.1");
    let text = render(&path);
    assert!(
        text.contains("NAME"),
        "rendered page has no NAME section:\n{text}"
    );
    assert!(
        text.contains("A daemonless container image builder"),
        "rendered page lacks the description:\n{text}"
    );
}

#[test]
fn man_dir_writes_one_page_per_subcommand() {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let target = dir.path().join("man1");
    let out = rbuild(&["man", "--dir", target.to_str().expect("UTF-8 temp path")]);
    assert!(
        out.status.success(),
        "rbuild man --dir failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = std::fs::read_dir(&target)
        .expect("reading the manual directory")
        .map(|e| {
            e.expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    for expected in [
        "rbuild.1",
        "rbuild-graph.1",
        "rbuild-debug.1",
        "rbuild-debug-ast.1",
        "rbuild-store-verify.1",
        "rbuild-completion.1",
        "rbuild-man.1",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    assert!(
        !names
            .iter()
            .any(|n| n.contains("progress-replay") || n.contains("help")),
        "pages for hidden or help subcommands: {names:?}"
    );
    for name in &names {
        let path = target.join(name);
        let roff = std::fs::read_to_string(&path).expect("reading a page");
        let title = name.trim_end_matches(".1").to_uppercase();
        assert!(
            roff.lines()
                .any(|l| l.starts_with(&format!(".TH {title} 1 "))),
            "{name} is not titled {title}"
        );
        let text = render(&path);
        if name != "rbuild.1" {
            assert!(
                text.contains("Examples:"),
                "{name} has no examples:\n{text}"
            );
        }
    }
}

#[test]
fn man_dir_names_the_directory_it_cannot_create() {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").expect("writing a file");
    let target = file.join("man1");
    let out = rbuild(&["man", "--dir", target.to_str().expect("UTF-8 temp path")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&*target.to_string_lossy()),
        "error does not name {}: {stderr}",
        target.display()
    );
}
