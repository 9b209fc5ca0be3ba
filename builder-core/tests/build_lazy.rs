//! Layers kept as directories: on the overlay snapshotter a step's layer is its upper
//! directory, moved into the store (`layers/<chain_id>/`), and a blob is made from it
//! only when an output needs one (issue 18, "compress lazily").
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use rbuild_core::{ContentStore, Digest, ExportTarget, layer::chain_ids};
use support::build::{build, build_with, busybox_store, cached, context};

/// A build stage whose layer no image names, and a target copying from it.
const TWO_STAGES: &str = "FROM busybox AS dep
RUN echo dep > /dep && mkdir -p /d/e && echo x > /d/e/f
FROM busybox
COPY --from=dep /dep /dep
";

/// Every blob of the store with its modification time.
fn blobs(store: &ContentStore) -> BTreeMap<Digest, SystemTime> {
    store
        .blobs()
        .unwrap()
        .into_iter()
        .map(|d| {
            let mtime = std::fs::metadata(store.blob_path(&d))
                .unwrap()
                .modified()
                .unwrap();
            (d, mtime)
        })
        .collect()
}

/// The cache entry of `key` as JSON.
fn entry(store: &ContentStore, key: &str) -> serde_json::Value {
    let hex = key.trim_start_matches("sha256:");
    let path = store.root().join("cache").join(format!("{hex}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// The cache key of the step whose name contains `needle`.
fn key_of(result: &rbuild_core::BuildResult, needle: &str) -> String {
    result
        .steps
        .iter()
        .find(|s| s.name.contains(needle))
        .unwrap_or_else(|| panic!("no step {needle} in {:?}", cached(result)))
        .cache_key
        .to_string()
}

/// The directory of the layer an entry records, which must name its chain.
fn dir_of(store: &ContentStore, entry: &serde_json::Value) -> PathBuf {
    let chain: Digest = entry["layer"]["chain_id"]
        .as_str()
        .unwrap_or_else(|| panic!("entry without chain_id: {entry}"))
        .parse()
        .unwrap();
    store.layer_dir(&chain)
}

#[test]
fn a_build_stages_layer_is_a_directory_and_never_a_blob() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[("a.txt", "a\n")]);
    let before = blobs(&store);
    let first = build(&store, TWO_STAGES, &ctx);
    let after = blobs(&store);
    // The target's config, manifest and its one new layer: nothing for the dep stage.
    assert_eq!(
        after.len(),
        before.len() + 3,
        "blobs added: {:?}",
        after
            .keys()
            .filter(|d| !before.contains_key(*d))
            .collect::<Vec<_>>()
    );
    let dep = entry(&store, &key_of(&first, "[dep 2/2] RUN"));
    assert!(dep["layer"].get("digest").is_none(), "{dep}");
    let dep_dir = dir_of(&store, &dep);
    assert_eq!(
        std::fs::read_to_string(dep_dir.join("dep")).unwrap(),
        "dep\n"
    );

    // A rebuild takes every step from the cache, the dep stage's from its directory,
    // and adds or rewrites no blob.
    let again = build(&store, TWO_STAGES, &ctx);
    assert!(
        cached(&again).iter().all(|(_, hit)| *hit),
        "{:?}",
        cached(&again)
    );
    assert_eq!(again.image_id, first.image_id);
    assert_eq!(blobs(&store), after);
}

#[test]
fn a_layer_directory_changed_by_hand_gives_no_blob() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[("a.txt", "a\n")]);
    let first = build(&store, TWO_STAGES, &ctx);
    let dep = entry(&store, &key_of(&first, "[dep 2/2] RUN"));
    std::fs::write(dir_of(&store, &dep).join("dep"), "edited\n").unwrap();
    let before = blobs(&store);
    // The dep stage as the target needs a blob of the edited directory.
    let (result, _) = build_with(&store, TWO_STAGES, &ctx, |r| {
        r.spec.target = Some("dep".to_owned());
    });
    let err = rbuild_core::error_chain::error_chain(&result.unwrap_err());
    assert!(err.contains("diff_id mismatch"), "{err}");
    assert_eq!(blobs(&store), before, "a blob was stored");
}

#[test]
fn an_entry_of_the_old_format_with_its_blob_and_no_directory_is_a_hit() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[("a.txt", "a\n")]);
    let df = "FROM busybox\nRUN echo one > /one\nRUN echo two > /two\n";
    let first = build(&store, df, &ctx);
    // The entry of the first RUN as the previous version wrote it: the blob named, no
    // chain; its directory and record gone.
    let key = key_of(&first, "RUN echo one");
    let mut e = entry(&store, &key);
    let dir = dir_of(&store, &e);
    let layers = first.image.layers().unwrap();
    let (blob, diff_id) = &layers[layers.len() - 2];
    assert_eq!(e["layer"]["diff_id"].as_str().unwrap(), diff_id.as_str());
    let size = std::fs::metadata(store.blob_path(blob)).unwrap().len();
    e["layer"] = serde_json::json!({
        "digest": blob.to_string(),
        "diff_id": diff_id.to_string(),
        "size": size,
        "compression": "gzip",
    });
    let hex = key.trim_start_matches("sha256:");
    std::fs::write(
        store.root().join("cache").join(format!("{hex}.json")),
        serde_json::to_vec(&e).unwrap(),
    )
    .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let chain = dir.file_name().unwrap().to_str().unwrap().to_owned();
    for ext in ["json", "changes"] {
        let _ = std::fs::remove_file(store.root().join("layerdb").join(format!("{chain}.{ext}")));
    }
    // The second RUN is a hit too (its directory is there); a RUN after them needs the
    // first one's directory: unpacked from the blob.
    let again = build(&store, df, &ctx);
    assert!(
        cached(&again).iter().all(|(_, hit)| *hit),
        "{:?}",
        cached(&again)
    );
    assert_eq!(again.image_id, first.image_id);
    let more = format!("{df}RUN cat /one /two > /both\n");
    build(&store, &more, &ctx);
    assert!(dir.is_dir(), "the first layer was not unpacked again");
}

#[test]
fn an_entry_without_a_blob_is_refused_by_the_previous_format() {
    /// The layer record of the previous version: every field required.
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct OldCachedLayer {
        digest: String,
        diff_id: String,
        size: u64,
        compression: String,
    }
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct OldEntry {
        key: String,
        parent: String,
        created_by: String,
        layer: Option<OldCachedLayer>,
    }
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[("a.txt", "a\n")]);
    let first = build(&store, TWO_STAGES, &ctx);
    let dep = entry(&store, &key_of(&first, "[dep 2/2] RUN"));
    assert!(
        serde_json::from_value::<OldEntry>(dep.clone()).is_err(),
        "the previous version would read {dep} as a layer"
    );
}

/// Each entry of the layer's tar (from its blob) and the same path of its directory
/// agree on mode, owner and mtime (whole seconds): what a later step sees in the
/// directory is what a layer unpacked from the blob would show.
fn assert_dir_matches_blob(store: &ContentStore, blob: &Digest, dir: &Path) {
    let mut gz = flate2::read::GzDecoder::new(std::fs::File::open(store.blob_path(blob)).unwrap());
    let mut bytes = Vec::new();
    gz.read_to_end(&mut bytes).unwrap();
    let mut archive = tar::Archive::new(&bytes[..]);
    let mut seen = 0;
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let path = entry.path().unwrap().into_owned();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(".wh.") {
            continue;
        }
        let h = entry.header();
        let m = std::fs::symlink_metadata(dir.join(&path))
            .unwrap_or_else(|e| panic!("{} in {}: {e}", path.display(), dir.display()));
        let what = format!("{} of {}", path.display(), dir.display());
        assert_eq!(
            u64::from(m.mode() & 0o7777),
            h.mode().unwrap() as u64 & 0o7777,
            "{what}"
        );
        assert_eq!(u64::from(m.uid()), h.uid().unwrap(), "{what}");
        assert_eq!(u64::from(m.gid()), h.gid().unwrap(), "{what}");
        assert_eq!(m.mtime() as u64, h.mtime().unwrap(), "mtime of {what}");
        assert_eq!(m.mtime_nsec(), 0, "sub-second mtime of {what}");
        seen += 1;
    }
    assert!(seen > 0, "no entries in {blob}");
}

/// Steps of many shapes: new, changed and deleted files, a directory made opaque, a
/// file replaced by a directory, links, a FIFO, modes and owners.
const SHAPES: &str = "FROM busybox
RUN mkdir -p /a/b && echo 1 > /a/b/f && ln -s f /a/b/l && ln /a/b/f /a/b/h && mkfifo /a/p && chown 7:8 /a/b/f && chmod 640 /a/b/f
RUN rm /a/b/l && echo 2 >> /a/b/f && rm -rf /a/b && mkdir /a/b && echo 3 > /a/b/g && rm /etc/hostname; mkdir /etc/hostname 2>/dev/null; touch /a
RUN rm -rf /a && mkdir /a && echo 4 > /a/n
";

fn check_shapes(epoch: Option<u64>) {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[("a.txt", "a\n")]);
    let (result, _) = build_with(&store, SHAPES, &ctx, |r| r.spec.source_date_epoch = epoch);
    let result = result.unwrap();
    let layers = result.image.layers().unwrap();
    let chain = chain_ids(layers.iter().map(|(_, d)| d));
    for ((blob, _), chain_id) in layers.iter().zip(&chain).skip(1) {
        assert_dir_matches_blob(&store, blob, &store.layer_dir(chain_id));
    }
    // Entries, kinds, modes, owners, contents, links and xattrs, as `store verify --deep`
    // checks the layers of named images.
    let name: rbuild_core::ImageName = "shapes:1".parse().unwrap();
    rbuild_core::image::tag_image(&store, &name, &result.image).unwrap();
    let check = rbuild_core::image::verify_layers(&store, false).unwrap();
    assert!(check.checked >= 4, "{check:?}");
    assert!(check.problems.is_empty(), "{check:?}");
    // The layers as the tar export shows them are unchanged by the way they were kept.
    let out = dir.path().join("out.tar");
    rbuild_core::export::export(
        &store,
        &ExportTarget::Tar { dest: out.clone() },
        &result.image,
        &[],
        &rbuild_core::progress::NullProgress,
    )
    .unwrap();
    assert!(std::fs::metadata(out).unwrap().len() > 0);
}

#[test]
fn layer_directories_read_as_layers_unpacked_from_their_blobs() {
    check_shapes(None);
}

#[test]
fn layer_directories_read_as_layers_unpacked_from_their_blobs_with_an_epoch() {
    check_shapes(Some(1_000_000_000));
}

/// The names in the layer blob `blob` (gzip tar).
fn blob_names(store: &ContentStore, blob: &Digest) -> Vec<String> {
    let gz = flate2::read::GzDecoder::new(std::fs::File::open(store.blob_path(blob)).unwrap());
    let mut archive = tar::Archive::new(gz);
    archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// A step sets overlay's opaque xattr of the other namespace (`user.overlay.opaque`,
/// which the root overlay mount does not read) on a directory of a lower layer; the
/// step's diff takes it as opaque, and the layer's tar says so. The next step must see
/// the directory as that tar unpacked shows it, and its own layer must not make the
/// directory opaque again because the xattr was copied up.
#[test]
fn an_opaque_xattr_a_step_sets_reads_in_the_next_step_as_its_layer_says() {
    if !rbuild_core::privilege::Privilege::current().is_host_root() {
        panic!("this test needs root of the host (the overlay mount reads trusted.* xattrs)");
    }
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    std::fs::copy(
        support::probe::probe_dir().join("bin/probe"),
        ctx.join("probe"),
    )
    .unwrap();
    let df = "FROM busybox
COPY probe /usr/local/bin/probe
RUN mkdir -p /lo/dir && echo 1 > /lo/dir/f
RUN probe setxattr /lo/dir user.overlay.opaque y | grep 'setxattr: ok'
RUN ls -A /lo/dir > /seen && echo h > /lo/dir/h
";
    let result = build(&store, df, &ctx);
    let root = support::build::rootfs(&store, &result.image, dir.path());
    let mut seen: Vec<String> = std::fs::read_to_string(root.join("seen"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    seen.push("h".to_owned());
    seen.sort();
    let mut merged: Vec<String> = std::fs::read_dir(root.join("lo/dir"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    merged.sort();
    assert_eq!(seen, merged, "what the last step saw in /lo/dir, and h");
    let layers = result.image.layers().unwrap();
    let (last, _) = layers.last().unwrap();
    let names = blob_names(&store, last);
    assert!(
        !names.iter().any(|n| n.ends_with(".wh..wh..opq")),
        "the last step's layer makes /lo/dir opaque: {names:?}"
    );
}

/// A layer directory changed by hand, found out when its blob is made, is not used
/// again: the next build runs its step again (even with `--no-cache` and an epoch, when
/// the step gives the very same layer, whose directory is there already) and succeeds.
#[test]
fn a_layer_directory_found_changed_is_made_again_by_the_next_build() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[("a.txt", "a\n")]);
    let epoch = |r: &mut rbuild_core::BuildRequest| r.spec.source_date_epoch = Some(0);
    let (first, _) = build_with(&store, TWO_STAGES, &ctx, epoch);
    let first = first.unwrap();
    let dep = entry(&store, &key_of(&first, "[dep 2/2] RUN"));
    let dep_dir = dir_of(&store, &dep);
    std::fs::write(dep_dir.join("dep"), "edited\n").unwrap();
    let target = |r: &mut rbuild_core::BuildRequest| {
        r.spec.source_date_epoch = Some(0);
        r.spec.target = Some("dep".to_owned());
    };
    let (result, _) = build_with(&store, TWO_STAGES, &ctx, target);
    let err = rbuild_core::error_chain::error_chain(&result.unwrap_err());
    assert!(err.contains("diff_id mismatch"), "{err}");
    assert!(err.contains(&*dep_dir.to_string_lossy()), "{err}");
    for no_cache in [true, false] {
        let (result, _) = build_with(&store, TWO_STAGES, &ctx, |r| {
            target(r);
            r.options.no_cache = no_cache;
        });
        let result = result.unwrap_or_else(|e| {
            panic!(
                "no_cache {no_cache}: {}",
                rbuild_core::error_chain::error_chain(&e)
            )
        });
        assert_eq!(
            support::build::read(&store, &result.image, dir.path(), "/dep"),
            "dep\n"
        );
    }
    assert_eq!(
        std::fs::read_to_string(dep_dir.join("dep")).unwrap(),
        "dep\n"
    );
}

/// The sha256 of the gzip blob `blob` decompressed: its diff_id.
fn diff_id_of(store: &ContentStore, blob: &Digest) -> String {
    let mut gz = flate2::read::GzDecoder::new(std::fs::File::open(store.blob_path(blob)).unwrap());
    let mut bytes = Vec::new();
    gz.read_to_end(&mut bytes).unwrap();
    Digest::of(&bytes).to_string()
}

/// A step that runs again (`--no-cache`) and makes a layer whose directory and record
/// are there already gives the image a blob of that layer, whatever blob the record
/// names (here one of another layer, as a damaged or edited store may).
#[test]
fn a_step_run_again_never_takes_the_blob_a_stale_record_names() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[("a.txt", "a\n")]);
    let target = |r: &mut rbuild_core::BuildRequest| {
        r.spec.source_date_epoch = Some(0);
        r.spec.target = Some("dep".to_owned());
    };
    let (first, _) = build_with(&store, TWO_STAGES, &ctx, target);
    let first = first.unwrap();
    let layers = first.image.layers().unwrap();
    let chain = chain_ids(layers.iter().map(|(_, d)| d));
    let (blob, _) = &layers[0];
    let record = store
        .root()
        .join("layerdb")
        .join(format!("{}.json", chain.last().unwrap().hex()));
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    let size = std::fs::metadata(store.blob_path(blob)).unwrap().len();
    json["blobs"] = serde_json::json!([["gzip", blob.to_string(), size]]);
    std::fs::write(&record, serde_json::to_vec(&json).unwrap()).unwrap();
    let (again, _) = build_with(&store, TWO_STAGES, &ctx, |r| {
        target(r);
        r.options.no_cache = true;
    });
    let again = again.unwrap();
    for (blob, diff_id) in again.image.layers().unwrap() {
        assert_eq!(diff_id_of(&store, &blob), diff_id.as_str(), "blob {blob}");
    }
}
