//! Bind mounts of the build context (read-only, or a throw-away copy with `rw` or when
//! `.dockerignore` excludes something beneath the source) and the
//! helpers of bind mounts from a stage's or an image's tree.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use rbuild_dockerfile::{Mount, MountType};
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};

use super::{MountError, MountInputs, StepMounts, io_err, target_of};
use crate::context::{ContextEntry, ContextListing, EntryType, open_listed_file, open_root};
use crate::digest::{Digest, Hasher};
use crate::exec::BindMount;

/// The path of `source` (relative to the context, `.` when absent) inside `root`,
/// refusing one that leaves it, through `..` or a symbolic link.
fn context_path(root: &Path, source: Option<&str>) -> Result<PathBuf, MountError> {
    let written = source.unwrap_or(".");
    let refuse = |reason| MountError::BindSource {
        source_path: written.to_owned(),
        reason,
    };
    let mut rel = PathBuf::new();
    for component in Path::new(written).components() {
        match component {
            Component::Normal(name) => rel.push(name),
            Component::ParentDir => {
                if !rel.pop() {
                    return Err(refuse("leaves the build context"));
                }
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    let root = root.canonicalize().map_err(io_err("resolve", root))?;
    let path = root.join(&rel);
    let resolved = path
        .canonicalize()
        .map_err(|_| refuse("does not exist in the build context"))?;
    if !resolved.starts_with(&root) {
        return Err(refuse("leaves the build context"));
    }
    Ok(resolved)
}

pub(super) fn bind_mount(
    mount: &Mount,
    inputs: &MountInputs<'_>,
    out: &mut StepMounts,
) -> Result<(), MountError> {
    if from_tree(mount) {
        // A stage's or an image's tree: the engine mounts it (see `tree_source`).
        return Ok(());
    }
    let listing = inputs.context.ok_or_else(|| MountError::BindSource {
        source_path: mount.source.clone().unwrap_or_default(),
        reason: "needs a build context",
    })?;
    let (mut source, entries) = included(listing, mount.source.as_deref())?;
    let on_disk = walkdir::WalkDir::new(&source)
        .follow_links(false)
        .into_iter()
        .count();
    // The context's root is walked but not listed.
    let is_root = entries.len() == listing.entries().len() && source == listing_root(listing)?;
    let complete = on_disk == entries.len() + usize::from(is_root);
    let copied = !mount.read_only || !complete;
    if copied {
        // The step's writes go to a copy thrown away with the step; files .dockerignore
        // excludes are left out, as BuildKit never sends them.
        let copy = out.temp(inputs.scratch)?.join("src");
        let root = listing_root(listing)?;
        let dir = open_root(&root).map_err(io_err("open", &root))?;
        let base = source.strip_prefix(&root).unwrap_or(Path::new(""));
        copy_entry(&dir, &root, base, &copy)?;
        for entry in entries {
            let rel = entry.path.strip_prefix(base).unwrap_or(Path::new(""));
            if !rel.as_os_str().is_empty() {
                copy_entry(&dir, &root, &entry.path, &copy.join(rel))?;
            }
        }
        source = copy;
    }
    out.binds.push(BindMount {
        source,
        target: target_of(mount),
        readonly: mount.read_only,
        movable: copied,
        owner: None,
        relay_to: None,
    });
    Ok(())
}

fn listing_root(listing: &ContextListing) -> Result<PathBuf, MountError> {
    listing
        .root()
        .canonicalize()
        .map_err(io_err("resolve", listing.root()))
}

/// The resolved path of a context bind's source and the listed (not ignored) entries at
/// and beneath it.
fn included<'l>(
    listing: &'l ContextListing,
    source: Option<&str>,
) -> Result<(PathBuf, &'l [ContextEntry]), MountError> {
    let path = context_path(listing.root(), source)?;
    let root = listing_root(listing)?;
    let rel = path.strip_prefix(&root).unwrap_or(Path::new(""));
    if rel.as_os_str().is_empty() {
        return Ok((path, listing.entries()));
    }
    let entry = listing.get(rel).ok_or_else(|| MountError::BindSource {
        source_path: source.unwrap_or(".").to_owned(),
        reason: "is excluded by .dockerignore",
    })?;
    Ok((path, listing.subtree(entry)))
}

/// Whether `mount` binds a stage's or an image's tree (`type=bind,from=...`).
pub(crate) fn from_tree(mount: &Mount) -> bool {
    mount.mount_type == MountType::Bind && mount.from.as_deref().is_some_and(|f| !f.is_empty())
}

/// The path a `from=` bind mount binds, relative to the tree's root (`..` cannot leave
/// it); empty for the whole tree.
pub(crate) fn tree_source(mount: &Mount) -> PathBuf {
    let mut rel = PathBuf::new();
    for component in Path::new(mount.source.as_deref().unwrap_or("/")).components() {
        match component {
            Component::Normal(name) => rel.push(name),
            Component::ParentDir => {
                rel.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    rel
}

/// Copies the listed entry `rel` of the context (`root`, open as `dir`) — one file,
/// directory (not its content) or symlink — to `to`, with its mode and owner. The entry
/// is reached beneath `dir` without following any symlink, and a file is read only if
/// it is still a regular file: a context edited during the build cannot make this read
/// a host file, block on a FIFO or read a device.
fn copy_entry(dir: &OwnedFd, root: &Path, rel: &Path, to: &Path) -> Result<(), MountError> {
    let from = root.join(rel);
    let at = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let handle = rustix::fs::openat2(
        dir,
        at,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| io_err("open", &from)(e.into()))?;
    let stat = rustix::fs::fstat(&handle).map_err(|e| io_err("read", &from)(e.into()))?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Directory => {
            std::fs::create_dir_all(to).map_err(io_err("create directory", to))?;
        }
        FileType::Symlink => {
            let link = rustix::fs::readlinkat(&handle, "", Vec::new())
                .map_err(|e| io_err("read", &from)(e.into()))?;
            let link = Path::new(std::ffi::OsStr::from_bytes(link.as_bytes()));
            std::os::unix::fs::symlink(link, to).map_err(io_err("create", to))?;
            return Ok(());
        }
        FileType::RegularFile => {
            let input = open_listed_file(dir, at).map_err(io_err("open", &from))?;
            let mut output = File::options()
                .write(true)
                .create_new(true)
                .open(to)
                .map_err(io_err("create", to))?;
            // No more than the file held when it was opened, if it keeps growing.
            io::copy(
                &mut io::Read::take(&input, stat.st_size as u64),
                &mut output,
            )
            .map_err(io_err("copy to", to))?;
        }
        _ => return Ok(()),
    }
    // Where owners cannot be given (crate::fakeroot) the copy is the build user's.
    if !crate::fakeroot::active() {
        std::os::unix::fs::lchown(to, Some(stat.st_uid), Some(stat.st_gid))
            .map_err(io_err("change owner of", to))?;
    }
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(stat.st_mode & 0o7777))
        .map_err(io_err("change mode of", to))
}

/// The digest of what the context bind mounts of a step bind (paths, modes and
/// contents), so that a change of those files runs the step again; `None` when the step
/// has none.
pub(crate) fn context_digest(
    mounts: &[Mount],
    context: Option<&ContextListing>,
) -> Result<Option<Digest>, MountError> {
    let binds: Vec<&Mount> = mounts
        .iter()
        .filter(|m| m.mount_type == MountType::Bind && !from_tree(m))
        .collect();
    let (Some(listing), false) = (context, binds.is_empty()) else {
        return Ok(None);
    };
    let root = listing_root(listing)?;
    let dir = open_root(&root).map_err(io_err("open", &root))?;
    let mut h = Hasher::new();
    for mount in binds {
        let (source, entries) = included(listing, mount.source.as_deref())?;
        let base = source.strip_prefix(&root).unwrap_or(Path::new(""));
        h.update(target_of(mount).as_bytes());
        h.update(b"\0");
        for entry in entries {
            let rel = entry.path.strip_prefix(base).unwrap_or(Path::new(""));
            h.update(rel.as_os_str().as_encoded_bytes());
            h.update(&entry.mode.to_be_bytes());
            h.update(&entry.uid.to_be_bytes());
            h.update(&entry.gid.to_be_bytes());
            match entry.kind {
                EntryType::File => {
                    h.update(file_digest(&dir, &root, &entry.path)?.as_str().as_bytes());
                }
                EntryType::Symlink => {
                    let link = entry.link_target.as_deref().unwrap_or(Path::new(""));
                    h.update(link.as_os_str().as_encoded_bytes());
                }
                _ => {}
            }
            h.update(b"\0");
        }
    }
    Ok(Some(h.finish()))
}

/// The digest of the listed file `rel` of the context, read as [`copy_entry`] reads it.
fn file_digest(dir: &OwnedFd, root: &Path, rel: &Path) -> Result<Digest, MountError> {
    let path = &root.join(rel);
    let file = open_listed_file(dir, rel).map_err(io_err("open", path))?;
    let size = file.metadata().map_err(io_err("read", path))?.len();
    let mut file = io::Read::take(&file, size);
    let mut content = Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = io::Read::read(&mut file, &mut buf).map_err(io_err("read", path))?;
        if n == 0 {
            break;
        }
        content.update(&buf[..n]);
    }
    Ok(content.finish())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn context_paths_stay_in_the_context() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        std::os::unix::fs::symlink("/etc", dir.path().join("out")).unwrap();
        assert!(context_path(dir.path(), Some("a/../a")).is_ok());
        assert!(context_path(dir.path(), Some("../x")).is_err());
        assert!(context_path(dir.path(), Some("out")).is_err());
        assert!(context_path(dir.path(), Some("missing")).is_err());
    }
}
