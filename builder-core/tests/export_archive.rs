//! save/load round trips (docker and OCI archives), import of a rootfs tar, verify
//! finding corruption, and prune keeping what named images need.

#![allow(clippy::unwrap_used)]

use std::fs;

use rbuild_core::{
    ContentStore, ImageName,
    export::{Saved, import_rootfs, load_archive, save_images},
    image::{ImageConfig, ImageFormat, ImageSpec, load_image, prune, verify},
    layer::{Compression, LayerOptions, tree_changes, write_layer_to},
};

/// A plain rootfs tar of a small tree, written with rbuild's own layer writer.
fn rootfs_tar(dir: &std::path::Path) -> Vec<u8> {
    let src = dir.join("rootfs");
    fs::create_dir_all(src.join("etc")).unwrap();
    fs::write(src.join("etc/hostname"), "rbuild\n").unwrap();
    let options = LayerOptions::default().with_compression(Compression::Gzip);
    let (bytes, _) =
        write_layer_to(Vec::new(), &src, &tree_changes(&src).unwrap(), &options).unwrap();
    bytes
}

#[test]
fn import_save_load_verify_prune() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ContentStore::open(tmp.path().join("a")).unwrap();
    let tar = rootfs_tar(tmp.path());
    let spec = ImageSpec::new(ImageConfig::for_host());
    let image = import_rootfs(&store, &tar[..], &spec, &LayerOptions::default()).unwrap();
    let name: ImageName = "imported:1".parse().unwrap();
    store.tag(&name, &image.descriptor).unwrap();
    assert!(verify(&store).unwrap().is_empty());

    for format in [ImageFormat::Docker, ImageFormat::Oci] {
        let archive = tmp.path().join(format!("{format:?}.tar"));
        save_images(
            &store,
            &archive,
            &[(Saved::Image(image.clone()), vec![name.clone()])],
            format,
            &rbuild_core::progress::NullProgress,
        )
        .unwrap();
        let other = ContentStore::open(tmp.path().join(format!("{format:?}-store"))).unwrap();
        let loaded = load_archive(&other, &archive).unwrap();
        assert_eq!(loaded.len(), 1);
        assert_eq!(loaded[0].1, vec![name.clone()], "{format:?}: names");
        assert_eq!(
            loaded[0].0.config_digest, image.config_digest,
            "{format:?}: image id"
        );
        let found = other.resolve("imported:1").unwrap();
        let again = load_image(&other, &found.descriptor).unwrap();
        assert_eq!(again.layers().unwrap().len(), 1);
        assert!(
            verify(&other).unwrap().is_empty(),
            "{format:?}: loaded store verifies"
        );
    }

    // An unreferenced blob goes, the image's blobs stay.
    let stray = store.put(b"stray").unwrap();
    let report = prune(&store, false).unwrap();
    assert_eq!(report.blobs, vec![stray.digest.clone()]);
    assert!(verify(&store).unwrap().is_empty());

    // Corruption is reported, naming the blob.
    let layer = image.layers().unwrap()[0].0.clone();
    fs::write(store.blob_path(&layer), b"garbage").unwrap();
    let problems = verify(&store).unwrap();
    assert!(
        problems.iter().any(|p| p.0.contains(layer.as_str())),
        "{problems:?}"
    );
}
