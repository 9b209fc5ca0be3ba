//! The [`Plan`] of a sandboxed step: its root, `/proc`, `/dev`, `/sys` and the /etc files,
//! the mounts the step asks for, the pivot into the root, the working directory and the
//! user, with the confinement placed around the user switch ([`confine`]). The plan is
//! data, checked here without running it.

use std::ffi::CString;
use std::fs;
use std::path::{Component, Path, PathBuf};

use super::{ETC_FILES, etc_file, io_err, root_mount, root_op};
use crate::exec::confine;
use crate::exec::idmap::IdMapping;
use crate::exec::plan::{Op, Plan, cstr};
use crate::exec::stubs::Stubs;
use crate::exec::user::Credentials;
use crate::exec::{
    BindMount, ExecError, FileMount, Network, RunSpec, Security, TmpfsMount, TreeMount,
};
use crate::privilege::{Privilege, setgroups_allowed};
use crate::snapshot::{LowerView, Snapshot};

/// Devices bound from the host into the step's `/dev`.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Whether the step's `/dev` is mounted ([`build_plan`]): the image has a directory
/// there, reached through no symlink, or nothing (rbuild makes the directory).
pub(super) fn dev_can_be_mounted(view: &LowerView) -> Result<bool, ExecError> {
    let dev = Path::new("dev");
    if view.crosses_symlink(dev)? {
        return Ok(false);
    }
    Ok(view.lookup(dev)?.is_none_or(|entry| entry.is_dir))
}

pub(super) fn build_plan(
    snapshot: &Snapshot,
    spec: &RunSpec,
    creds: &Credentials,
    view: &LowerView,
    scratch: &Path,
    stubs: &mut Stubs,
    mapping: Option<IdMapping>,
) -> Result<Plan, ExecError> {
    let mountpoint = scratch.join("rootfs");
    fs::create_dir_all(&mountpoint).map_err(io_err("create directory", &mountpoint))?;
    let mp = |rel: &str| cstr(&mountpoint.join(rel));
    let mut ops = vec![Op::MakeRootPrivate];
    ops.push(root_mount(snapshot, &mountpoint)?);
    let nodev = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    if stubs.ensure(view, Path::new("proc"), true)? {
        ops.push(Op::Mount {
            source: c"proc".into(),
            target: mp("proc")?,
            fstype: c"proc".into(),
            flags: nodev,
            data: None,
        });
    }
    if stubs.ensure(view, Path::new("dev"), true)? {
        ops.push(Op::Mount {
            source: c"tmpfs".into(),
            target: mp("dev")?,
            fstype: c"tmpfs".into(),
            // nodev: a node the step makes with mknod in /dev does not open; the binds
            // of the host's devices below keep working (flags are per mount).
            flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_STRICTATIME,
            data: Some(c"mode=755,size=65536k".into()),
        });
        for dev in DEVICES {
            let target = mp(&format!("dev/{dev}"))?;
            ops.push(Op::Touch {
                path: target.clone(),
            });
            ops.push(Op::Bind {
                source: cstr(&Path::new("/dev").join(dev))?,
                target,
                recursive: false,
                readonly: false,
                // The only device nodes a step may open: binds of the host's, which
                // keep the host /dev's mount flags under the step's nodev /dev.
                nodev: false,
            });
        }
        ops.push(Op::Mkdir {
            path: mp("dev/pts")?,
            mode: 0o755,
        });
        ops.push(Op::Mount {
            source: c"devpts".into(),
            target: mp("dev/pts")?,
            fstype: c"devpts".into(),
            flags: libc::MS_NOSUID | libc::MS_NOEXEC,
            data: Some(c"newinstance,ptmxmode=0666,mode=0620".into()),
        });
        ops.push(Op::Symlink {
            target: c"pts/ptmx".into(),
            link: mp("dev/ptmx")?,
        });
        ops.push(Op::Mkdir {
            path: mp("dev/shm")?,
            mode: 0o1777,
        });
        ops.push(Op::Mount {
            source: c"shm".into(),
            target: mp("dev/shm")?,
            fstype: c"tmpfs".into(),
            flags: nodev,
            data: Some(c"mode=1777,size=65536k".into()),
        });
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            ops.push(Op::Symlink {
                target: cstr(Path::new(target))?,
                link: mp(&format!("dev/{link}"))?,
            });
        }
    }
    // Only root of the host may mount sysfs without a network namespace of its own.
    let rootless = mapping.is_some() || !Privilege::current().is_host_root();
    let self_only = mapping == Some(IdMapping::SelfOnly);
    // Supplementary groups need setgroups, which a user namespace mapped without
    // newgidmap denies (its own, or the one the step gets).
    let groups_allowed = !self_only && setgroups_allowed();
    let sys_ok = stubs.ensure(view, Path::new("sys"), true)?;
    if sys_ok && rootless && spec.network.shares_host() {
        // A user namespace may mount sysfs only with a network namespace of its own.
        ops.push(Op::Bind {
            source: c"/sys".into(),
            target: mp("sys")?,
            recursive: true,
            readonly: true,
            nodev: true,
        });
    } else if sys_ok {
        ops.push(Op::Mount {
            source: c"sysfs".into(),
            target: mp("sys")?,
            fstype: c"sysfs".into(),
            // BuildKit's insecure mode gives a writable sysfs.
            flags: if spec.security == Security::Insecure {
                nodev
            } else {
                nodev | libc::MS_RDONLY
            },
            data: None,
        });
    }
    ops.extend(confine::proc_ops(spec.security, &mountpoint)?);
    for rel in ETC_FILES {
        let source = scratch.join(rel.replace('/', "-"));
        fs::write(&source, etc_file(rel, &spec.hostname)).map_err(io_err("write", &source))?;
        if stubs.ensure(view, Path::new(rel), false)? {
            ops.push(Op::Bind {
                source: cstr(&source)?,
                target: mp(rel)?,
                recursive: false,
                readonly: false,
                nodev: true,
            });
        }
    }
    for mount in &spec.mounts {
        ops.push(bind_mount(mount, view, stubs, &mountpoint)?);
    }
    for mount in &spec.tmpfs {
        ops.push(tmpfs_mount(mount, view, stubs, &mountpoint)?);
    }
    for (i, file) in spec.files.iter().enumerate() {
        ops.extend(file_mount(file, i, view, stubs, scratch, &mountpoint)?);
    }
    for (i, mount) in spec.trees.iter().enumerate() {
        ops.extend(tree_mount(mount, i, view, stubs, scratch, &mountpoint)?);
    }
    ops.push(Op::Hostname(CString::new(spec.hostname.as_str()).map_err(
        |e| ExecError::Setup {
            stage: "set host name".to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        },
    )?));
    if spec.network == Network::None {
        ops.push(Op::LoopbackUp);
    }
    ops.push(Op::PivotRoot {
        new_root: cstr(&mountpoint)?,
    });
    ops.push(Op::WorkDir {
        path: cstr(Path::new(&spec.workdir))?,
    });
    let (before_user, after_user) = confine::privilege_ops(spec.security, creds.uid, spec.network)?;
    ops.extend(before_user);
    ops.push(Op::Credentials {
        uid: creds.uid,
        gid: creds.gid,
        groups: groups_allowed.then(|| creds.groups.clone()),
    });
    ops.extend(after_user);
    if self_only {
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        ops.insert(
            0,
            Op::MapSelf {
                uid_map: format!("0 {uid} 1").into_bytes(),
                gid_map: format!("0 {gid} 1").into_bytes(),
            },
        );
    }
    Ok(Plan { ops })
}

/// The operation binding a host path of `rbuild run -v` into the step's root, after
/// making sure its mount point exists (created for the step only) and is not reached
/// through a symbolic link of the image.
fn bind_mount(
    mount: &BindMount,
    view: &LowerView,
    stubs: &mut Stubs,
    mountpoint: &Path,
) -> Result<Op, ExecError> {
    let is_dir = fs::metadata(&mount.source)
        .map_err(io_err("read", &mount.source))?
        .is_dir();
    let rel = mount_point(&mount.source, &mount.target, is_dir, view, stubs)?;
    Ok(Op::Bind {
        source: cstr(&mount.source)?,
        target: cstr(&mountpoint.join(rel))?,
        recursive: true,
        readonly: mount.readonly,
        nodev: true,
    })
}

/// The operation mounting an empty tmpfs of `RUN --mount=type=tmpfs` in the step's
/// root, its mount point made as for [`bind_mount`].
fn tmpfs_mount(
    mount: &TmpfsMount,
    view: &LowerView,
    stubs: &mut Stubs,
    mountpoint: &Path,
) -> Result<Op, ExecError> {
    let rel = mount_point(Path::new("tmpfs"), &mount.target, true, view, stubs)?;
    let data = match mount.size {
        Some(size) => Some(
            CString::new(format!("size={size}")).map_err(|e| ExecError::Setup {
                stage: "mount tmpfs".to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
            })?,
        ),
        None => None,
    };
    Ok(Op::Mount {
        source: c"tmpfs".into(),
        target: cstr(&mountpoint.join(rel))?,
        fstype: c"tmpfs".into(),
        flags: libc::MS_NOSUID | libc::MS_NODEV,
        data,
    })
}

/// The operations putting a file held in memory (a secret) in the step's root: a tmpfs
/// mounted at `<scratch>/file-<index>` in the step's own mount namespace holds it, bound
/// read-only on the target; nothing of it is ever written to disk, and the tmpfs goes
/// with the namespace, however rbuild ends.
fn file_mount(
    file: &FileMount,
    index: usize,
    view: &LowerView,
    stubs: &mut Stubs,
    scratch: &Path,
    mountpoint: &Path,
) -> Result<Vec<Op>, ExecError> {
    let staging = scratch.join(format!("file-{index}"));
    fs::create_dir_all(&staging).map_err(io_err("create directory", &staging))?;
    let rel = mount_point(Path::new("(secret)"), &file.target, false, view, stubs)?;
    let size = CString::new(format!(
        "mode=0700,size={}",
        file.data.len().max(4096) + 4096
    ))
    .map_err(|e| ExecError::Setup {
        stage: "mount tmpfs".to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
    })?;
    let path = staging.join("file");
    Ok(vec![
        Op::Mount {
            source: c"tmpfs".into(),
            target: cstr(&staging)?,
            fstype: c"tmpfs".into(),
            flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            data: Some(size),
        },
        Op::WriteFile {
            path: cstr(&path)?,
            data: file.data.clone(),
            mode: file.mode,
            uid: file.uid,
            gid: file.gid,
        },
        Op::Bind {
            source: cstr(&path)?,
            target: cstr(&mountpoint.join(rel))?,
            recursive: false,
            readonly: true,
            nodev: true,
        },
    ])
}

/// The operations binding another tree (a stage's root) into the step's root: the tree
/// is assembled at `<scratch>/tree-<index>` (in the step's own mount namespace), then
/// its source path is bound on the target.
fn tree_mount(
    mount: &TreeMount,
    index: usize,
    view: &LowerView,
    stubs: &mut Stubs,
    scratch: &Path,
    mountpoint: &Path,
) -> Result<Vec<Op>, ExecError> {
    let tree = scratch.join(format!("tree-{index}"));
    fs::create_dir_all(&tree).map_err(io_err("create directory", &tree))?;
    let source = tree.join(&mount.source);
    let tree_view = LowerView::new(mount.root.lowers().to_vec());
    let refuse = |reason| ExecError::Bind {
        source_path: mount.source.clone(),
        target: mount.target.clone(),
        reason,
    };
    let is_dir = if mount.source.as_os_str().is_empty() {
        true
    } else {
        if tree_view.crosses_symlink(&mount.source)? {
            return Err(refuse("the source is reached through a symbolic link"));
        }
        match tree_view.lookup(&mount.source)? {
            Some(entry) => entry.is_dir,
            None => match mount
                .root
                .writable_dir()
                .join(&mount.source)
                .symlink_metadata()
            {
                Ok(meta) if !meta.file_type().is_symlink() => meta.is_dir(),
                _ => return Err(refuse("the source does not exist in the stage")),
            },
        }
    };
    let rel = mount_point(&mount.source, &mount.target, is_dir, view, stubs)?;
    let assemble = root_op(&mount.root, &tree)?;
    Ok(vec![
        assemble,
        Op::Bind {
            source: cstr(&source)?,
            target: cstr(&mountpoint.join(rel))?,
            recursive: true,
            readonly: mount.readonly,
            nodev: true,
        },
    ])
}

/// Checks `target` (absolute, without `.` or `..`, not the root), follows the image's
/// symbolic links on it inside the root (as runc resolves a mount destination: BuildKit
/// mounts `target=/var/run/x` at `/run/x` when `/var/run` links to `/run`), and makes
/// sure the mount point exists (created for the step only); returns it relative to the
/// root, free of symbolic links, so nothing outside the sandbox ever follows one.
fn mount_point(
    source: &Path,
    target: &str,
    is_dir: bool,
    view: &LowerView,
    stubs: &mut Stubs,
) -> Result<PathBuf, ExecError> {
    let refuse = |reason| ExecError::Bind {
        source_path: source.to_path_buf(),
        target: target.to_owned(),
        reason,
    };
    let path = Path::new(target);
    let normal = path
        .components()
        .skip(1)
        .all(|c| matches!(c, Component::Normal(_)));
    if !path.is_absolute() || !normal {
        return Err(refuse(
            "the target must be an absolute path without . or ..",
        ));
    }
    let written = path.strip_prefix("/").unwrap_or(path);
    let Some(rel) = view.resolve(written)? else {
        return Err(refuse("the target passes through too many symbolic links"));
    };
    if rel.as_os_str().is_empty() {
        return Err(refuse("the target cannot be the root"));
    }
    if !stubs.ensure(view, &rel, is_dir)? {
        return Err(refuse(
            "the target is reached through a symbolic link or has another file type",
        ));
    }
    // Every mount point created here, and every parent directory created for it
    // (`/run`, `/run/secrets`, `/run/buildkit`, a cache target's parents), is removed
    // after the step unless the step put something in it: as BuildKit's recursive mount
    // stub cleaner, nothing of a mount stays in the image (issue 13).
    Ok(rel)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::unix::ffi::OsStrExt;

    use super::*;
    use crate::exec::Command;
    use crate::snapshot::{OverlaySnapshotter, Snapshotter};

    /// The plan is data: its shape is checked here without running it (no root needed).
    #[test]
    fn plan_mounts_topmost_layer_first_and_pivots_before_dropping_privileges() {
        let dir = tempfile::tempdir().unwrap();
        let (low, high) = (dir.path().join("low"), dir.path().join("high"));
        fs::create_dir_all(low.join("etc")).unwrap();
        fs::create_dir_all(&high).unwrap();
        let scratch = dir.path().join("scratch");
        fs::create_dir(&scratch).unwrap();
        let snapshot = OverlaySnapshotter::new()
            .prepare(&[low.clone(), high.clone()], &scratch)
            .unwrap();
        let mut spec = RunSpec::new(Command::Shell("true".to_owned()));
        spec.network = Network::None;
        spec.workdir = "/srv/app".to_owned();
        let mut stubs = Stubs::new(snapshot.root().writable_dir());
        let plan = build_plan(
            &snapshot,
            &spec,
            &Credentials::root(),
            &snapshot.view(),
            &scratch,
            &mut stubs,
            None,
        )
        .unwrap();
        let names: Vec<String> = plan.ops.iter().map(ToString::to_string).collect();
        let position = |prefix: &str| {
            names
                .iter()
                .position(|n| n.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix:?} in {names:#?}"))
        };
        let Some(Op::Overlay { lowers, .. }) =
            plan.ops.iter().find(|o| matches!(o, Op::Overlay { .. }))
        else {
            panic!("no overlay in {names:#?}");
        };
        assert_eq!(lowers[0].to_bytes(), high.as_os_str().as_bytes());
        assert!(position("mount overlay") < position("mount \"proc\""));
        assert!(position("bring loopback up") < position("pivot root"));
        assert!(position("pivot root") < position("enter working directory \"/srv/app\""));
        assert!(position("enter working directory") < position("switch to user 0:0"));
        // Confinement: /proc write-protected once mounted; the filter and the bounding
        // set before the user switch (they need CAP_SYS_ADMIN and CAP_SETPCAP), the
        // step's own capability sets after it.
        assert!(position("mount \"proc\"") < position("make \""));
        assert!(position("drop capabilities") < position("switch to user 0:0"));
        assert!(position("install the seccomp filter") < position("switch to user 0:0"));
        assert!(position("switch to user 0:0") < position("set the step's capabilities"));
        assert_eq!(
            names.last().map(String::as_str),
            Some("set the step's capabilities")
        );
        // The stubs exist in the upper directory during the step and vanish after it.
        let upper = snapshot.root().writable_dir().to_path_buf();
        assert!(upper.join("proc").is_dir() && upper.join("etc/hosts").is_file());
        stubs.remove().unwrap();
        assert_eq!(
            fs::read_dir(&upper).unwrap().count(),
            0,
            "stubs left in the upper dir"
        );
    }
}
