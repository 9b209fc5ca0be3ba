//! What the reliability tests share: running the rbuild binary on a store with busybox
//! imported, and the checks made after a fault (blobs intact, `store verify`, no mounts
//! or processes left, scratch reclaimed).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use rbuild_core::Digest;

/// The workspace root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the cli crate sits in the workspace")
        .to_path_buf()
}

/// `rbuild ARGS` on store `root`, waited for.
pub fn rbuild(root: &Path, args: &[&str]) -> Output {
    command(root, args)
        .stdin(Stdio::null())
        .output()
        .expect("running the rbuild binary")
}

/// `rbuild ARGS` on store `root`, not started yet; stdout and stderr piped.
pub fn command(root: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rbuild"));
    cmd.args(args)
        .env("RBUILD_ROOT", root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// `rbuild ARGS` started in the background.
pub fn spawn(root: &Path, args: &[&str]) -> Child {
    command(root, args)
        .spawn()
        .expect("running the rbuild binary")
}

/// A process's stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A process's stdout as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The busybox rootfs tarball of `fixtures/base-images/make`.
pub fn busybox_tar() -> String {
    super::run::fixture("busybox")
        .into_os_string()
        .into_string()
        .expect("fixture paths are UTF-8")
}

/// Imports busybox into store `root` as `busybox:latest`.
pub fn import_busybox(root: &Path) {
    let out = rbuild(root, &["import", &busybox_tar(), "busybox:latest"]);
    assert!(out.status.success(), "import failed: {}", stderr(&out));
}

/// `count` bytes that do not compress, the same on every run (xorshift64).
pub fn noise(seed: u64, count: usize) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(count + 8);
    while out.len() < count {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(count);
    out
}

/// A deterministic pseudo-random sequence (a 64-bit LCG, Knuth's MMIX constants).
pub struct Lcg(pub u64);

impl Lcg {
    /// The next number in `0..bound`.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound.max(1)
    }
}

/// Every blob under `blobs/sha256` whose content does not hash to its name.
pub fn corrupt_blobs(root: &Path) -> Vec<String> {
    let dir = root.join("blobs/sha256");
    let mut bad = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        std::fs::File::open(entry.path())
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        if Digest::of(&bytes).hex() != name {
            bad.push(name);
        }
    }
    bad
}

/// `rbuild store verify` on `root`; panics with its output unless it passes.
pub fn assert_verifies(root: &Path, when: &str) {
    let out = rbuild(root, &["store", "verify"]);
    assert!(
        out.status.success(),
        "store verify failed {when}: {}{}",
        stdout(&out),
        stderr(&out)
    );
}

/// The lines of this process's mountinfo that mention `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(dir.as_ref()))
        .map(str::to_owned)
        .collect()
}

/// Scratch entries in the store: `tmp/*`, `layers/.unpack-*`, `cache/.entry-*`.
pub fn scratch_entries(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (dir, prefix) in [("tmp", ""), ("layers", ".unpack-"), ("cache", ".entry-")] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().starts_with(prefix) {
                    out.push(entry.path());
                }
            }
        }
    }
    out
}

/// Every process of the system: pid to (parent pid, state letter).
pub fn processes() -> HashMap<i32, (i32, char)> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "pid (comm) S ppid ...": comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        out.insert(pid, (ppid, state));
    }
    out
}

/// The live (not zombie) descendants of `pid`.
pub fn descendants(pid: i32) -> Vec<i32> {
    let procs = processes();
    let mut out = Vec::new();
    let mut todo = vec![pid];
    while let Some(parent) = todo.pop() {
        for (&child, &(ppid, state)) in &procs {
            if ppid == parent && state != 'Z' {
                out.push(child);
                todo.push(child);
            }
        }
    }
    out
}

/// Makes this process the reaper of its orphaned descendants, so that a step process
/// outliving a killed rbuild shows up as our child.
pub fn become_subreaper() {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory.
    let r = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(r, 0, "prctl(PR_SET_CHILD_SUBREAPER) failed");
}

/// Reaps exited orphans, then waits up to `limit` for `pids` (and any live child of
/// this process) to be gone; returns those still alive at the end.
pub fn wait_gone(pids: &[i32], limit: Duration) -> Vec<i32> {
    let me = std::process::id() as i32;
    let deadline = Instant::now() + limit;
    loop {
        // SAFETY: waitpid with WNOHANG and a null status pointer only reaps zombies.
        while unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) } > 0 {}
        let procs = processes();
        let alive: Vec<i32> = procs
            .iter()
            .filter(|(pid, (ppid, state))| *state != 'Z' && (pids.contains(pid) || *ppid == me))
            .map(|(pid, _)| *pid)
            .collect();
        if alive.is_empty() || Instant::now() > deadline {
            return alive;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
