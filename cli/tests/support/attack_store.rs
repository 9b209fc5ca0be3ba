//! Helpers of the store and fault attacks (`attack_store.rs`, `attack_faults.rs`): a
//! store in a directory every account can reach (as `/var/lib/rbuild` is: the store's
//! own mode must stop them), victims outside the store, and the commands to run.
#![allow(dead_code)]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::require::require_root;
use super::run::{fixture, import, rbuild};

/// A temp dir of mode 0755 (so `nobody` can reach up to `store/`), holding a store with
/// busybox imported as `busybox:latest`, and a context `ctx/`.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub ctx: PathBuf,
}

impl Setup {
    pub fn new() -> Self {
        require_root("it uses namespaces, overlay mounts and fixture recipes");
        let dir = tempfile::tempdir().expect("creating a temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("opening the temp dir to other accounts");
        let root = dir.path().join("store");
        import(&root, &fixture("busybox"), "busybox:latest", &[]);
        let ctx = dir.path().join("ctx");
        std::fs::create_dir_all(&ctx).expect("creating the context");
        Self { dir, root, ctx }
    }

    /// Runs `rbuild ARGS` on this store as root.
    pub fn run(&self, args: &[&str]) -> Output {
        run_on(&self.root, args)
    }

    /// Builds `dockerfile` in the context as `tag`; Err with rbuild's output if it fails.
    pub fn build(&self, tag: &str, dockerfile: &str) -> Result<Output, String> {
        std::fs::write(self.ctx.join("Dockerfile"), dockerfile).map_err(|e| e.to_string())?;
        let ctx = self.ctx.to_string_lossy().into_owned();
        let out = self.run(&["build", "-q", "-t", tag, &ctx]);
        if out.status.success() {
            Ok(out)
        } else {
            Err(format!("build of {tag} failed: {}", text(&out)))
        }
    }

    /// A victim directory outside the store with files `a`, `b` and a subdirectory `d`.
    pub fn victim(&self, name: &str) -> PathBuf {
        let v = self.dir.path().join(name);
        std::fs::create_dir_all(v.join("d")).expect("creating a victim");
        std::fs::write(v.join("a"), "keep").expect("creating a victim");
        std::fs::write(v.join("b"), "keep").expect("creating a victim");
        std::fs::write(v.join("d/c"), "keep").expect("creating a victim");
        v
    }
}

/// `rbuild ARGS` on store `root`, as root.
pub fn run_on(root: &Path, args: &[&str]) -> Output {
    let mut cmd = rbuild(root);
    cmd.args(args);
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Holds when victim `v` (made by [`Setup::victim`]) is whole.
pub fn intact(v: &Path) -> Result<(), String> {
    for f in ["a", "b", "d/c"] {
        match std::fs::read_to_string(v.join(f)) {
            Ok(s) if s == "keep" => {}
            other => return Err(format!("victim {} damaged: {other:?}", v.join(f).display())),
        }
    }
    Ok(())
}

/// stdout and stderr of `out`, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "{} stdout: {} stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The permission bits of `path` (not following a link).
pub fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .map(|m| m.mode() & 0o7777)
        .unwrap_or(0)
}

/// Holds when `rbuild store verify` passes on `root`.
pub fn verifies(root: &Path) -> Result<(), String> {
    let out = run_on(root, &["store", "verify"]);
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("store verify failed: {}", text(&out)))
    }
}

/// `sh -c script` as a command (to wrap with `as_user`).
pub fn sh(script: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", script]);
    cmd
}

/// The uid of `user`.
pub fn uid_of(user: &str) -> u32 {
    let out = Command::new("id").args(["-u", user]).output().expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a numeric uid")
}

/// Mount points under `dir` in this mount namespace.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|t| *t == dir || t.starts_with(&format!("{dir}/")))
        .map(str::to_owned)
        .collect()
}
