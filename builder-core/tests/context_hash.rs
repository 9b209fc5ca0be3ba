//! Context hashing: the index avoids rereading unchanged files, digests ignore mtime
//! and follow content, mode and link targets, and a damaged index is rebuilt.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, SystemTime};

use rbuild_core::{
    Digest,
    context::{ContextHashes, ContextListing, INDEX_DIR, IgnoreRules},
};

fn make_context(root: &Path, files: usize) {
    for i in 0..files {
        let dir = root.join(format!("d{}", i % 7));
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join(format!("f{i}")), format!("content {i}")).expect("write");
    }
    symlink("d0/f0", root.join("link")).expect("symlink");
}

fn hash(root: &Path, index_dir: Option<&Path>) -> (ContextListing, ContextHashes) {
    let listing = ContextListing::walk(root, &IgnoreRules::none()).expect("walk");
    let hashes = ContextHashes::compute(&listing, index_dir).expect("hash");
    (listing, hashes)
}

fn whole(root: &Path, index_dir: Option<&Path>) -> Digest {
    let (listing, hashes) = hash(root, index_dir);
    hashes
        .selection_digest(listing.entries())
        .expect("selection digest")
}

#[test]
fn rehash_after_editing_one_file_reads_only_that_file() {
    let ctx = tempfile::tempdir().expect("tempdir");
    let store = tempfile::tempdir().expect("tempdir");
    let index_dir = store.path().join(INDEX_DIR);
    make_context(ctx.path(), 50);

    let (_, cold) = hash(ctx.path(), Some(&index_dir));
    assert_eq!(cold.stats().files_read, 50);
    assert_eq!(cold.stats().index_hits, 0);
    assert_eq!(fs::read_dir(&index_dir).expect("index dir").count(), 1);

    let (_, warm) = hash(ctx.path(), Some(&index_dir));
    assert_eq!(warm.stats().files_read, 0);
    assert_eq!(warm.stats().index_hits, 50);

    fs::write(ctx.path().join("d3/f10"), "edited, and longer").expect("edit");
    let (_, after) = hash(ctx.path(), Some(&index_dir));
    assert_eq!(after.stats().files_read, 1);
    assert_eq!(after.stats().bytes_read, "edited, and longer".len() as u64);
    assert_eq!(after.stats().index_hits, 49);
    assert_ne!(
        after.get(Path::new("d3/f10")),
        cold.get(Path::new("d3/f10"))
    );
}

#[test]
fn digest_is_stable_and_independent_of_mtime() {
    let ctx = tempfile::tempdir().expect("tempdir");
    make_context(ctx.path(), 10);
    let first = whole(ctx.path(), None);
    assert_eq!(first, whole(ctx.path(), None));

    let file = fs::File::options()
        .write(true)
        .open(ctx.path().join("d1/f1"))
        .expect("open");
    file.set_modified(SystemTime::now() - Duration::from_secs(86_400))
        .expect("set mtime");
    assert_eq!(first, whole(ctx.path(), None));

    // The same tree elsewhere (other inodes, other times) has the same digest.
    let copy = tempfile::tempdir().expect("tempdir");
    make_context(copy.path(), 10);
    assert_eq!(first, whole(copy.path(), None));
}

#[test]
fn content_mode_and_link_target_change_the_digest() {
    let ctx = tempfile::tempdir().expect("tempdir");
    make_context(ctx.path(), 10);
    let base = whole(ctx.path(), None);

    let f = ctx.path().join("d2/f2");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).expect("chmod");
    let by_mode = whole(ctx.path(), None);
    assert_ne!(base, by_mode);

    fs::write(&f, "other content").expect("write");
    let by_content = whole(ctx.path(), None);
    assert_ne!(by_mode, by_content);

    fs::remove_file(ctx.path().join("link")).expect("rm");
    symlink("d0/f1", ctx.path().join("link")).expect("symlink");
    assert_ne!(by_content, whole(ctx.path(), None));
}

#[test]
fn a_corrupt_index_is_ignored_and_rebuilt() {
    let ctx = tempfile::tempdir().expect("tempdir");
    let store = tempfile::tempdir().expect("tempdir");
    let index_dir = store.path().join(INDEX_DIR);
    make_context(ctx.path(), 20);
    let expected = whole(ctx.path(), Some(&index_dir));

    let index_file = fs::read_dir(&index_dir)
        .expect("index dir")
        .next()
        .expect("one index file")
        .expect("entry")
        .path();
    let mut bytes = fs::read(&index_file).expect("read index");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&index_file, &bytes).expect("damage index");

    let (listing, hashes) = hash(ctx.path(), Some(&index_dir));
    assert_eq!(
        hashes.stats().files_read,
        20,
        "a damaged index is not trusted"
    );
    assert_eq!(
        hashes.selection_digest(listing.entries()).expect("digest"),
        expected
    );
    fs::write(&index_file, b"").expect("truncate index");
    assert_eq!(whole(ctx.path(), Some(&index_dir)), expected);
    let (_, warm) = hash(ctx.path(), Some(&index_dir));
    assert_eq!(warm.stats().index_hits, 20, "the index was rebuilt");
}

#[test]
fn concurrent_writers_never_leave_a_torn_index() {
    let ctx = tempfile::tempdir().expect("tempdir");
    let store = tempfile::tempdir().expect("tempdir");
    let index_dir = store.path().join(INDEX_DIR);
    make_context(ctx.path(), 200);
    let expected = whole(ctx.path(), Some(&index_dir));
    std::thread::scope(|s| {
        for t in 0..4 {
            let ctx = ctx.path();
            let index_dir = &index_dir;
            let expected = &expected;
            s.spawn(move || {
                let own = ctx.join(format!("d{t}/f{t}"));
                for round in 0..10u64 {
                    // Touching one file makes every run reread it and rewrite the index.
                    let file = fs::File::options().write(true).open(&own).expect("open");
                    file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(round))
                        .expect("touch");
                    let (listing, hashes) = hash(ctx, Some(index_dir));
                    assert_eq!(
                        &hashes.selection_digest(listing.entries()).expect("digest"),
                        expected
                    );
                    // A torn or half-written index would be rejected and all 200 reread.
                    assert!(hashes.stats().files_read <= 4, "{:?}", hashes.stats());
                }
            });
        }
    });
    let (_, warm) = hash(ctx.path(), Some(&index_dir));
    assert!(warm.stats().index_hits >= 196, "{:?}", warm.stats());
    let leftovers = fs::read_dir(&index_dir).expect("index dir").count();
    assert_eq!(leftovers, 1, "no temporary files are left behind");
}

/// Every digest of `root` with the index equals a fresh hash without it.
fn assert_index_agrees(root: &Path, index_dir: &Path) -> ContextHashes {
    let (listing, indexed) = hash(root, Some(index_dir));
    let (_, fresh) = hash(root, None);
    for entry in listing.entries() {
        assert_eq!(
            indexed.get(&entry.path),
            fresh.get(&entry.path),
            "{}",
            entry.path.display()
        );
    }
    indexed
}

#[test]
fn index_hits_equal_fresh_hashes_after_edits_renames_and_same_size_edits() {
    let ctx = tempfile::tempdir().expect("tempdir");
    let store = tempfile::tempdir().expect("tempdir");
    let index_dir = store.path().join(INDEX_DIR);
    make_context(ctx.path(), 300);
    assert_index_agrees(ctx.path(), &index_dir);

    // A rename within a directory, a move to another one, an edit, a new file that sorts
    // between remembered ones, a deletion.
    fs::rename(ctx.path().join("d1/f1"), ctx.path().join("d1/f1-renamed")).expect("rename");
    fs::rename(ctx.path().join("d2/f2"), ctx.path().join("d5/f2")).expect("move");
    fs::write(ctx.path().join("d3/f3"), "edited").expect("edit");
    fs::write(ctx.path().join("d4/f4a"), "new").expect("new");
    fs::remove_file(ctx.path().join("d6/f6")).expect("remove");
    let after = assert_index_agrees(ctx.path(), &index_dir);
    // The moved file kept its inode, size and times, but not its path: read again, as
    // are the edited and the new file.
    assert_eq!(after.stats().files_read, 4);

    // A same-size edit: size and mtime put back, only the ctime (and content) differ.
    let file = ctx.path().join("d0/f7");
    let before = fs::metadata(&file).expect("stat");
    std::thread::sleep(Duration::from_millis(20));
    fs::write(&file, "content X").expect("same-size edit");
    fs::File::options()
        .write(true)
        .open(&file)
        .expect("open")
        .set_modified(before.modified().expect("mtime"))
        .expect("set mtime");
    let after = assert_index_agrees(ctx.path(), &index_dir);
    assert_eq!(after.stats().files_read, 1, "the changed ctime is seen");
    let warm = assert_index_agrees(ctx.path(), &index_dir);
    assert_eq!(warm.stats().files_read, 0);
}

#[test]
fn a_truncated_index_is_ignored_and_rebuilt() {
    let ctx = tempfile::tempdir().expect("tempdir");
    let store = tempfile::tempdir().expect("tempdir");
    let index_dir = store.path().join(INDEX_DIR);
    make_context(ctx.path(), 40);
    let expected = whole(ctx.path(), Some(&index_dir));
    let index_file = fs::read_dir(&index_dir)
        .expect("index dir")
        .next()
        .expect("one index file")
        .expect("entry")
        .path();
    let bytes = fs::read(&index_file).expect("read index");
    for cut in [bytes.len() - 1, bytes.len() - 33, bytes.len() / 2, 9] {
        fs::write(&index_file, &bytes[..cut]).expect("truncate index");
        let (listing, hashes) = hash(ctx.path(), Some(&index_dir));
        assert_eq!(hashes.stats().files_read, 40, "cut at {cut}");
        assert_eq!(
            hashes.selection_digest(listing.entries()).expect("digest"),
            expected
        );
    }
}
