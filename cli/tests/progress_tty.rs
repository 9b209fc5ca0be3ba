//! `--progress tty` in a real terminal: a recorded build is replayed in real time (sped
//! up) inside a tmux pane, which is captured while the build runs and after it ends.
//! Needs `tmux`; without it the test fails saying so.

use std::path::Path;
use std::time::Duration;

/// Width of the pane: narrow enough that step names must be cut.
const WIDTH: usize = 60;
/// How long to wait for the pane to show something before giving up: a guard against a
/// hang, not a timing requirement.
const PATIENCE: Duration = Duration::from_secs(60);

mod tmux_support;
use tmux_support::Tmux;

#[test]
fn the_live_view_shows_running_steps_and_ends_with_the_summary() {
    let events =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/progress_cases/build-ok/events.jsonl");
    let command = format!(
        "{} debug progress-replay --progress tty --speed 2 {}; sleep 600",
        env!("CARGO_BIN_EXE_rbuild"),
        events.display()
    );
    let tmux = Tmux::start("the tty renderer", &command, WIDTH, 40, PATIENCE);

    // Mid-run: the pip step is running and has shown output under its spinner.
    let mid = tmux.wait_for("the pip step running with output", |screen| {
        screen.contains("[+] Building")
            && screen.contains("│ ")
            && screen.contains("#8 [4/6] RUN pip")
    });
    assert!(
        mid.contains(" ✔ #6 [2/6] WORKDIR /app"),
        "finished steps stay above:\n{mid}"
    );
    for line in mid.lines() {
        let width = line.chars().count();
        assert!(
            width <= WIDTH,
            "a live line is wider than the pane ({width}):\n{line}"
        );
    }

    // The end: the live area is gone, every step has its final line, then the summary.
    let end = tmux.wait_for("the summary", |screen| screen.contains("Slowest steps:"));
    assert!(
        !end.contains("[+] Building"),
        "the live area was not cleared:\n{end}"
    );
    assert!(!end.contains("│ "), "output lines were left behind:\n{end}");
    for step in 1..=11 {
        assert!(
            end.contains(&format!(" ✔ #{step} ")),
            "no final line for #{step}:\n{end}"
        );
    }
    assert!(end.contains("CACHED\n"), "{end}");
    assert!(
        end.contains("Build finished in 9.3s: 11 steps, 2 cached"),
        "{end}"
    );
    assert!(end.contains("Image ID: sha256:5e6f7a8b"), "{end}");
}
