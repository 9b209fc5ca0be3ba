//! From a change set and a source tree to a tar layer, in one streaming pass.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::compress::{Compression, Compressor};
use super::{
    Layer, LayerError, OPAQUE_WHITEOUT, PAX_XATTR_PREFIX, WHITEOUT_PREFIX, is_overlay_xattr,
};
use crate::change::{ChangeKind, ChangeSet};
use crate::digest::Hasher;
use crate::fakeroot::{self, Owners};
use crate::store::ContentStore;

/// ustar's name field holds 100 bytes (POSIX pax, "ustar Interchange Format").
const USTAR_NAME_LEN: usize = 100;
/// ustar's 11 octal digits of size stop below 8 GiB; larger sizes go in a PAX record.
const USTAR_MAX_SIZE: u64 = 0o77777777777;

/// How to write a layer.
///
/// ```
/// use rbuild_core::layer::{Compression, LayerOptions};
///
/// let options = LayerOptions::default()
///     .with_compression(Compression::Zstd)
///     .with_source_date_epoch(0);
/// assert_eq!(options.source_date_epoch, Some(0));
/// ```
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct LayerOptions {
    /// The compression of the blob.
    pub compression: Compression,
    /// The compression level; `None` for the compression's default.
    pub level: Option<u32>,
    /// When set, every mtime later than this (seconds since the epoch) is clamped to it,
    /// so that the same tree gives the same layer (reproducible-builds.org
    /// SOURCE_DATE_EPOCH).
    pub source_date_epoch: Option<u64>,
}

impl LayerOptions {
    /// With [`compression`](Self::compression) set.
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// With [`level`](Self::level) set (`None`: the compression's default).
    pub fn with_level(mut self, level: Option<u32>) -> Self {
        self.level = level;
        self
    }

    /// With mtimes clamped to `epoch` ([`source_date_epoch`](Self::source_date_epoch)).
    pub fn with_source_date_epoch(mut self, epoch: u64) -> Self {
        self.source_date_epoch = Some(epoch);
        self
    }
}

/// Writes the layer for `changes`, reading added and modified paths from `source`, into
/// `store`.
pub fn write_layer(
    store: &ContentStore,
    source: &Path,
    changes: &ChangeSet,
    options: &LayerOptions,
) -> Result<Layer, LayerError> {
    let blob_writer = store.writer()?;
    let (blob_writer, diff_id) = write_layer_to(blob_writer, source, changes, options)?;
    let blob = blob_writer.finish()?;
    Ok(Layer {
        blob,
        diff_id,
        compression: options.compression,
    })
}

/// Streams the compressed layer for `changes` into `out`; returns `out` and the diff_id.
pub fn write_layer_to<W: Write + Send + 'static>(
    out: W,
    source: &Path,
    changes: &ChangeSet,
    options: &LayerOptions,
) -> Result<(W, crate::digest::Digest), LayerError> {
    let root_err = |source| LayerError::Write {
        path: PathBuf::from("/"),
        source,
    };
    let compressor = Compressor::new(out, options.compression, options.level).map_err(root_err)?;
    // Large writes keep the per-call cost of hashing and (multithreaded) compression low:
    // the tar builder itself writes 512-byte headers and 8 KiB body chunks.
    let mut tar = tar::Builder::new(io::BufWriter::with_capacity(
        1 << 20,
        DiffIdWriter {
            inner: compressor,
            hasher: Hasher::new(),
        },
    ));
    let mut state = WriteState::new(source, options);
    if fakeroot::active() {
        let table = Owners::load(source).map_err(|e| LayerError::Source {
            path: fakeroot::table_path(source),
            source: e,
        })?;
        state.keep_owners(table);
    }
    for item in ordered_items(changes) {
        state.append(&mut tar, item)?;
    }
    let diff = tar
        .into_inner()
        .map_err(root_err)?
        .into_inner()
        .map_err(|e| root_err(e.into_error()))?;
    let out = diff.inner.finish().map_err(root_err)?;
    Ok((out, diff.hasher.finish()))
}

/// Hashes the uncompressed tar on its way to the compressor.
struct DiffIdWriter<W: Write + Send + 'static> {
    inner: Compressor<W>,
    hasher: Hasher,
}

impl<W: Write + Send + 'static> Write for DiffIdWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// What one tar entry of the layer stands for, borrowing the change set's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item<'c> {
    /// An added or modified path, read from the source.
    Path(&'c Path),
    /// The opaque whiteout of a directory.
    Opaque(&'c Path),
    /// The whiteout of a deleted path.
    Whiteout(&'c Path),
}

impl<'c> Item<'c> {
    /// The item's place in the layer as a sequence of (rank, component): every
    /// component ranks 2, but a whiteout's own name ranks 1 (before its siblings) and
    /// an opaque whiteout adds a (0, empty) step (right after its directory).
    fn key(self) -> impl Iterator<Item = (u8, &'c [u8])> {
        let (path, last_rank, opaque) = match self {
            Item::Path(p) => (p, 2, false),
            Item::Opaque(p) => (p, 2, true),
            Item::Whiteout(p) => (p, 1, false),
        };
        let n = path.components().count();
        path.components()
            .enumerate()
            .map(move |(i, c)| {
                let rank = if i + 1 == n { last_rank } else { 2 };
                (rank, c.as_os_str().as_bytes())
            })
            .chain(opaque.then_some((0, &[][..])))
    }
}

/// The layer's entries in a deterministic order: a directory, then its opaque whiteout,
/// then whiteouts of its children, then its children in byte order. No key is made per
/// entry (a layer may have millions): the items borrow the change set's paths and are
/// compared component by component; the changes come in path order, which is already
/// this order for everything but whiteouts and opaque markers, so the sort is one pass
/// when there are none. No two items have the same key, so an in-place (unstable) sort
/// gives the one order, with no buffer.
fn ordered_items(changes: &ChangeSet) -> Vec<Item<'_>> {
    let mut items: Vec<Item> = Vec::with_capacity(changes.len() + changes.opaque_dirs().count());
    items.extend(changes.entries().map(|(path, kind)| match kind {
        ChangeKind::Deleted => Item::Whiteout(path),
        ChangeKind::Added | ChangeKind::Modified => Item::Path(path),
    }));
    items.extend(changes.opaque_dirs().map(Item::Opaque));
    items.sort_unstable_by(|a, b| a.key().cmp(b.key()));
    items
}

/// Writes tar entries with a layer's header rules, remembering hard links already written.
pub(crate) struct WriteState<'a> {
    source: &'a Path,
    options: &'a LayerOptions,
    /// (dev, inode) of multiply linked files already in the layer, with their path.
    hardlinks: HashMap<(u64, u64), PathBuf>,
    /// Unprivileged: the source's owner table and the build user's ids, which stand for
    /// 0 (see [`crate::fakeroot`]).
    owners: Option<(Owners, (u32, u32))>,
    /// The directory entries are named under in the tar (empty: none).
    prefix: PathBuf,
}

impl<'a> WriteState<'a> {
    /// A writer of paths under `source` (see [`WriteState::append_from`] for others).
    pub(crate) fn new(source: &'a Path, options: &'a LayerOptions) -> Self {
        WriteState {
            source,
            options,
            hardlinks: HashMap::new(),
            owners: None,
            prefix: PathBuf::new(),
        }
    }

    /// Names every entry written after this under `prefix` in the tar (`linux_arm64/`),
    /// owners still looked up by their path in the tree.
    pub(crate) fn under(&mut self, prefix: &Path) {
        self.prefix = prefix.to_path_buf();
    }

    /// Takes the entries' owners from `table`, the build user's ids standing for 0
    /// (see [`crate::fakeroot`]).
    pub(crate) fn keep_owners(&mut self, table: Owners) {
        self.owners = Some((table, fakeroot::build_ids()));
    }

    /// Records `entry` (owner and mode in the image) for `rel` in the table
    /// [`keep_owners`](Self::keep_owners) gave.
    pub(crate) fn record(&mut self, rel: &Path, entry: fakeroot::Entry) {
        if let Some((table, _)) = &mut self.owners {
            table.set_entry(rel, entry);
        }
    }

    fn mtime(&self, mtime: i64) -> u64 {
        let t = mtime.max(0) as u64;
        self.options.source_date_epoch.map_or(t, |e| t.min(e))
    }

    fn whiteout_header(&self) -> Header {
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_mtime(self.options.source_date_epoch.unwrap_or(0));
        h
    }

    fn append<W: Write>(
        &mut self,
        tar: &mut tar::Builder<W>,
        item: Item,
    ) -> Result<(), LayerError> {
        match item {
            Item::Opaque(dir) => {
                let name = dir.join(OPAQUE_WHITEOUT);
                let h = self.whiteout_header();
                emit(tar, h, &name, None, Vec::new(), io::empty())
            }
            Item::Whiteout(path) => {
                let file = path.file_name().unwrap_or(OsStr::new(""));
                let mut wh = WHITEOUT_PREFIX.as_bytes().to_vec();
                wh.extend_from_slice(file.as_bytes());
                let name = path.with_file_name(OsStr::from_bytes(&wh));
                let h = self.whiteout_header();
                emit(tar, h, &name, None, Vec::new(), io::empty())
            }
            Item::Path(rel) => self.append_path(tar, rel),
        }
    }

    fn append_path<W: Write>(
        &mut self,
        tar: &mut tar::Builder<W>,
        rel: &Path,
    ) -> Result<(), LayerError> {
        let full = self.source.join(rel);
        self.append_from(tar, &full, rel)
    }

    /// Appends the entry named `rel` in the tar, read from `full` (not followed if a
    /// symlink), whatever the source root.
    pub(crate) fn append_from<W: Write>(
        &mut self,
        tar: &mut tar::Builder<W>,
        full: &Path,
        rel: &Path,
    ) -> Result<(), LayerError> {
        let src_err = |source| LayerError::Source {
            path: rel.to_path_buf(),
            source,
        };
        let meta = fs::symlink_metadata(full).map_err(src_err)?;
        let ft = meta.file_type();
        let mut h = Header::new_ustar();
        let (uid, gid, mode) = match &self.owners {
            Some((table, build)) => {
                let (uid, gid) = table.image_owner(rel, (meta.uid(), meta.gid()), *build);
                (uid, gid, table.image_mode(rel, meta.mode()))
            }
            None => (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        };
        h.set_mode(mode);
        h.set_uid(u64::from(uid));
        h.set_gid(u64::from(gid));
        h.set_mtime(self.mtime(meta.mtime()));
        h.set_size(0);
        let xattrs = read_xattrs(full).map_err(src_err)?;
        let mut link = None;
        let mut name = self.prefix.join(rel);
        if ft.is_dir() {
            h.set_entry_type(EntryType::Directory);
            // Directories end in '/', as docker and BuildKit write them.
            let mut bytes = name.as_os_str().as_bytes().to_vec();
            bytes.push(b'/');
            name = PathBuf::from(OsStr::from_bytes(&bytes));
        } else if ft.is_symlink() {
            h.set_entry_type(EntryType::Symlink);
            link = Some(fs::read_link(full).map_err(src_err)?);
        } else if ft.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.hardlinks.get(&key) {
                    h.set_entry_type(EntryType::Link);
                    let first = first.clone();
                    return emit(tar, h, &name, Some(&first), xattrs, io::empty());
                }
                self.hardlinks.insert(key, name.clone());
            }
            h.set_entry_type(EntryType::Regular);
            h.set_size(meta.len());
            let file = File::open(full).map_err(src_err)?;
            return emit(
                tar,
                h,
                &name,
                None,
                xattrs,
                io::Read::take(file, meta.len()),
            );
        } else if ft.is_char_device() || ft.is_block_device() {
            h.set_entry_type(if ft.is_char_device() {
                EntryType::Char
            } else {
                EntryType::Block
            });
            let rdev = meta.rdev();
            h.set_device_major(rustix::fs::major(rdev))
                .map_err(src_err)?;
            h.set_device_minor(rustix::fs::minor(rdev))
                .map_err(src_err)?;
        } else if ft.is_fifo() {
            h.set_entry_type(EntryType::Fifo);
        } else {
            // Sockets are not carried by image layers (docker skips them too).
            return Ok(());
        }
        emit(tar, h, &name, link.as_deref(), xattrs, io::empty())
    }
}

/// Writes one entry: PAX records first when names, sizes or xattrs need them.
fn emit<W: Write>(
    tar: &mut tar::Builder<W>,
    mut h: Header,
    name: &Path,
    link: Option<&Path>,
    mut pax: Vec<(String, Vec<u8>)>,
    body: impl io::Read,
) -> Result<(), LayerError> {
    let werr = |source| LayerError::Write {
        path: name.to_path_buf(),
        source,
    };
    prepare(&mut h, name, link, &mut pax).map_err(werr)?;
    if !pax.is_empty() {
        tar.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(werr)?;
    }
    tar.append(&h, body).map_err(werr)
}

/// Fills in name, link and checksum of `h`, adding the PAX records (sorted) that long
/// names and sizes of 8 GiB and more need.
fn prepare(
    h: &mut Header,
    name: &Path,
    link: Option<&Path>,
    pax: &mut Vec<(String, Vec<u8>)>,
) -> io::Result<()> {
    let size = h.size()?;
    if size > USTAR_MAX_SIZE {
        pax.push(("size".to_owned(), size.to_string().into_bytes()));
    }
    let name_bytes = name.as_os_str().as_bytes();
    if h.set_path(name).is_err() {
        pax.push(("path".to_owned(), name_bytes.to_vec()));
        let raw = &mut h.as_old_mut().name;
        let n = name_bytes.len().min(USTAR_NAME_LEN);
        raw[..n].copy_from_slice(&name_bytes[..n]);
    }
    if let Some(link) = link {
        let link_bytes = link.as_os_str().as_bytes();
        if h.set_link_name(link).is_err() {
            pax.push(("linkpath".to_owned(), link_bytes.to_vec()));
            let raw = &mut h.as_old_mut().linkname;
            let n = link_bytes.len().min(USTAR_NAME_LEN);
            raw[..n].copy_from_slice(&link_bytes[..n]);
        }
    }
    pax.sort();
    h.set_cksum();
    Ok(())
}

/// The xattrs of `path` (not following symlinks) as PAX records, overlay ones left out.
fn read_xattrs(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let size = match rustix::fs::llistxattr_query(path) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    if size == 0 {
        return Ok(Vec::new());
    }
    let mut names = vec![0u8; size];
    let n = rustix::fs::llistxattr(path, &mut names[..])?;
    let mut out = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if is_overlay_xattr(name) {
            continue;
        }
        let Ok(key) = std::str::from_utf8(name) else {
            continue;
        };
        let len = rustix::fs::lgetxattr_query(path, name)?;
        let mut value = vec![0u8; len];
        let got = rustix::fs::lgetxattr(path, name, &mut value[..])?;
        value.truncate(got);
        out.push((format!("{PAX_XATTR_PREFIX}{key}"), value));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn files_over_8_gib_and_long_names_get_pax_records() {
        let size = USTAR_MAX_SIZE + 2;
        let name = PathBuf::from("d".repeat(120)).join("n".repeat(150));
        let link = PathBuf::from("l".repeat(130));
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::Regular);
        h.set_size(size);
        let mut pax = Vec::new();
        prepare(&mut h, &name, Some(&link), &mut pax).unwrap();
        let get = |k: &str| pax.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        assert_eq!(get("size"), Some(size.to_string().into_bytes()));
        assert_eq!(get("path"), Some(name.as_os_str().as_bytes().to_vec()));
        assert_eq!(get("linkpath"), Some(link.as_os_str().as_bytes().to_vec()));
        // The header's own size field still holds it (binary encoding), as GNU tar reads.
        assert_eq!(h.size().unwrap(), size);
    }

    /// Builds the same tree in `root` in one of two orders: what the filesystem assigns
    /// (inode numbers, creation order, atimes and ctimes, xattr order, which name of a
    /// hard link comes first on disk) differs; what a layer should carry does not.
    fn same_tree(root: &Path, reversed: bool) {
        let names = ["b", "a", "d/e", "d/c"];
        let mut order: Vec<&str> = names.to_vec();
        if reversed {
            order.reverse();
        }
        fs::create_dir_all(root.join("d")).unwrap();
        for name in &order {
            fs::write(root.join(name), format!("{name}\n")).unwrap();
        }
        let (first, second) = if reversed { ("d/e", "a") } else { ("a", "d/e") };
        // The hard link pair: same inode, created from either side.
        fs::write(root.join(first), "shared\n").unwrap();
        fs::remove_file(root.join(second)).unwrap();
        fs::hard_link(root.join(first), root.join(second)).unwrap();
        let xattrs = [("user.one", b"1"), ("user.two", b"2")];
        for (k, v) in if reversed {
            vec![xattrs[1], xattrs[0]]
        } else {
            xattrs.to_vec()
        } {
            xattr::set(root.join("b"), k, v).unwrap();
        }
        // Read it, so atimes move.
        let _ = fs::read(root.join("b")).unwrap();
    }

    #[test]
    fn the_same_tree_built_differently_gives_the_same_layer_under_an_epoch() {
        let epoch = 1_600_000_000;
        let options = LayerOptions {
            compression: Compression::None,
            level: None,
            source_date_epoch: Some(epoch),
        };
        let mut layers = Vec::new();
        for reversed in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            same_tree(dir.path(), reversed);
            let changes = crate::layer::tree_changes(dir.path()).unwrap();
            let (bytes, diff_id) =
                write_layer_to(Vec::new(), dir.path(), &changes, &options).unwrap();
            layers.push((bytes, diff_id));
            // Some seconds apart in reality: the files are newer than the epoch either way.
            std::thread::sleep(std::time::Duration::from_millis(1100));
        }
        assert_eq!(layers[0].1, layers[1].1);
        // Nothing of the writing host in the headers: no user or group names, no atime or
        // ctime records, every mtime the epoch.
        let mut archive = tar::Archive::new(&layers[0].0[..]);
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().into_owned();
            let header = entry.header();
            assert_eq!(header.mtime().unwrap(), epoch, "{path:?}");
            assert_eq!(header.username_bytes(), Some(&b""[..]), "{path:?}");
            assert_eq!(header.groupname_bytes(), Some(&b""[..]), "{path:?}");
            if let Some(pax) = entry.pax_extensions().unwrap() {
                for ext in pax {
                    let key = ext.unwrap().key().unwrap().to_owned();
                    assert!(!key.ends_with("time"), "{path:?} has PAX record {key}");
                }
            }
        }
    }
}
