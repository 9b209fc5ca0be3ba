//! Mount points created for a step only, and removed without a trace afterwards.
//!
//! The sandbox mounts `/proc`, `/dev`, `/sys` and `/etc/{hosts,hostname,resolv.conf}`
//! over whatever the image has. When the image lacks one, an empty directory or file is
//! created as the mount point in the step's writable directory before the step (with an
//! overlay, parent directories are created in the upper directory with the lower's
//! owner and mode) and removed after it. The touched directories get their modification
//! times back, unless the step itself changed them, so the change set never shows them.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, Timespec, Timestamps};

use crate::snapshot::{LowerView, SnapshotError};

type Mtime = (i64, i64);

/// The stubs of one step.
#[derive(Debug)]
pub(crate) struct Stubs {
    writable: PathBuf,
    /// Relative paths created as mount points, in creation order.
    created: Vec<PathBuf>,
    /// Directories created in the writable dir only to hold a stub (overlay upper).
    materialized: Vec<PathBuf>,
    /// Touched directories and the modification time the step must see unchanged.
    dirs: BTreeMap<PathBuf, Mtime>,
}

impl Stubs {
    pub fn new(writable: &Path) -> Self {
        Stubs {
            writable: writable.to_path_buf(),
            created: Vec::new(),
            materialized: Vec::new(),
            dirs: BTreeMap::new(),
        }
    }

    /// Makes sure `rel` exists as a directory (`want_dir`) or regular file, creating it
    /// when absent. False when it cannot serve as a mount point (wrong type, or reached
    /// through a symbolic link, which must not be followed from the host).
    pub fn ensure(
        &mut self,
        view: &LowerView,
        rel: &Path,
        want_dir: bool,
    ) -> Result<bool, SnapshotError> {
        if view.crosses_symlink(rel)? {
            return Ok(false);
        }
        if let Some(entry) = view.lookup(rel)? {
            return Ok(if want_dir {
                entry.is_dir
            } else {
                entry.is_file
            });
        }
        let parent = rel.parent().unwrap_or(Path::new(""));
        if !parent.as_os_str().is_empty() && !self.ensure(view, parent, true)? {
            return Ok(false);
        }
        self.materialize(view, parent)?;
        self.remember(view, parent)?;
        let path = self.writable.join(rel);
        if want_dir {
            fs::create_dir(&path).map_err(SnapshotError::io("create mount point", &path))?;
        } else {
            fs::File::create(&path).map_err(SnapshotError::io("create mount point", &path))?;
        }
        self.created.push(rel.to_path_buf());
        Ok(true)
    }

    /// Gives the touched directories back their times before the step starts.
    pub fn seal(&self) -> Result<(), SnapshotError> {
        for (rel, mtime) in &self.dirs {
            set_mtime(&self.writable.join(rel), *mtime)?;
        }
        Ok(())
    }

    /// Removes every stub; restores directory times the step did not change.
    pub fn remove(self) -> Result<(), SnapshotError> {
        let mut after = BTreeMap::new();
        for rel in self.dirs.keys() {
            after.insert(rel.clone(), mtime_of(&self.writable.join(rel))?);
        }
        for rel in self
            .created
            .iter()
            .rev()
            .chain(self.materialized.iter().rev())
        {
            let path = self.writable.join(rel);
            let result = match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => fs::remove_dir(&path),
                Ok(m) if m.len() == 0 => fs::remove_file(&path),
                _ => Ok(()),
            };
            match result {
                Ok(()) => {}
                // The step put something in it: it is the step's now.
                Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(SnapshotError::io("remove mount point", &path)(e)),
            }
        }
        for rel in self.dirs.keys() {
            let path = self.writable.join(rel);
            let Some(seen) = after.get(rel).copied().flatten() else {
                continue;
            };
            if fs::symlink_metadata(&path).is_ok() {
                // Unchanged by the step, `seen` is the sealed time; else it is the step's.
                set_mtime(&path, seen)?;
            }
        }
        Ok(())
    }

    /// Creates `dir` and its missing parents in the writable directory, copying owner
    /// and mode from the merged view.
    fn materialize(&mut self, view: &LowerView, dir: &Path) -> Result<(), SnapshotError> {
        let mut prefix = PathBuf::new();
        for component in dir.components() {
            prefix.push(component);
            let path = self.writable.join(&prefix);
            if fs::symlink_metadata(&path).is_ok() {
                continue;
            }
            self.remember(view, &prefix)?;
            let Some(entry) = view.lookup(&prefix)? else {
                continue;
            };
            let parent = prefix.parent().unwrap_or(Path::new(""));
            self.remember(view, parent)?;
            fs::create_dir(&path).map_err(SnapshotError::io("create directory", &path))?;
            match std::os::unix::fs::lchown(&path, Some(entry.meta.uid), Some(entry.meta.gid)) {
                // Rootless: the caller cannot give away files; the layers are its own.
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
                other => other.map_err(SnapshotError::io("change owner of", &path))?,
            }
            rustix::fs::chmod(&path, rustix::fs::Mode::from_raw_mode(entry.meta.mode))
                .map_err(|e| SnapshotError::io("change mode of", &path)(e.into()))?;
            self.materialized.push(prefix.clone());
        }
        Ok(())
    }

    /// Records the current merged-view time of directory `rel` once.
    fn remember(&mut self, view: &LowerView, rel: &Path) -> Result<(), SnapshotError> {
        if rel.as_os_str().is_empty() || self.dirs.contains_key(rel) {
            return Ok(());
        }
        if let Some(entry) = view.lookup(rel)? {
            self.dirs.insert(rel.to_path_buf(), entry.meta.mtime);
        }
        Ok(())
    }
}

fn mtime_of(path: &Path) -> Result<Option<Mtime>, SnapshotError> {
    use std::os::unix::fs::MetadataExt;
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some((m.mtime(), m.mtime_nsec()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(SnapshotError::io("stat", path)(e)),
    }
}

fn set_mtime(path: &Path, mtime: Mtime) -> Result<(), SnapshotError> {
    let ts = Timespec {
        tv_sec: mtime.0,
        tv_nsec: mtime.1 as _,
    };
    let times = Timestamps {
        last_access: ts,
        last_modification: ts,
    };
    match rustix::fs::utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(SnapshotError::io("set times of", path)(e.into())),
    }
}
