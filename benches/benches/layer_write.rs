//! Layer write of a ~500 MB tree (a copy of parts of /usr/lib) for rbuild's none, gzip
//! and zstd, next to `tar | pigz -p$(nproc)` and `tar | zstd -T0` in the same run.
//!
//! Each contender runs as a child process under `/usr/bin/time` so that wall time and
//! peak RSS are measured the same way for all. Run with
//! `cargo bench -p rbuild-benches --bench layer_write`; set `LAYER_BENCH_SRC` to use
//! another tree (default: a copy made once under /var/tmp/rbuild-bench-src).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use rbuild_core::{
    ContentStore,
    layer::{Compression, LayerOptions, tree_changes, write_layer},
};

/// The parts of /usr/lib copied for the source tree, about 530 MB on Debian 12.
const SOURCE_PARTS: &[&str] = &["/usr/lib/python3.11", "/usr/lib/gcc", "/usr/lib/llvm-14"];

fn fail(msg: String) -> ! {
    eprintln!("layer_write: {msg}");
    std::process::exit(1)
}

fn sh(script: &str) {
    let status = Command::new("sh")
        .arg("-c")
        .arg(script)
        .status()
        .unwrap_or_else(|e| fail(format!("running {script}: {e}")));
    if !status.success() {
        fail(format!("{script} failed"));
    }
}

fn source_tree() -> PathBuf {
    if let Some(src) = std::env::var_os("LAYER_BENCH_SRC") {
        return PathBuf::from(src);
    }
    let src = PathBuf::from("/var/tmp/rbuild-bench-src");
    if !src.join(".complete").exists() {
        let _ = std::fs::remove_dir_all(&src);
        std::fs::create_dir_all(&src).unwrap_or_else(|e| fail(format!("creating {src:?}: {e}")));
        for part in SOURCE_PARTS {
            sh(&format!("cp -a {part} {}/", src.display()));
        }
        sh(&format!("touch {}/.complete", src.display()));
    }
    src
}

/// A contender: its name, the shell command it runs, and how to size its output.
type Contender = (String, String, Box<dyn Fn() -> u64>);

/// The child side: write one layer and exit.
fn child(mode: &str, src: &Path, out: &Path) {
    let compression: Compression = mode.parse().unwrap_or_else(|e: String| fail(e));
    let store = ContentStore::open(out).unwrap_or_else(|e| fail(e.to_string()));
    let changes = tree_changes(src).unwrap_or_else(|e| fail(e.to_string()));
    let options = LayerOptions::default().with_compression(compression);
    let layer =
        write_layer(&store, src, &changes, &options).unwrap_or_else(|e| fail(e.to_string()));
    println!("{}", layer.blob.size);
}

/// Runs `cmd` under GNU time; returns (wall seconds, peak RSS in MB, output size).
fn measure(script: &str, out_size: impl Fn() -> u64) -> (f64, f64, u64) {
    let rss_file = std::env::temp_dir().join("rbuild-bench-rss");
    let start = Instant::now();
    let status = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&rss_file)
        .arg("sh")
        .arg("-c")
        .arg(script)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap_or_else(|e| fail(format!("/usr/bin/time is needed: {e}")));
    let wall = start.elapsed().as_secs_f64();
    if !status.success() {
        fail(format!("{script} failed"));
    }
    let kb: f64 = std::fs::read_to_string(&rss_file)
        .ok()
        .and_then(|s| s.trim().lines().last().and_then(|l| l.trim().parse().ok()))
        .unwrap_or(0.0);
    (wall, kb / 1024.0, out_size())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() == 5 && args[1] == "--child" {
        child(&args[2], Path::new(&args[3]), Path::new(&args[4]));
        return;
    }
    for tool in ["pigz", "zstd", "tar"] {
        if Command::new(tool).arg("--version").output().is_err() {
            fail(format!(
                "`{tool}` is needed for the comparison and is missing"
            ));
        }
    }
    let src = source_tree();
    let work = std::env::temp_dir().join("rbuild-bench-out");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap_or_else(|e| fail(e.to_string()));
    let me = std::env::current_exe().unwrap_or_else(|e| fail(e.to_string()));
    let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Warm the page cache so that every contender reads from memory.
    sh(&format!("tar -C {} -cf - . > /dev/null", src.display()));
    let input = {
        let out = Command::new("du")
            .arg("-sb")
            .arg(&src)
            .output()
            .unwrap_or_else(|e| fail(e.to_string()));
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    println!(
        "source {} ({} MB), {nproc} cores",
        src.display(),
        input / 1_000_000
    );
    println!(
        "{:<22} {:>8} {:>10} {:>12} {:>10}",
        "contender", "wall s", "MB/s", "peak RSS MB", "out MB"
    );
    let file_size = |p: PathBuf| move || std::fs::metadata(&p).map_or(0, |m| m.len());
    let dir_blob_size = |p: PathBuf| {
        move || {
            std::fs::read_dir(p.join("blobs/sha256"))
                .map(|d| {
                    d.flatten()
                        .filter_map(|e| e.metadata().ok())
                        .map(|m| m.len())
                        .max()
                        .unwrap_or(0)
                })
                .unwrap_or(0)
        }
    };
    let mut results = Vec::new();
    let contenders: Vec<Contender> = vec![
        (
            "tar | pigz -p N".into(),
            format!(
                "tar -C {} -cf - . | pigz -p{nproc} > {}/t.gz",
                src.display(),
                work.display()
            ),
            Box::new(file_size(work.join("t.gz"))),
        ),
        (
            "tar | zstd -T0".into(),
            format!(
                "tar -C {} -cf - . | zstd -q -T0 -3 > {}/t.zst",
                src.display(),
                work.display()
            ),
            Box::new(file_size(work.join("t.zst"))),
        ),
        (
            "rbuild none".into(),
            format!(
                "{} --child none {} {}/none",
                me.display(),
                src.display(),
                work.display()
            ),
            Box::new(dir_blob_size(work.join("none"))),
        ),
        (
            "rbuild gzip".into(),
            format!(
                "{} --child gzip {} {}/gzip",
                me.display(),
                src.display(),
                work.display()
            ),
            Box::new(dir_blob_size(work.join("gzip"))),
        ),
        (
            "rbuild zstd".into(),
            format!(
                "{} --child zstd {} {}/zstd",
                me.display(),
                src.display(),
                work.display()
            ),
            Box::new(dir_blob_size(work.join("zstd"))),
        ),
    ];
    for (name, script, size) in &contenders {
        let (wall, rss, out) = measure(script, size);
        println!(
            "{name:<22} {wall:>8.2} {:>10.1} {rss:>12.1} {:>10.1}",
            input as f64 / 1e6 / wall,
            out as f64 / 1e6
        );
        results.push((name.clone(), wall));
    }
    let wall = |n: &str| {
        results
            .iter()
            .find(|(k, _)| k == n)
            .map_or(f64::NAN, |(_, w)| *w)
    };
    println!(
        "gzip: rbuild/pigz = {:.2}x (target <= 1.2), zstd: rbuild/zstd -T0 = {:.2}x (target <= 1.2)",
        wall("rbuild gzip") / wall("tar | pigz -p N"),
        wall("rbuild zstd") / wall("tar | zstd -T0")
    );
    let _ = std::fs::remove_dir_all(&work);
}
