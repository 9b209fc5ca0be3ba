//! BuildKit's word-expansion vectors (`envVarTest`, `wordsTest`), read from the shared
//! conformance directory (see its README.md for the formats).

use std::path::PathBuf;

use rbuild_dockerfile::{Environment, ShellLexer};

/// `$RBUILD_CONFORMANCE_DIR`, or `../shared/conformance` next to the workspace root.
fn conformance_dir() -> PathBuf {
    match std::env::var_os("RBUILD_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance"),
    }
}

fn read_vectors(name: &str) -> String {
    let path = conformance_dir().join("buildkit/shell").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "conformance vectors missing: cannot read {} ({e}); set RBUILD_CONFORMANCE_DIR",
            path.display()
        )
    })
}

#[test]
fn env_var_test() {
    let text = read_vectors("envVarTest");
    let env: Environment = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .into_iter()
    .collect();
    let lexer = ShellLexer::new('\\');
    let (mut passed, mut skipped) = (0, 0);
    let mut failures = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(
            fields.len(),
            3,
            "line {}: expected P|input|expected",
            number + 1
        );
        let (platform, input, expected) = (fields[0].trim(), fields[1].trim(), fields[2].trim());
        if platform == "W" {
            skipped += 1;
            continue;
        }
        assert!(
            platform == "A" || platform == "U",
            "line {}: unknown platform {platform:?}",
            number + 1
        );
        let got = lexer.expand_word(input, &env);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(value), expected) => expected != "error" && value == expected,
            _ => false,
        };
        if ok {
            passed += 1;
        } else {
            failures.push(format!(
                "line {}: {input:?} -> {got:?}, expected {expected:?}",
                number + 1
            ));
        }
    }
    println!(
        "envVarTest: {passed} passed, {} failed, {skipped} skipped (windows)",
        failures.len()
    );
    assert!(passed > 0, "envVarTest held no vectors");
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
}

#[test]
fn words_test() {
    let text = read_vectors("wordsTest");
    let lexer = ShellLexer::new('\\');
    let mut env = Environment::new();
    let mut passed = 0;
    let mut failures = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let rest = rest.trim_start();
            let (name, value) = rest
                .split_once('=')
                .unwrap_or_else(|| panic!("line {}: ENV without =", number + 1));
            env.set(name, value);
            continue;
        }
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(
            fields.len(),
            2,
            "line {}: expected input|expected",
            number + 1
        );
        let input = fields[0].trim();
        let expected = fields[1].trim_start();
        let got = lexer.expand_words(input, &env);
        let ok = match &got {
            Err(_) => expected == "error",
            Ok(words) => expected != "error" && *words == expected.split(',').collect::<Vec<_>>(),
        };
        if ok {
            passed += 1;
        } else {
            failures.push(format!(
                "line {}: {input:?} -> {got:?}, expected {expected:?}",
                number + 1
            ));
        }
    }
    println!(
        "wordsTest: {passed} passed, {} failed, 0 skipped",
        failures.len()
    );
    assert!(passed > 0, "wordsTest held no vectors");
    assert!(failures.is_empty(), "failures:\n{}", failures.join("\n"));
}
