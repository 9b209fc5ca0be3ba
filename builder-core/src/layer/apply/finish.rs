//! The work an [`Applier`] leaves until the whole layer is read: whiteouts and opaque
//! directories (a layer's own entries must not be removed by them), directory times
//! (creating children changes them) and the attributes of implied parents.

use std::ffi::OsStr;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};

use super::{Applier, ApplyMode, proc_path, remove_existing};
use crate::fakeroot::Owners;
use crate::layer::{LayerError, OVERLAY_OPAQUE_USER_XATTR, OVERLAY_OPAQUE_XATTR};

impl Applier {
    /// Applies what waited for the end of the layer; returns the owner table, when
    /// owners are kept in one.
    pub(super) fn finish(mut self) -> Result<Option<Owners>, LayerError> {
        match self.mode {
            ApplyMode::Merged | ApplyMode::HostExport => {
                for (entry, dir) in std::mem::take(&mut self.opaques) {
                    let fd = self.open_dir(&entry, &dir)?;
                    self.prune_unwritten(&entry, &fd, &dir)?;
                    if let Some(owners) = &mut self.owners {
                        owners.retain_below(&dir, |p| self.written.contains(p));
                    }
                }
                for (entry, path) in std::mem::take(&mut self.whiteouts) {
                    if self.written.contains(&path) {
                        continue;
                    }
                    let parent = path.parent().unwrap_or(Path::new(""));
                    let name = path.file_name().unwrap_or(OsStr::new(""));
                    // A whiteout in a directory the lower layers lack hides nothing.
                    let Some(fd) = self.open_existing_dir(&entry, parent)? else {
                        continue;
                    };
                    remove_existing(&fd, name)
                        .map_err(|source| LayerError::Apply { entry, source })?;
                    if let Some(owners) = &mut self.owners {
                        owners.remove_tree(&path);
                    }
                }
            }
            ApplyMode::OverlayLower => {
                // The marker the overlay snapshotter's mount reads: it runs with
                // `userxattr` unless root of the host, and a user namespace may not set
                // `trusted.*` at all.
                let opaque = if self.privilege.is_host_root() {
                    OVERLAY_OPAQUE_XATTR
                } else {
                    OVERLAY_OPAQUE_USER_XATTR
                };
                for (entry, dir) in std::mem::take(&mut self.opaques) {
                    let fd = self.open_dir(&entry, &dir)?;
                    let flags = rustix::fs::XattrFlags::empty();
                    match rustix::fs::fsetxattr(&fd, opaque, b"y", flags) {
                        // Root of the host without CAP_SYS_ADMIN (a container with default
                        // security) may not set `trusted.*`; nor can it mount an overlay,
                        // so only the copy snapshotter reads these layers, and it reads
                        // either marker.
                        Err(rustix::io::Errno::PERM) if opaque == OVERLAY_OPAQUE_XATTR => {
                            rustix::fs::fsetxattr(&fd, OVERLAY_OPAQUE_USER_XATTR, b"y", flags)
                        }
                        other => other,
                    }
                    .map_err(|e| LayerError::Apply {
                        entry,
                        source: e.into(),
                    })?;
                }
            }
        }
        // The layer's directories, then the implied parents not given by a later entry:
        // modes and times, deepest first, so that a parent made read-only or
        // untraversable does not stand in the way (a stable sort: of two entries for one
        // directory the later wins). Setting a directory's times leaves its parent's
        // alone.
        let mut dirs: Vec<(String, PathBuf, u32, Timespec)> = std::mem::take(&mut self.dir_times)
            .into_iter()
            .map(|(entry, rel, mode, mtime)| {
                let mtime = Timespec {
                    tv_sec: mtime as i64,
                    tv_nsec: 0,
                };
                (entry, rel, mode, mtime)
            })
            .collect();
        let mut implied: Vec<_> = std::mem::take(&mut self.implied).into_iter().collect();
        implied.sort_by(|a, b| a.0.cmp(&b.0));
        dirs.extend(
            implied
                .into_iter()
                .map(|(rel, (mode, mtime))| (rel.display().to_string(), rel, mode, mtime)),
        );
        dirs.sort_by_key(|(_, rel, _, _)| std::cmp::Reverse(rel.components().count()));
        for (entry, rel, mode, mtime) in dirs {
            // A later entry of the layer may have replaced it with a file or a whiteout.
            let Some(fd) = self.open_existing_dir(&entry, &rel)? else {
                continue;
            };
            let times = Timestamps {
                last_access: mtime,
                last_modification: mtime,
            };
            // After the chown of the entry or in `imply`, which clears the setgid bit.
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))
                .and_then(|()| rustix::fs::futimens(&fd, &times))
                .map_err(|e| LayerError::Apply {
                    entry,
                    source: e.into(),
                })?;
        }
        Ok(self.owners)
    }

    /// Removes everything under `dir` this layer did not write (an opaque directory).
    fn prune_unwritten(&self, entry: &str, fd: &OwnedFd, dir: &Path) -> Result<(), LayerError> {
        let err = |source: io::Error| LayerError::Apply {
            entry: entry.to_owned(),
            source,
        };
        let names: Vec<_> = std::fs::read_dir(proc_path(fd, OsStr::new("")))
            .map_err(err)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(err)?;
        for name in names {
            let child = dir.join(&name);
            if !self.written.contains(&child) {
                remove_existing(fd, &name).map_err(err)?;
            } else if let Ok(st) = rustix::fs::statat(fd, &name, AtFlags::SYMLINK_NOFOLLOW) {
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    let sub = rustix::fs::openat(
                        fd,
                        &name,
                        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| err(e.into()))?;
                    self.prune_unwritten(entry, &sub, &child)?;
                }
            }
        }
        Ok(())
    }
}
