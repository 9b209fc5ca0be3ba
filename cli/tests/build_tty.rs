//! A real build with `--progress tty` in a tmux pane: captured while a step runs (spinner,
//! its last output lines) and at the end (every step's final line and the summary).
//! Needs root (builds) and tmux; without them the test fails saying so.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// How long to wait for the pane to show something: a guard against a hang, not a
/// timing requirement.
const PATIENCE: Duration = Duration::from_secs(120);

/// A tmux server of this test's own, killed when the test ends.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(command: &str) -> Tmux {
        let version = Command::new("tmux").arg("-V").output();
        assert!(
            version.as_ref().is_ok_and(|o| o.status.success()),
            "tmux is required to test the tty view of a build and could not be run: {version:?}"
        );
        let tmux = Tmux {
            socket: format!("rbuild-build-tty-{}", std::process::id()),
        };
        let status = tmux
            .command()
            .args(["new-session", "-d", "-s", "t", "-x", "100", "-y", "40"])
            .arg(command)
            .status()
            .expect("starting tmux");
        assert!(status.success(), "tmux new-session failed: {status}");
        tmux
    }

    fn command(&self) -> Command {
        let mut command = Command::new("tmux");
        command.args(["-L", &self.socket]);
        command
    }

    fn capture(&self) -> String {
        let output = self
            .command()
            .args(["capture-pane", "-p", "-t", "t"])
            .output()
            .expect("running tmux capture-pane");
        assert!(output.status.success(), "capture-pane failed: {output:?}");
        String::from_utf8(output.stdout).expect("the pane is UTF-8")
    }

    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.capture();
            if done(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "the pane never showed {what}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.command().arg("kill-server").status();
    }
}

#[test]
fn a_build_in_a_terminal_shows_its_running_step_and_ends_with_the_summary() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    assert!(
        unsafe { libc::geteuid() } == 0,
        "this test must run as root: builds mount overlays and run steps in namespaces"
    );
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
    let tmux = Tmux::start(&command);

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
