//! Bind mounts of the build context (read-only, or a throw-away copy with `rw`) and the
//! helpers of bind mounts from a stage's or an image's tree.

use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use rbuild_dockerfile::{Mount, MountType};

use super::{MountError, MountInputs, StepMounts, io_err, target_of};
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
    let root = inputs.context.ok_or_else(|| MountError::BindSource {
        source_path: mount.source.clone().unwrap_or_default(),
        reason: "needs a build context",
    })?;
    let mut source = context_path(root, mount.source.as_deref())?;
    if !mount.read_only {
        // The step's writes go to a copy thrown away with the step.
        let copy = out.temp(inputs.scratch)?.join("src");
        copy_tree(&source, &copy)?;
        source = copy;
    }
    out.binds.push(BindMount {
        source,
        target: target_of(mount),
        readonly: mount.read_only,
    });
    Ok(())
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

/// Copies `from` (a file, directory or symlink) to `to` with modes and owners.
fn copy_tree(from: &Path, to: &Path) -> Result<(), MountError> {
    for entry in walkdir::WalkDir::new(from).follow_links(false) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(from).to_path_buf();
            MountError::Io {
                action: "read",
                path,
                source: e.into(),
            }
        })?;
        let rel = entry.path().strip_prefix(from).unwrap_or(Path::new(""));
        let dest = if rel.as_os_str().is_empty() {
            to.to_path_buf()
        } else {
            to.join(rel)
        };
        let meta = entry
            .path()
            .symlink_metadata()
            .map_err(io_err("read", entry.path()))?;
        let kind = meta.file_type();
        if kind.is_dir() {
            std::fs::create_dir_all(&dest).map_err(io_err("create directory", &dest))?;
        } else if kind.is_symlink() {
            let link = std::fs::read_link(entry.path()).map_err(io_err("read", entry.path()))?;
            std::os::unix::fs::symlink(&link, &dest).map_err(io_err("create", &dest))?;
            continue;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &dest).map_err(io_err("copy to", &dest))?;
        } else {
            continue;
        }
        std::os::unix::fs::lchown(&dest, Some(meta.uid()), Some(meta.gid()))
            .map_err(io_err("change owner of", &dest))?;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(io_err("change mode of", &dest))?;
    }
    Ok(())
}

/// The digest of what the context bind mounts of a step bind (paths, modes and
/// contents), so that a change of those files runs the step again; `None` when the step
/// has none.
pub(crate) fn context_digest(
    mounts: &[Mount],
    context: Option<&Path>,
) -> Result<Option<Digest>, MountError> {
    let binds: Vec<&Mount> = mounts
        .iter()
        .filter(|m| m.mount_type == MountType::Bind && !from_tree(m))
        .collect();
    let (Some(root), false) = (context, binds.is_empty()) else {
        return Ok(None);
    };
    let mut h = Hasher::new();
    for mount in binds {
        let source = context_path(root, mount.source.as_deref())?;
        h.update(target_of(mount).as_bytes());
        h.update(b"\0");
        for entry in walkdir::WalkDir::new(&source)
            .follow_links(false)
            .sort_by_file_name()
        {
            let entry = entry.map_err(|e| MountError::Io {
                action: "read",
                path: source.clone(),
                source: e.into(),
            })?;
            let meta = entry
                .path()
                .symlink_metadata()
                .map_err(io_err("read", entry.path()))?;
            let rel = entry.path().strip_prefix(&source).unwrap_or(Path::new(""));
            h.update(rel.as_os_str().as_encoded_bytes());
            h.update(&meta.mode().to_be_bytes());
            h.update(&meta.uid().to_be_bytes());
            h.update(&meta.gid().to_be_bytes());
            if meta.is_file() {
                let mut file = File::open(entry.path()).map_err(io_err("open", entry.path()))?;
                let mut content = Hasher::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = io::Read::read(&mut file, &mut buf)
                        .map_err(io_err("read", entry.path()))?;
                    if n == 0 {
                        break;
                    }
                    content.update(&buf[..n]);
                }
                h.update(content.finish().as_str().as_bytes());
            } else if meta.is_symlink() {
                let link =
                    std::fs::read_link(entry.path()).map_err(io_err("read", entry.path()))?;
                h.update(link.as_os_str().as_encoded_bytes());
            }
            h.update(b"\0");
        }
    }
    Ok(Some(h.finish()))
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
