//! Tar bombs and device nodes (issue 9, item 4): layers that expand past the
//! decompression ratio or hold more entries than allowed are refused with an error naming
//! the archive and the limit; device nodes are skipped (not refused) when the applier
//! may not create them, as docker's and containers/storage's appliers do in a user
//! namespace.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use rbuild_core::{
    Builder, ContentStore, ContextSource,
    context::UnpackError,
    export::{ExportError, import_rootfs},
    image::ImageSpec,
    layer::{ApplyMode, LayerError, LayerOptions, LimitExceeded, apply_layer_limited},
    limits::{ArchiveLimits, Limits},
};
use tar::{EntryType, Header};

use support::require::require_root;

/// The uid the rootless half of the device test runs as.
const NOBODY: u32 = 65534;

/// A tar stream of one regular file of `size` zero bytes, produced as it is read, so a
/// bomb of any size costs no memory.
fn zero_file_tar(size: u64) -> impl Read {
    let mut header = Header::new_gnu();
    header.set_path("zeros").unwrap();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(EntryType::Regular);
    header.set_cksum();
    let padding = (512 - size % 512) % 512;
    io::Cursor::new(header.as_bytes().to_vec()).chain(io::repeat(0).take(size + padding + 1024))
}

fn zstd_of(mut plain: impl Read) -> Vec<u8> {
    let mut enc = zstd::Encoder::new(Vec::new(), 1).unwrap();
    io::copy(&mut plain, &mut enc).unwrap();
    enc.finish().unwrap()
}

fn tar_of(entries: impl Iterator<Item = (String, EntryType)>) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind) in entries {
        let mut header = Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(if kind == EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_size(0);
        if matches!(kind, EntryType::Char | EntryType::Block) {
            header.set_device_major(1).unwrap();
            header.set_device_minor(3).unwrap();
        }
        builder.append_data(&mut header, name, io::empty()).unwrap();
    }
    builder.into_inner().unwrap()
}

#[test]
fn a_zstd_bomb_is_refused_at_the_default_ratio() {
    // 1.1 GiB of zeros compress to about 40 KiB: past 1 GiB, 1000:1 trips.
    let bomb = zstd_of(zero_file_tar(1_100 << 20));
    println!("bomb: {} bytes compressed", bomb.len());
    let dir = tempfile::tempdir().unwrap();
    let err = apply_layer_limited(
        &bomb[..],
        dir.path(),
        ApplyMode::Merged,
        &ArchiveLimits::default(),
        "layer blob sha256:bomb",
    )
    .unwrap_err();
    let text = err.to_string();
    println!("{text}");
    assert!(
        matches!(
            &err,
            LayerError::Limit {
                limit: LimitExceeded::Ratio { ratio: 1000, .. },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(text.contains("layer blob sha256:bomb"), "{text}");
    assert!(text.contains("RBUILD_ARCHIVE_MAX_RATIO=1000"), "{text}");
    // Unpacking stopped soon after the limit: not the whole 1.1 GiB was written.
    let written = std::fs::metadata(dir.path().join("zeros")).map_or(0, |m| m.len());
    assert!(written <= (1 << 30) + (8 << 20), "{written} bytes written");
}

#[test]
fn a_small_archive_expands_freely_below_the_ratio_floor() {
    // 100 MiB of zeros: a ratio far past 1000, but under the 1 GiB floor.
    let layer = zstd_of(zero_file_tar(100 << 20));
    let dir = tempfile::tempdir().unwrap();
    apply_layer_limited(
        &layer[..],
        dir.path(),
        ApplyMode::Merged,
        &ArchiveLimits::default(),
        "small",
    )
    .unwrap();
    assert_eq!(
        std::fs::metadata(dir.path().join("zeros")).unwrap().len(),
        100 << 20
    );
}

#[test]
fn too_many_entries_are_refused_naming_the_limit() {
    let limits = ArchiveLimits::default().with_max_entries(1000);
    let many = tar_of((0..1500).map(|i| (format!("f{i}"), EntryType::Regular)));
    let dir = tempfile::tempdir().unwrap();
    let err =
        apply_layer_limited(&many[..], dir.path(), ApplyMode::Merged, &limits, "many").unwrap_err();
    assert!(
        matches!(
            &err,
            LayerError::Limit {
                limit: LimitExceeded::Entries { limit: 1000 },
                ..
            }
        ),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("refused to unpack many")
            && text.contains("more than 1000 entries")
            && text.contains("RBUILD_ARCHIVE_MAX_ENTRIES"),
        "{text}"
    );
    // 1000 entries exactly pass.
    let exact = tar_of((0..1000).map(|i| (format!("f{i}"), EntryType::Regular)));
    let dir = tempfile::tempdir().unwrap();
    apply_layer_limited(&exact[..], dir.path(), ApplyMode::Merged, &limits, "exact").unwrap();
}

#[test]
fn a_bomb_in_the_store_is_refused_and_nothing_is_unpacked() {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path().join("store")).unwrap();
    let mut w = store.writer().unwrap();
    w.write_all(&zstd_of(zero_file_tar(1_100 << 20))).unwrap();
    let blob = w.finish().unwrap();
    let diff_id = rbuild_core::Digest::of(b"never reached");
    // The store's unpacker takes the store's limits: the defaults here.
    let err = store.unpack_layers([(&blob.digest, &diff_id)]).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("refused to unpack layer blob {}", blob.digest)),
        "{text}"
    );
    assert!(!store.layer_dir(&diff_id).exists());
    let left: Vec<_> = std::fs::read_dir(store.root().join("layers"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "half-unpacked layers left: {left:?}");
}

/// The limits are the caller's, passed as values (no environment variable): a store
/// given strict limits refuses, through every way in, the archives a default store takes;
/// a builder's limits become its store's.
#[test]
fn limits_passed_as_options_stop_tar_bombs() {
    for var in [
        "RBUILD_ARCHIVE_MAX_ENTRIES",
        "RBUILD_ARCHIVE_MAX_RATIO",
        "RBUILD_ARCHIVE_RATIO_ABOVE",
    ] {
        assert!(
            std::env::var_os(var).is_none(),
            "{var} is set: the test measures the option alone"
        );
    }
    let strict = ArchiveLimits::default()
        .with_max_entries(100)
        .with_max_ratio(10)
        .with_ratio_applies_above(1 << 20);
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path().join("store")).unwrap();
    let limited = store.clone().with_archive_limits(strict);
    assert_eq!(limited.archive_limits(), strict);
    assert_eq!(store.archive_limits(), ArchiveLimits::default());

    // A layer of 500 empty files: unpacked by chain ID within the defaults, refused
    // within the store's limit of 100 entries.
    let many = tar_of((0..500).map(|i| (format!("f{i}"), EntryType::Regular)));
    let diff_id = rbuild_core::Digest::of(&many);
    let mut w = store.writer().unwrap();
    w.write_all(&many).unwrap();
    let blob = w.finish().unwrap();
    let err = limited
        .unpack_layers([(&blob.digest, &diff_id)])
        .unwrap_err();
    assert!(
        matches!(
            &err,
            LayerError::Limit {
                limit: LimitExceeded::Entries { limit: 100 },
                ..
            }
        ),
        "{err:?}"
    );
    store.unpack_layers([(&blob.digest, &diff_id)]).unwrap();

    // A root filesystem of 20 MiB of zeros, gzip-compressed (ratio ~1000): imported
    // within the defaults, refused past the store's ratio of 10 above 1 MiB.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    io::copy(&mut zero_file_tar(20 << 20), &mut gz).unwrap();
    let bomb = gz.finish().unwrap();
    let spec = ImageSpec::default();
    let err = import_rootfs(&limited, &bomb[..], &spec, &LayerOptions::default()).unwrap_err();
    assert!(
        matches!(
            &err,
            ExportError::Layer(LayerError::Limit {
                limit: LimitExceeded::Ratio { ratio: 10, .. },
                ..
            })
        ),
        "{err:?}"
    );
    import_rootfs(&store, &bomb[..], &spec, &LayerOptions::default()).unwrap();

    // A context tar, which needs no store: the limits are an argument.
    let parent = tempfile::tempdir().unwrap();
    let err = ContextSource::from_tar_limited(&bomb[..], parent.path(), &strict).unwrap_err();
    assert!(
        matches!(&err, UnpackError::Limit(LimitExceeded::Ratio { .. })),
        "{err:?}"
    );
    ContextSource::from_tar(&bomb[..], parent.path()).unwrap();

    // A builder's limits are its store's (its ADDs, bases and exports unpack there).
    let builder = Builder::new(store.clone()).with_limits(Limits::default().with_archive(strict));
    assert_eq!(builder.store().archive_limits(), strict);
    assert_eq!(builder.limits().archive, strict);
}

/// The unprivileged half of the device test, run by the test below as uid 65534 in a
/// child process (a test binary cannot drop privileges for one test alone).
#[test]
#[ignore = "run by device_nodes_are_skipped_when_the_applier_is_not_root as uid 65534"]
fn device_nodes_child() {
    let target = std::env::var("RBUILD_TEST_DEVICE_TARGET").expect("run by the parent test");
    assert_ne!(
        rustix::process::geteuid().as_raw(),
        0,
        "must not run as root"
    );
    let layer = tar_of(
        [
            ("dev".to_owned(), EntryType::Directory),
            ("dev/null".to_owned(), EntryType::Char),
            ("dev/sda".to_owned(), EntryType::Block),
            ("dev/fifo".to_owned(), EntryType::Fifo),
            ("etc".to_owned(), EntryType::Directory),
            ("etc/file".to_owned(), EntryType::Regular),
        ]
        .into_iter(),
    );
    let applied = apply_layer_limited(
        &layer[..],
        Path::new(&target),
        ApplyMode::Merged,
        &ArchiveLimits::default(),
        "devices",
    )
    .expect("device nodes are skipped, not refused");
    assert_eq!(applied.skipped_devices, vec!["dev/null", "dev/sda"]);
    let root = Path::new(&target);
    assert!(!root.join("dev/null").exists());
    assert!(!root.join("dev/sda").exists());
    assert!(root.join("dev/fifo").exists(), "a fifo needs no privilege");
    assert!(root.join("etc/file").exists());
}

#[test]
fn device_nodes_are_skipped_when_the_applier_is_not_root() {
    require_root(&format!("it runs its other half as uid {NOBODY}"));
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(NOBODY), Some(NOBODY)).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "device_nodes_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RBUILD_TEST_DEVICE_TARGET", dir.path())
        .uid(NOBODY)
        .gid(NOBODY)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "the rootless half failed: {text}");
    assert!(
        text.contains("1 passed"),
        "the rootless half did not run: {text}"
    );
}
