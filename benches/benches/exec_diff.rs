//! Cost of the diff after `RUN touch /x` on a base of 100k files: the overlay diff reads
//! only the upper directory and must not grow with the base; the copy fallback walks all.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use rbuild_core::{
    exec::{Command, Executor, RunSpec, SandboxExecutor},
    progress::Stream,
    snapshot::{CopySnapshotter, OverlaySnapshotter, Snapshot, Snapshotter},
};

const DIRS: usize = 1000;
const FILES_PER_DIR: usize = 100;

fn base_with_files(dir: &Path) {
    assert!(
        Path::new("/bin/busybox").is_file(),
        "/bin/busybox is missing: install busybox-static"
    );
    fs::create_dir_all(dir.join("bin")).expect("create bin");
    fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("copy busybox");
    for applet in ["sh", "touch"] {
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

fn touched(snapshotter: &dyn Snapshotter, lowers: &[PathBuf], scratch: &Path) -> Snapshot {
    let snapshot = snapshotter.prepare(lowers, scratch).expect("prepare");
    let spec = RunSpec::new(Command::Shell("touch /x".to_owned()));
    let status = SandboxExecutor::new()
        .run(&snapshot, &spec, &mut |_: Stream, _: &[u8]| {})
        .expect("run");
    assert!(status.success());
    snapshot
}

fn bench(c: &mut Criterion) {
    let base = tempfile::tempdir().expect("base");
    base_with_files(base.path());
    let lowers = vec![base.path().to_path_buf()];
    let mut group = c.benchmark_group("diff_after_touch_100k");

    let overlay = OverlaySnapshotter::new();
    let scratch = tempfile::tempdir().expect("scratch");
    let snapshot = touched(&overlay, &lowers, scratch.path());
    group.bench_function("overlay", |b| {
        b.iter(|| assert_eq!(overlay.diff(&snapshot).expect("diff").len(), 1))
    });

    let copy = CopySnapshotter::new();
    let scratch = tempfile::tempdir().expect("scratch");
    let snapshot = touched(&copy, &lowers, scratch.path());
    group.sample_size(10);
    group.bench_function("copy", |b| {
        b.iter(|| assert_eq!(copy.diff(&snapshot).expect("diff").len(), 1))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
