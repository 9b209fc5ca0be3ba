//! `rbuild run -it` in a real terminal (a tmux pane): the command gets a terminal of its
//! own with the pane's size, a shell shows its prompt and takes typed lines, a resize
//! reaches it, its exit code is rbuild's, and the pane's terminal is as it was after.
//! Needs root (containers) and tmux; without them the test fails saying so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

mod support;
use support::require::require_root;
use support::run::{fixture, import};
use support::tmux::Tmux;

/// How long to wait for the pane to show something: a guard against a hang, not a
/// timing requirement.
const PATIENCE: Duration = Duration::from_secs(60);

#[test]
fn run_it_gives_a_shell_its_own_terminal_and_gives_the_callers_back() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    let dir = tempfile::tempdir().unwrap();
    import(
        dir.path(),
        &fixture("busybox"),
        "shell",
        &["ENV PS1=PROMPT>"],
    );
    let rbuild = env!("CARGO_BIN_EXE_rbuild");
    // The pane's shell runs rbuild, then shows its exit code and its terminal's mode,
    // which raw mode must not outlive.
    let command = format!(
        "stty -a | grep -o ' icanon\\| echo ' | tr -d ' \\n'; echo ' BEFORE'; \
         {rbuild} --root {} run -it shell sh; echo EXIT=$?; \
         stty -a | grep -o ' icanon\\| echo ' | tr -d ' \\n'; echo ' AFTER'; sleep 600",
        dir.path().display()
    );
    let tmux = Tmux::start("rbuild run -it", &command, 100, 30, PATIENCE);
    let before = tmux.wait_for("the terminal's mode before", |s| s.contains(" BEFORE"));
    let mode = before
        .lines()
        .find(|l| l.ends_with(" BEFORE"))
        .unwrap()
        .to_owned();
    tmux.wait_for("the shell's prompt", |s| s.contains("PROMPT>"));

    tmux.type_line("tty");
    tmux.wait_for("tty's answer", |s| s.contains("/dev/pts/0"));
    tmux.type_line("stty size");
    tmux.wait_for("the pane's size (30 rows, 100 columns)", |s| {
        s.contains("30 100")
    });
    tmux.resize(120, 40);
    tmux.type_line("stty size");
    tmux.wait_for("the new size after a resize (SIGWINCH)", |s| {
        s.contains("40 120")
    });
    tmux.type_line("exit 3");
    let end = tmux.wait_for("rbuild's end", |s| s.contains(" AFTER"));
    assert!(end.contains("EXIT=3"), "{end}");
    let after = end.lines().find(|l| l.ends_with(" AFTER")).unwrap();
    assert_eq!(
        after.trim_end_matches(" AFTER"),
        mode.trim_end_matches(" BEFORE"),
        "the terminal's mode changed:\n{end}"
    );
}

/// A paste far bigger than a terminal holds, into a command that never reads it: rbuild
/// still ends when the command does (input that cannot be delivered is dropped, not
/// waited for), with its exit code, and gives the terminal back as it was.
#[test]
fn run_it_ends_with_its_command_when_a_huge_paste_is_never_read() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    let dir = tempfile::tempdir().unwrap();
    import(dir.path(), &fixture("busybox"), "sleeper", &[]);
    let rbuild = env!("CARGO_BIN_EXE_rbuild");
    let command = format!(
        "stty -a | grep -o ' icanon\\| echo ' | tr -d ' \\n'; echo ' BEFORE'; \
         {rbuild} --root {} run -it sleeper sh -c 'echo STARTED; sleep 3; exit 4'; code=$?; \
         echo; echo EXIT=$code; \
         stty -a | grep -o ' icanon\\| echo ' | tr -d ' \\n'; echo ' AFTER'; sleep 600",
        dir.path().display()
    );
    let tmux = Tmux::start(
        "rbuild run -it with a huge paste",
        &command,
        100,
        30,
        PATIENCE,
    );
    let before = tmux.wait_for("the terminal's mode before", |s| s.contains(" BEFORE"));
    let mode = before
        .lines()
        .find(|l| l.ends_with(" BEFORE"))
        .unwrap()
        .to_owned();
    tmux.wait_for("the command's start", |s| s.contains("STARTED"));
    // 300 kB of lines: more than the container's terminal and the kernel's buffers take.
    let line = format!("{}\n", "a".repeat(99));
    tmux.paste(&line.repeat(3000));
    let end = tmux.wait_for("rbuild's end after the command's", |s| s.contains(" AFTER"));
    assert!(end.lines().any(|l| l == "EXIT=4"), "{end}");
    let after = end.lines().find(|l| l.ends_with(" AFTER")).unwrap();
    assert_eq!(
        after.trim_end_matches(" AFTER"),
        mode.trim_end_matches(" BEFORE"),
        "the terminal's mode changed:\n{end}"
    );
}

/// `rbuild run -it ... | head -n 2`: the reader of rbuild's output goes away while the
/// command still writes. rbuild ends as a program on a broken pipe does (SIGPIPE, 141),
/// stops the container, and gives the terminal back as it was, not left in raw mode.
#[test]
fn run_it_into_a_pipe_that_closes_gives_the_terminal_back() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    let dir = tempfile::tempdir().unwrap();
    import(dir.path(), &fixture("busybox"), "talker", &[]);
    let rbuild = env!("CARGO_BIN_EXE_rbuild");
    let command = format!(
        "stty -a | grep -o ' icanon\\| echo ' | tr -d ' \\n'; echo ' BEFORE'; \
         {rbuild} --root {} run -it talker sh -c 'while true; do echo line; sleep 0.1; done' \
         | head -n 2; code=$?; echo; echo \"EXIT=$code\"; \
         stty -a | grep -o ' icanon\\| echo ' | tr -d ' \\n'; echo ' AFTER'; sleep 600",
        dir.path().display()
    );
    // pipefail: the pipeline's status is rbuild's.
    let command = format!("bash -o pipefail -c {}", shell_quote(&command));
    let tmux = Tmux::start(
        "rbuild run -it into a closed pipe",
        &command,
        100,
        30,
        PATIENCE,
    );
    let before = tmux.wait_for("the terminal's mode before", |s| s.contains(" BEFORE"));
    let mode = before
        .lines()
        .find(|l| l.ends_with(" BEFORE"))
        .unwrap()
        .to_owned();
    let end = tmux.wait_for("rbuild's end", |s| s.contains(" AFTER"));
    assert!(end.lines().any(|l| l == "EXIT=141"), "{end}");
    let after = end.lines().find(|l| l.ends_with(" AFTER")).unwrap();
    assert_eq!(
        after.trim_end_matches(" AFTER"),
        mode.trim_end_matches(" BEFORE"),
        "the terminal was left in raw mode:\n{end}"
    );
}

/// `text` as one single-quoted shell word.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}
