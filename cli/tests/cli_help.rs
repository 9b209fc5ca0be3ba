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

/// README's command table (its rows' first column) names exactly the commands `rbuild
/// --help` lists, and each `image` verb.
#[test]
fn the_readme_command_table_is_the_help_list() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("reading README.md");
    // A cell names commands as `a`, `b` or `a x|y` (`|` escaped in the table).
    let mut named: Vec<String> = Vec::new();
    for line in readme
        .lines()
        .skip_while(|l| !l.starts_with("| Command |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
    {
        let cell = line.split(" | ").next().unwrap_or_default();
        for code in cell.split('`').skip(1).step_by(2) {
            let mut words = code.split_whitespace();
            let Some(first) = words.next() else { continue };
            named.push(first.to_owned());
            if first == "image" {
                for verb in words.next().unwrap_or_default().split("\\|") {
                    named.push(format!("image {verb}"));
                }
            }
        }
    }
    assert!(!named.is_empty(), "README.md has no '| Command |' table");
    let top = listed_subcommands(&help_of(&[]));
    for command in &top {
        assert!(
            named.contains(command),
            "rbuild --help lists {command}, README's command table does not: {named:?}"
        );
    }
    for verb in listed_subcommands(&help_of(&["image".to_owned()])) {
        let full = format!("image {verb}");
        assert!(
            named.contains(&full),
            "rbuild image --help lists {verb}, README's table does not"
        );
    }
    for name in named.iter().filter(|n| !n.starts_with("image ")) {
        assert!(
            top.contains(name),
            "README's command table names {name}, which rbuild --help does not list"
        );
    }
}
