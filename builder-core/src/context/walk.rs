//! Listing what a context sends: every included entry with its metadata.

use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::context::ignore::{IgnoreRules, ParentMatches};

/// What kind of filesystem object an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntryType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link; its target is kept as text and never followed by the walk.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
}

impl EntryType {
    /// The type of `meta`, or `None` for a socket (which a context never carries, as
    /// docker's tar of the context leaves sockets out).
    fn of(meta: &Metadata) -> Option<Self> {
        let t = meta.file_type();
        Some(if t.is_file() {
            Self::File
        } else if t.is_dir() {
            Self::Dir
        } else if t.is_symlink() {
            Self::Symlink
        } else if t.is_fifo() {
            Self::Fifo
        } else if t.is_char_device() {
            Self::CharDevice
        } else if t.is_block_device() {
            Self::BlockDevice
        } else {
            return None;
        })
    }

    /// A one-byte tag, used when digesting.
    pub(crate) fn tag(self) -> u8 {
        match self {
            Self::File => b'f',
            Self::Dir => b'd',
            Self::Symlink => b'l',
            Self::Fifo => b'p',
            Self::CharDevice => b'c',
            Self::BlockDevice => b'b',
        }
    }
}

/// One included entry of a context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextEntry {
    /// Path relative to the context root: not empty, only normal components.
    pub path: PathBuf,
    /// What it is.
    pub kind: EntryType,
    /// Permission bits, with setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (regular files; for a symlink, the length of its target).
    pub size: u64,
    /// Modification time, nanoseconds since the epoch. Never part of a digest.
    pub mtime_ns: i64,
    /// Status change time, nanoseconds since the epoch (for the hash index only).
    pub ctime_ns: i64,
    /// Inode number (for the hash index only).
    pub inode: u64,
    /// The target text of a symlink.
    pub link_target: Option<PathBuf>,
}

impl ContextEntry {
    fn from_metadata(root: &Path, path: PathBuf, meta: &Metadata) -> io::Result<Option<Self>> {
        let Some(kind) = EntryType::of(meta) else {
            return Ok(None);
        };
        let link_target = match kind {
            EntryType::Symlink => Some(fs::read_link(root.join(&path))?),
            _ => None,
        };
        Ok(Some(Self {
            path,
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.size(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            inode: meta.ino(),
            link_target,
        }))
    }
}

/// A failure to list a context.
#[derive(Debug, thiserror::Error)]
#[error("failed to list context entry {path}")]
pub struct WalkError {
    /// The path that could not be read.
    pub path: PathBuf,
    /// The cause.
    pub source: io::Error,
}

/// The included entries of a context, in a deterministic order: depth first, the
/// entries of a directory sorted by name (bytes), each directory before its contents.
/// That is the order of [`Path`]'s comparison (component by component), so an entry is
/// found by binary search and a listing keeps no second copy of its paths.
#[derive(Debug, Clone, Default)]
pub struct ContextListing {
    root: PathBuf,
    entries: Vec<ContextEntry>,
}

struct OpenDir {
    matches: ParentMatches,
    /// An excluded directory walked for its exceptions: emitted only if something
    /// beneath it is included (as BuildKit's fsutil sends the parents of what it sends).
    pending: Option<ContextEntry>,
}

impl ContextListing {
    /// Walks the directory `root`, leaving out what `rules` exclude. Symlinks are
    /// listed, not followed.
    pub fn walk(root: &Path, rules: &IgnoreRules) -> Result<Self, WalkError> {
        let mut entries = Vec::new();
        let mut open: Vec<OpenDir> = Vec::new();
        let mut it = walkdir::WalkDir::new(root)
            .min_depth(1)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter();
        while let Some(next) = it.next() {
            let dent = next.map_err(|e| {
                let path = e.path().unwrap_or(root).to_path_buf();
                // The bare cause: the path is already in this error's message.
                let source = e
                    .into_io_error()
                    .unwrap_or_else(|| io::Error::other("symbolic link loop"));
                WalkError { path, source }
            })?;
            let failed = |source| WalkError {
                path: dent.path().to_path_buf(),
                source,
            };
            open.truncate(dent.depth() - 1);
            let rel = dent
                .path()
                .strip_prefix(root)
                .map_err(|_| failed(io::Error::other("entry outside the walked root")))?
                .to_path_buf();
            let rel_text = rel.to_string_lossy();
            let (excluded, matches) = if rules.is_empty() {
                (false, ParentMatches::default())
            } else {
                rules.excluded(&rel_text, open.last().map(|d| &d.matches))
            };
            let is_dir = dent.file_type().is_dir();
            if excluded && !(is_dir && rules.may_include_beneath(&rel_text)) {
                if is_dir {
                    it.skip_current_dir();
                }
                continue;
            }
            let meta = dent.metadata().map_err(|e| {
                failed(
                    e.into_io_error()
                        .unwrap_or_else(|| io::Error::other("symbolic link loop")),
                )
            })?;
            let Some(entry) = ContextEntry::from_metadata(root, rel, &meta).map_err(failed)? else {
                continue;
            };
            if excluded {
                open.push(OpenDir {
                    matches,
                    pending: Some(entry),
                });
                continue;
            }
            entries.extend(open.iter_mut().filter_map(|d| d.pending.take()));
            if is_dir {
                open.push(OpenDir {
                    matches,
                    pending: None,
                });
            }
            entries.push(entry);
        }
        Ok(Self::from_entries(root, entries))
    }

    fn from_entries(root: &Path, mut entries: Vec<ContextEntry>) -> Self {
        // A listing lives as long as its build: the spare capacity of a grown vector
        // would be a third of it.
        entries.shrink_to_fit();
        debug_assert!(entries.windows(2).all(|w| w[0].path < w[1].path));
        Self {
            root: root.to_path_buf(),
            entries,
        }
    }

    /// The directory the listing was taken from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every included entry, in listing order.
    pub fn entries(&self) -> &[ContextEntry] {
        &self.entries
    }

    /// The entry at a relative path, if it is included.
    pub fn get(&self, path: &Path) -> Option<&ContextEntry> {
        self.position(path).map(|i| &self.entries[i])
    }

    /// The place of the entry at `path` in [`ContextListing::entries`].
    pub(crate) fn position(&self, path: &Path) -> Option<usize> {
        if path.as_os_str().is_empty() {
            return None;
        }
        self.entries
            .binary_search_by(|e| e.path.as_path().cmp(path))
            .ok()
    }

    /// The entries directly inside `dir` (the empty path for the root), in order.
    pub fn children<'a>(&'a self, dir: &'a Path) -> impl Iterator<Item = &'a ContextEntry> + 'a {
        let below = if dir.as_os_str().is_empty() {
            &self.entries[..]
        } else {
            self.position(dir)
                .map_or(&[][..], |i| &self.subtree_at(i)[1..])
        };
        below.iter().filter(move |e| e.path.parent() == Some(dir))
    }

    /// `entry` and, for a directory, everything beneath it, in listing order.
    pub fn subtree<'a>(&'a self, entry: &'a ContextEntry) -> &'a [ContextEntry] {
        match self.position(&entry.path) {
            Some(start) => self.subtree_at(start),
            None => &[],
        }
    }

    /// The entry at `start` and everything beneath it, which follows it in one run.
    pub(crate) fn subtree_at(&self, start: usize) -> &[ContextEntry] {
        let top = &self.entries[start].path;
        let len = self.entries[start + 1..].partition_point(|e| e.path.starts_with(top));
        &self.entries[start..=start + len]
    }
}
