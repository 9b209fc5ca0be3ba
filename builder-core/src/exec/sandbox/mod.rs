//! The built-in namespace sandbox.
//!
//! The step runs under the monitor of [`launch`](super::monitor) as PID 1 of new mount,
//! PID, UTS, IPC (and for `--network=none` network) namespaces, after a [`Plan`] that
//! mounts its root, `/proc`, `/dev`, `/sys` and the /etc files and pivots into it.
//!
//! Without root, a user namespace maps the caller to root first (see the module
//! documentation of `exec` for what works rootless).

mod setup;

use std::fs;
use std::os::fd::AsRawFd;
use std::path::Path;

use self::setup::{build_plan, dev_can_be_mounted};
use super::idmap::{
    HelperCall, IdMapCalls, IdMapping, NEWGIDMAP, NEWUIDMAP, host_user_name, ranges,
};
use super::monitor::{Launch, launch};
use super::plan::{Op, Plan, cstr};
use super::stubs::Stubs;
use super::terminal::{ConsoleSocket, Terminal};
use super::user::{Credentials, resolve_user};
use super::{DEFAULT_PATH, ExecError, Executor, ExitStatus, Network, OutputSink, RunSpec};
use crate::privilege::{Privilege, gid_mapped, uid_mapped};
use crate::snapshot::{LowerView, Snapshot, StepRoot};

/// Host files a step sees at the same path, generated per step.
pub(crate) const ETC_FILES: [&str; 3] = ["etc/resolv.conf", "etc/hosts", "etc/hostname"];

/// Runs steps in new namespaces with no outside program.
#[derive(Debug, Clone, Default)]
pub struct SandboxExecutor {
    id_mapping: Option<IdMapping>,
}

impl SandboxExecutor {
    /// A sandbox executor.
    pub fn new() -> Self {
        Self::default()
    }

    /// Chooses how a rootless step's user namespace is mapped (default:
    /// [`IdMapping::detect`]). Ignored when running as root (of the host or of a user
    /// namespace, such as the one [`enter_user_namespace`] makes).
    ///
    /// [`enter_user_namespace`]: crate::rootless::enter_user_namespace
    pub fn with_id_mapping(mut self, mapping: IdMapping) -> Self {
        self.id_mapping = Some(mapping);
        self
    }

    /// The id mapping of the step's own user namespace when not root; `None` as root
    /// (of any user namespace), where the step needs none.
    fn rootless_mapping(&self, privilege: Privilege) -> Option<IdMapping> {
        if privilege.is_root() {
            None
        } else {
            Some(self.id_mapping.unwrap_or_else(IdMapping::detect))
        }
    }
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ExecError + 'a {
    move |source| ExecError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// The operation that puts the step's root at `mountpoint`: a bind of a plain directory,
/// or the overlay of the snapshot's lowers (given lowest first; overlay wants the
/// uppermost first) under its upper directory.
pub(crate) fn root_mount(snapshot: &Snapshot, mountpoint: &Path) -> Result<Op, ExecError> {
    root_op(snapshot.root(), mountpoint)
}

/// The operation that puts `root` at `mountpoint` (see [`root_mount`]).
fn root_op(root: &StepRoot, mountpoint: &Path) -> Result<Op, ExecError> {
    Ok(match root {
        StepRoot::Dir(dir) => Op::Bind {
            source: cstr(dir)?,
            target: cstr(mountpoint)?,
            recursive: true,
            readonly: false,
            nodev: true,
        },
        StepRoot::Overlay {
            lowers,
            upper,
            work,
            userxattr,
        } => Op::Overlay {
            lowers: lowers
                .iter()
                .rev()
                .map(|l| cstr(l))
                .collect::<Result<_, _>>()?,
            upper: cstr(upper)?,
            work: cstr(work)?,
            target: cstr(mountpoint)?,
            userxattr: *userxattr,
        },
    })
}

/// Reads a small file of the image through the merged view, never through a symlink.
pub(crate) fn read_image_file(view: &LowerView, rel: &str) -> Result<Option<String>, ExecError> {
    let rel = Path::new(rel);
    if view.crosses_symlink(rel)? {
        return Ok(None);
    }
    match view.lookup(rel)? {
        Some(entry) if entry.is_file => fs::read_to_string(&entry.path)
            .map(Some)
            .map_err(io_err("read", &entry.path)),
        _ => Ok(None),
    }
}

/// The credentials a step runs with (both executors): its `USER` resolved against the
/// image's /etc/passwd and /etc/group.
pub(crate) fn step_credentials(view: &LowerView, spec: &RunSpec) -> Result<Credentials, ExecError> {
    resolve_user(
        spec.user.as_deref().unwrap_or(""),
        read_image_file(view, "etc/passwd")?.as_deref(),
        read_image_file(view, "etc/group")?.as_deref(),
    )
}

impl Executor for SandboxExecutor {
    fn run(
        &self,
        snapshot: &Snapshot,
        spec: &RunSpec,
        sink: &mut dyn OutputSink,
    ) -> Result<ExitStatus, ExecError> {
        let argv = spec.argv()?;
        let view = snapshot.view();
        let creds = step_credentials(&view, spec)?;
        let scratch = snapshot.scratch();
        let mut stubs = Stubs::new(snapshot.root().writable_dir());
        let privilege = Privilege::current();
        if privilege == Privilege::NamespaceRoot {
            check_mapped(&creds, spec)?;
        }
        let mapping = self.rootless_mapping(privilege);
        if spec.terminal.is_some() && !dev_can_be_mounted(&view)? {
            // No /dev of rbuild's: opening /dev/ptmx would follow the image's own links.
            return Err(ExecError::Setup {
                stage: "open a terminal: the image's /dev is not a directory (a symlink or \
                        a file), so the container gets no /dev/pts of its own; run without -t"
                    .to_owned(),
                source: std::io::Error::from_raw_os_error(libc::ENOTDIR),
            });
        }
        let console = match &spec.terminal {
            Some(terminal) => Some((
                ConsoleSocket::new().map_err(io_err("create socket", Path::new("(terminal)")))?,
                terminal,
            )),
            None => None,
        };
        let built = build_plan(snapshot, spec, &creds, &view, scratch, &mut stubs, mapping);
        let result = built.and_then(|mut plan| {
            stubs.seal()?;
            if let Some((socket, terminal)) = &console {
                plan.add_terminal(socket.child.as_raw_fd(), terminal.size(), &creds);
            }
            spawn_and_wait(plan, spec, &creds, &argv, sink, mapping, console)
        });
        let cleaned = stubs.remove();
        let status = result?;
        cleaned?;
        Ok(status)
    }
}

/// The contents of a generated /etc file: the host's resolver and hosts, the build's name.
pub(crate) fn etc_file(rel: &str, hostname: &str) -> String {
    match rel {
        "etc/hostname" => format!("{hostname}\n"),
        "etc/hosts" => {
            let mut hosts = fs::read_to_string("/etc/hosts")
                .unwrap_or_else(|_| "127.0.0.1\tlocalhost\n::1\tlocalhost\n".to_owned());
            if !hosts.ends_with('\n') {
                hosts.push('\n');
            }
            hosts.push_str(&format!("127.0.1.1\t{hostname}\n"));
            hosts
        }
        _ => fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    }
}

fn spawn_and_wait(
    mut plan: Plan,
    spec: &RunSpec,
    creds: &Credentials,
    argv: &[String],
    sink: &mut dyn OutputSink,
    mapping: Option<IdMapping>,
    console: Option<(ConsoleSocket, &Terminal)>,
) -> Result<ExitStatus, ExecError> {
    let mut clone_flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    if spec.network == Network::None {
        clone_flags |= libc::CLONE_NEWNET;
    }
    if mapping.is_some() {
        clone_flags |= libc::CLONE_NEWUSER;
    }
    // The release pipe must outlive the spawn: the init reads, the monitor writes.
    let mut _release = None;
    let mut id_map = None;
    if mapping == Some(IdMapping::Helpers) {
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| io_err("create pipe", Path::new("(id map pipe)"))(e.into()))?;
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        let name = host_user_name(uid);
        plan.ops.insert(
            0,
            Op::WaitForIdMap {
                read_fd: read.as_raw_fd(),
                write_fd: write.as_raw_fd(),
            },
        );
        id_map = Some(IdMapCalls {
            uid: HelperCall::new(NEWUIDMAP, &ranges(uid, uid, name.as_deref(), "/etc/subuid")),
            gid: HelperCall::new(NEWGIDMAP, &ranges(gid, uid, name.as_deref(), "/etc/subgid")),
            release_fd: write.as_raw_fd(),
        });
        _release = Some((read, write));
    }
    launch(
        Launch {
            argv,
            env: step_env(spec, creds),
            plan,
            clone_flags,
            nested_init: false,
            limits: &spec.limits,
            cancel: &spec.cancel,
            id_map,
            inherit_stdin: spec.inherit_stdin,
            merge_output: spec.merge_output,
            console,
        },
        sink,
    )
}

/// Refuses, before anything is mounted, a step user or group (or a secret file owner)
/// that the user namespace rbuild runs in does not map: the kernel's EINVAL would say
/// nothing of the cause.
fn check_mapped(creds: &Credentials, spec: &RunSpec) -> Result<(), ExecError> {
    let owners = spec.files.iter().map(|f| (f.uid, f.gid));
    let unmapped = std::iter::once((creds.uid, creds.gid))
        .chain(owners)
        .find(|&(uid, gid)| !uid_mapped(uid) || !gid_mapped(gid));
    match unmapped {
        Some((uid, gid)) => Err(ExecError::Unmapped { uid, gid }),
        None => Ok(()),
    }
}

/// The step's environment: the spec's, with `PATH` and `HOME` defaulted. No `HOSTNAME`:
/// BuildKit's steps have none (the host name is in /etc/hostname and uname).
pub(crate) fn step_env(spec: &RunSpec, creds: &Credentials) -> Vec<(String, String)> {
    let has = |name: &str| spec.env.iter().any(|(k, _)| k == name);
    let mut env = Vec::new();
    if !has("PATH") {
        env.push(("PATH".to_owned(), DEFAULT_PATH.to_owned()));
    }
    if let (false, Some(home)) = (has("HOME"), &creds.home) {
        env.push(("HOME".to_owned(), home.clone()));
    }
    env.extend(spec.env.iter().cloned());
    env
}
