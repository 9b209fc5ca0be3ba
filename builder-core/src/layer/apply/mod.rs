//! Unpacking a layer into a directory, every path resolved inside it.
//!
//! Parent directories are opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`
//! from the target, so neither `..`, an absolute symlink nor a symlink leading out can
//! move a write outside the target; the last component is always created fresh
//! (`O_EXCL`, `mknodat`, `symlinkat`), never followed. Entries whose names are absolute or
//! hold `..` are refused before anything is touched.
//!
//! A layer may hold `a/b/f` without an entry for `a/` or `a/b/` (rbuild's own diffs, tools
//! that write only what changed, hand-made archives). Such an implied parent takes the
//! owner, mode, mtime and xattrs of the directory the layers below show at that path, and
//! 0:0 0755 only when none of them has one: containerd's applier (`archive/tar.go`,
//! `mkparent` with the parents of an overlay snapshot), which BuildKit unpacks with. In an
//! overlay lower dir this matters most: overlayfs takes a merged directory's attributes
//! from the topmost layer holding it, so an implied parent made 0755 would hide the real
//! directory's owner and mode (`/tmp` losing its sticky 1777) from every later step.

mod finish;
mod parents;

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use tar::EntryType;

use super::compress::decompress;
use super::limits::Meter;
use super::{LayerError, OPAQUE_WHITEOUT, PAX_XATTR_PREFIX, WHITEOUT_PREFIX, is_overlay_xattr};
use crate::digest::{Digest, Hasher};
use crate::fakeroot::{self, Owners};
use crate::limits::ArchiveLimits;
use crate::privilege::Privilege;

/// How whiteouts are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyMode {
    /// Apply on top of the lower layers already in the target: whiteouts delete what the
    /// layers below put there.
    Merged,
    /// Unpack one layer alone so it can serve as an overlay lower dir: a whiteout becomes
    /// a 0:0 character device and an opaque whiteout the `trusted.overlay.opaque=y` xattr
    /// (`user.overlay.opaque=y` unless root of the host, for an overlay with `userxattr`).
    OverlayLower,
    /// As [`ApplyMode::Merged`], for a root file system written onto the host
    /// (`-o type=local`): device nodes are never made (they are listed in
    /// [`Applied::skipped_devices`]), so an image cannot hand whoever can reach the
    /// export directory a node of the host's disks or memory.
    HostExport,
}

/// Unpacks the layer read from `reader` (gzip, zstd or plain, by magic number) into
/// `target`, which must exist; returns the diff_id of the uncompressed tar. The archive
/// is read within the default [`ArchiveLimits`]; [`apply_layer_limited`] takes others.
pub fn apply_layer(
    reader: impl Read,
    target: &Path,
    mode: ApplyMode,
) -> Result<Digest, LayerError> {
    let name = format!("the layer unpacked into {}", target.display());
    let applied = apply_layer_limited(reader, target, mode, &ArchiveLimits::default(), &name)?;
    Ok(applied.diff_id)
}

/// What [`apply_layer_limited`] unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The diff_id: the sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// Device nodes left out because this process may not create them (not root, as
    /// in a user namespace): docker's and containers/storage's appliers skip them too.
    pub skipped_devices: Vec<String>,
}

/// [`apply_layer`] with explicit limits; `name` names the layer in errors ("layer blob
/// sha256:...").
pub fn apply_layer_limited(
    reader: impl Read,
    target: &Path,
    mode: ApplyMode,
    limits: &ArchiveLimits,
    name: &str,
) -> Result<Applied, LayerError> {
    apply_over(reader, target, mode, &[], limits, name)
}

/// [`apply_layer_limited`] for a layer unpacked alone into `target` while `lowers` (lowest
/// first, overlay lower dirs) are the layers below it: a parent directory the layer
/// implies but does not hold takes the attributes of the one those lowers show (see the
/// module docs). In [`ApplyMode::Merged`] the target already holds the layers below, and
/// `lowers` is empty.
pub(crate) fn apply_over(
    reader: impl Read,
    target: &Path,
    mode: ApplyMode,
    lowers: &[PathBuf],
    limits: &ArchiveLimits,
    name: &str,
) -> Result<Applied, LayerError> {
    let open_dir = |dir: &Path| {
        rustix::fs::open(
            dir,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| LayerError::Apply {
            entry: dir.display().to_string(),
            source: e.into(),
        })
    };
    let lowers_paths = lowers;
    // Topmost first, the order a lookup goes through them.
    let lowers = lowers
        .iter()
        .rev()
        .map(|dir| open_dir(dir))
        .collect::<Result<Vec<_>, _>>()?;
    let root = rustix::fs::open(
        target,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| LayerError::Apply {
        entry: target.display().to_string(),
        source: e.into(),
    })?;
    let meter = Meter::new(*limits);
    let refused = |meter: &Meter, e: LayerError| match meter.exceeded() {
        Some(limit) => LayerError::Limit {
            archive: name.to_owned(),
            limit,
        },
        None => e,
    };
    let compressed = BufReader::with_capacity(1 << 20, meter.compressed(reader));
    let plain = decompress(compressed).map_err(LayerError::Read)?;
    let mut hashing = HashingReader {
        inner: meter.expanded(plain),
        hasher: Hasher::new(),
    };
    let privilege = Privilege::current();
    // When no owner can be given on disk, they go in the tree's table (crate::fakeroot);
    // a host export is the caller's, owners and all.
    let load = |dir: &Path| {
        Owners::load(dir).map_err(|source| LayerError::Apply {
            entry: fakeroot::table_path(dir).display().to_string(),
            source,
        })
    };
    let (owners, lower_tables) = if fakeroot::active() && mode != ApplyMode::HostExport {
        let lower_tables = lowers_paths
            .iter()
            .rev()
            .map(|dir| load(dir))
            .collect::<Result<Vec<_>, _>>()?;
        (Some(load(target)?), lower_tables)
    } else {
        (None, Vec::new())
    };
    let mut applier = Applier {
        root,
        mode,
        lowers,
        privilege,
        owners,
        lower_tables,
        written: HashSet::new(),
        implied: HashMap::new(),
        whiteouts: Vec::new(),
        opaques: Vec::new(),
        dir_times: Vec::new(),
        skipped_devices: Vec::new(),
    };
    {
        let mut archive = tar::Archive::new(&mut hashing);
        for entry in archive
            .entries()
            .map_err(|e| refused(&meter, LayerError::Read(e)))?
        {
            let entry = entry.map_err(|e| refused(&meter, LayerError::Read(e)))?;
            meter.entry().map_err(|limit| LayerError::Limit {
                archive: name.to_owned(),
                limit,
            })?;
            applier.entry(entry).map_err(|e| refused(&meter, e))?;
        }
    }
    // Hash the end-of-archive padding too: the diff_id covers the whole stream.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| refused(&meter, LayerError::Read(e)))?;
    let skipped_devices = std::mem::take(&mut applier.skipped_devices);
    if let Some(owners) = applier.finish()? {
        owners.save(target).map_err(|source| LayerError::Apply {
            entry: fakeroot::table_path(target).display().to_string(),
            source,
        })?;
    }
    Ok(Applied {
        diff_id: hashing.hasher.finish(),
        skipped_devices,
    })
}

struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

struct Applier {
    root: OwnedFd,
    mode: ApplyMode,
    /// The layers below, topmost first, that implied parents take their attributes from.
    lowers: Vec<OwnedFd>,
    /// Whether entries get their owners (root of any user namespace) and device nodes
    /// (root of the host only).
    privilege: Privilege,
    /// The owners and modes the entries are given in the image, when they cannot be
    /// given on disk (see [`crate::fakeroot`]).
    owners: Option<Owners>,
    /// With `owners`, the tables of `lowers` (in the same order), which implied parents
    /// take their entries from.
    lower_tables: Vec<Owners>,
    /// Paths this layer created, which its own whiteouts must not remove.
    written: HashSet<PathBuf>,
    /// (entry name, whited-out path), applied after the whole layer.
    whiteouts: Vec<(String, PathBuf)>,
    /// (entry name, opaque directory), applied after the whole layer.
    opaques: Vec<(String, PathBuf)>,
    /// Directory modes (on disk) and mtimes, set last since creating children changes
    /// the mtime and a mode may forbid creating them.
    dir_times: Vec<(String, PathBuf, u32, u64)>,
    /// Implied parents made after a lower directory, with its mode and mtime: set last
    /// (the mode too, so that a read-only one still takes its children), unless the
    /// layer's own entry for the directory comes later.
    implied: HashMap<PathBuf, (u32, Timespec)>,
    /// Device nodes not created (see [`Applied::skipped_devices`]).
    skipped_devices: Vec<String>,
}

/// Splits an entry name into safe relative components, refusing absolute names and `..`.
fn clean_name(entry: &str, raw: &[u8]) -> Result<PathBuf, LayerError> {
    let unsafe_entry = |reason| LayerError::Unsafe {
        entry: entry.to_owned(),
        reason,
    };
    if raw.starts_with(b"/") {
        return Err(unsafe_entry("absolute path"));
    }
    let mut out = PathBuf::new();
    for comp in raw.split(|b| *b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err(unsafe_entry("path contains '..'")),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

fn proc_path(dir: &OwnedFd, name: &OsStr) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    p.push(name);
    p
}

impl Applier {
    /// The result of giving an entry its owner: as root of a user namespace, an owner the
    /// namespace does not map (EINVAL: a base image's uid 1000 when only 0 is mapped) is
    /// left as it is, so the entry stays owned by 0, as podman's `ignore_chown_errors`
    /// storage option squashes such owners; anything else fails.
    fn unmapped_owner_ok(&self, owned: rustix::io::Result<()>) -> io::Result<()> {
        match owned {
            Err(Errno::INVAL) if self.privilege == Privilege::NamespaceRoot => Ok(()),
            other => other.map_err(Into::into),
        }
    }

    /// The result of giving an entry an extended attribute of its layer: one this process
    /// may not set (`trusted.*` outside the host's root, EPERM; or a file system without
    /// xattrs, ENOTSUP, when not root of the host) is left out, as docker's and
    /// containers/storage's appliers do in a user namespace; anything else fails.
    fn unsettable_xattr_ok(&self, set: io::Result<()>) -> io::Result<()> {
        match set {
            Err(e)
                if !self.privilege.is_host_root()
                    && matches!(e.raw_os_error(), Some(libc::EPERM | libc::ENOTSUP)) =>
            {
                Ok(())
            }
            other => other,
        }
    }

    /// Whether entries get the owners their layer gives them. Root of the host keeps
    /// them everywhere; root of a user namespace inside the store only: a tree exported
    /// onto the host (`-o type=local`) for an unprivileged caller is the caller's, as
    /// BuildKit's client writes it, not its subordinate ids', which the caller could not
    /// even delete outside the namespace.
    fn keeps_owners(&self) -> bool {
        match self.privilege {
            Privilege::HostRoot => true,
            Privilege::NamespaceRoot => self.mode != ApplyMode::HostExport,
            _ => false,
        }
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), LayerError> {
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        if let Some(format) = super::sparse_format(&mut entry) {
            return Err(LayerError::Unsupported {
                entry: name,
                reason: super::sparse_reason(format),
            });
        }
        let rel = clean_name(&name, &raw)?;
        let Some(file_name) = rel.file_name().map(OsStr::to_os_string) else {
            return Ok(()); // the root itself: keep the target's own metadata
        };
        let parent_rel = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let fname = file_name.as_bytes();
        let apply_err = |source: io::Error| LayerError::Apply {
            entry: name.clone(),
            source,
        };

        if fname == OPAQUE_WHITEOUT.as_bytes() {
            self.open_dir(&name, &parent_rel)?;
            self.opaques.push((name, parent_rel));
            return Ok(());
        }
        if let Some(hidden) = fname.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            let hidden = clean_name(&name, hidden)?;
            if hidden.components().count() != 1 {
                return Err(LayerError::Unsafe {
                    entry: name,
                    reason: "whiteout names no single file",
                });
            }
            let path = parent_rel.join(&hidden);
            if self.mode == ApplyMode::OverlayLower {
                let dir = self.open_dir(&name, &parent_rel)?;
                remove_existing(&dir, hidden.as_os_str()).map_err(apply_err)?;
                rustix::fs::mknodat(
                    &dir,
                    hidden.as_os_str(),
                    FileType::CharacterDevice,
                    Mode::empty(),
                    0,
                )
                .map_err(|e| apply_err(e.into()))?;
                if let Some(owners) = &mut self.owners {
                    owners.remove_tree(&path);
                }
                self.written.insert(path);
            } else {
                self.whiteouts.push((name, path));
            }
            return Ok(());
        }

        let header = entry.header().clone();
        let kind = header.entry_type();
        let dir = self.open_dir(&name, &parent_rel)?;
        let fname = file_name.as_os_str();
        let existing = rustix::fs::statat(&dir, fname, AtFlags::SYMLINK_NOFOLLOW).ok();
        let keep_dir = kind == EntryType::Directory
            && existing
                .is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
        if let Some(st) = existing.filter(|_| keep_dir && !self.privilege.is_host_root()) {
            // A directory already there that its owner may not fill (an earlier export's
            // 0555 one) is opened to it until the layer's mode is set at the end; one of
            // another owner is left as it is.
            if st.st_mode & 0o700 != 0o700 {
                let open = Mode::from_raw_mode((st.st_mode & 0o7777) | 0o700);
                match rustix::fs::chmodat(&dir, fname, open, AtFlags::empty()) {
                    Ok(()) | Err(Errno::PERM) => {}
                    Err(e) => return Err(apply_err(e.into())),
                }
            }
        }
        if existing.is_some() && !keep_dir {
            remove_existing(&dir, fname).map_err(apply_err)?;
            if let Some(owners) = &mut self.owners {
                owners.remove_tree(&rel);
            }
        }
        let mode = header.mode().map_err(apply_err)? & 0o7777;
        if let Some(owners) = &mut self.owners {
            let uid = header.uid().map_err(apply_err)? as u32;
            let gid = header.gid().map_err(apply_err)? as u32;
            // Devices left out are forgotten again below.
            owners.set(&rel, (uid, gid));
        }
        match kind {
            EntryType::Directory => {
                if !keep_dir {
                    rustix::fs::mkdirat(&dir, fname, Mode::from_raw_mode(0o700))
                        .map_err(|e| apply_err(e.into()))?;
                }
            }
            EntryType::Regular | EntryType::Continuous => {
                let fd = rustix::fs::openat(
                    &dir,
                    fname,
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::WRONLY
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| apply_err(e.into()))?;
                let mut file = File::from(fd);
                io::copy(&mut entry, &mut file).map_err(apply_err)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| apply_err(io::Error::other("symlink without target")))?
                    .into_owned();
                rustix::fs::symlinkat(OsStr::from_bytes(&target), &dir, fname)
                    .map_err(|e| apply_err(e.into()))?;
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| apply_err(io::Error::other("hardlink without target")))?
                    .into_owned();
                let target = clean_name(&name, &target)?;
                let Some(tname) = target.file_name() else {
                    return Err(LayerError::Unsafe {
                        entry: name,
                        reason: "hardlink to the root",
                    });
                };
                let tdir = self.open_dir(&name, target.parent().unwrap_or(Path::new("")))?;
                rustix::fs::linkat(&tdir, tname, &dir, fname, AtFlags::empty())
                    .map_err(|e| apply_err(e.into()))?;
                // A hardlink shares its target's inode and so its metadata.
                if let Some(owners) = &mut self.owners {
                    let shared = owners.entry(&target).unwrap_or_default();
                    owners.set_entry(&rel, shared);
                }
                self.written.insert(rel);
                return Ok(());
            }
            EntryType::Char | EntryType::Block
                if !self.privilege.is_host_root() || self.mode == ApplyMode::HostExport =>
            {
                // mknod of a device needs CAP_MKNOD in the initial user namespace; a host
                // export never makes one.
                if let Some(owners) = &mut self.owners {
                    owners.remove_tree(&rel);
                }
                self.skipped_devices.push(name.clone());
                return Ok(());
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (ft, dev) = match kind {
                    EntryType::Fifo => (FileType::Fifo, 0),
                    _ => {
                        let major = header.device_major().map_err(apply_err)?.unwrap_or(0);
                        let minor = header.device_minor().map_err(apply_err)?.unwrap_or(0);
                        let ft = if kind == EntryType::Char {
                            FileType::CharacterDevice
                        } else {
                            FileType::BlockDevice
                        };
                        (ft, rustix::fs::makedev(major, minor))
                    }
                };
                match rustix::fs::mknodat(&dir, fname, ft, Mode::from_raw_mode(0o600), dev) {
                    // Root of a user namespace (rbuild inside rootless podman, say) may not
                    // make devices either: skipped as when not root.
                    Err(rustix::io::Errno::PERM) if kind != EntryType::Fifo => {
                        if let Some(owners) = &mut self.owners {
                            owners.remove_tree(&rel);
                        }
                        self.skipped_devices.push(name.clone());
                        return Ok(());
                    }
                    other => other.map_err(|e| apply_err(e.into()))?,
                }
            }
            // PAX and GNU long-name headers are consumed by the tar reader; other types
            // (sparse, volume labels) are not produced by image builders.
            _ => return Ok(()),
        }
        self.written.insert(rel.clone());

        let is_symlink = kind == EntryType::Symlink;
        if self.keeps_owners() {
            let uid = header.uid().map_err(apply_err)? as u32;
            let gid = header.gid().map_err(apply_err)? as u32;
            let owned = rustix::fs::chownat(
                &dir,
                fname,
                Some(rustix::fs::Uid::from_raw(uid)),
                Some(rustix::fs::Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            );
            self.unmapped_owner_ok(owned).map_err(apply_err)?;
        }
        // On disk, when the image mode is kept in the table, one that lets the builder
        // fill and read the tree (crate::fakeroot).
        let is_dir = kind == EntryType::Directory;
        let disk = match &mut self.owners {
            Some(owners) if !is_symlink => {
                let disk = fakeroot::disk_mode(mode, is_dir);
                owners.set_mode(&rel, mode, disk);
                disk
            }
            _ => mode,
        };
        if is_dir {
            self.pin_over_lowers(&rel).map_err(apply_err)?;
        }
        if !is_symlink && !is_dir {
            // After chown, which clears setuid and setgid bits; a directory's is set
            // once its entries are written.
            rustix::fs::chmodat(&dir, fname, Mode::from_raw_mode(disk), AtFlags::empty())
                .map_err(|e| apply_err(e.into()))?;
        }
        if let Some(exts) = entry.pax_extensions().map_err(apply_err)? {
            for ext in exts {
                let ext = ext.map_err(apply_err)?;
                let Some(key) = ext.key_bytes().strip_prefix(PAX_XATTR_PREFIX.as_bytes()) else {
                    continue;
                };
                if is_overlay_xattr(key) {
                    continue;
                }
                let set = rustix::fs::lsetxattr(
                    proc_path(&dir, fname),
                    key,
                    ext.value_bytes(),
                    rustix::fs::XattrFlags::empty(),
                );
                self.unsettable_xattr_ok(set.map_err(Into::into))
                    .map_err(apply_err)?;
            }
        }
        let mtime = header.mtime().map_err(apply_err)?;
        if kind == EntryType::Directory {
            self.implied.remove(&rel);
            self.dir_times.push((name, rel, disk, mtime));
        } else {
            set_mtime(&dir, fname, mtime).map_err(apply_err)?;
        }
        Ok(())
    }
}

fn set_mtime(dir: &impl AsFd, name: &OsStr, mtime: u64) -> io::Result<()> {
    let t = Timespec {
        tv_sec: mtime as i64,
        tv_nsec: 0,
    };
    rustix::fs::utimensat(
        dir,
        name,
        &Timestamps {
            last_access: t,
            last_modification: t,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

/// Removes `name` in `dir` whatever it is; a directory goes with its contents. Missing
/// is fine.
fn remove_existing(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
            // std's remove_dir_all never follows symlinks inside the tree.
            std::fs::remove_dir_all(proc_path(dir, name))
        }
        Ok(_) => Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?),
    }
}
