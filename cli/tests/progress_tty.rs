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

mod support;
use support::tmux::Tmux;

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

/// A recorded build of four parallel steps whose names and output lines are longer than
/// the widest pane, with wide (CJK) characters, then four cached steps; 7 s of events.
fn wide_parallel_events(dir: &Path) -> std::path::PathBuf {
    use serde_json::json;
    let at = |ms: u64| format!("2026-11-23T15:00:{:02}.{:03}Z", ms / 1000, ms % 1000);
    let long = format!("/very/long/path/{}", "segment-".repeat(30));
    let mut events: Vec<(u64, serde_json::Value)> = vec![
        (
            0,
            json!({"type": "build_started", "build_id": "b-wide", "stages": 4, "steps": 9}),
        ),
        (
            5,
            json!({"type": "step_started", "step": 1, "name": "[internal] load build definition from Dockerfile"}),
        ),
        (
            20,
            json!({"type": "step_finished", "step": 1, "duration_ms": 15, "output": {"kind": "empty_layer"}}),
        ),
    ];
    for i in 2..6u64 {
        let name = format!(
            "[stage-{i} 2/3] RUN ./configure --prefix=/opt/stage{i} && make -j8 && make install DESTDIR={long} # 日本語のコメント {i}"
        );
        events.push((
            30 + i,
            json!({"type": "step_started", "step": i, "name": name}),
        ));
        for k in 0..60u64 {
            let text = format!(
                "step {i} line {k}: {}",
                format!("compiling 漢字 src/module_{k}.c -O2 -Wall ").repeat(8)
            );
            events.push((
                100 + k * 100 + i * 7,
                json!({"type": "step_log", "step": i, "stream": "stdout", "text": text}),
            ));
        }
        events.push((6200 + i * 50, json!({"type": "step_finished", "step": i, "duration_ms": 6000, "output": {"kind": "layer", "digest": format!("sha256:{}", "ab".repeat(32)), "size": 100}})));
    }
    for i in 6..10u64 {
        let name = format!(
            "[final {}/4] COPY --from=stage-{i} /opt/stage{i} {long}",
            i - 5
        );
        events.push((
            6500 + i * 10,
            json!({"type": "step_started", "step": i, "name": name}),
        ));
        events.push((6600 + i * 10, json!({"type": "step_cached", "step": i, "cache_key": format!("sha256:{}", "4c".repeat(32)), "output": {"kind": "empty_layer"}})));
    }
    events.push((7000, json!({"type": "build_finished", "image_id": format!("sha256:{}", "5e6f7a8b".repeat(8)), "names": ["docker.io/library/wide:latest"], "duration_ms": 7000})));
    events.sort_by_key(|(ms, _)| *ms);
    let mut text = String::new();
    for (ms, mut event) in events {
        event["time"] = json!(at(ms));
        text.push_str(&event.to_string());
        text.push('\n');
    }
    let path = dir.join("wide-parallel.jsonl");
    std::fs::write(&path, text).expect("writing the events");
    path
}

/// The pane's processes (its shell and the renderer), stopped (SIGSTOP) until dropped,
/// once tmux has drawn everything they wrote (a hang here ends with the test's own
/// timeout).
struct Paused(String);

impl Paused {
    fn stop(tmux: &Tmux) -> Paused {
        let group = format!("-{}", tmux.pane_pid());
        signal("-STOP", &group);
        let paused = Paused(group);
        // What they wrote before stopping reaches the pane: it stops changing.
        let mut last = tmux.capture();
        loop {
            std::thread::sleep(Duration::from_millis(100));
            let now = tmux.capture();
            if now == last {
                return paused;
            }
            last = now;
        }
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        signal("-CONT", &self.0);
    }
}

fn signal(which: &str, group: &str) {
    let status = std::process::Command::new("kill")
        .args([which, "--", group])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill {which} -- {group}: {status}");
}

/// issue 15 #10: the live view once left a stale `[+] Building` line at 100 columns. At
/// 80, 100 and 200 columns, and with the window widened and narrowed while four steps
/// with long names and long output lines run, the end screen holds nothing of the live
/// area and the summary once, and the whole pane (scroll-back too) each step's final
/// line once. Without a resize, or after widening, the scroll-back holds no live area
/// either; after narrowing, tmux reflows the rows above the cursor and pushes what no
/// longer fits into its scroll-back, where no program can reach it to erase it.
#[test]
fn the_live_view_leaves_nothing_behind_at_any_width_or_after_a_resize() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let events = wide_parallel_events(dir.path());
    for (start, after) in [
        (80, 80),
        (100, 100),
        (200, 200),
        (80, 200),
        (100, 80),
        (200, 160),
    ] {
        let command = format!(
            "{} debug progress-replay --progress tty --speed 2 {}; sleep 600",
            env!("CARGO_BIN_EXE_rbuild"),
            events.display()
        );
        let tmux = Tmux::start("the tty renderer resized", &command, start, 50, PATIENCE);
        let case = format!("{start} -> {after} columns");
        tmux.wait_for("the steps running with output", |screen| {
            screen.contains("[+] Building") && screen.contains("│ step 5")
        });
        if after != start {
            // The renderer is stopped while the window changes: a resize that lands
            // between its reading the width and tmux drawing the frame is a race no
            // program that moves the cursor can win (see cli/src/progress/live_term.rs);
            // what this checks is every frame drawn after it.
            let drawer = Paused::stop(&tmux);
            tmux.resize(after, 50);
            tmux.wait_for("the pane at its new width", |screen| {
                screen
                    .lines()
                    .all(|line| console::measure_text_width(line) <= after)
            });
            drop(drawer);
        }
        let end = tmux.wait_for("the summary", |screen| screen.contains("Slowest steps:"));
        assert!(
            !end.contains("[+] Building"),
            "{case}: a stale header:\n{end}"
        );
        assert!(
            !end.contains("│ "),
            "{case}: output lines left behind:\n{end}"
        );
        for line in end.lines() {
            let width = console::measure_text_width(line);
            assert!(
                width <= after,
                "{case}: a line wider than the pane ({width}):\n{line}"
            );
        }
        let all = tmux.capture_history();
        assert_eq!(
            all.matches("Build finished in 7.0s: 9 steps, 4 cached")
                .count(),
            1,
            "{case}: one summary:\n{all}"
        );
        for step in 1..=9 {
            assert_eq!(
                all.matches(&format!(" ✔ #{step} ")).count(),
                1,
                "{case}: #{step} has one final line:\n{all}"
            );
        }
        if after >= start {
            assert!(
                !all.contains("[+] Building"),
                "{case}: a stale header:\n{all}"
            );
            assert!(
                !all.contains("│ "),
                "{case}: output lines left behind:\n{all}"
            );
        }
    }
}
