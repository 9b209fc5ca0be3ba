//! A real build with `--progress tty` in a tmux pane: captured while a step runs (spinner,
//! its last output lines) and at the end (every step's final line and the summary).
//! Needs root (builds) and tmux; without them the test fails saying so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// How long to wait for the pane to show something: a guard against a hang, not a
/// timing requirement.
const PATIENCE: Duration = Duration::from_secs(120);

mod support;

use support::require::require_root;
use support::tmux::Tmux;

#[test]
fn a_build_in_a_terminal_shows_its_running_step_and_ends_with_the_summary() {
    require_root("builds mount overlays and run steps in namespaces");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/base-images/make");
    let made = Command::new(&script).arg("busybox").output().unwrap();
    assert!(made.status.success(), "{made:?}");
    let tar = String::from_utf8(made.stdout).unwrap().trim().to_owned();
    let rbuild = env!("CARGO_BIN_EXE_rbuild");
    let import = Command::new(rbuild)
        .args(["import", "--root"])
        .arg(&root)
        .args([&tar, "busybox:latest"])
        .output()
        .unwrap();
    assert!(import.status.success(), "{import:?}");
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    // The step holds until the test lets it go: it polls a local port (the step shares
    // the host's network) that the test opens once it has seen the running view.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    std::fs::write(
        ctx.join("Dockerfile"),
        format!(
            "FROM busybox\nRUN echo first line && echo second line && until nc 127.0.0.1 {port} </dev/null 2>/dev/null; do sleep 0.1; done\nCOPY Dockerfile /Dockerfile\n"
        ),
    )
    .unwrap();
    let command = format!(
        "{rbuild} build --root {} --progress tty -t tty-test {}; echo EXIT=$?; sleep 600",
        root.display(),
        ctx.display()
    );
    let tmux = Tmux::start("the tty view of a build", &command, 100, 40, PATIENCE);

    let mid = tmux.wait_for("the RUN step running with its output", |screen| {
        screen.contains("[+] Building")
            && screen.contains("│ second line")
            && screen.contains("[2/3] RUN echo first line")
    });
    assert!(mid.contains(" ✔ #1 [1/3] FROM busybox"), "{mid}");
    assert!(mid.contains("CACHED"), "{mid}");

    // Let the step finish: accept on the port it polls and close each connection at
    // once (nc returns when the other end closes).
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        for connection in listener.incoming() {
            drop(connection);
        }
    });
    let end = tmux.wait_for("the end of the build", |screen| screen.contains("EXIT="));
    assert!(end.contains("EXIT=0"), "{end}");
    assert!(
        !end.contains("[+] Building"),
        "the live area stayed:\n{end}"
    );
    assert!(end.contains(" ✔ #2 [2/3] RUN echo first line"), "{end}");
    assert!(
        end.contains(" ✔ #3 [3/3] COPY Dockerfile /Dockerfile"),
        "{end}"
    );
    assert!(end.contains("Build finished in "), "{end}");
    assert!(end.contains("Image ID: sha256:"), "{end}");
    assert!(
        end.contains("Names: docker.io/library/tty-test:latest"),
        "{end}"
    );
    assert!(end.contains("Slowest steps:"), "{end}");
}
