//! A context read from a tar stream (`rbuild build -`) is unpacked safely.

use std::path::Path;

use rbuild_core::{
    ContextSource,
    context::{ContextListing, EntryType, IgnoreRules, UnpackError},
};

fn header(path: &str, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    // `set_path` refuses `..`, so write the raw name as a hostile client would.
    let name = &mut h.as_old_mut().name;
    name[..path.len()].copy_from_slice(path.as_bytes());
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o640);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    h
}

fn tar_of(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    build(&mut b);
    b.into_inner().expect("finish tar")
}

#[test]
fn a_well_formed_tar_becomes_a_context() {
    let bytes = tar_of(|b| {
        b.append(&header("dir/", tar::EntryType::Directory, 0), &[][..])
            .expect("append");
        b.append(
            &header("dir/a.txt", tar::EntryType::Regular, 5),
            &b"hello"[..],
        )
        .expect("append");
        let mut link = header("dir/shadow", tar::EntryType::Symlink, 0);
        link.set_link_name("/etc/shadow").expect("link name");
        link.set_cksum();
        b.append(&link, &[][..]).expect("append");
    });
    let parent = tempfile::tempdir().expect("tempdir");
    let source = ContextSource::from_tar(&bytes[..], parent.path()).expect("unpack");
    let listing = ContextListing::walk(source.root(), &IgnoreRules::none()).expect("walk");
    let kinds: Vec<_> = listing
        .entries()
        .iter()
        .map(|e| (e.path.display().to_string(), e.kind, e.mode))
        .collect();
    assert_eq!(
        kinds,
        [
            ("dir".into(), EntryType::Dir, 0o640),
            ("dir/a.txt".into(), EntryType::File, 0o640),
            ("dir/shadow".into(), EntryType::Symlink, 0o777),
        ]
    );
    let root = source.root().to_path_buf();
    drop(source);
    assert!(!root.exists(), "the unpacked context is removed on drop");
}

#[test]
fn entries_that_escape_are_refused() {
    let parent = tempfile::tempdir().expect("tempdir");
    for name in ["../evil", "a/../../evil", "/abs/evil"] {
        let bytes = tar_of(|b| {
            b.append(&header(name, tar::EntryType::Regular, 1), &b"x"[..])
                .expect("append");
        });
        let got = ContextSource::from_tar(&bytes[..], parent.path());
        assert!(
            matches!(got, Err(UnpackError::Escapes { .. })),
            "{name}: {got:?}"
        );
    }
    assert!(!parent.path().join("../evil").exists());
}

#[test]
fn entries_beneath_a_symlink_are_refused() {
    let outside = tempfile::tempdir().expect("tempdir");
    let bytes = tar_of(|b| {
        let mut link = header("out", tar::EntryType::Symlink, 0);
        link.set_link_name(outside.path()).expect("link name");
        link.set_cksum();
        b.append(&link, &[][..]).expect("append");
        b.append(
            &header("out/planted", tar::EntryType::Regular, 1),
            &b"x"[..],
        )
        .expect("append");
    });
    let parent = tempfile::tempdir().expect("tempdir");
    let got = ContextSource::from_tar(&bytes[..], parent.path());
    assert!(
        matches!(got, Err(UnpackError::BeneathSymlink { .. })),
        "{got:?}"
    );
    assert!(!outside.path().join("planted").exists());
}

#[test]
fn hard_links_out_of_the_context_are_refused() {
    let bytes = tar_of(|b| {
        let mut link = header("passwd", tar::EntryType::Link, 0);
        link.set_link_name("../../etc/passwd").expect("link name");
        link.set_cksum();
        b.append(&link, &[][..]).expect("append");
    });
    let parent = tempfile::tempdir().expect("tempdir");
    let got = ContextSource::from_tar(&bytes[..], parent.path());
    assert!(matches!(got, Err(UnpackError::Escapes { .. })), "{got:?}");
    assert!(Path::new("/etc/passwd").exists());
}

#[test]
fn gzip_and_zstd_context_tars_are_decompressed() {
    let bytes = tar_of(|b| {
        b.append(&header("a.txt", tar::EntryType::Regular, 5), &b"hello"[..])
            .expect("append");
    });
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &bytes).expect("gzip");
    let gz = gz.finish().expect("gzip finish");
    let zst = zstd::encode_all(&bytes[..], 1).expect("zstd");
    for (name, stream) in [("gzip", gz), ("zstd", zst)] {
        let parent = tempfile::tempdir().expect("tempdir");
        let source = ContextSource::from_tar(&stream[..], parent.path())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let content = std::fs::read(source.root().join("a.txt")).expect("read");
        assert_eq!(content, b"hello", "{name}");
    }
}
