//! `rbuild completion`: the scripts are generated for bash, zsh and fish, name the
//! subcommands, pass each shell's syntax check, and (for bash) really complete.
//!
//! The shells are run as they are installed by `scripts/setup-host`; a missing shell
//! fails the test with a message naming it.

use std::path::Path;
use std::process::{Command, Output};

mod support;

use support::require::require_tool;

fn rbuild(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args(args)
        .output()
        .expect("running the rbuild binary")
}

/// The completion script for `shell`, checked to have exited 0.
fn script(shell: &str) -> String {
    let out = rbuild(&["completion", shell]);
    assert!(
        out.status.success(),
        "rbuild completion {shell} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("completion script is UTF-8")
}

/// Runs `shell` with `args` and the script in a file, asserting success.
fn check_syntax(shell: &str, flag: &str, text: &str) {
    require_tool(shell, shell);
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let path = dir.path().join(format!("rbuild.{shell}"));
    std::fs::write(&path, text).expect("writing the completion script");
    let out = Command::new(shell)
        .arg(flag)
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("running {shell}: {e}"));
    assert!(
        out.status.success(),
        "{shell} {flag} rejected the completion script: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const SUBCOMMANDS: &[&str] = &[
    "version",
    "debug",
    "graph",
    "images",
    "tag",
    "rmi",
    "inspect",
    "save",
    "load",
    "import",
    "prune",
    "store",
    "completion",
    "man",
];

#[test]
fn every_script_names_the_subcommands() {
    for shell in ["bash", "zsh", "fish"] {
        let text = script(shell);
        assert!(!text.trim().is_empty(), "{shell} script is empty");
        for sub in SUBCOMMANDS {
            assert!(text.contains(sub), "{shell} script does not name `{sub}`");
        }
    }
}

#[test]
fn bash_accepts_the_script() {
    check_syntax("bash", "-n", &script("bash"));
}

#[test]
fn zsh_accepts_the_script() {
    check_syntax("zsh", "-n", &script("zsh"));
}

#[test]
fn fish_accepts_the_script() {
    check_syntax("fish", "-n", &script("fish"));
}

/// Sources the bash script and calls its completion function as bash's programmable
/// completion would for the command line `words` with the cursor at the end of the
/// last word; returns the candidates, one per line.
fn bash_complete(words: &[&str]) -> Vec<String> {
    require_tool("bash", "bash");
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let path = dir.path().join("rbuild.bash");
    std::fs::write(&path, script("bash")).expect("writing the completion script");
    let line = words.join(" ");
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let cword = words.len() - 1;
    let current = words[cword];
    let previous = if cword > 0 { words[cword - 1] } else { "" };
    // The function is the one the script registers with `complete -F`.
    let driver = format!(
        r#"set -e
source "$1"
func=$(complete -p rbuild | sed -n 's/.*-F \([^ ]*\).*/\1/p')
test -n "$func" || {{ echo "the script registers no completion function for rbuild" >&2; exit 3; }}
COMP_WORDS=({words})
COMP_CWORD={cword}
COMP_LINE='{line}'
COMP_POINT=${{#COMP_LINE}}
"$func" rbuild '{current}' '{previous}'
printf '%s\n' "${{COMPREPLY[@]}}"
"#,
        words = quoted.join(" "),
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&driver)
        .arg("driver")
        .arg(Path::new(&path))
        .output()
        .expect("running bash");
    assert!(
        out.status.success(),
        "bash completion driver failed for `{line}`: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn bash_completes_a_subcommand() {
    assert_eq!(bash_complete(&["rbuild", "gr"]), ["graph"]);
}

#[test]
fn bash_completes_a_nested_subcommand() {
    assert_eq!(bash_complete(&["rbuild", "store", "v"]), ["verify"]);
}

#[test]
fn bash_completes_an_option_and_its_values() {
    assert_eq!(bash_complete(&["rbuild", "graph", "--form"]), ["--format"]);
    let mut values = bash_complete(&["rbuild", "graph", "--format", ""]);
    values.sort();
    assert_eq!(values, ["dot", "json", "text"]);
}

#[test]
fn bash_completes_the_shells_of_completion() {
    let values = bash_complete(&["rbuild", "completion", ""]);
    for shell in ["bash", "zsh", "fish"] {
        assert!(
            values.iter().any(|v| v == shell),
            "`rbuild completion <TAB>` does not offer {shell}: {values:?}"
        );
    }
}
