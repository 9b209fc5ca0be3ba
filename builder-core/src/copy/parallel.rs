//! Copying the regular files of a large directory on every core.
//!
//! Creating files is most of a big copy's time, and it is independent per file once
//! the directories exist. So the directories (and links, devices) are made first, in
//! order; then the files are copied by rayon's workers, each keeping its own open
//! parent directory. A file with more than one link is handed back to be copied in
//! order, so hardlinks between copied files are kept exactly as the serial copy keeps
//! them.

use std::ffi::OsString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use rustix::fs::{AtFlags, FileType};

use super::dest::{lstat_at, split};
use super::write::{Writer, create_file, finish_file};
use super::{CopyError, CopyStats};
use crate::context::ContextEntry;

/// Below this many files a directory is copied in one thread.
pub(super) const PARALLEL_MIN_FILES: usize = 512;

/// Files one worker takes at a time (siblings share an open parent).
const CHUNK: usize = 128;

/// A regular file to copy and where it goes.
pub(super) type FileJob<'e> = (&'e ContextEntry, PathBuf);

/// Copies `files` (regular files whose directories exist) in parallel. Returns what
/// was written and the files with several links, left for the caller.
pub(super) fn copy_files<'e>(
    w: &Writer,
    files: &[FileJob<'e>],
) -> Result<(CopyStats, Vec<FileJob<'e>>), CopyError> {
    let results: Vec<Result<(CopyStats, Vec<FileJob<'e>>), CopyError>> = files
        .par_chunks(CHUNK)
        .map(|chunk| {
            let mut parent: Option<(PathBuf, OwnedFd)> = None;
            let mut stats = CopyStats::default();
            let mut linked = Vec::new();
            for (e, target) in chunk {
                match copy_one(w, &mut parent, e, target)? {
                    Some(bytes) => {
                        stats.files += 1;
                        stats.bytes += bytes;
                    }
                    None => linked.push((*e, target.clone())),
                }
            }
            Ok((stats, linked))
        })
        .collect();
    let mut total = CopyStats::default();
    let mut linked = Vec::new();
    for r in results {
        let (stats, more) = r?;
        total.files += stats.files;
        total.bytes += stats.bytes;
        linked.extend(more);
    }
    Ok((total, linked))
}

/// Copies one file; `None` when it has several links and was left alone.
fn copy_one(
    w: &Writer,
    parent: &mut Option<(PathBuf, OwnedFd)>,
    e: &ContextEntry,
    target: &Path,
) -> Result<Option<u64>, CopyError> {
    let fail = CopyError::dest;
    let Some((dir_rel, name)) = split(target) else {
        return Err(CopyError::Conflict {
            what: e.path.display().to_string(),
            path: "/".to_owned(),
            reason: "the root cannot be replaced",
        });
    };
    let name: OsString = name.to_os_string();
    let reuse = parent.as_ref().is_some_and(|(p, _)| p == dir_rel);
    if !reuse {
        let fd = w.root.open_dir(dir_rel).map_err(fail("open", dir_rel))?;
        *parent = Some((dir_rel.to_path_buf(), fd));
    }
    let Some((_, dir)) = parent.as_ref() else {
        return Err(fail("open", dir_rel)(io::Error::from(
            io::ErrorKind::NotFound,
        )));
    };
    let src = w.source_path(e);
    let input = w.open_source(e).map_err(|source| CopyError::Source {
        path: src.clone(),
        source,
    })?;
    let meta = input.metadata().map_err(|source| CopyError::Source {
        path: src.clone(),
        source,
    })?;
    if meta.nlink() > 1 {
        return Ok(None);
    }
    if !w.is_fresh(dir_rel) {
        match lstat_at(dir, &name).map_err(fail("stat", target))? {
            Some(FileType::Directory) => {
                return Err(CopyError::Conflict {
                    what: e.path.display().to_string(),
                    path: format!("/{}", target.display()),
                    reason: "cannot replace a directory with a file",
                });
            }
            Some(_) => rustix::fs::unlinkat(dir, &name, AtFlags::empty())
                .map_err(|err| fail("remove", target)(err.into()))?,
            None => {}
        }
    }
    let mut out = create_file(dir, &name).map_err(fail("create", target))?;
    // No more than the listing saw: a file that keeps growing does not keep the copy
    // (and the layer) growing with it.
    let n = io::copy(&mut io::Read::take(&input, e.size), &mut out).map_err(|source| {
        CopyError::Source {
            path: src.clone(),
            source,
        }
    })?;
    let mode = w.mode_of(w.source_mode(e), false);
    finish_file(
        &input,
        &out,
        w.root.disk_owner(target, w.owner_of(e)),
        w.root.disk_mode(target, mode, false),
        e.mtime_ns,
    )
    .map_err(fail("set attributes on", target))?;
    Ok(Some(n))
}
