//! `--progress rawjson` writes lines valid against `docs/progress/rawjson.schema.json`,
//! and reading them back gives the same stream.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the cli crate sits in the workspace")
        .to_path_buf()
}

fn validator() -> jsonschema::Validator {
    let path = repo().join("docs/progress/rawjson.schema.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
    jsonschema::validator_for(&schema).expect("the schema is a valid JSON Schema")
}

fn rawjson(events: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args(["debug", "progress-replay", "--progress", "rawjson"])
        .arg(events)
        .output()
        .expect("running rbuild debug progress-replay");
    assert!(output.status.success(), "replay failed: {output:?}");
    assert!(output.stdout.is_empty(), "progress went to stdout");
    String::from_utf8(output.stderr).expect("rawjson is UTF-8")
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/progress_cases");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("reading {}: {e}", root.display()))
        .map(|entry| {
            entry
                .expect("reading a case directory")
                .path()
                .join("events.jsonl")
        })
        .filter(|path| path.is_file())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no cases under {}", root.display());
    cases
}

#[test]
fn every_rendered_line_is_valid_against_the_schema() {
    let validator = validator();
    for events in cases() {
        let out = rawjson(&events);
        let mut types = Vec::new();
        for (n, line) in out.lines().enumerate() {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}:{}: not JSON: {e}", events.display(), n + 1));
            let errors: Vec<String> = validator
                .iter_errors(&value)
                .map(|e| e.to_string())
                .collect();
            assert!(
                errors.is_empty(),
                "{}:{}: {line}\n{errors:#?}",
                events.display(),
                n + 1
            );
            types.push(value["type"].as_str().expect("type is a string").to_owned());
        }
        assert_eq!(types.first().map(String::as_str), Some("build_started"));
        let last = types.last().map(String::as_str);
        assert!(
            matches!(last, Some("build_finished" | "build_failed")),
            "{last:?}"
        );
    }
}

#[test]
fn rendering_a_recorded_stream_gives_it_back_unchanged() {
    for events in cases() {
        let recorded = std::fs::read_to_string(&events).expect("reading the recorded stream");
        assert_eq!(rawjson(&events), recorded, "{}", events.display());
    }
}

#[test]
fn the_schema_rejects_malformed_events() {
    let validator = validator();
    let time = "\"time\":\"2026-11-23T15:00:00.000Z\"";
    for bad in [
        format!("{{{time},\"type\":\"step_log\",\"step\":1,\"stream\":\"stdin\",\"text\":\"x\"}}"),
        format!(
            "{{{time},\"type\":\"step_finished\",\"step\":1,\"output\":{{\"kind\":\"empty_layer\"}}}}"
        ),
        format!(
            "{{{time},\"type\":\"step_cached\",\"step\":1,\"cache_key\":\"nope\",\"output\":{{\"kind\":\"empty_layer\"}}}}"
        ),
        format!("{{{time},\"type\":\"warning\",\"message\":\"m\",\"extra\":1}}"),
        "{\"time\":\"yesterday\",\"type\":\"warning\",\"message\":\"m\"}".to_owned(),
    ] {
        let value: Value = serde_json::from_str(&bad).expect("the test line is JSON");
        assert!(!validator.is_valid(&value), "accepted: {bad}");
    }
}
