//! `RUN --mount=type=bind`, `type=cache` and `type=tmpfs` where nothing can be mounted: the chroot
//! isolation places the mount's tree at its target in the step's root for the step, and
//! takes it away afterwards.
//!
//! What the image has at the target is moved aside, out of the root, for the step (a
//! mount would hide it) and back after it. The mount's tree is then put there: moved in
//! when it is rbuild's own and held for this step alone (a cache under its exclusive
//! lock, a private cache, a writable bind's copy, a stage's tree snapshot, a new empty
//! directory for a tmpfs), copied in otherwise (a read-only bind of the build context). A
//! socket (an ssh agent's proxy) gets a socket of its own at the target, relaying every
//! connection to it, with its mode and owner. After the step, a moved tree goes
//! back where it came from with what the step left in it (a cache keeps what the step
//! wrote), a copied one or a socket is removed. The parent directory gets back the time it had, unless
//! the step changed it, so the change set shows only what the step did beside the mount.
//!
//! Unlike a mount, the step may remove or replace the target itself; it then loses the
//! cache's contents (the cache starts empty next time), and what the image had there is
//! put back. A read-only mount is not enforced: what the step writes there is thrown away
//! with the tree (or kept in the cache), never in the layer. Killed mid-step, rbuild
//! leaves the cache's contents in the step's scratch root, removed with it.

use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags};
use rustix::io::Errno;

use super::stubs::{
    Mtime, Stubs, mtime_of, open_parent, remove_tree, set_mtime, with_write_access,
};
use super::{ExecError, RunSpec, SocketRelay};
use crate::snapshot::{LowerView, StepRoot, copy_tree};

/// One mount placed in the step's root.
struct Placed {
    /// The target, relative to the root.
    rel: PathBuf,
    /// Where a moved tree goes back after the step.
    back_to: Option<PathBuf>,
    /// Where what the image had at the target waits for the step's end.
    hidden: Option<PathBuf>,
    /// The parent's time before the placement, the step saw it.
    parent_mtime: Option<Mtime>,
}

/// The mounts placed in one step's root, in placement order.
pub(super) struct Placements {
    root: PathBuf,
    placed: Vec<Placed>,
    /// The relays listening at sockets' targets, stopped when dropped (after the
    /// restore removed their sockets).
    relays: Vec<SocketRelay>,
}

/// A mount's tree.
enum Source {
    /// At this path; moved in and back when it may be, else copied in (a socket: listened
    /// for at the target, relaying to `relay_to` or else to it).
    Tree {
        path: PathBuf,
        movable: bool,
        relay_to: Option<PathBuf>,
    },
    /// A new empty directory standing for a tmpfs (the `i`th): what the step writes
    /// there goes with it.
    Empty(usize),
}

fn setup(stage: String) -> impl FnOnce(Errno) -> ExecError {
    move |e| ExecError::Setup {
        stage,
        source: e.into(),
    }
}

fn refuse(target: &str, why: &str) -> ExecError {
    ExecError::Setup {
        stage: format!("place the mount at {target} with the chroot isolation: {why}"),
        source: std::io::Error::from_raw_os_error(libc::EINVAL),
    }
}

impl Placements {
    /// Places the bind and cache mounts of `spec` in `root` (a plain directory, the
    /// step's), holding what they hide in `hold` (a directory of rbuild's on the same file
    /// system, outside the root). Parents missing in the image are made as stubs. On an
    /// error, what was placed so far is in the returned value's keeping only if it was
    /// returned: the caller restores a partial placement through `partial`.
    pub(super) fn place(
        root: &Path,
        hold: &Path,
        view: &LowerView,
        stubs: &mut Stubs,
        spec: &RunSpec,
        partial: &mut Option<Placements>,
    ) -> Result<(), ExecError> {
        let mut sources = Vec::new();
        for mount in &spec.mounts {
            sources.push((
                mount.target.clone(),
                Source::Tree {
                    path: mount.source.clone(),
                    movable: mount.movable,
                    relay_to: mount.relay_to.clone(),
                },
            ));
        }
        for (i, tmpfs) in spec.tmpfs.iter().enumerate() {
            sources.push((tmpfs.target.clone(), Source::Empty(i)));
        }
        for tree in &spec.trees {
            let StepRoot::Dir(tree_root) = &tree.root else {
                return Err(refuse(&tree.target, "the tree is not a plain directory"));
            };
            sources.push((tree.target.clone(), tree_source(tree_root, &tree.source)?));
        }
        if sources.is_empty() {
            return Ok(());
        }
        // A secret is written before the mounts are placed: one at or beneath a mount's
        // target would be hidden by it, and one written into the mount's tree would
        // stay there (a cache) after the step.
        for (target, _) in &sources {
            if let Some(secret) = spec
                .files
                .iter()
                .find(|f| Path::new(&f.target).starts_with(target))
            {
                return Err(refuse(
                    target,
                    &format!(
                        "the secret at {} is inside it, and the chroot isolation can put a \
                         secret only where the image has nothing (it cannot mount one)",
                        secret.target
                    ),
                ));
            }
        }
        std::fs::create_dir_all(hold).map_err(|source| ExecError::Setup {
            stage: format!("create directory {}", hold.display()),
            source,
        })?;
        let placements = partial.insert(Placements {
            root: root.to_path_buf(),
            placed: Vec::new(),
            relays: Vec::new(),
        });
        for (i, (target, source)) in sources.into_iter().enumerate() {
            placements.place_one(hold, i, view, stubs, &target, source)?;
        }
        Ok(())
    }

    fn place_one(
        &mut self,
        hold: &Path,
        i: usize,
        view: &LowerView,
        stubs: &mut Stubs,
        target: &str,
        source: Source,
    ) -> Result<(), ExecError> {
        let rel = PathBuf::from(target.trim_start_matches('/'));
        if rel.as_os_str().is_empty() {
            return Err(refuse(target, "a mount over the whole root"));
        }
        let (source, movable, relay_to) = match source {
            Source::Tree {
                path,
                movable,
                relay_to,
            } => (path, movable, relay_to),
            Source::Empty(n) => {
                // A tmpfs's root: sticky and writable by all, as the kernel makes it.
                let dir = hold.join(format!("tmpfs-{n}"));
                std::fs::create_dir(&dir).map_err(|source| ExecError::Setup {
                    stage: format!("create directory {}", dir.display()),
                    source,
                })?;
                std::fs::set_permissions(
                    &dir,
                    std::os::unix::fs::PermissionsExt::from_mode(0o1777),
                )
                .map_err(|source| ExecError::Setup {
                    stage: format!("change mode of {}", dir.display()),
                    source,
                })?;
                (dir, true, None)
            }
        };
        let st = std::fs::symlink_metadata(&source).map_err(|e| ExecError::Setup {
            stage: format!("read the mount's source {}", source.display()),
            source: e,
        })?;
        // A socket (an ssh agent's) cannot be copied or moved: a socket of the step's
        // own listens at the target and relays to it.
        let socket = st.file_type().is_socket().then_some(&st);
        if view.crosses_symlink(&rel)? {
            return Err(refuse(
                target,
                "a symbolic link of the image is on the way, and the chroot isolation \
                 follows none",
            ));
        }
        let parent = rel.parent().unwrap_or(Path::new(""));
        if !parent.as_os_str().is_empty() && !stubs.ensure(view, parent, true)? {
            return Err(refuse(target, "its parent is not a directory in the image"));
        }
        let root_fd = open_root(&self.root)?;
        let Some((dir, name)) = open_parent(&root_fd, &self.root, &rel)? else {
            return Err(refuse(
                target,
                "its parent cannot be reached beneath the root",
            ));
        };
        let parent_mtime = mtime_of(&root_fd, &self.root, parent)?;
        let mut placed = Placed {
            rel: rel.clone(),
            back_to: None,
            hidden: None,
            parent_mtime,
        };
        let path = self.root.join(&rel);
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => {
                let aside = hold.join(format!("hidden-{i}"));
                rustix::fs::renameat(&dir, name, CWD, &aside)
                    .map_err(setup(format!("move {} aside for the step", path.display())))?;
                placed.hidden = Some(aside);
            }
            Err(Errno::NOENT) => {}
            Err(e) => return Err(setup(format!("stat {}", path.display()))(e)),
        }
        // Kept from here on: the restore puts back what was moved, whatever fails next.
        let back_to = source;
        self.placed.push(placed);
        if let Some(st) = socket {
            self.relays.push(
                SocketRelay::listen_in(
                    &dir,
                    Path::new(name),
                    relay_to.clone().unwrap_or_else(|| back_to.clone()),
                )
                .map_err(|source| ExecError::Setup {
                    stage: format!("listen on {} for the step", path.display()),
                    source,
                })?,
            );
            let mode = Mode::from_raw_mode(st.mode() & 0o7777);
            rustix::fs::chmodat(&dir, name, mode, AtFlags::empty())
                .map_err(setup(format!("change mode of {}", path.display())))?;
            // The mount's owner, where this process may give one (else shown, see
            // BindMount::owner).
            if (st.uid(), st.gid())
                != (
                    rustix::process::geteuid().as_raw(),
                    rustix::process::getegid().as_raw(),
                )
            {
                rustix::fs::chownat(
                    &dir,
                    name,
                    Some(rustix::fs::Uid::from_raw(st.uid())),
                    Some(rustix::fs::Gid::from_raw(st.gid())),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(setup(format!("change owner of {}", path.display())))?;
            }
        } else if movable {
            rustix::fs::renameat(CWD, &back_to, &dir, name).map_err(setup(format!(
                "move {} to {} for the step",
                back_to.display(),
                path.display()
            )))?;
            self.placed.last_mut().expect("just pushed").back_to = Some(back_to);
        } else {
            copy_tree(&back_to, &path)?;
        }
        if let Some(mtime) = parent_mtime {
            set_mtime(&root_fd, &self.root, parent, mtime)?;
        }
        Ok(())
    }

    /// Takes the mounts away after the step, last placed first: moved trees go back,
    /// copies are removed, what the image had is put back, parents get their times back
    /// unless the step changed them. Runs before the stubs are removed.
    pub(super) fn restore(self) -> Result<(), ExecError> {
        let root_fd = open_root(&self.root)?;
        let mut first_error = None;
        for placed in self.placed.iter().rev() {
            if let Err(e) = restore_one(&root_fd, &self.root, placed) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn restore_one(root_fd: &OwnedFd, root: &Path, placed: &Placed) -> Result<(), ExecError> {
    let rel = placed.rel.as_path();
    let parent = rel.parent().unwrap_or(Path::new(""));
    let path = root.join(rel);
    // The step replaced a directory on the way with a link or removed it: nothing of
    // rbuild's is there any more; what was moved aside is dropped with the scratch space.
    let Some((dir, name)) = open_parent(root_fd, root, rel)? else {
        return Ok(());
    };
    let seen = mtime_of(root_fd, root, parent)?;
    let kind = match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Some(FileType::from_raw_mode(st.st_mode)),
        Err(Errno::NOENT) => None,
        Err(e) => return Err(setup(format!("stat {}", path.display()))(e)),
    };
    match (&placed.back_to, kind) {
        (_, None) => {}
        // A cache goes back with what the step left in it, unless it is no longer a
        // directory (a link the step put there must not become the cache).
        (Some(back_to), Some(FileType::Directory)) => {
            with_write_access(&dir, || rustix::fs::renameat(&dir, name, CWD, back_to)).map_err(
                setup(format!(
                    "move {} back to {}",
                    path.display(),
                    back_to.display()
                )),
            )?;
        }
        _ => remove_tree(&dir, name).map_err(setup(format!("remove {}", path.display())))?,
    }
    if let Some(hidden) = &placed.hidden {
        with_write_access(&dir, || rustix::fs::renameat(CWD, hidden, &dir, name))
            .map_err(setup(format!("put {} back after the step", path.display())))?;
    }
    // Unchanged by the step, the parent shows the time it had; else the step's.
    if let Some(mtime) = if seen == placed.parent_mtime {
        placed.parent_mtime
    } else {
        seen
    } {
        set_mtime(root_fd, root, parent, mtime)?;
    }
    Ok(())
}

/// The tree of a `from=` bind: `source` beneath the tree snapshot's root, reached
/// without following a link; the snapshot is the step's own, so the tree is moved.
fn tree_source(tree_root: &Path, source: &Path) -> Result<Source, ExecError> {
    let fd = open_root(tree_root)?;
    let fail = || ExecError::Setup {
        stage: format!(
            "reach {} beneath the mount's tree: a symbolic link or a missing directory \
             is on the way",
            source.display()
        ),
        source: std::io::Error::from_raw_os_error(libc::ENOENT),
    };
    if source.as_os_str().is_empty() {
        return Ok(Source::Tree {
            path: tree_root.to_path_buf(),
            movable: true,
            relay_to: None,
        });
    }
    let Some((dir, name)) = open_parent(&fd, tree_root, source)? else {
        return Err(fail());
    };
    match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::Symlink => {}
        _ => return Err(fail()),
    }
    drop(dir);
    Ok(Source::Tree {
        path: tree_root.join(source),
        movable: true,
        relay_to: None,
    })
}

fn open_root(root: &Path) -> Result<OwnedFd, ExecError> {
    rustix::fs::openat2(
        CWD,
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        rustix::fs::ResolveFlags::empty(),
    )
    .map_err(setup(format!("open {}", root.display())))
}
