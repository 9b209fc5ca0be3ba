//! The on-disk hash index of a context: file identity -> content digest.
//!
//! One file per context under `<store root>/contexthash/`, named by the sha256 of the
//! context's absolute path. Layout (integers big-endian):
//!
//! ```text
//! magic "RBCTXIX1" | root path: u32 len + bytes | count: u64
//! count x { path: u32 len + bytes | size u64 | mtime_ns i64 | inode u64 | ctime_ns i64 | digest [32] }
//! sha256 of everything above [32]
//! ```
//!
//! The file is written to a temporary file in the same directory and renamed over the
//! old one, so a reader sees the old or the new index and never a torn one; when two
//! builds of one context race, the last rename wins. A file that fails any check
//! (magic, checksum, root, length) is ignored and rebuilt.

use std::collections::HashMap;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::context::digest::ContentDigest;

const MAGIC: &[u8; 8] = b"RBCTXIX1";

/// The directory, under a store root, that holds context hash indexes.
pub const INDEX_DIR: &str = "contexthash";

/// What must be unchanged for a remembered digest to be trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileStamp {
    pub size: u64,
    pub mtime_ns: i64,
    pub inode: u64,
    pub ctime_ns: i64,
}

/// A failure to write an index.
#[derive(Debug, thiserror::Error)]
#[error("failed to write context hash index {path}")]
pub struct IndexError {
    /// The index file.
    pub path: PathBuf,
    /// The cause.
    pub source: io::Error,
}

/// The remembered digests of one context.
#[derive(Debug, Default)]
pub(crate) struct HashIndex {
    pub entries: HashMap<PathBuf, (FileStamp, ContentDigest)>,
}

/// The index file of the context at `root` (absolute) under `index_dir`.
pub(crate) fn index_path(index_dir: &Path, root: &Path) -> PathBuf {
    let key = ContentDigest::of_bytes(root.as_os_str().as_bytes());
    index_dir.join(key.hex())
}

impl HashIndex {
    /// Loads the index at `file` for `root`; missing or damaged means empty.
    pub fn load(file: &Path, root: &Path) -> Self {
        std::fs::read(file)
            .ok()
            .and_then(|bytes| decode(&bytes, root))
            .unwrap_or_default()
    }

    /// Writes the index atomically to `file`.
    pub fn save(&self, file: &Path, root: &Path) -> Result<(), IndexError> {
        let failed = |source| IndexError {
            path: file.to_path_buf(),
            source,
        };
        let bytes = encode(self, root);
        crate::atomic::AtomicWrite::new(file)
            .synced()
            .write(&bytes)
            .map_err(|e| failed(e.source))
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn encode(index: &HashIndex, root: &Path) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + index.entries.len() * 96);
    out.extend_from_slice(MAGIC);
    put_bytes(&mut out, root.as_os_str().as_bytes());
    out.extend_from_slice(&(index.entries.len() as u64).to_be_bytes());
    for (path, (stamp, digest)) in &index.entries {
        put_bytes(&mut out, path.as_os_str().as_bytes());
        out.extend_from_slice(&stamp.size.to_be_bytes());
        out.extend_from_slice(&stamp.mtime_ns.to_be_bytes());
        out.extend_from_slice(&stamp.inode.to_be_bytes());
        out.extend_from_slice(&stamp.ctime_ns.to_be_bytes());
        out.extend_from_slice(digest.as_bytes());
    }
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = u32::from_be_bytes(self.array()?) as usize;
        self.take(len)
    }
}

fn decode(bytes: &[u8], root: &Path) -> Option<HashIndex> {
    let (body, sum) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
    if Sha256::digest(body).as_slice() != sum {
        return None;
    }
    let mut r = Reader(body);
    if r.take(MAGIC.len())? != MAGIC || r.bytes()? != root.as_os_str().as_bytes() {
        return None;
    }
    let count = u64::from_be_bytes(r.array()?);
    let mut entries = HashMap::new();
    for _ in 0..count {
        let path = PathBuf::from(std::ffi::OsStr::from_bytes(r.bytes()?));
        let stamp = FileStamp {
            size: u64::from_be_bytes(r.array()?),
            mtime_ns: i64::from_be_bytes(r.array()?),
            inode: u64::from_be_bytes(r.array()?),
            ctime_ns: i64::from_be_bytes(r.array()?),
        };
        let digest = ContentDigest::from_bytes(r.array()?);
        entries.insert(path, (stamp, digest));
    }
    r.0.is_empty().then_some(HashIndex { entries })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Path::new("/ctx");
        let file = index_path(dir.path(), root);
        let mut index = HashIndex::default();
        let stamp = FileStamp {
            size: 3,
            mtime_ns: 5,
            inode: 7,
            ctime_ns: 9,
        };
        index.entries.insert(
            PathBuf::from("a/b"),
            (stamp, ContentDigest::of_bytes(b"abc")),
        );
        index.save(&file, root).expect("save");
        let back = HashIndex::load(&file, root);
        assert_eq!(back.entries.len(), 1);
        assert_eq!(back.entries[Path::new("a/b")].0, stamp);
        assert!(
            HashIndex::load(&file, Path::new("/other"))
                .entries
                .is_empty()
        );

        let mut bytes = std::fs::read(&file).expect("read");
        bytes[12] ^= 1;
        std::fs::write(&file, &bytes).expect("write");
        assert!(HashIndex::load(&file, root).entries.is_empty());
        std::fs::write(&file, b"short").expect("write");
        assert!(HashIndex::load(&file, root).entries.is_empty());
    }
}
