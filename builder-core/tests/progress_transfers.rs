//! An embedding program sees every blob a push, a pull and an export move, through a
//! closure sink: each transfer starts once, reports growing bytes up to the blob's size and
//! finishes once, with the outcome that says what happened to the blob.

#![allow(clippy::unwrap_used)]

mod registry_support;

use std::collections::BTreeMap;
use std::sync::Mutex;

use rbuild_core::{
    ContentStore, Event, ExportTarget, ImageFormat, ImageName, ProgressFn, PushOptions,
    RegistryClient, RegistryOptions, TransferKind, TransferOutcome, UploadMode, export, pull, push,
};
use registry_support::{Registry, make_image};

/// What a closure saw of each blob, by digest: starts, bytes reported, how it ended.
#[derive(Debug, Default, Clone, PartialEq)]
struct Blob {
    started: u32,
    bytes: Vec<u64>,
    finished: Vec<(u64, TransferOutcome)>,
}

/// Runs `operation` with a closure sink and returns what it saw of each blob; checks that
/// every event is a transfer of `kind` for `target`.
fn observe(
    kind: TransferKind,
    target: &str,
    operation: impl FnOnce(&ProgressFn<&(dyn Fn(&Event) + Sync)>),
) -> BTreeMap<String, Blob> {
    let seen: Mutex<BTreeMap<String, Blob>> = Mutex::default();
    let record = |event: &Event| {
        let mut seen = seen.lock().unwrap();
        match event {
            Event::TransferStarted {
                kind: k,
                target: t,
                digest,
                step,
                ..
            } => {
                assert_eq!((*k, t.as_str(), *step), (kind, target, None), "{event:?}");
                seen.entry(digest.clone()).or_default().started += 1;
            }
            Event::TransferProgress {
                digest, current, ..
            } => seen.entry(digest.clone()).or_default().bytes.push(*current),
            Event::TransferFinished {
                digest,
                size,
                outcome,
                ..
            } => seen
                .entry(digest.clone())
                .or_default()
                .finished
                .push((*size, *outcome)),
            other => panic!("not a transfer: {other:?}"),
        }
    };
    let closure: &(dyn Fn(&Event) + Sync) = &record;
    operation(&ProgressFn(closure));
    seen.into_inner().unwrap()
}

fn check_moved(seen: &BTreeMap<String, Blob>, store: &ContentStore) {
    for (digest, blob) in seen {
        let size = std::fs::metadata(store.blob_path(&digest.parse().unwrap()))
            .unwrap()
            .len();
        assert_eq!(blob.started, 1, "{digest}: {blob:?}");
        assert_eq!(blob.finished, [(size, TransferOutcome::Done)], "{digest}");
        assert!(
            blob.bytes.is_sorted(),
            "{digest}: bytes went back {:?}",
            blob.bytes
        );
        assert_eq!(blob.bytes.last(), Some(&size), "{digest}: no final count");
    }
}

#[test]
fn a_closure_sink_counts_the_transfers_of_push_pull_and_export() {
    let reg = Registry::start(None);
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path().join("store")).unwrap();
    let image = make_image(&store, "local/app:1", "progress", ImageFormat::Oci, "amd64");
    let dest: ImageName = format!("{}/rbuild/app:1", reg.addr).parse().unwrap();
    let client = RegistryClient::with_credentials(
        &reg.addr,
        None,
        RegistryOptions {
            // Small chunks: the layer goes up in several requests, so bytes are reported
            // along the way.
            chunk_size: 64 << 10,
            upload: UploadMode::Chunked,
            ..Default::default()
        },
    );
    let target = dest.to_string();
    let options = PushOptions::default();

    let pushed = observe(TransferKind::Push, &target, |sink| {
        push(&client, &store, "local/app:1", &dest, &options, sink).unwrap();
    });
    // The config and the layer; the manifest is not a blob transfer.
    assert_eq!(
        pushed.len(),
        1 + image.manifest.layers().len(),
        "{pushed:?}"
    );
    check_moved(&pushed, &store);

    let again = observe(TransferKind::Push, &target, |sink| {
        push(&client, &store, "local/app:1", &dest, &options, sink).unwrap();
    });
    assert_eq!(again.len(), pushed.len());
    for blob in again.values() {
        assert_eq!(
            blob.finished[0].1,
            TransferOutcome::AlreadyExists,
            "{blob:?}"
        );
        assert!(blob.bytes.is_empty());
    }

    // One streamed PUT per blob (the monolithic upload): the same contract.
    let streamed: ImageName = format!("{}/rbuild/streamed:1", reg.addr).parse().unwrap();
    let monolithic = RegistryClient::with_credentials(
        &reg.addr,
        None,
        RegistryOptions {
            chunk_size: 64 << 10,
            upload: UploadMode::Monolithic,
            ..Default::default()
        },
    );
    let seen = observe(TransferKind::Push, &streamed.to_string(), |sink| {
        push(
            &monolithic,
            &store,
            "local/app:1",
            &streamed,
            &options,
            sink,
        )
        .unwrap();
    });
    assert_eq!(seen.len(), pushed.len());
    check_moved(&seen, &store);

    let fresh = ContentStore::open(tmp.path().join("fresh")).unwrap();
    let pulled = observe(TransferKind::Pull, &target, |sink| {
        pull(&client, &fresh, &dest, sink).unwrap();
    });
    assert_eq!(
        pulled.keys().collect::<Vec<_>>(),
        pushed.keys().collect::<Vec<_>>()
    );
    check_moved(&pulled, &fresh);
    let cached = observe(TransferKind::Pull, &target, |sink| {
        pull(&client, &fresh, &dest, sink).unwrap();
    });
    assert!(
        cached
            .values()
            .all(|b| b.finished[0].1 == TransferOutcome::Cached && b.bytes.is_empty()),
        "{cached:?}"
    );

    let layout = tmp.path().join("layout");
    let shown = layout.display().to_string();
    let exported = observe(TransferKind::Export, &shown, |sink| {
        let target = ExportTarget::Oci {
            dest: layout.clone(),
            tar: false,
        };
        export(&store, &target, &image, &[], sink).unwrap();
    });
    // The manifest, the config and the layers.
    assert_eq!(exported.len(), pushed.len() + 1, "{exported:?}");
    check_moved(&exported, &store);
}
