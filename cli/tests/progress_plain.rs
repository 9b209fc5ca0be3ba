//! Golden tests of `--progress plain`: each directory under `tests/progress_cases/` holds
//! a recorded build (`events.jsonl`, the rawjson form) and the exact standard error
//! `rbuild debug progress-replay --progress plain` must print for it (`plain.stderr`).
//! Replays keep the recorded times, so the output is deterministic.
//! `UPDATE_GOLDEN=1 cargo test -p rbuild-cli --test progress_plain` rewrites the files.

use std::path::{Path, PathBuf};
use std::process::Command;

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/progress_cases");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("reading {}: {e}", root.display()))
        .map(|entry| entry.expect("reading a case directory").path())
        .filter(|path| path.join("events.jsonl").is_file())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no cases under {}", root.display());
    cases
}

fn replay(events: &Path, mode: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args(["debug", "progress-replay", "--progress", mode])
        .arg(events)
        .output()
        .expect("running rbuild debug progress-replay")
}

#[test]
fn plain_output_matches_the_golden_files() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut mismatches = Vec::new();
    for case in cases() {
        let output = replay(&case.join("events.jsonl"), "plain");
        assert!(
            output.status.success(),
            "{}: replay failed: {output:?}",
            case.display()
        );
        assert!(
            output.stdout.is_empty(),
            "{}: progress went to stdout",
            case.display()
        );
        let got = String::from_utf8(output.stderr).expect("plain output is UTF-8");
        let golden = case.join("plain.stderr");
        if update {
            std::fs::write(&golden, &got).expect("writing golden file");
            continue;
        }
        let want = std::fs::read_to_string(&golden).unwrap_or_else(|e| {
            panic!(
                "reading {}: {e} (UPDATE_GOLDEN=1 writes it)",
                golden.display()
            )
        });
        if got != want {
            mismatches.push(format!("--- {}\n{got}", golden.display()));
        }
    }
    assert!(
        mismatches.is_empty(),
        "plain output differs:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn a_failed_build_shows_the_failing_steps_output_again() {
    let output = replay(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/progress_cases/step-fails/events.jsonl"),
        "plain",
    );
    let text = String::from_utf8(output.stderr).expect("plain output is UTF-8");
    let frame = "------\n > [4/6] RUN pip install --no-cache-dir -r requirements.txt:\n\
                 0.884 ERROR: Could not find a version that satisfies the requirement \
                 flaskk==3.0.3 (from versions: none)\n";
    assert!(text.contains(frame), "no failure frame in:\n{text}");
    assert!(
        text.contains("\nBuild failed after 2.4s: 8 steps, 2 cached\n"),
        "{text}"
    );
}

#[test]
fn a_malformed_event_stream_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().expect("creating a temporary directory");
    let events = dir.path().join("events.jsonl");
    std::fs::write(
        &events,
        "{\"time\":\"2026-11-23T15:00:00.000Z\",\"type\":\"warning\",\"message\":\"m\"}\n\
         {\"time\":\"2026-11-23T15:00:00.000Z\",\"type\":\"no_such_event\"}\n",
    )
    .expect("writing events");
    let output = replay(&events, "plain");
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8(output.stderr).expect("error is UTF-8");
    assert!(text.contains("events.jsonl:2"), "{text}");
}
