//! A tmux server of a test's own, for checking what rbuild draws in a real terminal.
//! Shared by the tty tests; tmux missing is a test failure saying so.

use std::process::Command;
use std::time::{Duration, Instant};

/// Numbers the servers of this test process.
static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A tmux server with one pane running a command, killed when dropped.
pub struct Tmux {
    socket: String,
    patience: Duration,
}

impl Tmux {
    /// Starts `command` in a detached `width` x `height` pane. `what` names what needs
    /// tmux, for the failure message; `patience` bounds every wait (a guard against a
    /// hang, not a timing requirement).
    pub fn start(
        what: &str,
        command: &str,
        width: usize,
        height: usize,
        patience: Duration,
    ) -> Tmux {
        let version = Command::new("tmux").arg("-V").output();
        assert!(
            version.as_ref().is_ok_and(|o| o.status.success()),
            "tmux is required to test {what} and could not be run: {version:?}"
        );
        let tmux = Tmux {
            // One server per start, so a test that starts several never reuses the
            // socket of one still shutting down.
            socket: format!(
                "rbuild-test-{}-{}-{}",
                std::process::id(),
                what.len(),
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ),
            patience,
        };
        let status = tmux
            .command()
            .args(["new-session", "-d", "-s", "t", "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
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

    /// The pane's visible text.
    pub fn capture(&self) -> String {
        let output = self
            .command()
            .args(["capture-pane", "-p", "-t", "t"])
            .output()
            .expect("running tmux capture-pane");
        assert!(output.status.success(), "capture-pane failed: {output:?}");
        String::from_utf8(output.stdout).expect("the pane is UTF-8")
    }

    /// The pane's text with everything that scrolled off above it. Not every test that
    /// shares this module needs the history.
    #[allow(dead_code)]
    pub fn capture_history(&self) -> String {
        let output = self
            .command()
            .args(["capture-pane", "-p", "-S", "-", "-t", "t"])
            .output()
            .expect("running tmux capture-pane");
        assert!(output.status.success(), "capture-pane failed: {output:?}");
        String::from_utf8(output.stdout).expect("the pane is UTF-8")
    }

    /// Types `text` into the pane, then Enter. Not every test that shares this module
    /// types.
    #[allow(dead_code)]
    pub fn type_line(&self, text: &str) {
        let status = self
            .command()
            .args(["send-keys", "-t", "t", "-l", text])
            .status()
            .expect("running tmux send-keys");
        assert!(status.success(), "send-keys failed: {status}");
        let status = self
            .command()
            .args(["send-keys", "-t", "t", "Enter"])
            .status()
            .expect("running tmux send-keys");
        assert!(status.success(), "send-keys Enter failed: {status}");
    }

    /// Pastes `text` into the pane at once (tmux's paste buffer), as a terminal pastes
    /// a clipboard. Not every test that shares this module pastes.
    #[allow(dead_code)]
    pub fn paste(&self, text: &str) {
        use std::io::Write as _;
        let mut load = self
            .command()
            .args(["load-buffer", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("running tmux load-buffer");
        load.stdin
            .take()
            .expect("load-buffer's input")
            .write_all(text.as_bytes())
            .expect("writing the paste buffer");
        let status = load.wait().expect("waiting for tmux load-buffer");
        assert!(status.success(), "load-buffer failed: {status}");
        let status = self
            .command()
            .args(["paste-buffer", "-t", "t"])
            .status()
            .expect("running tmux paste-buffer");
        assert!(status.success(), "paste-buffer failed: {status}");
    }

    /// Resizes the window (and its one pane) to `width` x `height`. Not every test that
    /// shares this module resizes.
    #[allow(dead_code)]
    pub fn resize(&self, width: usize, height: usize) {
        let status = self
            .command()
            .args(["resize-window", "-t", "t", "-x"])
            .arg(width.to_string())
            .arg("-y")
            .arg(height.to_string())
            .status()
            .expect("running tmux resize-window");
        assert!(status.success(), "resize-window failed: {status}");
    }

    /// The process id of the pane's command, which leads the pane's process group. Not
    /// every test that shares this module needs it.
    #[allow(dead_code)]
    pub fn pane_pid(&self) -> u32 {
        let output = self
            .command()
            .args(["display-message", "-p", "-t", "t", "#{pane_pid}"])
            .output()
            .expect("running tmux display-message");
        assert!(
            output.status.success(),
            "display-message failed: {output:?}"
        );
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("tmux prints the pane's pid")
    }

    /// Captures the pane until `done` accepts a capture, which it returns.
    pub fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let screen = self.capture();
            if done(&screen) {
                return screen;
            }
            assert!(
                start.elapsed() < self.patience,
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
