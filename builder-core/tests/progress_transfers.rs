//! An embedding program sees every blob a push, a pull and an export move, through a
//! closure sink: each transfer starts once, reports growing bytes up to the blob's size and
//! finishes once, with the outcome that says what happened to the blob.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Mutex;

use rbuild_core::{
    ContentStore, Event, ExportTarget, ImageName,
    export::export,
    image::ImageFormat,
    progress::{ProgressFn, TransferKind, TransferOutcome},
    registry::{
        PullPlatform, PushOptions, RegistryClient, RegistryOptions, UploadMode, pull, push,
    },
};
use support::images::make_image;
use support::registry::Registry;

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
        // Small chunks: the layer goes up in several requests, so bytes are reported
        // along the way.
        RegistryOptions::default()
            .with_chunk_size(64 << 10)
            .with_upload(UploadMode::Chunked),
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
        RegistryOptions::default()
            .with_chunk_size(64 << 10)
            .with_upload(UploadMode::Monolithic),
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
        pull(&client, &fresh, &dest, PullPlatform::Host, sink).unwrap();
    });
    assert_eq!(
        pulled.keys().collect::<Vec<_>>(),
        pushed.keys().collect::<Vec<_>>()
    );
    check_moved(&pulled, &fresh);
    let cached = observe(TransferKind::Pull, &target, |sink| {
        pull(&client, &fresh, &dest, PullPlatform::Host, sink).unwrap();
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

/// How the hostile registry below answers a blob `GET`.
#[derive(Clone, Copy, Debug)]
enum Lie {
    /// The blob followed by this many bytes more, Content-Length saying so.
    Longer(usize),
    /// The blob without its last this many bytes, Content-Length saying so.
    Shorter(usize),
    /// Content-Length says the blob's size, but the connection ends this many bytes early.
    Cut(usize),
    /// The blob, chunked (no Content-Length).
    Chunked,
}

/// A registry on 127.0.0.1 serving one image (`lie/app:1`, a config and one layer of
/// `layer` bytes) whose layer `GET`s answer as `lie` says; every other answer is honest.
/// Returns the address; the server thread lives as long as the test process.
fn hostile_registry(layer: Vec<u8>, lie: Lie) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"config":{}}"#.to_vec();
    let config_digest = rbuild_core::Digest::of(&config).to_string();
    let layer_digest = rbuild_core::Digest::of(&layer).to_string();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer.len()}],
    })
    .to_string()
    .into_bytes();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) <= 2 {
                    break;
                }
            }
            let mut words = request.split_whitespace();
            let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
            let head = |len: usize, media: &str| {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {media}\r\nContent-Length: {len}\r\n\
                     Docker-Content-Digest: {}\r\nConnection: close\r\n\r\n",
                    rbuild_core::Digest::of(&manifest)
                )
            };
            let _ = if path.ends_with("/manifests/1") {
                let media = "application/vnd.oci.image.manifest.v1+json";
                stream
                    .write_all(head(manifest.len(), media).as_bytes())
                    .and_then(|()| {
                        if method == "HEAD" {
                            Ok(())
                        } else {
                            stream.write_all(&manifest)
                        }
                    })
            } else if path.ends_with(&config_digest) {
                stream
                    .write_all(head(config.len(), "application/octet-stream").as_bytes())
                    .and_then(|()| stream.write_all(&config))
            } else if path.ends_with(&layer_digest) {
                let octets = "application/octet-stream";
                match lie {
                    Lie::Longer(more) => {
                        let mut body = layer.clone();
                        body.resize(layer.len() + more, b'x');
                        stream
                            .write_all(head(body.len(), octets).as_bytes())
                            .and_then(|()| stream.write_all(&body))
                    }
                    Lie::Shorter(less) => {
                        let body = &layer[..layer.len() - less];
                        stream
                            .write_all(head(body.len(), octets).as_bytes())
                            .and_then(|()| stream.write_all(body))
                    }
                    Lie::Cut(less) => stream
                        .write_all(head(layer.len(), octets).as_bytes())
                        .and_then(|()| stream.write_all(&layer[..layer.len() - less])),
                    Lie::Chunked => stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                              Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
                        )
                        .and_then(|()| {
                            for part in layer.chunks(7000) {
                                write!(stream, "{:x}\r\n", part.len())?;
                                stream.write_all(part)?;
                                stream.write_all(b"\r\n")?;
                            }
                            stream.write_all(b"0\r\n\r\n")
                        }),
                }
            } else if path == "/v2/" {
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            } else {
                stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
            };
        }
    });
    addr
}

/// A registry whose blob answers are longer, shorter or cut short of what the manifest
/// says: the pull fails, and its transfer still reads as the contract says (one start,
/// one end, bytes that never go back and never pass the blob's size); honest chunked
/// answers and a 0-byte layer pull as any other.
#[test]
fn lying_blob_lengths_fail_the_pull_with_sane_progress() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (vec![7u8; 40_000], Lie::Longer(3 << 20), false),
        (vec![7u8; 40_000], Lie::Shorter(1000), false),
        (vec![7u8; 40_000], Lie::Cut(1000), false),
        (vec![7u8; 40_000], Lie::Chunked, true),
        (Vec::new(), Lie::Chunked, true),
        (Vec::new(), Lie::Longer(5000), false),
    ];
    for (i, (layer, lie, succeeds)) in cases.into_iter().enumerate() {
        let size = layer.len() as u64;
        let layer_digest = rbuild_core::Digest::of(&layer).to_string();
        let addr = hostile_registry(layer, lie);
        let name: ImageName = format!("{addr}/lie/app:1").parse().unwrap();
        let client = RegistryClient::with_credentials(
            &addr,
            None,
            RegistryOptions::default()
                .with_retries(1)
                .with_backoff(std::time::Duration::from_millis(1)),
        );
        let store = ContentStore::open(tmp.path().join(format!("store{i}"))).unwrap();
        let mut result = None;
        let seen = observe(TransferKind::Pull, &name.to_string(), |sink| {
            result = Some(pull(&client, &store, &name, PullPlatform::Host, sink));
        });
        let result = result.unwrap();
        assert_eq!(result.is_ok(), succeeds, "{lie:?}: {result:?}");
        let blob = &seen[&layer_digest];
        assert_eq!(blob.started, 1, "{lie:?}: {blob:?}");
        assert_eq!(blob.finished.len(), 1, "{lie:?}: {blob:?}");
        assert!(blob.bytes.is_sorted(), "{lie:?}: bytes went back: {blob:?}");
        assert!(
            blob.bytes.iter().all(|&b| b <= size) && blob.finished[0].0 <= size,
            "{lie:?}: more bytes than the blob's {size} reported: {blob:?}"
        );
        let outcome = blob.finished[0].1;
        let expected = if succeeds {
            TransferOutcome::Done
        } else {
            TransferOutcome::Failed
        };
        assert_eq!(outcome, expected, "{lie:?}: {blob:?}");
    }
}
