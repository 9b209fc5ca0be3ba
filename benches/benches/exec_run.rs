//! Overhead of `RUN true`: prepare a snapshot, run the step in the sandbox, diff, clean up.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use rbuild_core::{
    exec::{Command, Executor, RunSpec, RuncExecutor, SandboxExecutor},
    progress::Stream,
    snapshot::{CopySnapshotter, OverlaySnapshotter, Snapshotter},
};

/// bin/busybox with the few applets the benchmarks run.
fn busybox_base(dir: &Path) {
    assert!(
        Path::new("/bin/busybox").is_file(),
        "/bin/busybox is missing: install busybox-static"
    );
    fs::create_dir_all(dir.join("bin")).expect("create bin");
    fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("copy busybox");
    for applet in ["sh", "true", "touch"] {
        symlink("busybox", dir.join("bin").join(applet)).expect("applet link");
    }
}

fn cycle(snapshotter: &dyn Snapshotter, executor: &dyn Executor, lowers: &[std::path::PathBuf]) {
    let scratch = tempfile::tempdir().expect("scratch");
    let snapshot = snapshotter
        .prepare(lowers, scratch.path())
        .expect("prepare");
    let spec = RunSpec::new(Command::Shell("true".to_owned()));
    let status = executor
        .run(&snapshot, &spec, &mut |_: Stream, _: &[u8]| {})
        .expect("run");
    assert!(status.success());
    let changes = snapshotter.diff(&snapshot).expect("diff");
    assert!(changes.is_empty());
}

fn bench(c: &mut Criterion) {
    let base = tempfile::tempdir().expect("base");
    busybox_base(base.path());
    let lowers = vec![base.path().to_path_buf()];
    let mut group = c.benchmark_group("run_true");
    group.bench_function("sandbox_overlay", |b| {
        b.iter(|| cycle(&OverlaySnapshotter::new(), &SandboxExecutor::new(), &lowers))
    });
    group.bench_function("sandbox_copy", |b| {
        b.iter(|| cycle(&CopySnapshotter::new(), &SandboxExecutor::new(), &lowers))
    });
    group.sample_size(20);
    group.bench_function("runc_overlay", |b| {
        b.iter(|| {
            cycle(
                &OverlaySnapshotter::new(),
                &RuncExecutor::default(),
                &lowers,
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
