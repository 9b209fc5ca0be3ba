//! ADD: local archives extracted (detected by content), URLs downloaded.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};

use rbuild_core::{
    Digest,
    copy::{CopyError, copy, sources_digest},
};
use support::copy::{Context, dest, op, paths, populate, read, tree};

/// A tar with a directory, a file (mode 0751, uid 12, mtime 1e9), a symlink, a hardlink.
fn sample_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    h.set_mtime(1_000_000_000);
    b.append_data(&mut h, "pkg/", &[][..]).unwrap();
    let body = b"#!/bin/sh\necho hi\n";
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o751);
    h.set_uid(12);
    h.set_gid(34);
    h.set_size(body.len() as u64);
    h.set_mtime(1_000_000_000);
    b.append_data(&mut h, "pkg/run.sh", &body[..]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "pkg/link", "run.sh").unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Link);
    h.set_size(0);
    // As tar writers do, the link entry repeats its file's metadata (docker's untar
    // applies it to the shared inode).
    h.set_mode(0o751);
    h.set_uid(12);
    h.set_gid(34);
    h.set_mtime(1_000_000_000);
    b.append_link(&mut h, "pkg/hard", "pkg/run.sh").unwrap();
    // A file whose parent directory has no entry of its own.
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o644);
    h.set_size(1);
    b.append_data(&mut h, "implied/dir/f", &b"f"[..]).unwrap();
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn bzip2(data: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).unwrap()
}

fn context_with(name: &str, bytes: &[u8]) -> Context {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), bytes).unwrap();
    Context::from_dir(dir, "")
}

fn check_extracted(root: &std::path::Path, at: &str) {
    let seen = tree(root);
    let run = &seen[&format!("{at}/pkg/run.sh")];
    assert_eq!((run.kind, run.mode, run.uid, run.gid), ('f', 0o751, 12, 34));
    assert_eq!(run.data, "#!/bin/sh\necho hi\n");
    assert_eq!(seen[&format!("{at}/pkg/link")].data, "run.sh");
    let a = std::fs::metadata(root.join(format!("{at}/pkg/run.sh"))).unwrap();
    let b = std::fs::metadata(root.join(format!("{at}/pkg/hard"))).unwrap();
    assert_eq!(a.ino(), b.ino());
    assert_eq!(a.mtime(), 1_000_000_000);
    assert_eq!(seen[&format!("{at}/implied/dir/f")].data, "f");
    assert_eq!(seen[&format!("{at}/implied/dir")].mode, 0o755);
}

#[test]
fn every_archive_format_is_extracted() {
    support::require::require_root("it sets file owners");
    let tar = sample_tar();
    let cases: [(&str, Vec<u8>); 5] = [
        ("a.tar", tar.clone()),
        ("a.tar.gz", gzip(&tar)),
        ("a.tar.bz2", bzip2(&tar)),
        ("a.tar.xz", xz(&tar)),
        ("a.tar.zst", zstd(&tar)),
    ];
    for (name, bytes) in cases {
        let ctx = context_with(name, &bytes);
        let root = dest();
        let stats = copy(
            &op(&format!("ADD {name} /opt"), "/"),
            &ctx.source(),
            root.path(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(stats.archives, 1, "{name}");
        check_extracted(root.path(), "opt");
    }
}

/// Issue 14, bug 5: docker 28.5's BuildKit gives every extracted entry the --chown
/// owner (docker 20.10's left the archive's); the directories the archive implies
/// without entries stay 0:0, the destination gets the owner. --chmod does not reach an
/// archive: its entries keep their modes and the destination is 0755.
#[test]
fn chown_reaches_every_entry_of_an_extraction_and_chmod_none() {
    support::require::require_root("it sets file owners");
    let ctx = context_with("a.tar", &sample_tar());
    let root = dest();
    copy(
        &op("ADD --chown=5:6 --chmod=700 a.tar /x/y/", "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap();
    let seen = tree(root.path());
    let owner = |p: &str| (seen[p].uid, seen[p].gid, seen[p].mode);
    assert_eq!(owner("x"), (5, 6, 0o755));
    assert_eq!(owner("x/y"), (5, 6, 0o755));
    assert_eq!(owner("x/y/pkg"), (5, 6, 0o755));
    assert_eq!(owner("x/y/pkg/run.sh"), (5, 6, 0o751));
    assert_eq!(owner("x/y/pkg/hard"), (5, 6, 0o751));
    assert_eq!((seen["x/y/pkg/link"].uid, seen["x/y/pkg/link"].gid), (5, 6));
    assert_eq!(owner("x/y/implied/dir/f"), (5, 6, 0o644));
    assert_eq!(owner("x/y/implied"), (0, 0, 0o755));
    assert_eq!(owner("x/y/implied/dir"), (0, 0, 0o755));
}

/// Docker's untar gives a hardlink's inode the link entry's mode, owner and times
/// (checked against docker 28.5: a file entry 0640 then a link to it with 0644 gives
/// both names 0644).
#[test]
fn a_hardlink_entry_sets_the_mode_and_owner_of_its_inode() {
    support::require::require_root("it sets file owners");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_mode(0o640);
    h.set_uid(7);
    h.set_size(1);
    h.set_mtime(1_000_000_000);
    b.append_data(&mut h, "f", &b"f"[..]).unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Link);
    h.set_mode(0o644);
    h.set_uid(8);
    h.set_size(0);
    h.set_mtime(1_500_000_000);
    b.append_link(&mut h, "h", "f").unwrap();
    let ctx = context_with("l.tar", &b.into_inner().unwrap());
    let root = dest();
    copy(&op("ADD l.tar /o/", "/"), &ctx.source(), root.path()).unwrap();
    let seen = tree(root.path());
    assert_eq!((seen["o/f"].mode, seen["o/f"].uid), (0o644, 8));
    let meta = std::fs::metadata(root.path().join("o/h")).unwrap();
    assert_eq!(meta.mtime(), 1_500_000_000);
}

#[test]
fn checksum_needs_a_single_url_source_of_add() {
    let ctx = Context::new(&[("f", "1")]);
    let root = dest();
    let sum = Digest::of(b"x");
    for (line, reason) in [
        (
            format!("ADD --checksum={sum} f /x/"),
            "requires HTTP(S) or Git",
        ),
        (
            format!("ADD --checksum={sum} http://h/a http://h/b /x/"),
            "multiple sources",
        ),
    ] {
        let err = copy(&op(&line, "/"), &ctx.source(), root.path()).unwrap_err();
        assert!(err.to_string().contains(reason), "{line}: {err}");
    }
}

#[test]
fn archives_are_detected_by_content_not_by_name() {
    support::require::require_root("it sets file owners");
    let ctx = context_with("payload.bin", &gzip(&sample_tar()));
    let root = dest();
    copy(&op("ADD payload.bin /x/", "/"), &ctx.source(), root.path()).unwrap();
    check_extracted(root.path(), "x");
    // Gzip that is not a tar, and a ".tar" that is text: copied as they are.
    let ctx = Context::new(&[("notes.tar", "just text\n")]);
    let root = dest();
    copy(&op("ADD notes.tar /n/", "/"), &ctx.source(), root.path()).unwrap();
    assert_eq!(read(root.path(), "n/notes.tar"), "just text\n");
    let ctx = context_with("plain.gz", &gzip(b"not a tar at all"));
    let root = dest();
    copy(&op("ADD plain.gz /g/", "/"), &ctx.source(), root.path()).unwrap();
    assert_eq!(paths(root.path()), ["g", "g/plain.gz"]);
}

#[test]
fn copy_never_extracts() {
    let ctx = context_with("a.tar", &sample_tar());
    let root = dest();
    copy(&op("COPY a.tar /x/", "/"), &ctx.source(), root.path()).unwrap();
    assert_eq!(paths(root.path()), ["x", "x/a.tar"]);
}

#[test]
fn archive_entries_never_leave_the_destination() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(4);
    // The tar crate refuses to write `..`; put the name in the header by hand.
    h.as_gnu_mut().unwrap().name[..9].copy_from_slice(b"../escape");
    h.set_cksum();
    b.append(&h, &b"evil"[..]).unwrap();
    let ctx = context_with("evil.tar", &b.into_inner().unwrap());
    let parent = dest();
    let root = parent.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let err = copy(&op("ADD evil.tar /", "/"), &ctx.source(), &root).unwrap_err();
    assert!(matches!(err, CopyError::UnsafeArchiveEntry { .. }), "{err}");
    assert!(!parent.path().join("escape").exists());
}

/// A one-thread HTTP server on 127.0.0.1 serving `body` for every GET, with a
/// Last-Modified header; it records the request paths.
struct Server {
    url: String,
    paths: Arc<Mutex<Vec<String>>>,
}

fn serve(body: &'static [u8], status: u16) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let paths = Arc::new(Mutex::new(Vec::new()));
    let seen = paths.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            seen.lock()
                .unwrap()
                .push(line.split(' ').nth(1).unwrap_or("").to_owned());
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).unwrap() == 0 || h == "\r\n" {
                    break;
                }
            }
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nLast-Modified: Sun, 09 Sep 2001 01:46:40 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(body).unwrap();
            let _ = stream.read(&mut [0u8; 1]);
        }
    });
    Server { url, paths }
}

#[test]
fn add_url_downloads_with_mode_0600_and_last_modified() {
    let server = serve(b"downloaded body\n", 200);
    let ctx = Context::new(&[]);
    let root = dest();
    let url = format!("{}/files/tool.tar.gz?x=1", server.url);
    copy(
        &op(&format!("ADD {url} /dl/"), "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap();
    // Saved under the URL path's last name, never extracted, 0600, mtime from the header.
    assert_eq!(read(root.path(), "dl/tool.tar.gz"), "downloaded body\n");
    let meta = std::fs::metadata(root.path().join("dl/tool.tar.gz")).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o600);
    assert_eq!(meta.mtime(), 1_000_000_000);
    // Without a trailing slash the destination is the file itself.
    copy(
        &op(&format!("ADD {url} /named"), "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap();
    assert_eq!(read(root.path(), "named"), "downloaded body\n");
    assert!(
        server
            .paths
            .lock()
            .unwrap()
            .iter()
            .all(|p| p == "/files/tool.tar.gz?x=1")
    );
    // The cache key's download is the one the copy then writes: one fetch per step.
    let other = format!("{}/once.bin", server.url);
    let step = op(&format!("ADD {other} /once/"), "/");
    sources_digest(&step, &ctx.source()).unwrap();
    copy(&step, &ctx.source(), root.path()).unwrap();
    let fetched = server.paths.lock().unwrap();
    assert_eq!(fetched.iter().filter(|p| *p == "/once.bin").count(), 1);
}

#[test]
fn add_url_checks_the_checksum() {
    let server = serve(b"pinned\n", 200);
    let ctx = Context::new(&[]);
    let good = Digest::of(b"pinned\n");
    let root = dest();
    let url = format!("{}/p.txt", server.url);
    copy(
        &op(&format!("ADD --checksum={good} {url} /ok/"), "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap();
    assert_eq!(read(root.path(), "ok/p.txt"), "pinned\n");
    let bad = Digest::of(b"something else");
    let err = copy(
        &op(&format!("ADD --checksum={bad} {url} /bad/"), "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap_err();
    assert!(matches!(err, CopyError::ChecksumMismatch { .. }), "{err}");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert!(!root.path().join("bad/p.txt").exists());
    let err = copy(
        &op(&format!("ADD --checksum=md5:abc {url} /x/"), "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap_err();
    assert!(matches!(err, CopyError::InvalidChecksum { .. }), "{err}");
    // With a checksum the cache key needs no download; without one it hashes the body.
    let pinned = op(&format!("ADD --checksum={good} {url} /ok/"), "/");
    let before = server.paths.lock().unwrap().len();
    sources_digest(&pinned, &ctx.source()).unwrap();
    assert_eq!(server.paths.lock().unwrap().len(), before);
}

#[test]
fn add_url_errors_on_http_failure() {
    let server = serve(b"missing", 404);
    let ctx = Context::new(&[]);
    let root = dest();
    let err = copy(
        &op(&format!("ADD {}/f /x/", server.url), "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("status 404"), "{err}");
}

#[test]
fn add_git_is_refused_clearly() {
    let ctx = Context::new(&[]);
    let root = dest();
    let err = copy(
        &op("ADD https://github.com/moby/buildkit.git#v0.10.1 /src", "/"),
        &ctx.source(),
        root.path(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not supported yet"), "{err}");
    populate(root.path(), &[]);
}
