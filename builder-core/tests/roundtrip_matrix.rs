//! The end-to-end round trip of every change-matrix row (rbuild issue 4): run the step on
//! a snapshot, turn its change set into a gzip layer, apply that layer onto a fresh copy
//! of the base, and compare the result entry by entry with the same step run on a plain
//! writable copy of the base.
#![allow(clippy::unwrap_used)]

mod support;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use rbuild_core::{
    ContentStore,
    exec::{Executor, RuncExecutor, SandboxExecutor},
    layer::{ApplyMode, Compression, LayerOptions, apply_layer, write_layer},
    progress::Stream,
    snapshot::{CopySnapshotter, OverlaySnapshotter, Snapshotter, StepRoot},
};
use support::exec::matrix::MATRIX;
use support::exec::{Base, base, render, shell};
use support::require::require_root;
use support::tree::{compare_trees, leftover_mount_points, read_tree};

/// Merges the base stack into `dest` with `cp -a` and the overlay whiteout rule (a 0:0
/// character device deletes the path below), independently of the snapshotters.
fn merge_base(lowers: &[PathBuf], dest: &Path) {
    fs::create_dir_all(dest).unwrap();
    for layer in lowers {
        let status = Process::new("cp")
            .arg("-a")
            .arg(layer.join("."))
            .arg(dest)
            .status()
            .unwrap();
        assert!(status.success(), "cp -a {} failed", layer.display());
        for entry in walkdir::WalkDir::new(layer).min_depth(1) {
            let entry = entry.unwrap();
            let meta = entry.metadata().unwrap();
            if meta.file_type().is_char_device() && meta.rdev() == 0 {
                let target = dest.join(entry.path().strip_prefix(layer).unwrap());
                fs::remove_file(&target).unwrap();
            }
        }
    }
}

/// A copy of `src` at `dest` with `cp -a` (modes, owners, xattrs, hardlinks kept).
fn copy_tree(src: &Path, dest: &Path) {
    let status = Process::new("cp")
        .arg("-a")
        .arg(src)
        .arg(dest)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "cp -a {} {} failed",
        src.display(),
        dest.display()
    );
}

/// Runs `cmd` in `snapshot`'s root and fails the row if it does not succeed.
fn run(
    executor: &dyn Executor,
    snapshot: &rbuild_core::snapshot::Snapshot,
    cmd: &str,
) -> Result<(), String> {
    let mut stderr = Vec::new();
    let status = executor
        .run(
            snapshot,
            &shell(cmd),
            &mut |stream: Stream, bytes: &[u8]| {
                if stream == Stream::Stderr {
                    stderr.extend_from_slice(bytes);
                }
            },
        )
        .map_err(|e| format!("executor failed: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "exited with {status:?}: {}",
            String::from_utf8_lossy(&stderr)
        ))
    }
}

/// One row through one snapshotter; `Err` holds every problem found.
fn roundtrip_row(
    snapshotter: &dyn Snapshotter,
    executor: &dyn Executor,
    base: &Base,
    merged: &Path,
    (cmd, expected): (&str, &str),
) -> Result<(), String> {
    let work = tempfile::tempdir().unwrap();

    // The step on a snapshot, its change set, its layer.
    let scratch = work.path().join("snapshot");
    fs::create_dir(&scratch).unwrap();
    let snapshot = snapshotter.prepare(&base.lowers, &scratch).unwrap();
    run(executor, &snapshot, cmd)?;
    let changes = snapshotter.diff(&snapshot).unwrap();
    let rendered = render(&changes);
    if rendered != expected {
        return Err(format!(
            "change set\n--- expected\n{expected}--- got\n{rendered}"
        ));
    }
    let store = ContentStore::open(work.path().join("store")).unwrap();
    let applied = work.path().join("applied");
    copy_tree(merged, &applied);
    if changes.is_empty() {
        // An empty step is an empty_layer history entry: nothing is written or applied.
        if !expected.is_empty() {
            return Err("empty change set for a step that changes files".into());
        }
    } else {
        let options = LayerOptions::default().with_compression(Compression::Gzip);
        let layer = write_layer(&store, snapshot.source_tree(), &changes, &options)
            .map_err(|e| format!("write_layer: {e}"))?;
        let blob = store.open_blob(&layer.blob.digest).unwrap();
        let diff_id = apply_layer(blob, &applied, ApplyMode::Merged)
            .map_err(|e| format!("apply_layer: {e}"))?;
        if diff_id != layer.diff_id {
            return Err(format!(
                "apply_layer saw diff_id {diff_id}, write_layer reported {}",
                layer.diff_id
            ));
        }
    }
    let blobs = store.blobs().unwrap().len();
    let want_blobs = usize::from(!changes.is_empty());
    if blobs != want_blobs {
        return Err(format!("{blobs} blobs in the store, want {want_blobs}"));
    }

    // The same step on a plain writable copy of the base: the copy snapshotter's prepared
    // tree is a `StepRoot::Dir`, used here without its diff.
    let plain_scratch = work.path().join("plain");
    fs::create_dir(&plain_scratch).unwrap();
    let plain = CopySnapshotter::new()
        .prepare(&base.lowers, &plain_scratch)
        .unwrap();
    assert!(matches!(plain.root(), StepRoot::Dir(_)));
    run(executor, &plain, cmd)?;

    let got = read_tree(&applied);
    let want = read_tree(plain.source_tree());
    let mut problems = compare_trees(&got, &want);
    for (side, tree) in [("applied", &got), ("plain", &want)] {
        let left = leftover_mount_points(tree);
        if !left.is_empty() {
            problems.push(format!("{side} tree holds sandbox mount points {left:?}"));
        }
    }
    if changes.is_empty() {
        problems.extend(
            compare_trees(&want, &read_tree(merged))
                .into_iter()
                .map(|p| format!("empty step changed the plain copy: {p}")),
        );
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

fn check_roundtrip(executor: &dyn Executor, label: &str) {
    require_root("it uses namespaces, overlay mounts and mknod");
    let base = base();
    let merged = base.dir.path().join("merged");
    merge_base(&base.lowers, &merged);
    let snapshotters: [(&str, &dyn Snapshotter); 2] = [
        ("overlay", &OverlaySnapshotter::new()),
        ("copy", &CopySnapshotter::new()),
    ];
    let mut failures = Vec::new();
    for (name, cmd, expected) in MATRIX {
        for (snap_name, snapshotter) in snapshotters {
            if let Err(problem) =
                roundtrip_row(snapshotter, executor, &base, &merged, (cmd, expected))
            {
                failures.push(format!("{name} ({snap_name}, {label}): {cmd}\n{problem}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    println!(
        "roundtrip: {} rows x {} snapshotters passed ({label})",
        MATRIX.len(),
        snapshotters.len()
    );
}

#[test]
fn roundtrip_sandbox() {
    check_roundtrip(&SandboxExecutor::new(), "sandbox");
}

#[test]
fn roundtrip_runc() {
    check_roundtrip(&RuncExecutor::default(), "runc");
}
