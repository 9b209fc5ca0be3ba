//! The chroot isolation: `RUN` steps where no namespace and no mount can be made.
//!
//! Inside a container with the default security of docker, podman or a Kubernetes pod
//! (docker's default capabilities, the RuntimeDefault seccomp profile, no user
//! namespaces), `unshare` and `mount` are denied, so the [`SandboxExecutor`] cannot
//! start. `chroot` is allowed (`CAP_SYS_CHROOT` is in the default set). This executor
//! runs the step's command chrooted into the step's root, which must be a plain
//! directory ([`StepRoot::Dir`], the copy snapshotter's), as the step's user, in its
//! working directory, with its environment; nothing else of the sandbox:
//! - no namespaces: the step shares the container's processes, host name, IPC and
//!   network (`--network=none` is refused);
//! - no mounts: no `/proc`, no `/sys`; `/dev` holds only what the image has plus
//!   `null`, `zero`, `full`, `random`, `urandom` and `tty`, made for the step and
//!   removed after it with whatever else the step made in `/dev` (as with the
//!   sandbox's own `/dev`, none of it reaches the layer; what the step changed of the
//!   image's own entries there does) (where `mknod` is denied, as podman does by default, only a
//!   `/dev/null` that is a plain empty file anyone can write); `/etc/resolv.conf` and `/etc/hosts` are
//!   the container's where the image has none, the image's own where it has them;
//! - secrets (`RUN --mount=type=secret`) are files written where the image has nothing,
//!   on the store's disk for the step's time, and removed after it: never in a layer;
//!   bind, cache and tmpfs mounts are placed at their targets for the step, moved or
//!   copied (`chroot_mounts.rs`), and taken away after it; an ssh mount gets a socket
//!   of rbuild's at its target, relaying to the agent;
//! - no confinement of its own: capabilities and the seccomp profile are the
//!   container's. A root step can leave a chroot, so the container (the pod) is the
//!   security boundary, as for kaniko.
//!
//! **The proot isolation** (`--isolation proot`, [`ChrootExecutor::proot`]) is for where
//! not even `chroot` is allowed: a pod under the restricted Pod Security Standard, which
//! drops every capability. The same plain root is entered by proot, which puts the step
//! there by tracing it (ptrace, allowed by the runtimes' default seccomp profiles) and
//! shows it its user (`-0`, `-i UID:GID`) while every process is the build user's; it
//! binds the container's `/proc`, `/sys` and device nodes, and emulates root's permission
//! checks. Everything else is as above. The owners the step gives go to the owner table
//! ([`crate::fakeroot`]): what it makes is its user's, and its `chown` calls, which a
//! seccomp filter of the init hands to rbuild before they reach the kernel
//! (`chown_calls.rs`), are kept though nothing changes on disk. proot waits for every
//! process of the step, so one left in the background keeps the step from ending.
//!
//! The process starts in a session of its own, led by its monitor: the session's process
//! group is killed on cancel and when the step's process has exited, which ends what it
//! left running; what leaves the group (`setsid`, a daemon) is not followed, nor does
//! kill -9 of rbuild end more than the step's first process, for want of a PID namespace.

use std::ffi::CString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::chown_calls::{Ids, Recorder};
use super::chroot_mounts::Placements;
use super::monitor::{Launch, launch};
use super::plan::{Op, Plan, cstr};
use super::sandbox::{ETC_FILES, etc_file, step_credentials, step_env};
use super::stubs::Stubs;
use super::terminal::ConsoleSocket;
use super::{ExecError, Executor, ExitStatus, Network, OutputSink, RunSpec};
use crate::snapshot::{Snapshot, StepRoot};

/// The device nodes a step gets in `/dev` (name, major, minor), as docker gives them.
const DEVICES: [(&str, u32, u32); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Runs steps chrooted into a plain directory root, without namespaces or mounts (see
/// the module documentation for what a step sees), or under proot.
#[derive(Debug, Clone, Default)]
pub struct ChrootExecutor {
    /// The proot program, for the proot isolation; `None` for `chroot`.
    proot: Option<PathBuf>,
}

impl ChrootExecutor {
    /// The chroot executor.
    pub fn new() -> Self {
        ChrootExecutor { proot: None }
    }

    /// The proot isolation: the same step root, entered by the proot program at `proot`
    /// rather than by `chroot` (see the module documentation).
    pub fn proot(proot: PathBuf) -> Self {
        ChrootExecutor { proot: Some(proot) }
    }
}

/// Whether this process may `chroot`: a child tries `chroot("/")`. Root of a container
/// with default security may (`CAP_SYS_CHROOT`); a user of a pod under the restricted Pod
/// Security Standard, who holds no capability, may not.
pub fn chroot_available() -> bool {
    // SAFETY: the child only calls chroot and _exit.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => false,
        0 => {
            // SAFETY: plain system calls in the child of a fork.
            unsafe { libc::_exit(i32::from(libc::chroot(c"/".as_ptr()) != 0)) }
        }
        pid => {
            let mut status = 0;
            // SAFETY: waits for our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            r == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
        }
    }
}

/// The proot program the proot isolation runs: `RBUILD_PROOT`, else `proot` on `PATH`.
pub fn find_proot() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("RBUILD_PROOT").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("proot"))
        .find(|candidate| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(candidate)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Whether `proot` can serve the proot isolation here: this process is not a root that
/// gives files real owners, the program answers `-V` as proot does, and `/tmp`, where
/// proot keeps its own files, takes a new directory. The reason when
/// not, for the user.
pub fn check_proot(proot: &Path) -> Result<(), String> {
    // Root that gives files real owners (root of the host, of a namespace with more than
    // one id) would run a USER step as itself, with root's rights, and its chown calls
    // would be carried out: proot is for a user who owns every file.
    if crate::privilege::Privilege::current().is_root() && !crate::fakeroot::active() {
        return Err(
            "it is for a user other than root (a USER step would run as real root here): \
             run as a non-root user (a pod's runAsUser), or grant CAP_SYS_CHROOT for the \
             chroot isolation"
                .to_owned(),
        );
    }
    let out = std::process::Command::new(proot)
        .arg("-V")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", proot.display()))?;
    let said = [out.stdout, out.stderr].concat();
    if !String::from_utf8_lossy(&said)
        .to_lowercase()
        .contains("proot")
    {
        return Err(format!(
            "{} does not answer -V as proot does (is RBUILD_PROOT right?)",
            proot.display()
        ));
    }
    tempfile::Builder::new()
        .prefix("rbuild-proot-check")
        .tempdir_in("/tmp")
        .map(drop)
        .map_err(|e| {
            format!(
                "proot keeps its files in /tmp, which takes none here ({e}): mount a writable \
                 volume (an emptyDir) on /tmp"
            )
        })
}

/// The container's own device nodes a step under proot sees in its `/dev` (proot binds
/// them): the ones docker gives a container.
/// The links of the sandbox's `/dev` into `/proc` (as runc makes them), made for a step
/// under proot, which sees the container's `/proc`.
const DEV_LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("core", "/proc/kcore"),
];

const PROOT_DEVICES: [&str; 6] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
];

/// What a step under proot is shown of owners and modes (see `stat_calls`): the
/// root's table, and the owners of the secrets and caches placed in it, which the
/// disk cannot give.
fn step_owner_view(
    snapshot: &Snapshot,
    root: &Path,
    spec: &RunSpec,
) -> Result<Option<crate::snapshot::OwnerView>, ExecError> {
    let Some(mut view) = snapshot.owner_view().map_err(|e| ExecError::Setup {
        stage: "read the owners the step is to see".to_owned(),
        source: std::io::Error::other(e.to_string()),
    })?
    else {
        return Ok(None);
    };
    use std::os::unix::fs::MetadataExt;
    let secrets = spec
        .files
        .iter()
        .map(|secret| (secret.target.as_str(), Some((secret.uid, secret.gid))));
    let mounts = spec
        .mounts
        .iter()
        .map(|bind| (bind.target.as_str(), bind.owner));
    let trees = spec.trees.iter().map(|tree| (tree.target.as_str(), None));
    // What rbuild itself put there: the root, the stub files, /dev's links.
    let stubs = std::iter::once("/")
        .chain(ETC_FILES.iter().copied())
        .map(|rel| (rel, None));
    let dev_links: Vec<String> = DEV_LINKS
        .iter()
        .map(|(name, _)| format!("/dev/{name}"))
        .collect();
    let links = dev_links.iter().map(|path| (path.as_str(), None));
    for (target, owner) in secrets.chain(mounts).chain(trees).chain(stubs).chain(links) {
        let placed = root.join(target.trim_start_matches('/'));
        // Placed by rbuild a moment ago, under a root no step has run in yet: root's
        // (not a USER step's, as what the step makes), or the owner the mount names.
        let Ok(meta) = std::fs::symlink_metadata(&placed) else {
            continue;
        };
        let inode = (meta.ino(), meta.created().ok());
        match owner.filter(|owner| *owner != (0, 0)) {
            Some(owner) => {
                view.owned
                    .insert(inode, crate::fakeroot::Entry::with_owner(owner));
            }
            None => {
                view.before.insert(inode);
            }
        }
    }
    Ok(Some(view))
}

/// The command line that runs `argv` under `proot` in `root`: the step's user (`-0` for
/// root, `-i uid:gid` for another: what the step's processes see of themselves and of
/// the files the build user owns), its working directory, the container's device nodes,
/// `/proc` and `/sys`.
fn proot_argv(
    proot: &Path,
    root: &Path,
    workdir: &str,
    creds: &crate::exec::user::Credentials,
    argv: &[String],
) -> Vec<String> {
    let mut line = vec![
        proot.to_string_lossy().into_owned(),
        "-r".to_owned(),
        root.to_string_lossy().into_owned(),
        "-w".to_owned(),
        workdir.to_owned(),
    ];
    if (creds.uid, creds.gid) == (0, 0) {
        line.push("-0".to_owned());
    } else {
        line.extend(["-i".to_owned(), format!("{}:{}", creds.uid, creds.gid)]);
    }
    for host in PROOT_DEVICES.iter().chain(&["/proc", "/sys"]) {
        if Path::new(host).exists() {
            line.extend(["-b".to_owned(), (*host).to_owned()]);
        }
    }
    line.extend(argv.iter().cloned());
    line
}

/// Why the chroot isolation cannot give a step what it asks for, if it cannot.
fn unsupported(spec: &RunSpec) -> Option<&'static str> {
    if spec.network == Network::None {
        return Some("--network=none needs a network namespace");
    }
    if spec.terminal.is_some() {
        return Some("a terminal needs a /dev/pts of the container's own");
    }
    None
}

impl Executor for ChrootExecutor {
    /// proot is given the working directory and does not create it.
    fn makes_workdir(&self) -> bool {
        self.proot.is_none()
    }

    fn run(
        &self,
        snapshot: &Snapshot,
        spec: &RunSpec,
        sink: &mut dyn OutputSink,
    ) -> Result<ExitStatus, ExecError> {
        let StepRoot::Dir(root) = snapshot.root() else {
            return Err(ExecError::Setup {
                stage: "chroot into the step's root: the chroot isolation needs a plain \
                        directory root (--snapshotter copy)"
                    .to_owned(),
                source: std::io::Error::from_raw_os_error(libc::EINVAL),
            });
        };
        if let Some(reason) = unsupported(spec) {
            return Err(ExecError::Setup {
                stage: format!(
                    "run the step with the chroot isolation: {reason}, which this \
                     container does not allow (run rbuild where it can create namespaces, \
                     e.g. a privileged container or a host)"
                ),
                source: std::io::Error::from_raw_os_error(libc::EPERM),
            });
        }
        let argv = spec.argv()?;
        let view = snapshot.view();
        let creds = step_credentials(&view, spec)?;
        // Under proot: the step's chown calls go to a recorder (see `chown_calls`).
        let (argv, chown_socket) = match &self.proot {
            Some(proot) => (
                proot_argv(proot, root, &spec.workdir, &creds, &argv),
                Some(ConsoleSocket::new().map_err(|source| ExecError::Setup {
                    stage: "create the socket for the step's chown calls".to_owned(),
                    source,
                })?),
            ),
            None => (argv, None),
        };
        let mut stubs = Stubs::new(root);
        let mut placements = None;
        let mut dev_before = None;
        let prepared = (|| -> Result<Plan, ExecError> {
            // As the sandbox's /dev (a tmpfs), nothing the step makes there stays.
            stubs.own_dir(&view, Path::new("dev"))?;
            // Under proot the container's own nodes are bound there instead, and /proc
            // is the container's: the links into it the sandbox's /dev has work too.
            let devices = if self.proot.is_some() {
                for (name, target) in DEV_LINKS {
                    stubs.add_link(&view, &Path::new("dev").join(name), target)?;
                }
                &[][..]
            } else {
                &DEVICES[..]
            };
            for &(name, major, minor) in devices {
                let rel = Path::new("dev").join(name);
                match stubs.add_device(&view, &rel, rustix::fs::makedev(major, minor)) {
                    // Without CAP_MKNOD (podman drops it by default) the step goes
                    // without, but for a /dev/null that is an empty file anyone may
                    // write: what is written to it stays until the step ends, reading
                    // gives what was written.
                    Err(crate::snapshot::SnapshotError::Io { source, .. })
                        if source.raw_os_error() == Some(libc::EPERM) =>
                    {
                        if name == "null" {
                            stubs.add_file(&view, &rel, b"", 0o666, (0, 0))?;
                        }
                    }
                    other => {
                        other?;
                    }
                }
            }
            for rel in ETC_FILES {
                if rel == "etc/hostname" {
                    continue;
                }
                let data = etc_file(rel, &spec.hostname);
                stubs.add_file(&view, Path::new(rel), data.as_bytes(), 0o644, (0, 0))?;
            }
            for secret in &spec.files {
                let rel = Path::new(secret.target.trim_start_matches('/'));
                let owner = (secret.uid, secret.gid);
                if !stubs.add_file(&view, rel, &secret.data, secret.mode, owner)? {
                    return Err(ExecError::Setup {
                        stage: format!(
                            "place the secret at {}: the image has something there, or \
                             a symbolic link on the way, and the chroot isolation can only \
                             put a secret where the image has nothing (it cannot mount one \
                             over it)",
                            secret.target
                        ),
                        source: std::io::Error::from_raw_os_error(libc::EEXIST),
                    });
                }
            }
            // The image's /dev, before a mount placed at /dev or in it hides it.
            dev_before = DevDir::open(root).map(|dev| (dev.names(), dev.mtime()));
            let hold = root.with_file_name("chroot-mounts");
            Placements::place(root, &hold, &view, &mut stubs, spec, &mut placements)?;
            stubs.seal()?;
            let mut workdir = spec.workdir.clone().into_bytes();
            workdir.retain(|b| *b != 0);
            let workdir = CString::new(workdir).expect("NUL bytes were removed");
            if let Some(calls) = &chown_socket {
                // proot enters the root, the directory and the user itself.
                return Ok(Plan {
                    ops: vec![Op::ChownCalls {
                        socket_fd: calls.child.as_raw_fd(),
                        program: super::chown_calls::filter(),
                    }],
                });
            }
            Ok(Plan {
                ops: vec![
                    Op::Chroot {
                        new_root: cstr(root)?,
                    },
                    Op::WorkDir { path: workdir },
                    Op::Credentials {
                        uid: creds.uid,
                        gid: creds.gid,
                        groups: Some(creds.groups.clone()),
                    },
                ],
            })
        })();
        // Started once the step's root is prepared: what the step is shown of owners
        // includes the secrets and caches placed in it. A failure here is the step's
        // set-up failure (what was placed is still taken away below).
        let mut prepared = prepared;
        let recorder = match (&chown_socket, &prepared) {
            (Some(socket), Ok(_)) => {
                let started = step_owner_view(snapshot, root, spec).and_then(|view| {
                    Recorder::start(
                        socket,
                        root,
                        Ids {
                            build: crate::fakeroot::build_ids(),
                            step: (creds.uid, creds.gid),
                        },
                        creds.groups.clone(),
                        view,
                        spec.cancel.clone(),
                    )
                    .map_err(|source| ExecError::Setup {
                        stage: "start the recorder of the step's chown calls".to_owned(),
                        source,
                    })
                });
                match started {
                    Ok(recorder) => Some(recorder),
                    Err(e) => {
                        prepared = Err(e);
                        None
                    }
                }
            }
            _ => None,
        };
        let dev_before = dev_before.filter(|_| prepared.is_ok());
        let env = step_env(spec, &creds);
        let result = prepared.and_then(|plan| {
            launch(
                Launch {
                    argv: &argv,
                    env,
                    plan,
                    clone_flags: 0,
                    nested_init: false,
                    limits: &spec.limits,
                    cancel: &spec.cancel,
                    id_map: None,
                    inherit_stdin: spec.inherit_stdin,
                    merge_output: spec.merge_output,
                    console: None,
                },
                sink,
            )
        });
        let mut result = result.map_err(|e| match e {
            ExecError::Setup { stage, source }
                if stage.starts_with("chroot into")
                    && source.raw_os_error() == Some(libc::EPERM) =>
            {
                ExecError::Setup {
                    stage: format!(
                        "{stage}: the chroot isolation needs CAP_SYS_CHROOT, which this \
                         container drops (the restricted Pod Security Standard drops every \
                         capability); install proot (Debian: apt-get install proot) for \
                         --isolation proot, which needs none"
                    ),
                    source,
                }
            }
            other => other,
        });
        drop(chown_socket);
        if let Some(recorder) = recorder {
            let recorded = recorder.finish();
            snapshot.note_step_owners((creds.uid, creds.gid), recorded.calls);
            if recorded.overflowed && result.is_ok() {
                result = Err(ExecError::Setup {
                    stage: "keep the step's chown calls: it made more than rbuild keeps \
                            (2^20 files, 64 MiB of paths)"
                        .to_owned(),
                    source: std::io::Error::from_raw_os_error(libc::E2BIG),
                });
            }
            // proot's status is its last process's; the step's is its first's.
            if let (Ok(status), Some(first)) = (&mut result, recorded.first_status) {
                *status = first;
            }
        }
        let detached = detach_mounts(root);
        // Before the stubs go: the mounts' parents may be stubs.
        let restored = match (&detached, placements) {
            (Ok(()), Some(placements)) => placements.restore(),
            _ => Ok(()),
        };
        // /dev is a tmpfs of the step in the sandbox, as in BuildKit: what the step
        // leaves there (a `#!` heredoc's script, /dev/pipes-NAME) never reaches a layer.
        // After the mounts are taken away: what the step wrote in a cache at /dev stays
        // the cache's.
        if let (Some((names, mtime)), Some(dev)) = (dev_before, DevDir::open(root)) {
            dev.forget_new(&names, mtime);
        }
        let cleaned = stubs.remove();
        detached?;
        restored?;
        let status = result?;
        cleaned?;
        Ok(status)
    }
}

/// Detaches, deepest first, every mount beneath `root`: what a root step that may mount
/// (rbuild run as root on a host, or in a container given CAP_SYS_ADMIN) mounted there,
/// in rbuild's own mount namespace for want of one of its own. As with that namespace's
/// end, it goes with the step: nothing in it reaches the layer, and neither the diff nor
/// the removal of the step's root walks into it.
fn detach_mounts(root: &Path) -> Result<(), ExecError> {
    let setup = |stage: String| move |source| ExecError::Setup { stage, source };
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .map_err(setup("read /proc/self/mountinfo".to_owned()))?;
    let root = std::fs::canonicalize(root)
        .map_err(setup(format!("resolve the step's root {}", root.display())))?;
    let mut points: Vec<std::path::PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| std::path::PathBuf::from(unescape(field)))
        .filter(|point| point.starts_with(&root) && *point != root)
        .collect();
    points.sort_by_key(|point| std::cmp::Reverse(point.as_os_str().len()));
    for point in points {
        match rustix::mount::unmount(&point, rustix::mount::UnmountFlags::DETACH) {
            // Gone with one detached above it.
            Ok(()) | Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOENT) => {}
            Err(e) => {
                return Err(ExecError::Setup {
                    stage: format!("detach {}, which the step mounted", point.display()),
                    source: e.into(),
                });
            }
        }
    }
    Ok(())
}

/// A mountinfo field with its octal escapes (`\040` for a space) decoded.
fn unescape(field: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                let value = d.iter().fold(0u32, |n, b| n * 8 + u32::from(b - b'0'));
                out.push(value as u8);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    std::ffi::OsString::from_vec(out)
}

/// Whether the namespace sandbox can be made here: a child process tries to leave its
/// mount, PID, UTS and IPC namespaces (what every sandboxed step needs) and to mount a
/// `/proc` for the new PID namespace, and says whether it could. False inside a container with default security, whose seccomp profile or
/// missing `CAP_SYS_ADMIN` denies it; false too for root lacking a capability the
/// sandbox gives a step (a container given `CAP_SYS_ADMIN` but not podman's dropped
/// `CAP_MKNOD`), which it cannot grant.
pub fn sandbox_available() -> bool {
    let flags = libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    let flags = if crate::privilege::Privilege::current().is_root() {
        // In a user namespace of its own a step has every capability there; root's are
        // the ones it holds.
        if !super::caps::holds_step_capabilities() {
            return false;
        }
        flags
    } else {
        flags | libc::CLONE_NEWUSER
    };
    // SAFETY: the child only makes system calls (unshare, fork, mount, waitpid) and
    // exits; no allocation, no lock, no return into Rust code of the parent.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => false,
        0 => {
            // SAFETY: plain system calls in the child of a fork.
            unsafe {
                if libc::unshare(flags) != 0 {
                    libc::_exit(1);
                }
                // The step's PID 1 mounts a /proc of its own. The kernel refuses that to a
                // user namespace where the container's /proc is only partly visible
                // (podman's masked paths) although the namespaces could be made: try it
                // in the new PID namespace, on /proc of the new (private) mount namespace.
                let child = libc::fork();
                if child == 0 {
                    let private = libc::mount(
                        std::ptr::null(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    );
                    if private != 0 {
                        libc::_exit(1);
                    }
                    let proc = libc::mount(
                        c"proc".as_ptr(),
                        c"/proc".as_ptr(),
                        c"proc".as_ptr(),
                        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                        std::ptr::null(),
                    );
                    libc::_exit(i32::from(proc != 0));
                }
                let mut status = 0;
                let ok = child > 0
                    && libc::waitpid(child, &mut status, 0) == child
                    && libc::WIFEXITED(status)
                    && libc::WEXITSTATUS(status) == 0;
                libc::_exit(i32::from(!ok));
            }
        }
        pid => {
            let mut status = 0;
            // SAFETY: waits for our own child.
            let r = unsafe { libc::waitpid(pid, &mut status, 0) };
            r == pid && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
        }
    }
}

/// The step root's `/dev`, opened beneath the root without following any link (a step
/// may have replaced it with one).
struct DevDir(std::os::fd::OwnedFd);

impl DevDir {
    fn open(root: &Path) -> Option<DevDir> {
        use rustix::fs::{Mode, OFlags, ResolveFlags};
        let root = rustix::fs::open(
            root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ok()?;
        rustix::fs::openat2(
            &root,
            "dev",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_XDEV,
        )
        .ok()
        .map(DevDir)
    }

    fn names(&self) -> Vec<std::ffi::CString> {
        let Ok(mut dir) = rustix::fs::Dir::read_from(&self.0) else {
            return Vec::new();
        };
        let mut names = Vec::new();
        while let Some(Ok(entry)) = dir.read() {
            let name = entry.file_name();
            if name != c"." && name != c".." {
                names.push(name.to_owned());
            }
        }
        names
    }

    fn mtime(&self) -> Option<rustix::fs::Timespec> {
        let st = rustix::fs::fstat(&self.0).ok()?;
        Some(rustix::fs::Timespec {
            tv_sec: st.st_mtime,
            tv_nsec: st.st_mtime_nsec as _,
        })
    }

    /// Removes what the step added to `/dev` that is not a directory, and gives `/dev`
    /// its time from before the step (if nothing else in it changed).
    fn forget_new(&self, before: &[std::ffi::CString], mtime: Option<rustix::fs::Timespec>) {
        use rustix::fs::{AtFlags, FileType};
        let mut removed = false;
        for name in self.names() {
            if before.contains(&name) {
                continue;
            }
            let Ok(st) = rustix::fs::statat(&self.0, &*name, AtFlags::SYMLINK_NOFOLLOW) else {
                continue;
            };
            if FileType::from_raw_mode(st.st_mode) != FileType::Directory
                && rustix::fs::unlinkat(&self.0, &*name, AtFlags::empty()).is_ok()
            {
                removed = true;
            }
        }
        if let (true, Some(mtime), Some(now)) = (removed, mtime, self.mtime()) {
            let times = rustix::fs::Timestamps {
                last_access: now,
                last_modification: mtime,
            };
            let _ = rustix::fs::futimens(&self.0, &times);
        }
    }
}
