//! The directories an entry is written into: opened beneath the target, never through
//! a link leading out; a parent the layer implies but does not hold made as the layers
//! below show it (see the module documentation of `apply`).

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, Timespec};
use rustix::io::Errno;
use xattr::FileExt;

use super::Applier;
use crate::layer::{LayerError, OVERLAY_OPAQUE_USER_XATTR, OVERLAY_OPAQUE_XATTR, is_overlay_xattr};

fn errno_to_unsafe(entry: &str, e: Errno) -> LayerError {
    match e {
        Errno::XDEV | Errno::LOOP => LayerError::Unsafe {
            entry: entry.to_owned(),
            reason: "path leads outside the target through a symlink",
        },
        other => LayerError::Apply {
            entry: entry.to_owned(),
            source: other.into(),
        },
    }
}

impl Applier {
    /// Opens directory `rel` beneath the root if it exists.
    pub(super) fn open_existing_dir(
        &self,
        entry: &str,
        rel: &Path,
    ) -> Result<Option<OwnedFd>, LayerError> {
        let how = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
        let target = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        match rustix::fs::openat2(&self.root, target, flags, Mode::empty(), how) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::NOENT) | Err(Errno::NOTDIR) => Ok(None),
            Err(e) => Err(errno_to_unsafe(entry, e)),
        }
    }

    /// Opens directory `rel` beneath the root, creating missing components as implied
    /// parents (see [`Applier::imply`]).
    pub(super) fn open_dir(&mut self, entry: &str, rel: &Path) -> Result<OwnedFd, LayerError> {
        let how = ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS;
        let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC;
        let target = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        match rustix::fs::openat2(&self.root, target, flags, Mode::empty(), how) {
            Ok(fd) => return Ok(fd),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(errno_to_unsafe(entry, e)),
        }
        let mut dir = rustix::fs::openat2(&self.root, ".", flags, Mode::empty(), how)
            .map_err(|e| errno_to_unsafe(entry, e))?;
        let mut sofar = PathBuf::new();
        for comp in rel.components() {
            sofar.push(comp);
            let made = match rustix::fs::mkdirat(&dir, comp.as_os_str(), Mode::from_raw_mode(0o700))
            {
                Ok(()) => true,
                Err(Errno::EXIST) => false,
                Err(e) => return Err(errno_to_unsafe(entry, e)),
            };
            dir = rustix::fs::openat2(&self.root, &sofar, flags, Mode::empty(), how)
                .map_err(|e| errno_to_unsafe(entry, e))?;
            if made {
                self.imply(&dir, &sofar)
                    .map_err(|source| LayerError::Apply {
                        entry: entry.to_owned(),
                        source,
                    })?;
            }
        }
        Ok(dir)
    }

    /// With tables: pins directory entry `rel` of the layer (see
    /// [`crate::fakeroot::Owners::pin`]) when it has no entry of its own and the
    /// directory the lower layers show there has one, so that a copy of the stack does
    /// not take this layer for holding it only as a parent.
    pub(super) fn pin_over_lowers(&mut self, rel: &Path) -> io::Result<()> {
        let Some(owners) = &self.owners else {
            return Ok(());
        };
        if self.lower_tables.iter().all(|t| t.paths().next().is_none())
            || owners.entry(rel).is_some()
        {
            return Ok(());
        }
        let Some((layer, _)) = lower_dir(&self.lowers, rel)? else {
            return Ok(());
        };
        if self
            .lower_tables
            .get(layer)
            .and_then(|t| t.entry(rel))
            .is_some()
        {
            if let Some(owners) = &mut self.owners {
                owners.pin(rel);
            }
        }
        Ok(())
    }

    /// Gives the implied parent `rel`, just made and open as `dir`, the attributes of the
    /// directory the lower layers show there, or 0755 (and the applier's owner) when they
    /// show none: containerd's `mkparent`. Its mode is set whatever the umask.
    fn imply(&mut self, dir: &OwnedFd, rel: &Path) -> io::Result<()> {
        let Some((layer, lower)) = lower_dir(&self.lowers, rel)? else {
            rustix::fs::fchmod(dir, Mode::from_raw_mode(0o755))?;
            return Ok(());
        };
        // Kept in tables, the owner and mode the image gives it are the lower layer's
        // entry (crate::fakeroot).
        if let Some(owners) = &mut self.owners {
            let entry = self.lower_tables.get(layer).and_then(|t| t.entry(rel));
            owners.set_entry(rel, entry.unwrap_or_default());
        }
        let st = rustix::fs::fstat(&lower)?;
        if self.keeps_owners() {
            let owned = rustix::fs::fchown(
                dir,
                Some(rustix::fs::Uid::from_raw(st.st_uid)),
                Some(rustix::fs::Gid::from_raw(st.st_gid)),
            );
            self.unmapped_owner_ok(owned)?;
        }
        let (lower, made) = (File::from(lower), File::from(dir.try_clone()?));
        for key in lower.list_xattr()? {
            // containerd's copyUpXAttrs leaves out overlay bookkeeping and the SELinux
            // label, which belongs to each inode.
            if is_overlay_xattr(key.as_bytes()) || key.as_bytes() == SELINUX_XATTR {
                continue;
            }
            let Some(value) = lower.get_xattr(&key)? else {
                continue;
            };
            match made.set_xattr(&key, &value) {
                Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => {}
                other => self.unsettable_xattr_ok(other)?,
            }
        }
        let mtime = Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        };
        let mode = match self.owners {
            Some(_) => crate::fakeroot::disk_mode(st.st_mode & 0o7777, true),
            None => st.st_mode & 0o7777,
        };
        self.implied.insert(rel.to_path_buf(), (mode, mtime));
        Ok(())
    }
}

/// The SELinux label, which an implied parent does not copy from the lower directory.
const SELINUX_XATTR: &[u8] = b"security.selinux";

/// Directory `rel` as overlayfs would merge `lowers` (topmost first): the one in the
/// topmost layer that holds it, unless a whiteout, a non-directory or an opaque directory
/// in a layer above hides it. Each component is looked up without following symlinks.
/// Returns the index of that layer in `lowers` with the directory.
fn lower_dir(lowers: &[OwnedFd], rel: &Path) -> io::Result<Option<(usize, OwnedFd)>> {
    let components: Vec<&OsStr> = rel.iter().collect();
    let flags = OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    'layers: for (index, layer) in lowers.iter().enumerate() {
        let mut dir = rustix::fs::openat(layer, ".", flags, Mode::empty())?;
        let mut opaque_above = false;
        for (i, name) in components.iter().enumerate() {
            let st = match rustix::fs::statat(&dir, *name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) if opaque_above => return Ok(None),
                Err(Errno::NOENT) => continue 'layers,
                Err(e) => return Err(e.into()),
            };
            if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                // A whiteout, file or symlink hides whatever the layers below hold here.
                return Ok(None);
            }
            dir = rustix::fs::openat(&dir, *name, flags, Mode::empty())?;
            if i + 1 == components.len() {
                return Ok(Some((index, dir)));
            }
            opaque_above |= is_opaque(&dir)?;
        }
    }
    Ok(None)
}

/// Whether the open directory carries an overlay opaque marker (either namespace).
fn is_opaque(dir: &OwnedFd) -> io::Result<bool> {
    for key in [OVERLAY_OPAQUE_XATTR, OVERLAY_OPAQUE_USER_XATTR] {
        let mut value = [0u8; 1];
        match rustix::fs::fgetxattr(dir, key, &mut value[..]) {
            Ok(1) if value == *b"y" => return Ok(true),
            Ok(_) | Err(Errno::NODATA) | Err(Errno::NOTSUP) | Err(Errno::RANGE) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(false)
}
