//! Shared helpers of the CLI tests: base-image fixtures imported into a temporary store,
//! a build context, and the `rbuild` binary pointed at the store.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::require::require_root;

/// The workspace root (the parent of the cli crate).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the cli crate lives in the workspace")
        .to_path_buf()
}

/// Compiles the boundary probe (`builder-core/tests/support/probe/probe.c`, which speaks
/// the ssh agent protocol among other things) static with the host's gcc, to `dest`.
pub fn compile_probe(dest: &Path) {
    let source = workspace().join("builder-core/tests/support/probe/probe.c");
    let compiled = std::process::Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(dest)
        .arg(&source)
        .output()
        .expect("gcc is needed to compile the boundary probe (apt-get install gcc)");
    assert!(
        compiled.status.success(),
        "gcc -static failed: {}",
        String::from_utf8_lossy(&compiled.stderr)
    );
}

/// Runs skopeo with `args` (without DOCKER_CONFIG), failing the test with its error unless
/// it succeeds; returns its standard output.
pub fn skopeo(args: &[&str]) -> String {
    super::require::require_tool("skopeo", "skopeo");
    let out = std::process::Command::new("skopeo")
        .args(args)
        .env_remove("DOCKER_CONFIG")
        .output()
        .expect("running skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("skopeo prints text")
}

/// The path of base-image fixture `name` (`busybox` or `python3`), built by
/// `fixtures/base-images/make` when it is not cached yet.
pub fn fixture(name: &str) -> PathBuf {
    let script = workspace().join("fixtures/base-images/make");
    let output = Command::new(&script)
        .arg(name)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "{} {name} failed ({}): the fixture is missing and could not be built",
        script.display(),
        output.status
    );
    let stdout = String::from_utf8(output.stdout).expect("fixture paths are UTF-8");
    let path = PathBuf::from(stdout.lines().last().expect("the script prints a path"));
    assert!(path.is_file(), "fixture {} does not exist", path.display());
    path
}

/// `rbuild` with `--root`-less arguments, using `root` as its store (RBUILD_ROOT).
pub fn rbuild(root: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rbuild"));
    cmd.env("RBUILD_ROOT", root);
    cmd
}

/// Runs `cmd` and returns its output, with the command line in any panic.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Like [`output`], and fails unless the command succeeded.
pub fn success(cmd: &mut Command) -> Output {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}:\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Imports rootfs tarball `tar` into the store at `root` as `name`, with `changes`
/// (`rbuild import -c`) applied to its config.
pub fn import(root: &Path, tar: &Path, name: &str, changes: &[&str]) {
    let mut cmd = rbuild(root);
    cmd.arg("import");
    for change in changes {
        cmd.args(["-c", change]);
    }
    cmd.arg(tar).arg(name);
    success(&mut cmd);
}

/// A temporary directory holding a store (`store/`) with the busybox fixture imported as
/// `busybox:latest`, and a build context (`ctx/`) with `files` (relative path, content).
/// Returns the directory (removed when dropped), the store root and the context.
pub fn busybox_setup(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf, PathBuf) {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let root = dir.path().join("store");
    import(&root, &fixture("busybox"), "busybox:latest", &[]);
    let ctx = dir.path().join("ctx");
    for (path, content) in files {
        let path = ctx.join(path);
        std::fs::create_dir_all(path.parent().expect("a context file has a parent"))
            .expect("creating the context");
        std::fs::write(&path, content).expect("writing a context file");
    }
    std::fs::create_dir_all(&ctx).expect("creating the context");
    (dir, root, ctx)
}

/// Entries of the store's scratch directory: a finished run must leave none.
pub fn scratch_entries(root: &Path) -> Vec<String> {
    std::fs::read_dir(root.join("tmp"))
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Mount points (in rbuild's own mount namespace) under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<String> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("reading mountinfo");
    let dir = dir.to_string_lossy().into_owned();
    mounts
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|target| target.starts_with(&dir))
        .map(str::to_owned)
        .collect()
}

/// Process ids whose command line contains `needle`.
pub fn processes_with(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("reading /proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let line = String::from_utf8_lossy(&raw).replace('\0', " ");
        if line.contains(needle) {
            found.push((pid, line));
        }
    }
    found
}
