#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::io::Write as _;
use std::process::Command;

use oci_spec::image::{Descriptor, ImageManifest, MediaType};

use super::*;

fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn a_layout_umoci_wrote_opens_with_a_typed_index_and_verified_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("image");
    let umoci = |args: &[&str]| {
        let out = Command::new("umoci")
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("this test needs umoci (the Debian package umoci) on PATH: {e}")
            });
        assert!(out.status.success(), "umoci {args:?}: {out:?}");
    };
    umoci(&["init", "--layout", image.to_str().unwrap()]);
    umoci(&["new", "--image", &format!("{}:v1", image.display())]);

    let layout = OciLayout::open(&image).unwrap();
    let desc = layout
        .find("v1")
        .unwrap()
        .expect("umoci names the image v1");
    assert_eq!(desc.media_type(), &MediaType::ImageManifest);
    let digest = Digest::try_from(desc.digest()).unwrap();
    let bytes = layout.read_document(&digest).unwrap();
    assert_eq!(bytes.len() as u64, desc.size());
    let manifest: ImageManifest = serde_json::from_slice(&bytes).unwrap();
    let config = Digest::try_from(manifest.config().digest()).unwrap();
    assert_eq!(
        layout.verify_blob(&config).unwrap(),
        manifest.config().size()
    );
    assert!(layout.blobs().unwrap().contains(&config));
    assert!(layout.find("v2").unwrap().is_none());
}

#[test]
fn a_created_layout_is_one_skopeo_and_umoci_would_read() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("out");
    let layout = OciLayout::create(&root).unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join(LAYOUT_FILE)).unwrap(),
        r#"{"imageLayoutVersion":"1.0.0"}"#
    );
    assert!(root.join("blobs/sha256").is_dir());
    assert!(
        !root.join(INDEX_FILE).exists(),
        "the index is written last, by write_index"
    );
    let blob = layout.put(b"{}").unwrap();
    let mut index = layout.index_or_empty().unwrap();
    let mut d = Descriptor::new(MediaType::ImageManifest, blob.size, &blob.digest);
    d.set_annotations(Some(HashMap::from([(
        REF_NAME_ANNOTATION.to_owned(),
        "t".to_owned(),
    )])));
    index.set_manifests(vec![d.clone()]);
    layout.write_index(&index).unwrap();
    let again = OciLayout::open(&root).unwrap();
    assert_eq!(again.find("t").unwrap(), Some(d));
    assert_eq!(names(&root.join("blobs/sha256")), [blob.digest.hex()]);
}

#[test]
fn a_digest_or_size_mismatch_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(dir.path()).unwrap();
    let promised = Digest::of(b"promised");
    let desc = Descriptor::new(MediaType::ImageLayerGzip, 8, &promised);
    let mut w = layout.writer().unwrap();
    w.write_all(b"imposter").unwrap();
    match w.finish_verified_as(&desc).unwrap_err() {
        LayoutError::DigestMismatch { expected, found } => {
            assert_eq!(expected, promised);
            assert_eq!(found, Digest::of(b"imposter"));
        }
        other => panic!("not a digest mismatch: {other}"),
    }
    // The right content, the wrong size.
    let desc = Descriptor::new(MediaType::ImageLayerGzip, 9, &promised);
    let mut w = layout.writer().unwrap();
    w.write_all(b"promised").unwrap();
    assert!(matches!(
        w.finish_verified_as(&desc).unwrap_err(),
        LayoutError::SizeMismatch {
            expected: 9,
            found: 8,
            ..
        }
    ));
    assert!(!layout.contains(&promised));
    assert_eq!(
        names(&dir.path().join("blobs/sha256")),
        Vec::<String>::new(),
        "no blob and no temp file"
    );
    // And a writer dropped unfinished leaves nothing either.
    let mut w = layout.writer().unwrap();
    w.write_all(b"half").unwrap();
    drop(w);
    assert_eq!(
        names(&dir.path().join("blobs/sha256")),
        Vec::<String>::new()
    );
}

#[test]
fn concurrent_writers_of_one_blob_all_succeed_with_one_whole_blob() {
    let dir = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(dir.path()).unwrap();
    let content: Vec<u8> = (0..(3u32 << 20)).map(|i| (i % 251) as u8).collect();
    let digest = Digest::of(&content);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let mut w = layout.writer().unwrap();
                for chunk in content.chunks(64 << 10) {
                    w.write_all(chunk).unwrap();
                }
                let blob = w.finish_matching(&digest, content.len() as u64).unwrap();
                assert_eq!(blob.digest, digest);
            });
        }
    });
    assert_eq!(layout.read_blob(&digest).unwrap(), content);
    assert_eq!(names(&dir.path().join("blobs/sha256")), [digest.hex()]);
}

#[test]
fn a_symlinked_blobs_directory_or_blob_is_refused_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    // Outside the layout: a blob directory with a real blob in it.
    let outside = dir.path().join("outside/sha256");
    std::fs::create_dir_all(&outside).unwrap();
    let secret = b"host secret";
    let digest = Digest::of(secret);
    std::fs::write(outside.join(digest.hex()), secret).unwrap();

    let root = dir.path().join("layout");
    std::fs::create_dir_all(&root).unwrap();
    std::os::unix::fs::symlink(dir.path().join("outside"), root.join(BLOBS_DIR)).unwrap();
    let err = OciLayout::open(&root).unwrap_err();
    assert!(
        matches!(&err, LayoutError::Refused { reason, .. } if reason.contains("symbolic link")),
        "{err}"
    );
    assert!(OciLayout::create(&root).is_err());

    // A blob that is a link to a file outside: absent, and refused when opened.
    std::fs::remove_file(root.join(BLOBS_DIR)).unwrap();
    let layout = OciLayout::create(&root).unwrap();
    std::os::unix::fs::symlink(outside.join(digest.hex()), layout.blob_path(&digest)).unwrap();
    assert!(!layout.contains(&digest));
    let err = layout.read_blob(&digest).unwrap_err();
    assert!(
        matches!(&err, LayoutError::Refused { reason, .. } if reason.contains("symlink")),
        "{err}"
    );
    // Writing the blob replaces the link, and the file outside is untouched.
    let mut w = layout.writer().unwrap();
    w.write_all(secret).unwrap();
    w.finish_verified(&digest).unwrap();
    assert!(layout.contains(&digest));
    assert!(
        !std::fs::symlink_metadata(layout.blob_path(&digest))
            .unwrap()
            .is_symlink()
    );
    assert_eq!(std::fs::read(outside.join(digest.hex())).unwrap(), secret);
}

#[test]
fn documents_are_read_bounded_and_a_fifo_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(dir.path()).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        dir.path().join(INDEX_FILE),
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let err = layout.index().unwrap_err();
    assert!(
        matches!(&err, LayoutError::Refused { reason, .. } if reason.contains("named pipe")),
        "{err}"
    );
    std::fs::remove_file(dir.path().join(INDEX_FILE)).unwrap();
    std::fs::write(dir.path().join(INDEX_FILE), vec![b' '; 5000]).unwrap();
    assert!(matches!(
        layout.read_file(INDEX_FILE, 4096).unwrap_err(),
        LayoutError::Refused { .. }
    ));
}

#[test]
fn a_source_longer_than_promised_is_cut_and_refused_whatever_finishes_it() {
    let dir = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(dir.path()).unwrap();
    let content = b"promised";
    let digest = Digest::of(content);
    // An endless source: read no further than one byte past the promise.
    let mut w = layout.writer().unwrap();
    w.copy_within(&mut std::io::repeat(7), 8).unwrap();
    assert_eq!(w.written(), 9);
    assert!(matches!(
        w.finish_matching(&digest, 8).unwrap_err(),
        LayoutError::Overlong { expected: 8, .. }
    ));
    // Even an unchecked finish refuses a cut copy.
    let mut w = layout.writer().unwrap();
    w.copy_within(&mut &b"promised!"[..], 8).unwrap();
    assert!(matches!(
        w.finish().unwrap_err(),
        LayoutError::Overlong { .. }
    ));
    assert_eq!(
        names(&dir.path().join("blobs/sha256")),
        Vec::<String>::new()
    );
    // Exactly the promise is fine.
    let mut w = layout.writer().unwrap();
    w.copy_within(&mut &content[..], 8).unwrap();
    assert_eq!(w.finish_matching(&digest, 8).unwrap().digest, digest);
}

#[test]
fn a_damaged_blob_outside_the_store_is_replaced_not_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let layout = OciLayout::create(dir.path()).unwrap();
    let blob = layout.put(b"content").unwrap();
    std::fs::write(layout.blob_path(&blob.digest), b"cut").unwrap();
    layout.put(b"content").unwrap();
    assert_eq!(layout.verify_blob(&blob.digest).unwrap(), 7);
    // A layout that trusts its blobs (the store) keeps what it has.
    let trusting = OciLayout::open(dir.path())
        .unwrap()
        .trusting_existing_blobs();
    std::fs::write(layout.blob_path(&blob.digest), b"cut").unwrap();
    trusting.put(b"content").unwrap();
    assert_eq!(
        std::fs::read(layout.blob_path(&blob.digest)).unwrap(),
        b"cut"
    );
}
