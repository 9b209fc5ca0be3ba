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
//! Records are written in listing order (paths ascending component by component), so a
//! hashing run reads the index as a forward cursor beside its walk and writes the next
//! one as it goes: neither is ever whole in memory. An index an older rbuild wrote (the
//! same layout, records in any order) is read once into a map and rewritten sorted.
//!
//! The file is written to a temporary file in the same directory and renamed over the
//! old one, so a reader sees the old or the new index and never a torn one; when two
//! builds of one context race, the last rename wins. A file that fails any check
//! (magic, checksum, root, length) is ignored and rebuilt.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::context::digest::ContentDigest;

const MAGIC: &[u8; 8] = b"RBCTXIX1";

/// The directory, under a store root, that holds context hash indexes.
pub const INDEX_DIR: &str = "contexthash";

/// The longest path a record may hold: more means a damaged file.
const MAX_PATH: usize = 64 * 1024;

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

/// The index file of the context at `root` (absolute) under `index_dir`.
pub(crate) fn index_path(index_dir: &Path, root: &Path) -> PathBuf {
    let key = ContentDigest::of_bytes(root.as_os_str().as_bytes());
    index_dir.join(key.hex())
}

/// One remembered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub path: PathBuf,
    pub stamp: FileStamp,
    pub digest: ContentDigest,
}

/// The remembered digests of one context, looked up in ascending path order.
#[derive(Debug, Default)]
pub(crate) enum HashIndex {
    /// No index, or a damaged one.
    #[default]
    Empty,
    /// A sorted index, read forward as the lookups advance.
    Sorted {
        records: RecordReader<BufReader<File>>,
        next: Option<Record>,
    },
    /// An index written in no order (by an older rbuild), read whole once.
    Unsorted(HashMap<PathBuf, (FileStamp, ContentDigest)>),
}

impl HashIndex {
    /// Opens the index at `file` for `root`; missing or damaged means empty. The file
    /// is read through once to check it, then read again record by record.
    pub fn open(file: &Path, root: &Path) -> Self {
        match check(file, root) {
            Some(true) => Self::sorted(file, root).unwrap_or_default(),
            Some(false) => Self::whole(file, root).unwrap_or_default(),
            None => Self::Empty,
        }
    }

    fn sorted(file: &Path, root: &Path) -> Option<Self> {
        let reader = BufReader::with_capacity(64 * 1024, File::open(file).ok()?);
        let mut records = RecordReader::open(reader, root)?;
        let next = records.next_record()?;
        Some(Self::Sorted { records, next })
    }

    fn whole(file: &Path, root: &Path) -> Option<Self> {
        let reader = BufReader::with_capacity(64 * 1024, File::open(file).ok()?);
        let mut records = RecordReader::open(reader, root)?;
        let mut map = HashMap::new();
        while let Some(r) = records.next_record()? {
            map.insert(r.path, (r.stamp, r.digest));
        }
        Some(Self::Unsorted(map))
    }

    /// What the index remembers of `path`. Calls must come in ascending path order
    /// (listing order): a sorted index is only read forward.
    pub fn lookup(&mut self, path: &Path) -> Option<(FileStamp, ContentDigest)> {
        match self {
            Self::Empty => None,
            Self::Unsorted(map) => map.get(path).copied(),
            Self::Sorted { records, next } => loop {
                let current = next.as_ref()?;
                match current.path.as_path().cmp(path) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => {
                        return Some((current.stamp, current.digest));
                    }
                    std::cmp::Ordering::Greater => return None,
                }
                match records.next_record() {
                    Some(r) => *next = r,
                    None => {
                        *self = Self::Empty;
                        return None;
                    }
                }
            },
        }
    }

    /// Whether the index holds exactly `count` records (an unchanged context writes
    /// no new index).
    pub fn len_is(&self, count: u64) -> bool {
        match self {
            Self::Empty => count == 0,
            Self::Sorted { records, .. } => records.count == count,
            Self::Unsorted(map) => map.len() as u64 == count,
        }
    }

    /// Whether the index must be rewritten even if nothing changed (an unsorted one).
    pub fn unsorted(&self) -> bool {
        matches!(self, Self::Unsorted(_))
    }
}

/// Whether `file` is a sound index of `root`: `Some(sorted)` when its checksum, magic,
/// root and record count hold.
fn check(file: &Path, root: &Path) -> Option<bool> {
    let f = File::open(file).ok()?;
    let len = f.metadata().ok()?.len();
    let body_len = len.checked_sub(32)?;
    let mut hashing = HashingReader {
        inner: BufReader::with_capacity(64 * 1024, f),
        hash: Sha256::new(),
        left: body_len,
    };
    let mut records = RecordReader::open(&mut hashing, root)?;
    let mut sorted = true;
    let mut prev: Option<PathBuf> = None;
    while let Some(r) = records.next_record()? {
        if prev.as_ref().is_some_and(|p| *p >= r.path) {
            sorted = false;
        }
        prev = Some(r.path);
    }
    if hashing.left != 0 {
        return None;
    }
    let body_hash = hashing.hash.finalize();
    let mut sum = [0u8; 32];
    hashing.inner.read_exact(&mut sum).ok()?;
    (body_hash.as_slice() == sum).then_some(sorted)
}

/// A reader of the first `left` bytes of `inner` that hashes what it reads.
struct HashingReader<R> {
    inner: R,
    hash: Sha256,
    left: u64,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        self.hash.update(&buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

/// Reads an index's header, then its records one at a time.
#[derive(Debug)]
pub(crate) struct RecordReader<R> {
    inner: R,
    count: u64,
    read: u64,
}

impl<R: Read> RecordReader<R> {
    fn open(inner: R, root: &Path) -> Option<Self> {
        let mut r = Self {
            inner,
            count: 0,
            read: 0,
        };
        if r.array::<8>()? != *MAGIC || r.bytes()? != root.as_os_str().as_bytes() {
            return None;
        }
        r.count = u64::from_be_bytes(r.array()?);
        Some(r)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        self.inner.read_exact(&mut out).ok()?;
        Some(out)
    }

    fn bytes(&mut self) -> Option<Vec<u8>> {
        let len = u32::from_be_bytes(self.array()?) as usize;
        if len > MAX_PATH {
            return None;
        }
        let mut out = vec![0u8; len];
        self.inner.read_exact(&mut out).ok()?;
        Some(out)
    }

    /// The next record: `Some(None)` after the last one, `None` if the file is damaged.
    fn next_record(&mut self) -> Option<Option<Record>> {
        if self.read == self.count {
            return Some(None);
        }
        self.read += 1;
        let path = PathBuf::from(
            <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(self.bytes()?),
        );
        let stamp = FileStamp {
            size: u64::from_be_bytes(self.array()?),
            mtime_ns: i64::from_be_bytes(self.array()?),
            inode: u64::from_be_bytes(self.array()?),
            ctime_ns: i64::from_be_bytes(self.array()?),
        };
        let digest = ContentDigest::from_bytes(self.array()?);
        Some(Some(Record {
            path,
            stamp,
            digest,
        }))
    }
}

/// Writes an index record by record (in listing order) into a temporary file, put in
/// place by [`IndexWriter::finish`].
pub(crate) struct IndexWriter {
    file: PathBuf,
    tmp: BufWriter<tempfile::NamedTempFile>,
    count_at: u64,
    count: u64,
}

impl IndexWriter {
    /// Starts the index of `root` that will replace `file`.
    pub fn create(file: &Path, root: &Path) -> Result<Self, IndexError> {
        let failed = |source| IndexError {
            path: file.to_path_buf(),
            source,
        };
        let dir = file.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(failed)?;
        let tmp = tempfile::Builder::new()
            .prefix(".rbuild-")
            .tempfile_in(dir)
            .map_err(failed)?;
        let mut w = Self {
            file: file.to_path_buf(),
            tmp: BufWriter::with_capacity(64 * 1024, tmp),
            count_at: 0,
            count: 0,
        };
        w.put(MAGIC).map_err(failed)?;
        let root = root.as_os_str().as_bytes();
        w.put(&(root.len() as u32).to_be_bytes()).map_err(failed)?;
        w.put(root).map_err(failed)?;
        w.count_at = 8 + 4 + root.len() as u64;
        // The count, patched in at the end (and hashed then).
        w.tmp.write_all(&0u64.to_be_bytes()).map_err(failed)?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.tmp.write_all(bytes)
    }

    /// Adds a record; records must come in ascending path order.
    pub fn push(
        &mut self,
        path: &Path,
        stamp: FileStamp,
        digest: &ContentDigest,
    ) -> Result<(), IndexError> {
        let bytes = path.as_os_str().as_bytes();
        let mut rec = Vec::with_capacity(4 + bytes.len() + 64);
        rec.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        rec.extend_from_slice(bytes);
        rec.extend_from_slice(&stamp.size.to_be_bytes());
        rec.extend_from_slice(&stamp.mtime_ns.to_be_bytes());
        rec.extend_from_slice(&stamp.inode.to_be_bytes());
        rec.extend_from_slice(&stamp.ctime_ns.to_be_bytes());
        rec.extend_from_slice(digest.as_bytes());
        self.count += 1;
        self.put(&rec).map_err(|source| IndexError {
            path: self.file.clone(),
            source,
        })
    }

    /// Writes the count and the checksum, syncs, and renames the file into place.
    pub fn finish(self) -> Result<(), IndexError> {
        let file = self.file;
        let failed = |source| IndexError {
            path: file.clone(),
            source,
        };
        let mut tmp = self.tmp.into_inner().map_err(|e| failed(e.into_error()))?;
        // The checksum covers the whole body, so it is computed over the finished file
        // (read sequentially once, through the page cache).
        use std::io::{Seek, SeekFrom};
        let f = tmp.as_file_mut();
        f.seek(SeekFrom::Start(self.count_at)).map_err(failed)?;
        f.write_all(&self.count.to_be_bytes()).map_err(failed)?;
        f.seek(SeekFrom::Start(0)).map_err(failed)?;
        let mut hash = Sha256::new();
        let mut reader = BufReader::with_capacity(64 * 1024, &mut *f);
        io::copy(&mut reader, &mut HashWriter(&mut hash)).map_err(failed)?;
        drop(reader);
        f.seek(SeekFrom::End(0)).map_err(failed)?;
        f.write_all(&hash.finalize()).map_err(failed)?;
        crate::atomic::commit(tmp, &file, true).map_err(|e| failed(e.source))
    }
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(n: u64) -> FileStamp {
        FileStamp {
            size: n,
            mtime_ns: 5,
            inode: 7,
            ctime_ns: 9,
        }
    }

    fn write(file: &Path, root: &Path, paths: &[&str]) {
        let mut w = IndexWriter::create(file, root).expect("create");
        for (i, p) in paths.iter().enumerate() {
            w.push(
                Path::new(p),
                stamp(i as u64),
                &ContentDigest::of_bytes(p.as_bytes()),
            )
            .expect("push");
        }
        w.finish().expect("finish");
    }

    #[test]
    fn round_trips_forward_and_rejects_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Path::new("/ctx");
        let file = index_path(dir.path(), root);
        write(&file, root, &["a", "a/b", "a/c", "a.b", "z"]);
        let mut index = HashIndex::open(&file, root);
        assert!(matches!(index, HashIndex::Sorted { .. }));
        assert!(index.len_is(5));
        assert_eq!(index.lookup(Path::new("a/b")).map(|r| r.0), Some(stamp(1)));
        assert_eq!(index.lookup(Path::new("a/bb")), None);
        assert_eq!(
            index.lookup(Path::new("a.b")).map(|r| r.1),
            Some(ContentDigest::of_bytes(b"a.b"))
        );
        assert_eq!(index.lookup(Path::new("zz")), None);
        assert!(matches!(
            HashIndex::open(&file, Path::new("/other")),
            HashIndex::Empty
        ));

        let mut bytes = std::fs::read(&file).expect("read");
        bytes[12] ^= 1;
        std::fs::write(&file, &bytes).expect("write");
        assert!(matches!(HashIndex::open(&file, root), HashIndex::Empty));
        std::fs::write(&file, b"short").expect("write");
        assert!(matches!(HashIndex::open(&file, root), HashIndex::Empty));
        // Truncated by one byte.
        write(&file, root, &["a", "b"]);
        let bytes = std::fs::read(&file).expect("read");
        std::fs::write(&file, &bytes[..bytes.len() - 1]).expect("write");
        assert!(matches!(HashIndex::open(&file, root), HashIndex::Empty));
    }

    #[test]
    fn an_unsorted_index_of_an_older_rbuild_is_read_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = Path::new("/ctx");
        let file = index_path(dir.path(), root);
        write(&file, root, &["b", "a"]);
        let mut index = HashIndex::open(&file, root);
        assert!(index.unsorted());
        assert_eq!(index.lookup(Path::new("a")).map(|r| r.0), Some(stamp(1)));
        assert_eq!(index.lookup(Path::new("b")).map(|r| r.0), Some(stamp(0)));
    }
}
