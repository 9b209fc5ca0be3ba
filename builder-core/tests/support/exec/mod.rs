//! Shared helpers of the exec and snapshot tests: a busybox base rootfs, layer stacks,
//! and a one-call "run a step and diff it".
#![allow(dead_code, clippy::unwrap_used)]

pub mod matrix;

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use rbuild_core::{
    change::{ChangeKind, ChangeSet},
    exec::{Command, Executor, ExitStatus, RunSpec},
    progress::Stream,
    snapshot::Snapshotter,
};

pub const BUSYBOX: &str = "/bin/busybox";

/// Files copied from the host so that xattr and capability steps can run.
const HOST_FILES: [&str; 6] = [
    "/usr/bin/setfattr",
    "/usr/sbin/setcap",
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/lib/x86_64-linux-gnu/libcap.so.2",
    "/lib64/ld-linux-x86-64.so.2",
    "/usr/bin/getfattr",
];

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// A minimal rootfs: busybox with its applets, passwd/group, and a /data tree for the
/// change matrix. No /proc, /dev, /sys or /etc/hosts: the sandbox must add and remove them.
pub fn busybox_rootfs(dir: &Path) {
    assert!(
        Path::new(BUSYBOX).is_file(),
        "{BUSYBOX} is missing: install the busybox-static package"
    );
    fs::create_dir_all(dir.join("bin")).unwrap();
    fs::copy(BUSYBOX, dir.join("bin/busybox")).unwrap();
    let list = Process::new(BUSYBOX).arg("--list").output().unwrap();
    for applet in String::from_utf8(list.stdout).unwrap().lines() {
        if applet != "busybox" {
            let link = dir.join("bin").join(applet);
            if !link.exists() {
                symlink("busybox", link).unwrap();
            }
        }
    }
    for file in HOST_FILES {
        assert!(
            Path::new(file).exists(),
            "{file} is missing on the host (attr, libcap2-bin)"
        );
        let dst = dir.join(file.trim_start_matches('/'));
        fs::create_dir_all(dst.parent().unwrap()).unwrap();
        fs::copy(file, &dst).unwrap();
    }
    write(
        &dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nbuilder:x:1000:1000::/home/builder:/bin/sh\n",
    );
    write(
        &dir.join("etc/group"),
        "root:x:0:\nbuilder:x:1000:\naudio:x:29:builder\n",
    );
    fs::create_dir_all(dir.join("tmp")).unwrap();
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::create_dir_all(dir.join("root")).unwrap();
    write(&dir.join("data/file"), "one\n");
    write(&dir.join("data/gone"), "to be whited out by layer 1\n");
    write(&dir.join("data/dir/a"), "a\n");
    write(&dir.join("data/dir/sub/b"), "b\n");
    // Fixed times, so that a directory's time only moves when a step touches it.
    let status = Process::new("touch")
        .args(["-h", "-d", "2020-01-01T00:00:00Z"])
        .args(walk(dir))
        .status()
        .unwrap();
    assert!(status.success());
}

/// A second layer over [`busybox_rootfs`]: adds /data/top, deletes /data/gone.
pub fn upper_layer(dir: &Path) {
    write(&dir.join("data/top"), "top\n");
    let gone = dir.join("data/gone");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &gone,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::empty(),
        0,
    )
    .unwrap();
    let status = Process::new("touch")
        .args(["-h", "-d", "2021-01-01T00:00:00Z"])
        .args(walk(dir))
        .status()
        .unwrap();
    assert!(status.success());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for entry in walkdir::WalkDir::new(dir).min_depth(1) {
        let entry = entry.unwrap();
        if !entry.file_type().is_char_device_like() {
            out.push(entry.path().to_path_buf());
        }
    }
    out
}

trait CharDev {
    fn is_char_device_like(&self) -> bool;
}

impl CharDev for fs::FileType {
    fn is_char_device_like(&self) -> bool {
        use std::os::unix::fs::FileTypeExt;
        self.is_char_device()
    }
}

/// A base stack: busybox (layer 0) and [`upper_layer`] (layer 1), lowest first.
pub struct Base {
    pub dir: tempfile::TempDir,
    pub lowers: Vec<PathBuf>,
}

pub fn base() -> Base {
    let dir = tempfile::tempdir().unwrap();
    let l0 = dir.path().join("l0");
    let l1 = dir.path().join("l1");
    busybox_rootfs(&l0);
    upper_layer(&l1);
    Base {
        lowers: vec![l0, l1],
        dir,
    }
}

/// What a step printed and how it ended.
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub changes: ChangeSet,
}

pub fn shell(line: &str) -> RunSpec {
    RunSpec::new(Command::Shell(line.to_owned()))
}

/// Prepares a snapshot over `lowers`, runs `spec`, diffs.
pub fn run_step(
    snapshotter: &dyn Snapshotter,
    executor: &dyn Executor,
    lowers: &[PathBuf],
    spec: &RunSpec,
) -> Outcome {
    let scratch = tempfile::tempdir().unwrap();
    let snapshot = snapshotter.prepare(lowers, scratch.path()).unwrap();
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let status = executor
        .run(
            &snapshot,
            spec,
            &mut |stream: Stream, bytes: &[u8]| match stream {
                Stream::Stdout => stdout.extend_from_slice(bytes),
                Stream::Stderr => stderr.extend_from_slice(bytes),
            },
        )
        .unwrap();
    let changes = snapshotter.diff(&snapshot).unwrap();
    Outcome {
        status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        changes,
    }
}

/// A change set as sorted lines: `A path`, `M path`, `D path`, `O dir` (opaque).
pub fn render(set: &ChangeSet) -> String {
    let mut out = String::new();
    for change in set.iter() {
        let tag = match change.kind {
            ChangeKind::Added => 'A',
            ChangeKind::Modified => 'M',
            ChangeKind::Deleted => 'D',
        };
        writeln!(out, "{tag} {}", change.path.display()).unwrap();
    }
    for dir in set.opaque_dirs() {
        writeln!(out, "O {}", dir.display()).unwrap();
    }
    out
}

/// Mount points listed in this process's mountinfo that a test's steps could leave: those
/// under the temporary directory, where every snapshot and scratch directory of these
/// tests is made. Mounts elsewhere are other work's on this machine (a container
/// runtime's, a daemon's) and change while the tests run.
pub fn host_mounts() -> Vec<String> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let tmp = std::env::temp_dir();
    let tmp = fs::canonicalize(&tmp).unwrap_or(tmp);
    let mut mounts: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|point| std::path::Path::new(point).starts_with(&tmp))
        .collect();
    mounts.sort();
    mounts
}

/// Pids of processes whose command line contains `marker`.
pub fn processes_with(marker: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmdline) = fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(marker) && pid != std::process::id() {
                out.push(pid);
            }
        }
    }
    out
}
