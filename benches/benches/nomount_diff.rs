//! Issue 16's targets for change detection without mounts, measured beside overlayfs in
//! the same run:
//! - `one-file change, 100k files`: a step rewrites one existing file of a base of
//!   1,000 directories of 100 files; the time of `diff` alone (target: copy < 0.5 s);
//! - `no change, Debian root`: a step changes nothing on the python3 fixture (a
//!   debootstrapped Debian root, ~195 MB); the time of `diff` alone, the second of two
//!   runs in a row being the warm figure (target: copy < 1 s).
//!
//! Both snapshotters go through the public API and the built-in sandbox, as a build step
//! does (the overlay is mounted inside the step's namespace, so it needs the privilege a
//! build with `--snapshotter overlay` needs). Each diff is timed `RUNS` times (default 5)
//! and every run is printed with its CPU time (user + system of all threads, 10 ms
//! resolution) and the load average read just before it.
//!
//! Run with `cargo bench -p rbuild-benches --bench nomount_diff`. The trees live under
//! `NOMOUNT_BENCH_DIR` (default /var/tmp/rbuild-nomount-bench, on the same filesystem as
//! the build state, not a tmpfs) and are kept between runs; the Debian root is unpacked
//! from `NOMOUNT_BENCH_TAR` (default /var/cache/rbuild-fixtures/python3.tar).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command as Process;
use std::time::Instant;

use rbuild_core::{
    exec::{Command, Executor, RunSpec, SandboxExecutor},
    progress::Stream,
    snapshot::{CopySnapshotter, OverlaySnapshotter, Snapshot, Snapshotter},
};

const DIRS: usize = 1000;
const FILES_PER_DIR: usize = 100;

fn fail(msg: String) -> ! {
    eprintln!("nomount_diff: {msg}");
    std::process::exit(1)
}

fn env_path(name: &str, default: &str) -> PathBuf {
    std::env::var_os(name).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

fn load1() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// CPU seconds (user + system, all threads) this process used so far, from /proc: on a
/// loaded machine the wall time swings, the CPU time much less.
fn cpu_seconds() -> f64 {
    let stat = fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which is in parentheses and may hold spaces);
    // utime and stime are the 14th and 15th fields of the line, in clock ticks (100 Hz).
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

/// `dir` made by `make` once; a `.complete` marker beside it tells a finished tree from a
/// broken one.
fn cached_tree(dir: &Path, make: impl FnOnce(&Path)) {
    let marker = dir.with_extension("complete");
    if marker.exists() {
        return;
    }
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).unwrap_or_else(|e| fail(format!("creating {}: {e}", dir.display())));
    make(dir);
    fs::write(&marker, b"").unwrap_or_else(|e| fail(format!("marking {}: {e}", dir.display())));
}

/// busybox (for the step's shell) and 1,000 directories of 100 one-byte files.
fn files_100k(dir: &Path) {
    let busybox = Path::new("/bin/busybox");
    if !busybox.is_file() {
        fail("/bin/busybox is missing: install busybox-static".to_owned());
    }
    fs::create_dir_all(dir.join("bin")).expect("create bin");
    fs::copy(busybox, dir.join("bin/busybox")).expect("copy busybox");
    for applet in ["sh", "true"] {
        symlink("busybox", dir.join("bin").join(applet)).expect("applet link");
    }
    for d in 0..DIRS {
        let sub = dir.join("many").join(format!("d{d:04}"));
        fs::create_dir_all(&sub).expect("create dir");
        for f in 0..FILES_PER_DIR {
            fs::write(sub.join(format!("f{f:03}")), b"x").expect("write file");
        }
    }
}

fn debian_root(tar: &Path) -> impl FnOnce(&Path) + '_ {
    move |dir: &Path| {
        let status = Process::new("tar")
            .arg("-xf")
            .arg(tar)
            .arg("-C")
            .arg(dir)
            .arg("--numeric-owner")
            .status()
            .unwrap_or_else(|e| fail(format!("running tar: {e}")));
        if !status.success() {
            fail(format!("unpacking {} failed", tar.display()));
        }
    }
}

/// Prepares a step root over `lowers` in a fresh scratch directory and runs `script` in it.
fn step(
    snapshotter: &dyn Snapshotter,
    lowers: &[PathBuf],
    scratch: &Path,
    script: &str,
) -> Snapshot {
    let _ = fs::remove_dir_all(scratch);
    fs::create_dir_all(scratch).expect("create scratch");
    let snapshot = snapshotter
        .prepare(lowers, scratch)
        .unwrap_or_else(|e| fail(format!("prepare: {e}")));
    let spec = RunSpec::new(Command::Shell(script.to_owned()));
    let status = SandboxExecutor::new()
        .run(&snapshot, &spec, &mut |_: Stream, _: &[u8]| {})
        .unwrap_or_else(|e| fail(format!("run {script}: {e}")));
    if !status.success() {
        fail(format!("{script} failed"));
    }
    snapshot
}

/// Times `diff` `runs` times; prints each run and returns the seconds of every run.
fn time_diff(
    label: &str,
    snapshotter: &dyn Snapshotter,
    snapshot: &Snapshot,
    expected_changes: usize,
    runs: usize,
) -> Vec<f64> {
    let mut times = Vec::new();
    for run in 1..=runs {
        let load = load1();
        let cpu = cpu_seconds();
        let start = Instant::now();
        let set = snapshotter
            .diff(snapshot)
            .unwrap_or_else(|e| fail(format!("diff: {e}")));
        let secs = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu;
        if set.len() != expected_changes {
            fail(format!(
                "{label}: {} changes, expected {expected_changes}",
                set.len()
            ));
        }
        println!(
            "{label}\trun {run}\t{:.3} ms\tcpu {:.0} ms\tload1 {load}",
            secs * 1e3,
            cpu * 1e3
        );
        times.push(secs);
    }
    times
}

fn summary(label: &str, times: &[f64]) {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    println!(
        "{label}\tsecond run {:.3} ms\tmedian {:.3} ms\tmin {:.3} ms",
        times.get(1).copied().unwrap_or(sorted[0]) * 1e3,
        median * 1e3,
        sorted[0] * 1e3
    );
}

fn compare(name: &str, lower: &Path, script: &str, expected_changes: usize, runs: usize) {
    let lowers = vec![lower.to_path_buf()];
    let scratch = lower.with_extension("scratch");
    let mut results = Vec::new();
    for (kind, snapshotter) in [
        ("overlay", &OverlaySnapshotter::new() as &dyn Snapshotter),
        ("copy", &CopySnapshotter::new()),
    ] {
        let label = format!("{name}\t{kind}");
        let start = Instant::now();
        let snapshot = step(snapshotter, &lowers, &scratch.join(kind), script);
        println!(
            "{label}\tprepare + step {:.2} s\tload1 {}",
            start.elapsed().as_secs_f64(),
            load1()
        );
        results.push((
            label.clone(),
            time_diff(&label, snapshotter, &snapshot, expected_changes, runs),
        ));
    }
    for (label, times) in &results {
        summary(label, times);
    }
    let _ = fs::remove_dir_all(&scratch);
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument filters the cases by name.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|f| name.contains(f));
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5)
        .max(2);
    let dir = env_path("NOMOUNT_BENCH_DIR", "/var/tmp/rbuild-nomount-bench");
    println!("nomount_diff: trees under {}, {runs} runs", dir.display());

    if wanted("files-100k") {
        let lower = dir.join("files-100k");
        cached_tree(&lower, files_100k);
        compare(
            "files-100k one-file change",
            &lower,
            "echo y > /many/d0500/f050",
            1,
            runs,
        );
    }
    if wanted("debian") {
        let tar = env_path(
            "NOMOUNT_BENCH_TAR",
            "/var/cache/rbuild-fixtures/python3.tar",
        );
        if !tar.is_file() {
            fail(format!(
                "{} is missing (the python3 fixture)",
                tar.display()
            ));
        }
        let lower = dir.join("debian");
        cached_tree(&lower, debian_root(&tar));
        compare("debian no change", &lower, "true", 0, runs);
    }
}
