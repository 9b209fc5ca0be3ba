//! Small records the store and the cache keep beside the content (layer records, change
//! lists, cache entries, memos): read only when they are what they should be. A record is
//! never followed through a symlink, and a FIFO or device put in its place neither blocks
//! the reader nor streams without end into memory; a caller reads a record it cannot use
//! as absent and computes the result again.

use std::fs;
use std::io::{self, Read as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// The regular file at `path`, open, when it has at most `limit` bytes; read no further
/// than `limit` bytes.
pub(crate) fn open_record(path: &Path, limit: u64) -> Option<io::Take<fs::File>> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > limit {
        return None;
    }
    Some(file.take(limit))
}

/// The bytes of the regular file at `path` when it has at most `limit` bytes.
pub(crate) fn read_record(path: &Path, limit: u64) -> Option<Vec<u8>> {
    let file = open_record(path, limit)?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).ok()?;
    (bytes.len() as u64 <= limit).then_some(bytes)
}
