//! Content digests of a context's files, and the digest of a selection of entries
//! (the input of a `COPY`/`ADD` cache key).

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;
use sha2::{Digest as _, Sha256};

use crate::beneath::{open_listed_file, open_root};
use crate::context::digest::ContentDigest;
use crate::context::index::{FileStamp, HashIndex, IndexError, IndexWriter, index_path};
use crate::context::walk::{ContextEntry, ContextListing, EntryType};
use crate::digest::Digest;

/// A failure to hash a context.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    /// A file could not be read.
    #[error("failed to read context file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The index could not be written.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// A selection named a regular file that was not hashed.
    #[error("no content digest for context file {path}")]
    Missing {
        /// The file.
        path: PathBuf,
    },
}

/// What a hashing run did, to show that an index saves work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HashStats {
    /// Regular files whose content was read.
    pub files_read: u64,
    /// Bytes of content read.
    pub bytes_read: u64,
    /// Regular files whose digest came from the index.
    pub index_hits: u64,
}

/// The content digest of every regular file of a listing.
#[derive(Debug, Clone, Default)]
pub struct ContextHashes {
    /// The paths of the hashed files one after another, in listing order (which is
    /// `Path`'s order: found by binary search); no allocation per file.
    paths: Vec<u8>,
    /// Where each path ends in `paths`.
    ends: Vec<usize>,
    /// The content digest of each path.
    digests: Vec<ContentDigest>,
    stats: HashStats,
}

impl ContextHashes {
    /// Hashes every regular file of `listing`, in parallel. With `index_dir` (normally
    /// `<store root>/contexthash`), files whose size, mtime, inode and ctime are as
    /// remembered are not read, and the index is rewritten afterwards.
    ///
    /// A digest is remembered only if the file's identity after reading equals the one
    /// the walk saw, so a file edited while it is hashed is read again next time. What
    /// remains is the window every stat cache has (git calls it "racy clean"): a
    /// same-size edit after the read within one tick of the kernel's timestamp clock
    /// leaves size, mtime and ctime as they were and goes unseen.
    pub fn compute(listing: &ContextListing, index_dir: Option<&Path>) -> Result<Self, HashError> {
        let root = std::path::absolute(listing.root()).unwrap_or_else(|_| listing.root().into());
        let index_file = index_dir.map(|dir| index_path(dir, &root));
        let mut index = index_file
            .as_deref()
            .map(|f| HashIndex::open(f, &root))
            .unwrap_or_default();
        let dir = open_root(listing.root()).map_err(|source| HashError::Read {
            path: listing.root().to_path_buf(),
            source,
        })?;
        let files: Vec<&ContextEntry> = listing
            .entries()
            .iter()
            .filter(|e| e.kind == EntryType::File)
            .collect();
        // The index is read forward beside the listing (both in path order); what it
        // does not vouch for is read, in parallel. A slot: the digest, and whether it
        // may be remembered.
        let mut slots: Vec<(Option<ContentDigest>, bool)> = files
            .iter()
            .map(|entry| match index.lookup(&entry.path) {
                Some((known, digest)) if known == stamp_of(entry) => (Some(digest), true),
                _ => (None, false),
            })
            .collect();
        let files_read = AtomicU64::new(0);
        let bytes_read = AtomicU64::new(0);
        slots
            .par_iter_mut()
            .zip(files.par_iter())
            .filter(|(slot, _)| slot.0.is_none())
            .try_for_each(|(slot, entry)| {
                let (digest, read, stable) = hash_file(&dir, &entry.path, stamp_of(entry))
                    .map_err(|source| HashError::Read {
                        path: listing.root().join(&entry.path),
                        source,
                    })?;
                files_read.fetch_add(1, Ordering::Relaxed);
                bytes_read.fetch_add(read, Ordering::Relaxed);
                *slot = (Some(digest), stable);
                Ok::<_, HashError>(())
            })?;
        let files_read = files_read.into_inner();
        let stats = HashStats {
            files_read,
            bytes_read: bytes_read.into_inner(),
            index_hits: files.len() as u64 - files_read,
        };
        let changed = stats.files_read > 0 || !index.len_is(files.len() as u64) || index.unsorted();
        drop(index);
        if let Some(file) = index_file.filter(|_| changed) {
            // Only what was stable while it was read is remembered; the rest (and every
            // deleted file) drops out of the index.
            let mut next = IndexWriter::create(&file, &root)?;
            for (entry, slot) in files.iter().zip(&slots) {
                if let (Some(digest), true) = slot {
                    next.push(&entry.path, stamp_of(entry), digest)?;
                }
            }
            next.finish()?;
        }
        let mut hashes = Self {
            stats,
            ..Self::default()
        };
        for (entry, (digest, _)) in files.iter().zip(slots) {
            if let Some(digest) = digest {
                hashes
                    .paths
                    .extend_from_slice(entry.path.as_os_str().as_bytes());
                hashes.ends.push(hashes.paths.len());
                hashes.digests.push(digest);
            }
        }
        hashes.paths.shrink_to_fit();
        hashes.ends.shrink_to_fit();
        hashes.digests.shrink_to_fit();
        Ok(hashes)
    }

    /// What the run that produced these hashes did.
    pub fn stats(&self) -> HashStats {
        self.stats
    }

    /// The content digest of the regular file at `path`.
    pub fn get(&self, path: &Path) -> Option<Digest> {
        self.content(path)
            .map(|d| Digest::from_sha256(*d.as_bytes()))
    }

    fn content(&self, path: &Path) -> Option<ContentDigest> {
        let path_at = |i: usize| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            Path::new(OsStr::from_bytes(&self.paths[start..self.ends[i]]))
        };
        let (mut low, mut high) = (0, self.ends.len());
        while low < high {
            let mid = low + (high - low) / 2;
            match path_at(mid).cmp(path) {
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
                std::cmp::Ordering::Equal => return Some(self.digests[mid]),
            }
        }
        None
    }

    /// The digest of a selection of entries (in the order given): for each, its
    /// relative path, type, mode, owner, content digest (regular files) and link target
    /// (symlinks). Modification times are never part of it, so touching a file does not
    /// invalidate a cache key.
    pub fn selection_digest<'a>(
        &self,
        entries: impl IntoIterator<Item = &'a ContextEntry>,
    ) -> Result<Digest, HashError> {
        selection_digest(entries, ContentEncoding::Raw, |entry| {
            self.content(&entry.path).ok_or_else(|| HashError::Missing {
                path: entry.path.clone(),
            })
        })
    }
}

/// How [`selection_digest`] writes a regular file's content digest. Both forms are in
/// cache keys users hold (the context's entries raw, a tree's as text), so neither may
/// change: `tests/golden_cache_keys.rs` pins them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ContentEncoding {
    /// The 32 bytes of the sha256.
    Raw,
    /// `sha256:<hex>`.
    Text,
}

/// The digest of a selection of entries (in the order given), each written as
/// length-prefixed fields: relative path, type, mode, owner, then the content digest
/// (regular files, from `content`, written as `encoding` says), the link target
/// (symlinks) or nothing. Never an mtime.
pub(crate) fn selection_digest<'a, E>(
    entries: impl IntoIterator<Item = &'a ContextEntry>,
    encoding: ContentEncoding,
    mut content: impl FnMut(&ContextEntry) -> Result<ContentDigest, E>,
) -> Result<Digest, E> {
    let mut h = Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    for entry in entries {
        field(entry.path.as_os_str().as_bytes());
        field(&[entry.kind.tag()]);
        field(&entry.mode.to_be_bytes());
        field(&entry.uid.to_be_bytes());
        field(&entry.gid.to_be_bytes());
        match entry.kind {
            EntryType::File => {
                let digest = content(entry)?;
                match encoding {
                    ContentEncoding::Raw => field(digest.as_bytes()),
                    ContentEncoding::Text => field(digest.to_string().as_bytes()),
                }
            }
            EntryType::Symlink => {
                let target = entry.link_target.as_deref().unwrap_or(Path::new(""));
                field(target.as_os_str().as_bytes());
            }
            _ => field(&[]),
        }
    }
    Ok(Digest::from_sha256(h.finalize().into()))
}

fn stamp_of(entry: &ContextEntry) -> FileStamp {
    FileStamp {
        size: entry.size,
        mtime_ns: entry.mtime_ns,
        inode: entry.inode,
        ctime_ns: entry.ctime_ns,
    }
}

/// Hashes the listed file `rel` beneath `dir`, the context root, without following a
/// symlink put in its place or in place of a directory above it, and without blocking
/// on (or reading) anything that is no longer a regular file. Returns the digest, the
/// bytes read, and whether the file still had `expected`'s identity afterwards (only
/// then may the digest be remembered).
fn hash_file(
    dir: &OwnedFd,
    rel: &Path,
    expected: FileStamp,
) -> io::Result<(ContentDigest, u64, bool)> {
    let file = open_listed_file(dir, rel)?;
    // No more than the listing saw: a file that keeps growing ends the read anyway (and
    // its changed stamp keeps the digest out of the index).
    let mut reader = (&file).take(expected.size);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        total += n as u64;
    }
    let meta = file.metadata()?;
    let after = FileStamp {
        size: meta.size(),
        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        inode: meta.ino(),
        ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
    };
    Ok((
        ContentDigest::from_bytes(h.finalize().into()),
        total,
        after == expected,
    ))
}
