//! Atomic file writes: the content goes to a temp file on the destination's filesystem
//! and is renamed over the destination, so a reader sees the old file or the new one,
//! never part of either.
//!
//! Two ways in: [`AtomicWrite`] writes a whole file (bytes, or whatever a closure
//! writes), [`commit`] puts in place a temp file a caller streamed into itself (a blob
//! whose digest is known only at the end; [`commit_at`] the same into a directory held
//! by a descriptor, so that a symbolic link swapped in on the way is never followed).
//! Failures carry the step that failed and the
//! path it concerned ([`AtomicError`]); each caller wraps them in its own error.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// A failed atomic write: what was being done, on what, and why.
#[derive(Debug)]
pub(crate) struct AtomicError {
    /// `create directory`, `create temp file in`, `write`, `sync` or `rename into`.
    pub action: &'static str,
    /// The directory (for the first two) or the destination.
    pub path: PathBuf,
    pub source: io::Error,
}

fn failed(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> AtomicError {
    let path = path.to_path_buf();
    move |source| AtomicError {
        action,
        path,
        source,
    }
}

/// One atomic write of the file at `dest`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AtomicWrite<'a> {
    dest: &'a Path,
    temp_dir: Option<&'a Path>,
    sync: bool,
    mode: Option<u32>,
}

impl<'a> AtomicWrite<'a> {
    /// A write of `dest` through a temp file in its directory (created if missing), not
    /// synced: after a crash the file may be the old one or empty, never a mix, which is
    /// enough for what is only a memo (a cache entry, a remembered conversion).
    pub fn new(dest: &'a Path) -> Self {
        AtomicWrite {
            dest,
            temp_dir: None,
            sync: false,
            mode: None,
        }
    }

    /// The temp file goes in `dir` (which must be on the destination's filesystem),
    /// created if missing, rather than beside the destination.
    pub fn temp_in(mut self, dir: &'a Path) -> Self {
        self.temp_dir = Some(dir);
        self
    }

    /// The content is synced before the rename: after a crash the file is the old one
    /// or the whole new one.
    pub fn synced(mut self) -> Self {
        self.sync = true;
        self
    }

    /// The file is created with permission bits `mode` (never wider, not even before
    /// the rename), rather than the temp file's 0600.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Writes `bytes` as the file.
    pub fn write(self, bytes: &[u8]) -> Result<(), AtomicError> {
        self.write_with(|file| file.write_all(bytes))
    }

    /// Writes the file with `fill`.
    pub fn write_with(
        self,
        fill: impl FnOnce(&mut File) -> io::Result<()>,
    ) -> Result<(), AtomicError> {
        let dir = match self.temp_dir {
            Some(dir) => dir,
            None => self
                .dest
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new(".")),
        };
        fs::create_dir_all(dir).map_err(failed("create directory", dir))?;
        let mut builder = tempfile::Builder::new();
        builder.prefix(".rbuild-");
        if let Some(mode) = self.mode {
            builder.permissions(fs::Permissions::from_mode(mode));
        }
        let mut tmp = builder
            .tempfile_in(dir)
            .map_err(failed("create temp file in", dir))?;
        fill(tmp.as_file_mut()).map_err(failed("write", self.dest))?;
        commit(tmp, self.dest, self.sync)
    }
}

/// Puts the temp file `tmp` (on `dest`'s filesystem) in place as `dest`, syncing it
/// first when `sync`; `dest`'s directory is created if missing.
pub(crate) fn commit(tmp: NamedTempFile, dest: &Path, sync: bool) -> Result<(), AtomicError> {
    if sync {
        tmp.as_file().sync_all().map_err(failed("sync", dest))?;
    }
    if let Some(dir) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(failed("create directory", dir))?;
    }
    tmp.persist(dest)
        .map_err(|e| failed("rename into", dest)(e.error))?;
    Ok(())
}

/// Puts the temp file `tmp` (on the directory's filesystem) in place as entry `name` of
/// the directory open as `dir`, syncing it first when `sync`; `shown` is the
/// destination's path, for messages. The rename resolves `name` in `dir` itself, so no
/// path (and no link on one) is walked again.
pub(crate) fn commit_at(
    tmp: NamedTempFile,
    dir: std::os::fd::BorrowedFd<'_>,
    name: &str,
    shown: &Path,
    sync: bool,
) -> Result<(), AtomicError> {
    if sync {
        tmp.as_file().sync_all().map_err(failed("sync", shown))?;
    }
    rustix::fs::renameat(rustix::fs::CWD, tmp.path(), dir, name)
        .map_err(|e| failed("rename into", shown)(e.into()))?;
    // The file is in place under its new name: the temp file's path is no longer ours
    // to remove.
    let _ = tmp.into_temp_path().keep();
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::AtomicWrite;

    #[test]
    fn writes_replace_the_file_whole_and_leave_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("sub/file");
        AtomicWrite::new(&dest).write(b"first").unwrap();
        AtomicWrite::new(&dest).synced().write(b"second").unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"second");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["file"]);
    }

    #[test]
    fn a_mode_and_a_temp_dir_are_honoured() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("secret");
        let tmp = dir.path().join("tmp");
        AtomicWrite::new(&dest)
            .temp_in(&tmp)
            .mode(0o600)
            .write(b"x")
            .unwrap();
        let mode = std::fs::metadata(&dest).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
    }

    #[test]
    fn a_failed_fill_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("file");
        AtomicWrite::new(&dest).write(b"old").unwrap();
        let err = AtomicWrite::new(&dest)
            .write_with(|_| Err(std::io::Error::other("boom")))
            .unwrap_err();
        assert_eq!(err.action, "write");
        assert_eq!(std::fs::read(&dest).unwrap(), b"old");
    }
}
