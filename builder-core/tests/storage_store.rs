//! The content store: idempotent writes, verified reads, names, shared use, and the
//! unpacked-layer cache serving as overlay lower dirs.

#![allow(clippy::unwrap_used)]

mod support;

use std::fs;
use std::process::Command;
use std::sync::Arc;

use rbuild_core::{
    ContentStore, Digest, ImageName,
    change::{ChangeKind, ChangeSet},
    layer::{Compression, LayerOptions, OVERLAY_OPAQUE_XATTR, tree_changes, write_layer},
    store::StoreError,
};
use support::require::require_root;
use support::storage::*;

#[test]
fn put_is_idempotent_and_reads_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path()).unwrap();
    let a = store.put(b"hello").unwrap();
    let b = store.put(b"hello").unwrap();
    assert_eq!(a, b);
    assert_eq!(a.digest, Digest::of(b"hello"));
    assert_eq!(store.read(&a.digest).unwrap(), b"hello");
    assert!(tmp.path().join("oci-layout").is_file());
    assert_eq!(
        fs::read_dir(store.tmp_dir()).unwrap().count(),
        0,
        "temp files left"
    );

    fs::write(store.blob_path(&a.digest), b"tampered").unwrap();
    match store.read(&a.digest) {
        Err(StoreError::DigestMismatch { expected, .. }) => assert_eq!(expected, a.digest),
        other => panic!("corruption not detected: {other:?}"),
    }
    assert!(store.verify_blob(&a.digest).is_err());
}

#[test]
fn names_from_many_threads_all_land_in_index_json() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(ContentStore::open(tmp.path()).unwrap());
    let blob = store.put(b"{}").unwrap();
    let desc = oci_spec::image::Descriptor::new(
        oci_spec::image::MediaType::ImageManifest,
        blob.size,
        &blob.digest,
    );
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (store, desc) = (Arc::clone(&store), desc.clone());
            std::thread::spawn(move || {
                // Each thread opens its own store handle, as separate processes would.
                let own = ContentStore::open(store.root()).unwrap();
                let name: ImageName = format!("img{i}:t").parse().unwrap();
                own.tag(&name, &desc).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut names: Vec<String> = store
        .images()
        .unwrap()
        .iter()
        .map(|i| i.name.familiar())
        .collect();
    names.sort();
    let want: Vec<String> = (0..8).map(|i| format!("img{i}:t")).collect();
    assert_eq!(names, want);
    let found = store.resolve("img3:t").unwrap();
    assert_eq!(found.digest().unwrap(), blob.digest);
    store.untag(&"img3:t".parse().unwrap()).unwrap();
    assert!(store.resolve("img3:t").is_err());
    assert!(
        store.resolve(&blob.digest.hex()[..8]).is_ok(),
        "short id lookup"
    );
}

#[test]
fn unpacked_layers_work_as_overlay_lower_dirs() {
    require_root("overlay mounts and trusted.overlay xattrs need root");
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path().join("store")).unwrap();
    let (low, up) = (tmp.path().join("lower"), tmp.path().join("upper"));
    fs::create_dir_all(low.join("d/sub")).unwrap();
    fs::write(low.join("d/old"), "old").unwrap();
    fs::write(low.join("gone"), "gone").unwrap();
    fs::write(low.join("kept"), "kept").unwrap();
    copy_tree(&low, &up);
    fs::remove_file(up.join("gone")).unwrap();
    fs::remove_dir_all(up.join("d")).unwrap();
    fs::create_dir(up.join("d")).unwrap();
    fs::write(up.join("d/new"), "new").unwrap();
    let mut changes = ChangeSet::new();
    changes.record("gone", ChangeKind::Deleted).unwrap();
    changes.record("d", ChangeKind::Modified).unwrap();
    changes.mark_opaque("d").unwrap();
    changes.record("d/new", ChangeKind::Added).unwrap();

    let options = LayerOptions::default().with_compression(Compression::Zstd);
    let base = write_layer(&store, &low, &tree_changes(&low).unwrap(), &options).unwrap();
    let diff = write_layer(&store, &up, &changes, &options).unwrap();
    let stack = [
        (&base.blob.digest, &base.diff_id),
        (&diff.blob.digest, &diff.diff_id),
    ];
    let dirs = store.unpack_layers(stack).unwrap();
    let (base_dir, diff_dir) = (dirs[0].clone(), dirs[1].clone());
    let chain = rbuild_core::layer::chain_ids([&base.diff_id, &diff.diff_id]);
    assert_eq!(base_dir, store.layer_dir(&base.diff_id));
    assert_eq!(diff_dir, store.layer_dir(&chain[1]));
    // Unpacking again is a cache hit.
    assert_eq!(store.unpack_layers(stack).unwrap(), dirs);

    let meta = fs::symlink_metadata(diff_dir.join("gone")).unwrap();
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    assert!(
        meta.file_type().is_char_device() && meta.rdev() == 0,
        "whiteout is not 0:0"
    );
    assert_eq!(
        xattrs(&diff_dir.join("d"))
            .get(OVERLAY_OPAQUE_XATTR.as_bytes())
            .map(Vec::as_slice),
        Some(&b"y"[..])
    );

    let merged = tmp.path().join("merged");
    fs::create_dir(&merged).unwrap();
    let opts = format!("lowerdir={}:{}", diff_dir.display(), base_dir.display());
    run_ok(
        Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(&merged),
    );
    let got = snapshot(&merged);
    run_ok(Command::new("umount").arg(&merged));
    let want = expected_snapshot(&up);
    let kinds = |s: &Tree| {
        s.entries
            .iter()
            .map(|(p, e)| (p.clone(), e.kind, e.digest.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(kinds(&got), kinds(&want), "overlay of unpacked layers");
}

fn run_ok(cmd: &mut Command) {
    let status = cmd.status().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(status.success(), "{cmd:?} failed");
}

/// Image IDs as docker shows them are config digests: `run`, `tag`, `rmi`, `inspect` find
/// an image by its config digest (whole, `sha256:`-prefixed or a unique prefix) and still by
/// its full manifest digest; a prefix two images share is refused, not guessed.
#[test]
fn images_resolve_by_config_digest_and_refuse_ambiguous_prefixes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path()).unwrap();
    let image = |config: &rbuild_core::store::Blob| {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config.digest.to_string(),
                "size": config.size,
            },
            "layers": [],
        });
        let blob = store.put(manifest.to_string().as_bytes()).unwrap();
        oci_spec::image::Descriptor::new(
            oci_spec::image::MediaType::ImageManifest,
            blob.size,
            &blob.digest,
        )
    };
    // Two configs whose digests share their first four hex digits.
    let mut seen = std::collections::HashMap::new();
    let (a, b) = (0..100_000u32)
        .find_map(|i| {
            let blob = store.put(format!("{{\"n\":{i}}}").as_bytes()).unwrap();
            let prefix = blob.digest.hex()[..4].to_owned();
            seen.insert(prefix, blob.clone())
                .map(|earlier| (earlier, blob))
        })
        .expect("a shared 4-digit prefix within 100k configs");
    let (ma, mb) = (image(&a), image(&b));
    store.tag(&"one:a".parse().unwrap(), &ma).unwrap();
    store.tag(&"two:b".parse().unwrap(), &mb).unwrap();
    let name_of = |reference: &str| store.resolve(reference).map(|i| i.name.familiar());

    assert_eq!(name_of(&a.digest.to_string()).unwrap(), "one:a");
    assert_eq!(name_of(a.digest.hex()).unwrap(), "one:a");
    assert_eq!(name_of(&b.digest.hex()[..12]).unwrap(), "two:b");
    assert_eq!(
        name_of(&format!("sha256:{}", &b.digest.hex()[..12])).unwrap(),
        "two:b"
    );
    assert_eq!(name_of(ma.digest().as_ref()).unwrap(), "one:a");
    match store.resolve(&a.digest.hex()[..4]) {
        Err(StoreError::AmbiguousImageId(_)) => {}
        other => panic!("a shared prefix must be ambiguous, got {other:?}"),
    }
    // A manifest digest prefix is not an image ID.
    let manifest_hex = ma
        .digest()
        .to_string()
        .trim_start_matches("sha256:")
        .to_owned();
    if !a.digest.hex().starts_with(&manifest_hex[..12])
        && !b.digest.hex().starts_with(&manifest_hex[..12])
    {
        assert!(store.resolve(&manifest_hex[..12]).is_err());
    }
    assert_eq!(
        store.image_id(&store.resolve("one:a").unwrap()).unwrap(),
        a.digest
    );
}

/// A tar entry of a hand-made layer: (name, mode, uid, content; `None` for a directory).
type TarEntry<'a> = (&'a str, u32, u64, Option<&'a [u8]>);

/// Stores an uncompressed layer holding exactly `entries` (no implied parent added) and
/// returns (blob digest, diff_id), which are the same for a plain tar.
fn hand_made_layer(store: &ContentStore, entries: &[TarEntry<'_>]) -> (Digest, Digest) {
    let mut tar = tar::Builder::new(Vec::new());
    for (name, mode, uid, content) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_mode(*mode);
        h.set_uid(*uid);
        h.set_gid(*uid);
        h.set_mtime(1_000_000_000);
        let body = content.unwrap_or_default();
        h.set_entry_type(if content.is_some() {
            tar::EntryType::Regular
        } else {
            tar::EntryType::Directory
        });
        h.set_size(body.len() as u64);
        tar.append_data(&mut h, name, body).unwrap();
    }
    let bytes = tar.into_inner().unwrap();
    let blob = store.put(&bytes).unwrap();
    (blob.digest.clone(), blob.digest)
}

fn mode_owner(path: &std::path::Path) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = fs::symlink_metadata(path).unwrap();
    (m.mode() & 0o7777, m.uid(), m.gid())
}

/// issue 14, bug 1: a layer holding `tmp/sub/b` without `tmp/` got `tmp/` made 0:0 0755
/// in its unpacked dir, and overlay showed that above the real 1777 `/tmp`: a later
/// `USER nobody` step could not write there. An implied parent now takes the attributes
/// of the directory the layers below show (containerd's `mkparent`), and 0755 only where
/// they show none: absent, whited out, or under an opaque directory.
#[test]
fn implied_parents_take_the_lower_directorys_owner_mode_and_mtime() {
    require_root("the owners of unpacked entries are set only as root");
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path().join("store")).unwrap();
    let base = hand_made_layer(
        &store,
        &[
            ("tmp/", 0o1777, 0, None),
            ("home/", 0o755, 0, None),
            ("home/app/", 0o750, 1000, None),
            ("gone/", 0o700, 7, None),
            ("opq/", 0o711, 0, None),
            ("opq/keep/", 0o700, 8, None),
            ("replaced/", 0o700, 9, None),
        ],
    );
    let middle = hand_made_layer(
        &store,
        &[
            (".wh.gone", 0o644, 0, Some(b"")),
            ("opq/", 0o711, 0, None),
            ("opq/.wh..wh..opq", 0o644, 0, Some(b"")),
        ],
    );
    let top = hand_made_layer(
        &store,
        &[
            ("tmp/sub/b", 0o644, 0, Some(b"b")),
            ("home/app/work/x", 0o644, 1000, Some(b"x")),
            ("gone/again/f", 0o644, 0, Some(b"f")),
            ("opq/keep/f", 0o644, 0, Some(b"f")),
            // An implied parent the layer then replaces with a file.
            ("replaced/f", 0o644, 0, Some(b"f")),
            ("replaced", 0o600, 0, Some(b"now a file")),
        ],
    );
    let dirs = store
        .unpack_layers([(&base.0, &base.1), (&middle.0, &middle.1), (&top.0, &top.1)])
        .unwrap();
    let top_dir = &dirs[2];
    assert_eq!(mode_owner(&top_dir.join("tmp")), (0o1777, 0, 0), "/tmp");
    assert_eq!(mode_owner(&top_dir.join("home/app")), (0o750, 1000, 1000));
    // Where the layers below have nothing, containerd's default.
    assert_eq!(mode_owner(&top_dir.join("tmp/sub")), (0o755, 0, 0));
    assert_eq!(mode_owner(&top_dir.join("home/app/work")), (0o755, 0, 0));
    // Whited out or hidden by an opaque directory: nothing shows below.
    assert_eq!(mode_owner(&top_dir.join("gone")), (0o755, 0, 0), "whiteout");
    assert_eq!(
        mode_owner(&top_dir.join("opq/keep")),
        (0o755, 0, 0),
        "opaque"
    );
    use std::os::unix::fs::MetadataExt;
    let mtime = fs::metadata(top_dir.join("tmp")).unwrap().mtime();
    assert_eq!(mtime, 1_000_000_000, "the lower /tmp's mtime");

    // The same layer over a stack without those directories unpacks on its own: its
    // directory is named by chain ID, not diff_id.
    let alone = store.unpack_layers([(&top.0, &top.1)]).unwrap();
    assert_ne!(alone[0], dirs[2]);
    assert_eq!(mode_owner(&alone[0].join("tmp")), (0o755, 0, 0));
}

/// issue 14, bug 2: the same layer twice in a stack (`RUN echo a > /a` twice within a
/// second) was one unpacked directory given twice as an overlay lower, and the mount
/// failed with ELOOP. Each place in a stack now has its own directory.
#[test]
fn the_same_layer_twice_in_a_stack_mounts_as_two_lowers() {
    require_root("overlay mounts need root");
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path().join("store")).unwrap();
    let base = hand_made_layer(&store, &[("bin/", 0o755, 0, None)]);
    let a = hand_made_layer(&store, &[("a", 0o644, 0, Some(b"a\n"))]);
    let dirs = store
        .unpack_layers([(&base.0, &base.1), (&a.0, &a.1), (&a.0, &a.1)])
        .unwrap();
    assert_ne!(dirs[1], dirs[2]);
    let merged = tmp.path().join("merged");
    fs::create_dir(&merged).unwrap();
    let lowers: Vec<String> = dirs.iter().rev().map(|d| d.display().to_string()).collect();
    let opts = format!("lowerdir={}", lowers.join(":"));
    run_ok(
        Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(&merged),
    );
    let content = fs::read(merged.join("a"));
    run_ok(Command::new("umount").arg(&merged));
    assert_eq!(content.unwrap(), b"a\n");
}
