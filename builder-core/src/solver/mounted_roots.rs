//! Step roots mounted for the engine's own file work (`COPY`, `ADD`, `WORKDIR`), inside
//! a private mount namespace.
//!
//! The work runs on a dedicated thread that first leaves the process's mount namespace
//! (`unshare(CLONE_NEWNS | CLONE_FS)`), makes `/` private so nothing propagates back,
//! then mounts the roots it needs. When the thread ends, its namespace (and every mount
//! in it) goes with it: nothing stays mounted on the host, even if the work panics.
//! Roots that are plain directories ([`StepRoot::Dir`]) need no mount at all.
//!
//! Threads see the mount namespace of the thread that created them, so the work runs in
//! a rayon pool created inside the namespace: the copy module's parallel file copies then
//! see the mounted roots too (the global pool's threads, made elsewhere, would see empty
//! mount points).

use std::path::{Path, PathBuf};

use rustix::thread::UnshareFlags;

use super::error::{BuildError, io_err};
use crate::exec::{ExecError, Op, Plan, root_mount};
use crate::privilege::Privilege;
use crate::snapshot::{Snapshot, StepRoot};

/// Runs `work` with `target` (the step's writable root) and `sources` (read-only uses)
/// visible as whole directories, mounting them under `scratch` in a private mount
/// namespace when they are overlays.
pub(crate) fn with_roots<T, F>(
    target: &Snapshot,
    sources: &[&Snapshot],
    scratch: &Path,
    work: F,
) -> Result<T, BuildError>
where
    T: Send,
    F: FnOnce(&Path, &[PathBuf]) -> Result<T, BuildError> + Send,
{
    let all: Vec<&Snapshot> = std::iter::once(target)
        .chain(sources.iter().copied())
        .collect();
    if all.iter().all(|s| matches!(s.root(), StepRoot::Dir(_))) {
        let dirs: Vec<PathBuf> = all
            .iter()
            .map(|s| s.root().writable_dir().to_path_buf())
            .collect();
        return work(&dirs[0], &dirs[1..]);
    }
    let mut ops = vec![Op::MakeRootPrivate];
    let mut points = Vec::new();
    for (i, snapshot) in all.iter().enumerate() {
        match snapshot.root() {
            StepRoot::Dir(dir) => points.push(dir.clone()),
            _ => {
                let point = scratch.join(format!("mnt-{i}"));
                std::fs::create_dir_all(&point).map_err(io_err("create directory", &point))?;
                ops.push(root_mount(snapshot, &point)?);
                points.push(point);
            }
        }
    }
    let plan = Plan { ops };
    std::thread::scope(|s| {
        let handle = s.spawn(move || {
            // SAFETY: CLONE_FILES is not among the flags: the descriptor table stays
            // shared, only the mount namespace and the fs attributes (root, cwd, umask)
            // become this thread's own.
            unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS | UnshareFlags::FS) }
                .map_err(|e| ExecError::Setup {
                    stage: if Privilege::current().is_root() {
                        "unshare the mount namespace".to_owned()
                    } else {
                        // A process with threads cannot get a user namespace any more.
                        format!(
                            "unshare the mount namespace (COPY, ADD and WORKDIR on overlay \
                             roots need root: call rbuild_core::rootless::\
                             enter_user_namespace first, which {} turns off)",
                            crate::rootless::SKIP_ENV
                        )
                    },
                    source: e.into(),
                })?;
            if let Err((index, errno)) = plan.apply() {
                let stage = plan
                    .ops
                    .get(index)
                    .map_or_else(|| "mount".to_owned(), ToString::to_string);
                return Err(ExecError::Setup {
                    stage,
                    source: std::io::Error::from_raw_os_error(errno),
                }
                .into());
            }
            let pool = rayon::ThreadPoolBuilder::new()
                .thread_name(|i| format!("rbuild-mounted-{i}"))
                .build()
                .map_err(|e| ExecError::Setup {
                    stage: "start the copy threads".to_owned(),
                    source: std::io::Error::other(e),
                })?;
            pool.install(|| work(&points[0], &points[1..]))
        });
        handle
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}
