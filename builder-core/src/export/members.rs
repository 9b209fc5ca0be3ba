//! An archive's members read as data: entries to numbered scratch files, links resolved
//! in the archive's own table, `..` and absolute names refused, within the tar-bomb
//! limits. What the loader (`archive.rs`) reads of an archive, it reads through here.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use super::ExportError;
use crate::layer::LayerError;
use crate::store::ContentStore;

pub(super) fn read_err(path: &Path) -> impl FnOnce(io::Error) -> ExportError {
    let path = path.to_path_buf();
    move |source| ExportError::Read { path, source }
}

pub(super) fn write_err(path: &Path) -> impl FnOnce(io::Error) -> ExportError {
    let path = path.to_path_buf();
    move |source| ExportError::Write { path, source }
}
/// What an archive member is.
pub(super) enum Member {
    /// A regular file, kept in scratch space under a name of ours.
    File(PathBuf),
    /// A symlink (`docker save` before Docker 25 links a layer shared by two images to
    /// its first copy) with its target, or a hardlink with the member it names: followed
    /// only inside the archive's own table, never on disk.
    Link {
        /// "a symlink" or "a hardlink".
        kind: &'static str,
        /// The target as the archive gives it.
        target: String,
        /// Whether the target is relative to the link's directory (a symlink) or to the
        /// archive's root (a hardlink).
        relative: bool,
    },
    /// A device or fifo: never read.
    Other(&'static str),
}

/// How many links a name may pass through inside an archive.
const MAX_LINK_HOPS: usize = 8;

/// The members of an archive, by their cleaned path. Archives are data: no path read
/// from one (an entry name, a link target, a name in `manifest.json` or `index.json`)
/// ever becomes a path on disk; regular files land in scratch space under counters.
pub(super) struct Members {
    pub(super) archive: PathBuf,
    pub(super) files: HashMap<String, Member>,
    _scratch: tempfile::TempDir,
}

/// `name` (from an archive) as a relative `/`-joined path, refusing absolute names and
/// `..`; `.` and empty components are dropped.
fn clean_archive_path(name: &str) -> Result<String, &'static str> {
    if name.starts_with('/') {
        return Err("it is an absolute path");
    }
    let mut parts = Vec::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("it contains '..'"),
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// A link target joined to its directory, with `..` resolved against the archive's root;
/// `None` when it is absolute or climbs above the root.
fn resolve_inside(joined: &str) -> Option<String> {
    if joined.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

impl Members {
    pub(super) fn refused(&self, reason: String) -> ExportError {
        ExportError::Archive {
            archive: self.archive.clone(),
            reason,
        }
    }

    /// Reads every entry of the archive at `archive` (plain, gzip or zstd), within the
    /// store's tar-bomb limits.
    /// A tar error is reported without its text, which may quote the file's bytes (a
    /// file that is no tar archive has its first line read as an entry name).
    pub(super) fn read(
        store: &ContentStore,
        file: File,
        archive: &Path,
    ) -> Result<Self, ExportError> {
        let scratch = tempfile::Builder::new()
            .prefix("load-")
            .tempdir_in(store.tmp_dir())
            .map_err(write_err(&store.tmp_dir()))?;
        let mut members = Members {
            archive: archive.to_path_buf(),
            files: HashMap::new(),
            _scratch: scratch,
        };
        let scratch_dir = members._scratch.path().to_path_buf();
        let meter = crate::layer::Meter::new(store.archive_limits());
        let label = archive.display().to_string();
        let limited = |e: ExportError| match meter.exceeded() {
            Some(limit) => ExportError::Layer(LayerError::Limit {
                archive: label.clone(),
                limit,
            }),
            None => e,
        };
        let not_tar = |e: io::Error| {
            if e.raw_os_error().is_some() {
                read_err(archive)(e)
            } else {
                ExportError::Archive {
                    archive: archive.to_path_buf(),
                    reason: "it is not a tar archive, or a damaged one".to_owned(),
                }
            }
        };
        let compressed = BufReader::new(meter.compressed(file));
        let plain = crate::layer::decompress(compressed).map_err(LayerError::Read)?;
        let mut tar = tar::Archive::new(meter.expanded(plain));
        let entries = tar.entries().map_err(|e| limited(not_tar(e)))?;
        for (n, entry) in entries.enumerate() {
            let mut entry = entry.map_err(|e| limited(not_tar(e)))?;
            meter.entry().map_err(|limit| LayerError::Limit {
                archive: label.clone(),
                limit,
            })?;
            let raw = entry.path_bytes().into_owned();
            let name = String::from_utf8_lossy(&raw).into_owned();
            let path = clean_archive_path(&name)
                .map_err(|why| members.refused(format!("entry {name:?}: {why}")))?;
            if let Some(format) = crate::layer::sparse_format(&mut entry) {
                return Err(members.refused(format!(
                    "entry {name:?}: {}",
                    crate::layer::sparse_reason(format)
                )));
            }
            let kind = entry.header().entry_type();
            let member = match kind {
                tar::EntryType::Directory => continue,
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let dest = scratch_dir.join(n.to_string());
                    let mut out = File::create(&dest).map_err(write_err(&dest))?;
                    io::copy(&mut entry, &mut out).map_err(|e| limited(not_tar(e)))?;
                    Member::File(dest)
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let symlink = kind == tar::EntryType::Symlink;
                    Member::Link {
                        kind: if symlink { "a symlink" } else { "a hardlink" },
                        target: entry
                            .link_name_bytes()
                            .map(|b| String::from_utf8_lossy(&b).into_owned())
                            .unwrap_or_default(),
                        relative: symlink,
                    }
                }
                _ => Member::Other("not a regular file"),
            };
            if members.files.insert(path, member).is_some() {
                return Err(members.refused(format!("entry {name:?} appears twice")));
            }
        }
        Ok(members)
    }

    /// The scratch file holding the member `name` names (`what` says where the name was
    /// read: "manifest.json's Config"). Links are followed inside the archive only: a
    /// target that is absolute or climbs out of it is refused.
    pub(super) fn file(&self, what: &str, name: &str) -> Result<&Path, ExportError> {
        let mut path = clean_archive_path(name)
            .map_err(|why| self.refused(format!("{what} names {name:?}: {why}")))?;
        for _ in 0..=MAX_LINK_HOPS {
            match self.files.get(&path) {
                Some(Member::File(p)) => return Ok(p),
                Some(Member::Other(kind)) => {
                    return Err(self.refused(format!(
                        "{what} names {name:?}, which is {kind} in the archive: only regular files are read"
                    )));
                }
                Some(Member::Link {
                    kind,
                    target,
                    relative,
                }) => {
                    let joined = match (relative, path.rsplit_once('/')) {
                        (true, Some((dir, _))) => format!("{dir}/{target}"),
                        _ => target.clone(),
                    };
                    path = resolve_inside(&joined).ok_or_else(|| {
                        self.refused(format!(
                            "{what} names {name:?}, which is {kind} to {target:?}, outside the archive"
                        ))
                    })?;
                }
                None => {
                    return Err(self.refused(format!(
                        "{what} names {name:?}, which the archive does not hold"
                    )));
                }
            }
        }
        Err(self.refused(format!(
            "{what} names {name:?}, which passes through more than {MAX_LINK_HOPS} links"
        )))
    }

    pub(super) fn has(&self, name: &str) -> bool {
        clean_archive_path(name).is_ok_and(|p| self.files.contains_key(&p))
    }
}

#[cfg(test)]
mod tests {
    use super::{clean_archive_path, resolve_inside};

    #[test]
    fn archive_paths_stay_inside_the_archive() {
        assert_eq!(clean_archive_path("./a//b/"), Ok("a/b".to_owned()));
        assert!(clean_archive_path("/etc/hostname").is_err());
        assert!(clean_archive_path("a/../../b").is_err());
        assert!(clean_archive_path("blobs/..").is_err());
        assert_eq!(
            resolve_inside("second/../first/layer.tar"),
            Some("first/layer.tar".to_owned())
        );
        assert_eq!(resolve_inside("x/../../etc/hostname"), None);
        assert_eq!(resolve_inside("/etc/hostname"), None);
    }
}
