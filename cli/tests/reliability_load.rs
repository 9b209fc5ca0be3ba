//! Load (issue 9, item 7): many builds in a row of a small Dockerfile on one store, cache
//! hits and misses mixed (a build argument cycling through four values, and every
//! third build `--no-cache`). The peak RSS of rbuild (VmHWM), its open files, the
//! mounts left under the test's own directory (the store and the context; mounts
//! elsewhere on the machine, of other tests or a docker daemon, are not counted) and
//! the store's scratch, unpacked layers and cache entries stay flat between the first and the last tenth; blobs grow only by the image
//! metadata each miss writes, and prune takes the store back. No timing is asserted.
//!
//! 200 builds (`RBUILD_LOAD_BUILDS` changes it); the curve is in RELIABILITY.md. Build
//! times are printed (median and slowest), never asserted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::time::Duration;

use support::reliability::*;
use support::require::require_root;

const DOCKERFILE: &str = "FROM busybox
ARG V
COPY file /file
RUN echo \"v=$V\" > /dev/null
RUN test -s /file
";

/// What one build left behind.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Peak RSS of the rbuild process, KiB.
    hwm_kib: u64,
    /// Most file descriptors rbuild had open at once (sampled).
    fds: usize,
    /// Mount points (in this namespace) under the test's own directory.
    mounts: usize,
    /// Entries in the store's `tmp/`.
    tmp: usize,
    /// Unpacked layer directories.
    layers: usize,
    /// Build cache files.
    cache: usize,
    /// Blobs.
    blobs: usize,
    /// Whether this build was `--no-cache`.
    miss: bool,
    /// How long it took, ms (printed only).
    ms: u64,
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

fn count_files(dir: &Path) -> usize {
    walk(dir)
}

fn walk(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&e.path())
            } else {
                1
            }
        })
        .sum()
}

fn vm_hwm(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Mount points under `dir` in this process's mount namespace (mountinfo field 5,
/// octal escapes as the kernel writes them: the temp dir's path has none).
fn mounts_under(dir: &Path) -> usize {
    let dir = dir.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|target| *target == dir || target.starts_with(&format!("{dir}/")))
        .count()
}

fn one_build(root: &Path, ctx: &Path, i: usize) -> Sample {
    let miss = i % 3 == 2;
    let v = format!("V={}", i % 4);
    let mut args = vec!["build", "-q", "--build-arg", &v, "-t", "load:latest"];
    if miss {
        args.push("--no-cache");
    }
    args.push(ctx.to_str().unwrap());
    let started = std::time::Instant::now();
    let mut child = spawn(root, &args);
    let pid = child.id();
    let (mut hwm, mut fds) = (0, 0);
    // Sample until the process exits; VmHWM only grows, so the last reading is the peak
    // up to a few milliseconds before exit.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if let Some(h) = vm_hwm(pid) {
            hwm = hwm.max(h);
        }
        fds = fds.max(count(Path::new(&format!("/proc/{pid}/fd"))));
        std::thread::sleep(Duration::from_millis(5));
    };
    let ms = started.elapsed().as_millis() as u64;
    let out = child.wait_with_output().unwrap();
    assert!(status.success(), "build {i}: {}", stderr(&out));
    Sample {
        hwm_kib: hwm,
        fds,
        mounts: mounts_under(root.parent().unwrap()),
        tmp: count(&root.join("tmp")),
        layers: count(&root.join("layers")),
        cache: count_files(&root.join("cache")),
        blobs: count(&root.join("blobs/sha256")),
        miss,
        ms,
    }
}

fn median(mut values: Vec<u64>) -> u64 {
    values.sort_unstable();
    values[values.len() / 2]
}

#[test]
fn many_builds_in_a_row_stay_flat() {
    require_root("builds mount overlays and run steps in namespaces");
    let builds: usize = std::env::var("RBUILD_LOAD_BUILDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200);
    assert!(builds >= 20, "RBUILD_LOAD_BUILDS must be at least 20");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    import_busybox(&root);
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(ctx.join("file"), noise(7, 256 << 10)).unwrap();

    let samples: Vec<Sample> = (0..builds).map(|i| one_build(&root, &ctx, i)).collect();
    println!("build  VmHWM(KiB)  fds  mounts  tmp  layers  cache  blobs  miss");
    for (i, s) in samples.iter().enumerate() {
        if i % (builds / 10) == 0 || i + 1 == builds {
            println!(
                "{i:5}  {:10}  {:3}  {:6}  {:3}  {:6}  {:5}  {:5}  {}",
                s.hwm_kib, s.fds, s.mounts, s.tmp, s.layers, s.cache, s.blobs, s.miss
            );
        }
    }

    let times: Vec<u64> = samples.iter().map(|s| s.ms).collect();
    println!(
        "build time: median {} ms, slowest {} ms",
        median(times.clone()),
        times.iter().max().unwrap()
    );
    let tenth = builds / 10;
    // The first tenth after the warm-up: the first four builds fill the cache.
    let first = &samples[4..4 + tenth];
    let last = &samples[builds - tenth..];
    let med = |s: &[Sample], f: fn(&Sample) -> u64| median(s.iter().map(f).collect());
    let (rss_first, rss_last) = (med(first, |s| s.hwm_kib), med(last, |s| s.hwm_kib));
    println!("median VmHWM: first tenth {rss_first} KiB, last tenth {rss_last} KiB");
    assert!(
        rss_last <= rss_first + rss_first / 5 + 4096,
        "peak RSS grew: {rss_first} KiB -> {rss_last} KiB"
    );
    let max = |s: &[Sample], f: fn(&Sample) -> usize| s.iter().map(f).max().unwrap();
    assert!(
        max(last, |s| s.fds) <= max(first, |s| s.fds) + 2,
        "open files grew: {} -> {}",
        max(first, |s| s.fds),
        max(last, |s| s.fds)
    );
    for (what, f) in [
        ("mounts", (|s: &Sample| s.mounts) as fn(&Sample) -> usize),
        ("unpacked layers", |s| s.layers),
        ("cache files", |s| s.cache),
    ] {
        assert_eq!(
            max(last, f),
            max(first, f),
            "{what} grew between the first and the last tenth"
        );
    }
    assert!(
        samples.iter().all(|s| s.tmp == 0),
        "scratch left in tmp/ after a build"
    );
    assert!(
        samples.iter().all(|s| s.mounts == 0),
        "a build left a mount under {}",
        dir.path().display()
    );
    // Every build that ran its steps writes a new config and manifest (their history
    // times differ); nothing else accumulates.
    let misses_between = samples[4 + tenth..].iter().filter(|s| s.miss).count();
    let grown = samples[builds - 1].blobs - samples[4 + tenth - 1].blobs;
    assert!(
        grown <= 2 * misses_between,
        "blobs grew by {grown} over {misses_between} uncached builds"
    );
    let out = rbuild(&root, &["prune"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let after = count(&root.join("blobs/sha256"));
    println!(
        "blobs after prune: {after} (after the first build: {})",
        samples[0].blobs
    );
    assert!(
        after <= samples[0].blobs,
        "prune left {after} blobs, the first build had {}",
        samples[0].blobs
    );
    assert_verifies(&root, "after the load");
}
