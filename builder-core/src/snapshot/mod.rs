//! Filesystem snapshots of a build step and the change sets they yield.
//!
//! A [`Snapshotter`] turns a stack of read-only lower directories (unpacked layers, lowest
//! first, whiteouts in overlayfs form) into a writable [`Snapshot`] for one step, and after
//! the step compares it with the lowers into a [`ChangeSet`].
//!
//! Two implementations give the same change set for the same step:
//! - [`OverlaySnapshotter`]: upper and work directories per step; the executor mounts the
//!   overlay inside the step's own mount namespace, so nothing stays mounted on the host.
//!   The diff reads only the upper directory, so its cost does not grow with the base.
//! - [`CopySnapshotter`]: a merged copy of the lowers, compared after the step with a
//!   parallel walk (metadata, and content where size and mtime agree but the inode or
//!   ctime moved).

mod copy;
mod lower;
mod meta;
mod overlay;

use std::io;
use std::path::{Path, PathBuf};

pub use self::copy::CopySnapshotter;
pub(crate) use self::copy::copy_tree;
pub use self::lower::LowerView;
pub use self::overlay::OverlaySnapshotter;

use crate::change::{ChangeSet, InvalidChangePath};

/// Errors of the snapshot module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapshotError {
    /// A filesystem operation on a snapshot path failed.
    #[error("failed to {action} {path}")]
    Io {
        /// What was being done, e.g. "read directory".
        action: &'static str,
        /// The path it was done on.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A path found while diffing could not be recorded.
    #[error(transparent)]
    InvalidPath(#[from] InvalidChangePath),
    /// A step's root would stack more layers than overlayfs can (500, the kernel's
    /// `OVL_MAX_STACK`).
    #[error(
        "the step's root would stack {count} layers; overlayfs stacks at most {max} \
         (merge RUN steps, or build with --snapshotter copy)"
    )]
    TooManyLayers {
        /// The distinct layer directories under the step.
        count: usize,
        /// overlayfs's limit.
        max: usize,
    },
    /// The snapshot was not prepared by this kind of snapshotter.
    #[error("snapshot at {scratch} was not prepared by the {expected} snapshotter")]
    WrongSnapshot {
        /// The snapshotter asked to diff.
        expected: &'static str,
        /// The snapshot's scratch directory.
        scratch: PathBuf,
    },
}

impl SnapshotError {
    pub(crate) fn io<'a>(
        action: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(io::Error) -> Self + 'a {
        move |source| SnapshotError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// The root filesystem of one step, as the executor must assemble it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StepRoot {
    /// A plain writable directory used as it is.
    Dir(PathBuf),
    /// An overlay of read-only lowers under a writable upper directory.
    Overlay {
        /// Lower directories, lowest first.
        lowers: Vec<PathBuf>,
        /// The writable upper directory.
        upper: PathBuf,
        /// The overlay work directory, on the same filesystem as `upper`.
        work: PathBuf,
        /// Use `user.overlay.*` xattrs (mount option `userxattr`, rootless).
        userxattr: bool,
    },
}

impl StepRoot {
    /// The directory a step's writes land in (the copy, or the upper directory).
    pub fn writable_dir(&self) -> &Path {
        match self {
            StepRoot::Dir(dir) => dir,
            StepRoot::Overlay { upper, .. } => upper,
        }
    }

    /// The layers below the writable directory, lowest first (empty for a plain dir).
    pub fn lowers(&self) -> &[PathBuf] {
        match self {
            StepRoot::Dir(_) => &[],
            StepRoot::Overlay { lowers, .. } => lowers,
        }
    }
}

/// A writable tree prepared for one step.
#[derive(Debug)]
pub struct Snapshot {
    root: StepRoot,
    scratch: PathBuf,
    baseline: Option<copy::Baseline>,
    /// What the executor learnt of the owners the step gave (the proot isolation), for
    /// [`Snapshot::follow_run`].
    step_owners: std::sync::Mutex<Option<StepOwners>>,
}

/// The owners a step under proot gave, which the disk cannot show: its user (the owner
/// of what it made) and its `chown` calls, in order.
#[derive(Debug, Default)]
pub(crate) struct StepOwners {
    pub user: (u32, u32),
    pub calls: Vec<crate::fakeroot::OwnerCall>,
}

/// What a step under proot is shown of the owners and modes its root's table keeps
/// (see [`crate::fakeroot`]), where the disk shows the build user's: the entries of the
/// table by inode, so that a renamed or hard-linked path shows them too, and every
/// inode the root had before the step (what a `USER` step did not make is not its
/// user's). Inodes are (number, birth time), as [`crate::fakeroot::OwnerCall`] names
/// them; every one is on the root's file system.
#[derive(Debug, Default)]
pub(crate) struct OwnerView {
    pub owned: std::collections::HashMap<Inode, crate::fakeroot::Entry>,
    pub before: std::collections::HashSet<Inode>,
}

/// An inode of a step's root: its number and its birth time where the file system
/// keeps one.
pub(crate) type Inode = (u64, Option<std::time::SystemTime>);

impl Snapshot {
    /// The owners and modes a step under proot is to be shown (see [`OwnerView`]):
    /// `None` when no table is kept for this root.
    pub(crate) fn owner_view(&self) -> Result<Option<OwnerView>, SnapshotError> {
        match (&self.root, &self.baseline) {
            (StepRoot::Dir(root), Some(baseline)) => baseline.owner_view(root),
            _ => Ok(None),
        }
    }

    pub(crate) fn new(root: StepRoot, scratch: PathBuf, baseline: Option<copy::Baseline>) -> Self {
        Snapshot {
            root,
            scratch,
            baseline,
            step_owners: std::sync::Mutex::new(None),
        }
    }

    /// Keeps, for [`Snapshot::follow_run`], the user a step ran as and the `chown`
    /// calls it made, where neither reached the disk (the proot isolation).
    pub(crate) fn note_step_owners(
        &self,
        user: (u32, u32),
        calls: Vec<crate::fakeroot::OwnerCall>,
    ) {
        *self
            .step_owners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(StepOwners { user, calls });
    }

    /// After a RUN step, when owners and modes are kept in a table (see
    /// [`crate::fakeroot`]): every path the step made, or removed or replaced by another
    /// inode (rewritten, re-created), is its processes' own, so it gets the step's user
    /// (root but under proot's `USER`), but a new name of an inode that had an owner (a
    /// rename, a hard link) keeps that owner; paths changed in place keep theirs, as a
    /// chown-less root would leave them; the mode the step gave each path is kept (the
    /// table's, unless the step changed the mode on disk), and directories their owner
    /// may not write or traverse and files it may not read are opened on disk; then the
    /// `chown` calls of a step under proot take effect, in order. Where no table is kept
    /// and this process may chown, those calls are carried out on disk. Nothing to do
    /// otherwise.
    pub(crate) fn follow_run(&self) -> Result<(), SnapshotError> {
        let noted = self
            .step_owners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        match (&self.root, &self.baseline) {
            (StepRoot::Dir(root), Some(baseline)) => baseline.follow_run(root, noted),
            _ => Ok(()),
        }
    }

    /// How the executor assembles the step's root.
    pub fn root(&self) -> &StepRoot {
        &self.root
    }

    /// The scratch directory this snapshot lives in (the caller owns and removes it).
    pub fn scratch(&self) -> &Path {
        &self.scratch
    }

    /// The tree the layer writer reads the current state of changed paths from.
    pub fn source_tree(&self) -> &Path {
        self.root.writable_dir()
    }

    /// The merged view of the step's tree (lowers, then the writable layer).
    pub fn view(&self) -> LowerView {
        let mut layers = self.root.lowers().to_vec();
        layers.push(self.root.writable_dir().to_path_buf());
        LowerView::new(layers)
    }
}

/// Prepares writable trees for steps and computes what a step changed.
pub trait Snapshotter {
    /// Prepares a writable tree over `lowers` (lowest first) inside the empty directory
    /// `scratch`.
    fn prepare(&self, lowers: &[PathBuf], scratch: &Path) -> Result<Snapshot, SnapshotError>;

    /// What the step changed in `snapshot` relative to its lowers.
    fn diff(&self, snapshot: &Snapshot) -> Result<ChangeSet, SnapshotError>;
}
