//! `-o type=tar` and `type=local`: the root file system read from the layers' directories
//! in the store, a layer only a blob holds unpacked there once and kept, and a failed
//! export leaving nothing under or beside its destination.

#![allow(clippy::unwrap_used)]

use std::fs;
use std::path::Path;

use rbuild_core::{
    ContentStore,
    export::{ExportTarget, export, import_rootfs},
    image::{Image, ImageConfig, ImageSpec},
    layer::{Compression, LayerOptions, chain_ids, tree_changes, write_layer_to},
    progress::NullProgress,
};

/// A store holding one imported image of a small tree (a blob, no layer directory yet).
fn imported(dir: &Path) -> (ContentStore, Image) {
    let src = dir.join("rootfs");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("etc/hostname"), "rbuild\n").unwrap();
    let options = LayerOptions::default().with_compression(Compression::Gzip);
    let (tar, _) =
        write_layer_to(Vec::new(), &src, &tree_changes(&src).unwrap(), &options).unwrap();
    let store = ContentStore::open(dir.join("store")).unwrap();
    let spec = ImageSpec::new(ImageConfig::for_host());
    let image = import_rootfs(&store, &tar[..], &spec, &LayerOptions::default()).unwrap();
    (store, image)
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_blob_only_layer_is_unpacked_into_the_store_once_and_exported_from_there() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, image) = imported(tmp.path());
    let layers = image.layers().unwrap();
    let chain = chain_ids(layers.iter().map(|(_, diff_id)| diff_id));
    let layer_dir = store.layer_dir(chain.last().unwrap());
    assert!(!layer_dir.exists());

    let tar = tmp.path().join("out/rootfs.tar");
    fs::create_dir_all(tar.parent().unwrap()).unwrap();
    let target = ExportTarget::Tar { dest: tar.clone() };
    export(&store, &target, &image, &[], &NullProgress).unwrap();
    assert!(
        layer_dir.is_dir(),
        "the unpacked layer is kept in the store"
    );
    let mut archive = tar::Archive::new(fs::File::open(&tar).unwrap());
    let mut listed = Vec::new();
    for entry in archive.entries().unwrap() {
        listed.push(entry.unwrap().path().unwrap().display().to_string());
    }
    assert_eq!(listed, ["etc/", "etc/hostname"]);

    let local = tmp.path().join("out/rootfs");
    let target = ExportTarget::Local {
        dest: local.clone(),
    };
    export(&store, &target, &image, &[], &NullProgress).unwrap();
    assert_eq!(fs::read(local.join("etc/hostname")).unwrap(), b"rbuild\n");
    assert_eq!(names_in(&tmp.path().join("out")), ["rootfs", "rootfs.tar"]);
}

#[test]
fn a_failed_export_leaves_nothing_under_or_beside_its_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, image) = imported(tmp.path());
    // The layer's blob is damaged and no directory holds the layer: nothing to export.
    let (blob, _) = &image.layers().unwrap()[0];
    let path = store.blob_path(blob);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::remove_file(&path).unwrap();
    fs::write(&path, &bytes).unwrap();

    let out = tmp.path().join("out");
    fs::create_dir_all(&out).unwrap();
    for target in [
        ExportTarget::Tar {
            dest: out.join("rootfs.tar"),
        },
        ExportTarget::Local {
            dest: out.join("rootfs"),
        },
    ] {
        let err = export(&store, &target, &image, &[], &NullProgress);
        assert!(err.is_err(), "{target:?} exported a damaged layer");
        assert!(
            names_in(&out).is_empty(),
            "{target:?} left {:?}",
            names_in(&out)
        );
    }
    assert!(
        !store.root().join("layers").exists() || names_in(&store.root().join("layers")).is_empty()
    );
}
