//! A test's scratch space for running the rbuild binary: an empty rbuild config and an
//! empty docker config (so that neither the host's mirrors nor its credentials play a
//! part), store roots and contexts.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::require::require_root;
use super::run::fixture;

/// See the module documentation.
pub struct Scratch {
    dir: tempfile::TempDir,
    /// The rbuild config file (`RBUILD_CONFIG`), empty until a test writes it.
    pub config: PathBuf,
}

impl Scratch {
    /// A fresh scratch space; the test needs root for `why`.
    pub fn new(why: &str) -> Self {
        require_root(why);
        let dir = tempfile::tempdir().expect("a temporary directory");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, "").expect("writing the empty config");
        std::fs::create_dir_all(dir.path().join("docker")).expect("making the docker config");
        Self { dir, config }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The rbuild binary with `args` on the store at `root`, with this space's configs.
    pub fn command(&self, root: &Path, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rbuild"));
        command
            .args(args)
            .env("RBUILD_ROOT", root)
            .env("RBUILD_CONFIG", &self.config)
            .env("DOCKER_CONFIG", self.path("docker"))
            .stdin(Stdio::null());
        command
    }

    pub fn rbuild(&self, root: &Path, args: &[&str]) -> Output {
        self.command(root, args)
            .output()
            .expect("running the rbuild binary")
    }

    /// Runs rbuild and fails the test unless it succeeds; returns its stdout and stderr.
    pub fn ok(&self, root: &Path, args: &[&str]) -> (String, String) {
        let out = self.rbuild(root, args);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(
            out.status.success(),
            "rbuild {args:?} failed ({}): {stderr}",
            out.status
        );
        (stdout, stderr)
    }

    /// A store root with the busybox fixture imported as `busybox:latest`.
    pub fn store_with_busybox(&self, name: &str) -> PathBuf {
        let tar = fixture("busybox");
        let tar = tar.to_str().expect("fixture paths are UTF-8");
        let root = self.path(name);
        self.ok(&root, &["import", tar, "busybox:latest"]);
        root
    }

    /// A context directory holding `dockerfile` as its Dockerfile.
    pub fn context(&self, name: &str, dockerfile: &str) -> String {
        let ctx = self.path(name);
        std::fs::create_dir_all(&ctx).expect("making the context");
        std::fs::write(ctx.join("Dockerfile"), dockerfile).expect("writing the Dockerfile");
        ctx.to_str().expect("scratch paths are UTF-8").to_owned()
    }
}
