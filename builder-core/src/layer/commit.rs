//! A step's overlay upper directory kept as its layer: moved into the store as the lower
//! `layers/<chain_id>/` with no tar written and nothing compressed, and the blob made
//! from it later, only when an output needs one.
//!
//! At the commit one pass writes the layer's tar into a hash (its diff_id, which cache
//! keys chain on, so the bytes are exactly those [`write_layer_to`] makes), then the
//! directory is made to read as a layer unpacked from that tar would (mtimes in whole
//! seconds, clamped to `SOURCE_DATE_EPOCH`; of overlay xattrs only the opaque markers
//! the tar holds, in the namespace the mount reads; sockets removed). Beside it, in `layerdb/` (not inside: a file there
//! would show in the lower), the change list in tar order and a record of the diff_id.
//! A blob is the tar regenerated from the directory and the list, checked against the
//! diff_id before anything is stored ([`ContentStore::blob_from_dir`]).
//!
//! A directory is trusted as a layer only with its record (the record is written last),
//! so a commit cut short leaves nothing a build would use.

use std::borrow::Cow;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, BufRead, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::writer::write_layer_to;
use super::{
    Compression, Layer, LayerError, LayerOptions, OVERLAY_OPAQUE_USER_XATTR, OVERLAY_OPAQUE_XATTR,
    is_overlay_xattr,
};
use crate::atomic::AtomicWrite;
use crate::change::{ChangeKind, ChangeSet};
use crate::digest::Digest;
use crate::store::record::{open_record, read_record};
use crate::store::{ContentStore, StoreError};

/// The store area of layer records, beside `layers/`.
pub(crate) const LAYERDB_DIR: &str = "layerdb";
/// The most bytes a layer record may have.
const RECORD_LIMIT: u64 = 64 << 10;
/// The most bytes a change list may have (about 30 bytes per entry).
const CHANGES_LIMIT: u64 = 1 << 30;

/// What the store knows of a layer directory a step made: `layerdb/<chain hex>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LayerRecord {
    /// The sha256 of the layer's tar.
    pub diff_id: String,
    /// The tar's size in bytes.
    pub tar_size: u64,
    /// Blobs made from the directory: compression name, digest, size.
    #[serde(default)]
    pub blobs: Vec<(String, String, u64)>,
    /// The `SOURCE_DATE_EPOCH` the tar was made with (it sets the whiteouts' mtimes): a
    /// blob is made with it, whatever the build asking for the blob uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
}

impl LayerRecord {
    /// The blob of `compression` made from the directory, if one was.
    pub(crate) fn blob(&self, compression: Compression) -> Option<(Digest, u64)> {
        self.blobs
            .iter()
            .find(|(c, _, _)| c == compression.name())
            .and_then(|(_, d, size)| Some((d.parse().ok()?, *size)))
    }
}

/// A layer committed from an upper directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Committed {
    /// The sha256 of the layer's tar.
    pub diff_id: Digest,
    /// The tar's size in bytes.
    pub tar_size: u64,
    /// Its chain ID (names `layers/<chain_id>/`).
    pub chain_id: Digest,
}

/// Counts what is written and throws it away.
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LayerError + 'a {
    move |source| {
        LayerError::Store(StoreError::Io {
            action,
            path: path.to_path_buf(),
            source,
        })
    }
}

impl ContentStore {
    fn layerdb_path(&self, chain_id: &Digest, ext: &str) -> PathBuf {
        self.root()
            .join(LAYERDB_DIR)
            .join(format!("{}.{ext}", chain_id.hex()))
    }

    /// The record of the layer directory `chain_id` when a step made it, the directory
    /// is there and was not found changed since (`<chain hex>.stale`).
    pub(crate) fn layer_record(&self, chain_id: &Digest) -> Option<LayerRecord> {
        let bytes = read_record(&self.layerdb_path(chain_id, "json"), RECORD_LIMIT)?;
        let record: LayerRecord = serde_json::from_slice(&bytes).ok()?;
        let stale = self.layerdb_path(chain_id, "stale").exists();
        (self.layer_dir(chain_id).is_dir() && !stale).then_some(record)
    }

    fn write_record(&self, chain_id: &Digest, record: &LayerRecord) -> Result<(), LayerError> {
        let path = self.layerdb_path(chain_id, "json");
        let bytes = serde_json::to_vec(record).map_err(|e| {
            LayerError::Store(StoreError::Io {
                action: "serialize",
                path: path.clone(),
                source: e.into(),
            })
        })?;
        AtomicWrite::new(&path).write(&bytes).map_err(|e| {
            LayerError::Store(StoreError::Io {
                action: e.action,
                path: e.path,
                source: e.source,
            })
        })
    }

    /// Commits the overlay upper directory `upper` (its changes `changes`) as the layer
    /// over the stack with diff_ids `below` (lowest first): its diff_id from a hash-only
    /// pass, the directory normalized and moved to `layers/<chain_id>/`, the change list
    /// and record written. `epoch` is the build's `SOURCE_DATE_EPOCH`.
    pub(crate) fn commit_upper(
        &self,
        upper: &Path,
        changes: &ChangeSet,
        below: &[Digest],
        epoch: Option<u64>,
    ) -> Result<Committed, LayerError> {
        let options = LayerOptions {
            compression: Compression::None,
            level: None,
            source_date_epoch: epoch,
        };
        let (counter, diff_id) = write_layer_to(Counter(0), upper, changes, &options)?;
        let tar_size = counter.0;
        let mut stack: Vec<&Digest> = below.iter().collect();
        stack.push(&diff_id);
        let chain_id = super::chain_ids(stack)
            .pop()
            .unwrap_or_else(|| diff_id.clone());
        let kept = normalize(upper, changes, epoch)?;
        let db = self.root().join(LAYERDB_DIR);
        fs::create_dir_all(&db).map_err(io_err("create directory", &db))?;
        let changes_path = self.layerdb_path(&chain_id, "changes");
        AtomicWrite::new(&changes_path)
            .write_with(|file| {
                let mut out = io::BufWriter::new(file);
                encode_changes(&kept, &mut out)?;
                out.flush()
            })
            .map_err(|e| {
                LayerError::Store(StoreError::Io {
                    action: e.action,
                    path: e.path,
                    source: e.source,
                })
            })?;
        let dest = self.layer_dir(&chain_id);
        let layers = self.root().join("layers");
        fs::create_dir_all(&layers).map_err(io_err("create directory", &layers))?;
        let mut retired = false;
        loop {
            match fs::rename(upper, &dest) {
                Ok(()) => break,
                // Another build made the same layer meanwhile (it may not have written
                // its record yet), or unpacked it from a blob: the same content, keep
                // theirs. One found changed since ([`blob_from_dir`]) gives way.
                Err(_) if dest.is_dir() => {
                    let stale = self.layerdb_path(&chain_id, "stale").exists()
                        || self
                            .layer_record(&chain_id)
                            .is_some_and(|r| r.diff_id != diff_id.as_str());
                    if !stale || retired {
                        let _ = self.remove_tree(upper);
                        break;
                    }
                    self.retire_layer_dir(&chain_id)?;
                    retired = true;
                }
                Err(e) => return Err(io_err("move layer directory to", &dest)(e)),
            }
        }
        // A fresh record: the blobs an earlier one names are not taken on trust for a
        // step that ran again (`--no-cache`); they are made again from the directory,
        // checked against the diff_id, as the previous version made them on every run.
        let record = LayerRecord {
            diff_id: diff_id.to_string(),
            tar_size,
            blobs: Vec::new(),
            epoch,
        };
        self.write_record(&chain_id, &record)?;
        Ok(Committed {
            diff_id,
            tar_size,
            chain_id,
        })
    }

    /// Moves the directory of layer `chain_id` out of the way, under a scratch name of
    /// `layers/` (removed at the next open of the store that no other process holds: a
    /// build may have it mounted as a lower right now), and drops its record and stale
    /// mark.
    fn retire_layer_dir(&self, chain_id: &Digest) -> Result<(), LayerError> {
        let layers = self.root().join("layers");
        let trash = tempfile::Builder::new()
            .prefix(".unpack-retired-")
            .tempdir_in(&layers)
            .map_err(io_err("create temp dir in", &layers))?
            .keep();
        let dest = self.layer_dir(chain_id);
        let _ = fs::remove_file(self.layerdb_path(chain_id, "json"));
        match fs::rename(&dest, trash.join("layer")) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("move aside layer directory", &dest)(e)),
        }
        let _ = fs::remove_file(self.layerdb_path(chain_id, "stale"));
        Ok(())
    }

    /// The blob of layer `chain_id` (diff_id `diff_id`) in the compression of `options`,
    /// made from its directory and change list when the record names none. The tar is
    /// checked against `diff_id` before the blob is stored: a directory changed since
    /// its commit gives [`LayerError::DiffIdMismatch`] and stores nothing.
    pub(crate) fn blob_from_dir(
        &self,
        chain_id: &Digest,
        diff_id: &Digest,
        options: &LayerOptions,
    ) -> Result<Layer, LayerError> {
        let dir = self.layer_dir(chain_id);
        let Some(mut record) = self.layer_record(chain_id) else {
            return Err(io_err("find the layer record of", &dir)(io::Error::from(
                io::ErrorKind::NotFound,
            )));
        };
        if record.diff_id != diff_id.as_str() {
            return Err(LayerError::DiffIdMismatch {
                expected: diff_id.clone(),
                found: record.diff_id.parse().map_err(|_| {
                    io_err("parse the layer record of", &dir)(io::Error::from(
                        io::ErrorKind::InvalidData,
                    ))
                })?,
            });
        }
        if let Some((digest, size)) = record.blob(options.compression) {
            if self.contains(&digest) {
                return Ok(Layer {
                    blob: crate::store::Blob { digest, size },
                    diff_id: diff_id.clone(),
                    compression: options.compression,
                });
            }
        }
        let changes_path = self.layerdb_path(chain_id, "changes");
        let list = open_record(&changes_path, CHANGES_LIMIT).ok_or_else(|| {
            io_err("read", &changes_path)(io::Error::from(io::ErrorKind::NotFound))
        })?;
        let changes = decode_changes(io::BufReader::new(list))
            .map_err(io_err("read", &changes_path))?
            .ok_or_else(|| {
                io_err("parse", &changes_path)(io::Error::from(io::ErrorKind::InvalidData))
            })?;
        let options = LayerOptions {
            source_date_epoch: record.epoch,
            ..options.clone()
        };
        let writer = self.writer()?;
        let (writer, found) = write_layer_to(writer, &dir, &changes, &options)?;
        if &found != diff_id {
            // Dropping the writer removes its temp file: nothing is stored. Without its
            // record the directory is trusted no more: the next build runs the step,
            // and its commit replaces the directory (marked stale).
            drop(writer);
            let _ = AtomicWrite::new(&self.layerdb_path(chain_id, "stale")).write(b"");
            let _ = fs::remove_file(self.layerdb_path(chain_id, "json"));
            return Err(LayerError::LayerDirChanged {
                dir,
                expected: diff_id.clone(),
                found,
            });
        }
        let blob = writer.finish()?;
        record
            .blobs
            .retain(|(c, _, _)| c != options.compression.name());
        record.blobs.push((
            options.compression.name().to_owned(),
            blob.digest.to_string(),
            blob.size,
        ));
        self.write_record(chain_id, &record)?;
        Ok(Layer {
            blob,
            diff_id: diff_id.clone(),
            compression: options.compression,
        })
    }
}

/// Makes the upper directory read as the layer unpacked from its tar would: sockets
/// removed (a tar carries none), each entry's mtime the tar's (whole seconds, clamped to
/// `epoch`), overlay xattrs those an unpack sets. Returns the changes without the sockets
/// (`changes` itself when there were none, not a copy).
fn normalize<'c>(
    upper: &Path,
    changes: &'c ChangeSet,
    epoch: Option<u64>,
) -> Result<Cow<'c, ChangeSet>, LayerError> {
    let mut sockets = Vec::new();
    for (rel, kind) in changes.entries() {
        if kind != ChangeKind::Deleted {
            let path = upper.join(rel);
            let meta = fs::symlink_metadata(&path).map_err(io_err("stat", &path))?;
            if meta.file_type().is_socket() {
                sockets.push(path);
            }
        }
    }
    let kept = if sockets.is_empty() {
        Cow::Borrowed(changes)
    } else {
        let mut kept = ChangeSet::new();
        for (rel, kind) in changes.entries() {
            if kind != ChangeKind::Deleted && sockets.contains(&upper.join(rel)) {
                continue;
            }
            kept.record(rel, kind)
                .map_err(|e| io_err("record", rel)(io::Error::other(e)))?;
        }
        for dir in changes.opaque_dirs() {
            kept.mark_opaque(dir.to_path_buf())
                .map_err(|e| io_err("record", dir)(io::Error::other(e)))?;
        }
        Cow::Owned(kept)
    };
    // Removing a socket changes its directory's mtime: the one the tar has is put back.
    let mut parents = Vec::new();
    for socket in &sockets {
        if let Some(parent) = socket.parent() {
            let meta = fs::symlink_metadata(parent).map_err(io_err("stat", parent))?;
            parents.push((parent.to_path_buf(), meta.mtime().max(0) as u64));
        }
    }
    for socket in &sockets {
        fs::remove_file(socket).map_err(io_err("remove socket", socket))?;
    }
    for (parent, mtime) in parents.iter().rev() {
        set_mtime(parent, *mtime).map_err(io_err("set the mtime of", parent))?;
    }
    for (rel, _) in kept.entries().filter(|(_, k)| *k != ChangeKind::Deleted) {
        let path = upper.join(rel);
        let meta = fs::symlink_metadata(&path).map_err(io_err("stat", &path))?;
        let t = meta.mtime().max(0) as u64;
        let t = epoch.map_or(t, |e| t.min(e));
        if meta.mtime() != t as i64 || meta.mtime_nsec() != 0 {
            set_mtime(&path, t).map_err(io_err("set the mtime of", &path))?;
        }
    }
    set_overlay_xattrs(upper, &kept)?;
    Ok(kept)
}

fn set_mtime(path: &Path, secs: u64) -> io::Result<()> {
    let t = rustix::fs::Timespec {
        tv_sec: secs as i64,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

/// Leaves on the entries under `dir` only the overlay xattrs an unpack of the layer's
/// tar gives them (`ApplyMode::OverlayLower`): the opaque marker the overlay mount reads
/// (`trusted.*` as root of the host, `user.*` otherwise) on each directory `changes` makes
/// opaque, and nothing else. overlayfs' bookkeeping (`origin`, `impure`, ...) goes, and
/// so does an `*.overlay.*` xattr a step set itself where the mount does not read it as
/// its own (`user.overlay.opaque` under a root mount): the diff took it as an opaque
/// marker, but kept as it is the next steps' mounts would not hide what the tar hides,
/// and copied up by one of them it would mark that step's layer opaque too.
fn set_overlay_xattrs(dir: &Path, changes: &ChangeSet) -> Result<(), LayerError> {
    let marker = if crate::privilege::Privilege::current().is_host_root() {
        OVERLAY_OPAQUE_XATTR
    } else {
        OVERLAY_OPAQUE_USER_XATTR
    };
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.map_err(|e| io_err("walk", dir)(e.into()))?;
        let path = entry.path();
        let opaque = entry.file_type().is_dir()
            && path
                .strip_prefix(dir)
                .is_ok_and(|rel| changes.is_opaque(rel));
        let size = match rustix::fs::llistxattr_query(path) {
            Ok(n) => n,
            Err(rustix::io::Errno::NOTSUP) => 0,
            Err(e) => return Err(io_err("list the xattrs of", path)(e.into())),
        };
        let mut names = vec![0u8; size];
        let n = match size {
            0 => 0,
            _ => rustix::fs::llistxattr(path, &mut names[..])
                .map_err(|e| io_err("list the xattrs of", path)(e.into()))?,
        };
        let mut marked = false;
        for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
            if opaque && name == marker.as_bytes() {
                marked = true;
            } else if is_overlay_xattr(name) {
                // Best effort: an unprivileged process may not remove trusted.* ones,
                // and overlay ignores them in a lower without index/metacopy.
                let _ = rustix::fs::lremovexattr(path, OsStr::from_bytes(name));
            }
        }
        if opaque && !marked {
            rustix::fs::lsetxattr(path, marker, b"y", rustix::fs::XattrFlags::empty())
                .map_err(|e| io_err("mark opaque", path)(e.into()))?;
        }
    }
    Ok(())
}

/// The change list as stored: per change a kind byte (`A`dded, `M`odified, `D`eleted,
/// `O`paque directory), the path's bytes and a NUL. Written record by record.
fn encode_changes(changes: &ChangeSet, out: &mut impl Write) -> io::Result<()> {
    for (path, kind) in changes.entries() {
        out.write_all(match kind {
            ChangeKind::Added => b"A",
            ChangeKind::Modified => b"M",
            ChangeKind::Deleted => b"D",
        })?;
        out.write_all(path.as_os_str().as_bytes())?;
        out.write_all(&[0])?;
    }
    for dir in changes.opaque_dirs() {
        out.write_all(b"O")?;
        out.write_all(dir.as_os_str().as_bytes())?;
        out.write_all(&[0])?;
    }
    Ok(())
}

/// The change list [`encode_changes`] wrote, read record by record; `None` when it is
/// not one.
fn decode_changes(mut list: impl BufRead) -> io::Result<Option<ChangeSet>> {
    let mut set = ChangeSet::new();
    let mut record = Vec::new();
    loop {
        record.clear();
        if list.read_until(0, &mut record)? == 0 {
            return Ok(Some(set));
        }
        if record.last() == Some(&0) {
            record.pop();
        }
        let Some((kind, path)) = record.split_first() else {
            continue;
        };
        let path = Path::new(OsStr::from_bytes(path));
        let done = match kind {
            b'A' => set.record(path, ChangeKind::Added),
            b'M' => set.record(path, ChangeKind::Modified),
            b'D' => set.record(path, ChangeKind::Deleted),
            b'O' => set.mark_opaque(path),
            _ => return Ok(None),
        };
        if done.is_err() {
            return Ok(None);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn change_lists_read_back_as_written() {
        let mut set = ChangeSet::new();
        set.record("a", ChangeKind::Added).unwrap();
        set.record("d", ChangeKind::Modified).unwrap();
        set.record("d/gone\nname", ChangeKind::Deleted).unwrap();
        set.mark_opaque("d").unwrap();
        let mut bytes = Vec::new();
        encode_changes(&set, &mut bytes).unwrap();
        let back = decode_changes(&bytes[..]).unwrap().unwrap();
        assert_eq!(
            back.iter().collect::<Vec<_>>(),
            set.iter().collect::<Vec<_>>()
        );
        assert!(back.is_opaque(Path::new("d")));
        assert!(decode_changes(&b"Xbad\0"[..]).unwrap().is_none());
    }
}
