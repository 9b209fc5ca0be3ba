//! The attack suite's runner (`cli/tests/attack_*.rs`, issue 13): each attempt is an
//! attack on rbuild as an outside reviewer would try it, through the CLI. An attempt
//! prints what it tried and whether rbuild held; a test runs all of its attempts even
//! when one breaks, then fails naming every attempt that broke.
//!
//! An attempt returns `Ok(())` when rbuild held (refused the input with a clear error,
//! or did the safe thing) and `Err(why)` when the attack worked. A panic inside an
//! attempt counts as broken too, with the panic's message.
#![allow(dead_code)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The attempts of one area, run in order.
pub struct Attacks {
    area: &'static str,
    held: usize,
    broken: Vec<String>,
}

impl Attacks {
    /// A runner for attempts in `area` (sandbox, context, archives, registry, secrets,
    /// faults).
    pub fn new(area: &'static str) -> Self {
        Self {
            area,
            held: 0,
            broken: Vec::new(),
        }
    }

    /// Runs one attempt: `tried` says what it does, in a sentence.
    pub fn attempt(
        &mut self,
        name: &str,
        tried: &str,
        attack: impl FnOnce() -> Result<(), String>,
    ) {
        println!("attack {}/{name}: {tried}", self.area);
        let verdict = match catch_unwind(AssertUnwindSafe(attack)) {
            Ok(verdict) => verdict,
            Err(panic) => Err(panic_message(&*panic)),
        };
        match verdict {
            Ok(()) => {
                println!("  held");
                self.held += 1;
            }
            Err(why) => {
                println!("  BROKEN: {why}");
                self.broken.push(format!("{}/{name}: {why}", self.area));
            }
        }
    }

    /// Prints the tally and fails the test if any attempt broke.
    pub fn finish(self) {
        println!(
            "attack {}: {} attempts, {} held, {} broken",
            self.area,
            self.held + self.broken.len(),
            self.held,
            self.broken.len()
        );
        assert!(
            self.broken.is_empty(),
            "{} attack(s) broke rbuild:\n{}",
            self.broken.len(),
            self.broken.join("\n")
        );
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = panic.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}

/// Runs `cmd`, returning its output or a description of why it could not start.
pub fn run(cmd: &mut Command) -> Result<Output, String> {
    cmd.output().map_err(|e| format!("running {cmd:?}: {e}"))
}

/// Holds when `out` is a refusal: a non-zero exit, no panic (exit 101 or a "panicked"
/// line), and stderr containing `needle` (case-insensitive; empty accepts any message).
pub fn refused(out: &Output, needle: &str) -> Result<(), String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        return Err(format!(
            "accepted (exit 0), expected a refusal mentioning {needle:?}; stderr: {stderr}"
        ));
    }
    if out.status.code() == Some(101) || stderr.contains("panicked") {
        return Err(format!("panicked: {stderr}"));
    }
    if !stderr.to_lowercase().contains(&needle.to_lowercase()) {
        return Err(format!(
            "refused ({}) but stderr does not mention {needle:?}: {stderr}",
            out.status
        ));
    }
    Ok(())
}

/// Holds when `out` succeeded; otherwise says how it failed.
pub fn succeeded(out: &Output) -> Result<(), String> {
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "failed with {}: stdout: {} stderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Holds when `path` does not exist (a canary the attack tried to create).
pub fn absent(path: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Err(format!("{} was created", path.display())),
        Err(_) => Ok(()),
    }
}

/// `cmd`'s program and arguments run as the unprivileged `user` (with that user's primary
/// group and supplementary groups) through util-linux's `setpriv`; the environment and
/// working directory are kept, HOME is set to `/`.
pub fn as_user(user: &str, cmd: &Command) -> Command {
    let gid = Command::new("id")
        .args(["-g", user])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_else(|| {
            panic!("user {user} does not exist (scripts/test creates rbuild-rootless)")
        });
    let mut wrapped = Command::new("setpriv");
    wrapped.args([
        &format!("--reuid={user}"),
        &format!("--regid={gid}"),
        "--init-groups",
        "--",
    ]);
    wrapped.arg(cmd.get_program()).args(cmd.get_args());
    wrapped.env("HOME", "/");
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped
}

/// Runs `cmd`, killing it when it has not finished within `limit`: a hang is a break,
/// reported as `rbuild still ran after LIMIT: WHAT`.
pub fn run_bounded(mut cmd: Command, limit: Duration, what: &str) -> Result<Output, String> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawning {cmd:?}: {e}"))?;
    let start = Instant::now();
    loop {
        if child.try_wait().map_err(|e| e.to_string())?.is_some() {
            return child.wait_with_output().map_err(|e| e.to_string());
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("rbuild still ran after {limit:?}: {what}"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Regular files under `dir` (links not followed) whose bytes contain `needle`.
pub fn files_holding(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file()
                && std::fs::read(&path)
                    .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
            {
                found.push(path);
            }
        }
    }
    found
}
