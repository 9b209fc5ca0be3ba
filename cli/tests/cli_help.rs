//! Every subcommand's `--help`, found by walking the "Commands:" lists from the top, exits
//! 0 and ends with an "Examples:" section of real `rbuild` invocations.

use std::process::{Command, Output};

fn rbuild(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args(args)
        .output()
        .expect("running the rbuild binary")
}

/// The subcommand names listed under "Commands:" in a help text (without `help`).
fn listed_subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim_end() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// `--help` of the command at `path` (empty: rbuild itself), asserting exit 0.
fn help_of(path: &[String]) -> String {
    let mut args = path.to_vec();
    args.push("--help".to_owned());
    let out = rbuild(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "rbuild {} --help failed: {}",
        path.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("help is UTF-8")
}

/// Every subcommand path reachable from the top, depth first.
fn all_subcommands() -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut pending = vec![Vec::new()];
    while let Some(path) = pending.pop() {
        for name in listed_subcommands(&help_of(&path)) {
            let mut sub = path.clone();
            sub.push(name);
            pending.push(sub.clone());
            found.push(sub);
        }
    }
    found
}

#[test]
fn the_walk_finds_the_known_subcommands() {
    let found: Vec<String> = all_subcommands().iter().map(|p| p.join(" ")).collect();
    for known in [
        "version",
        "graph",
        "debug",
        "debug ast",
        "debug instructions",
        "images",
        "store",
        "store verify",
        "completion",
        "man",
    ] {
        assert!(
            found.iter().any(|f| f == known),
            "`{known}` not found in {found:?}"
        );
    }
}

#[test]
fn every_subcommand_help_has_examples() {
    for path in all_subcommands() {
        let help = help_of(&path);
        let examples: Vec<&str> = help
            .lines()
            .skip_while(|l| l.trim_end() != "Examples:")
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .collect();
        let name = path.join(" ");
        assert!(
            (1..=3).contains(&examples.len()),
            "rbuild {name} --help has {} examples (want 1 to 3):\n{help}",
            examples.len()
        );
        for example in examples {
            let example = example.trim();
            // An example starts with the command itself, or sets its environment first.
            let command = example
                .split_whitespace()
                .find(|w| !w.contains('='))
                .unwrap_or_default();
            let after_pipe = example.contains("| rbuild ");
            assert!(
                command == "rbuild" || after_pipe,
                "rbuild {name} example does not run rbuild: {example}"
            );
            // `build` is the default subcommand: `rbuild -t app .` is one of its examples.
            assert!(
                name == "build" || example.contains(&format!("rbuild {name}")),
                "rbuild {name} example runs another command: {example}"
            );
        }
    }
}
