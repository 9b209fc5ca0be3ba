//! Running a build step's command in an isolated root.
//!
//! An [`Executor`] runs one [`RunSpec`] on a prepared [`Snapshot`] and
//! returns how the command ended; its output goes to an [`OutputSink`] as it comes.
//! [`SandboxExecutor`] (the default) needs no outside program: new mount, PID, UTS, IPC
//! (and, for `--network=none`, network) namespaces, `pivot_root`, fresh `/proc`, `/dev`,
//! read-only `/sys`, docker's read-only and masked `/proc` paths, docker's default
//! capability set and a seccomp filter with docker's default profile semantics
//! ([`Security::Sandbox`]; `RUN --security=insecure` is [`Security::Insecure`]). Every
//! mount it makes lives only in the step's mount namespace and
//! every process in its PID namespace, so a step that ends, is cancelled, or whose parent
//! dies leaves nothing behind on the host.
//!
//! [`RuncExecutor`] writes an OCI runtime bundle (oci-spec's `config.json`) with the same
//! mounts and settings and runs `runc` on it; the same tests pass with both.
//!
//! # Rootless
//! As root of a user namespace (the `rbuild` binary enters one for an unprivileged
//! caller, see [`rootless`](crate::rootless)) the sandbox works as for root, with what the
//! kernel keeps for root of the host left out (decided by [`Privilege`](crate::privilege::Privilege)):
//! the host's `/sys` is bound read-only instead of a fresh sysfs on the host network, the
//! overlay uses `userxattr`, supplementary groups are skipped where `setgroups` is denied,
//! and a step user the namespace does not map is refused before the step starts.
//!
//! A process that stays unprivileged (an embedder that does not enter a namespace) gets a
//! user namespace for each step, in which the caller is root,
//! and the overlay is mounted with `userxattr` (`user.overlay.*` markers, read by the
//! diff). The mapping ([`IdMapping`]) comes from newuidmap/newgidmap, run by the monitor
//! with the caller's /etc/subuid and /etc/subgid ranges (ids 1 and up inside) when both
//! helpers are installed, else from the init itself (`0 <uid> 1`, `setgroups` denied).
//! What works: the overlay snapshotter, isolation (PID 1, hostname, /proc, /dev,
//! `--network=none`), and the change matrix except the cases below (tested as `nobody`
//! with both mappings). What does not: ids other than root inside without subordinate
//! ranges (`USER`, `chown`); supplementary groups when `setgroups` is denied; file
//! capabilities; a fresh sysfs with host networking (the host's /sys is bound read-only
//! instead); cgroup limits (no delegated cgroup); the copy snapshotter for lowers owned
//! by others; the engine's own file work (COPY, WORKDIR) on overlay roots; and the runc
//! back end (its own rootless mode is not wired up).
//!
//! Mount points the image lacks (`/proc`, `/dev`, `/sys`, `/etc/hosts`, ...) are created
//! for the step only and removed afterwards, with their parents' times restored, so they
//! never reach a change set.

mod binfmt;
mod caps;
mod cgroup;
mod chown_calls;
mod chroot;
mod chroot_mounts;
mod confine;
mod errno;
mod group_calls;
pub(crate) mod idmap;
mod landlock;
mod monitor;
mod plan;
mod proot_ids;
mod runc;
mod sandbox;
mod seccomp;
mod socket_relay;
mod stat_calls;
mod stubs;
mod terminal;
mod user;
mod workdir;

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use self::binfmt::{BINFMT_MISC_DIR, check_emulation, runs_emulated};
pub use self::chroot::{
    ChrootExecutor, check_proot, chroot_available, find_proot, sandbox_available,
};
pub use self::idmap::IdMapping;
pub(crate) use self::socket_relay::SocketRelay;
// The engine mounts step roots for its own file work (COPY, WORKDIR) the same way.
pub(crate) use self::plan::{Op, Plan};
pub use self::runc::{DEFAULT_RUNC, RuncExecutor};
pub use self::sandbox::SandboxExecutor;
pub(crate) use self::sandbox::root_mount;
pub use self::terminal::{Terminal, WindowSize};
pub(crate) use self::user::{Credentials, resolve_owner};

use crate::snapshot::{Snapshot, SnapshotError, StepRoot};

/// The shell that runs the shell form of `RUN` when no `SHELL` was given.
pub const DEFAULT_SHELL: [&str; 2] = ["/bin/sh", "-c"];

/// The `PATH` a step gets when its environment has none (Docker's default), the one the
/// Dockerfile's lowering gives a stage.
pub use rbuild_dockerfile::DEFAULT_PATH;

/// Errors of the exec module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// A step of a foreign platform, and no `binfmt_misc` handler to run it.
    #[error(
        "cannot run steps for {platform} on this {host} machine: no binfmt_misc handler \
         runs its binaries; install qemu-user-static and register its handlers as root \
         (rbuild's scripts/binfmt-register)"
    )]
    NoEmulator {
        /// The step's platform.
        platform: String,
        /// The machine's.
        host: String,
    },
    /// Preparing or cleaning up the step's files failed.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// A host-side operation failed.
    #[error("failed to {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Setting up the sandbox inside the child failed.
    #[error("failed to set up the step sandbox: {stage}")]
    Setup {
        /// The set-up operation that failed.
        stage: String,
        /// The kernel's answer.
        source: io::Error,
    },
    /// The command could not be started.
    #[error("failed to start {program:?} in the step sandbox")]
    Spawn {
        /// The program.
        program: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The `USER` value could not be resolved in the image.
    #[error("failed to resolve user {spec:?}: {reason}")]
    User {
        /// The `user[:group]` value.
        spec: String,
        /// Why.
        reason: &'static str,
    },
    /// The OCI runtime bundle could not be built or written.
    #[error("failed to write the runtime bundle for {path}")]
    Bundle {
        /// The bundle's root or config path.
        path: PathBuf,
        /// The underlying error.
        source: oci_spec::OciSpecError,
    },
    /// The command to run is empty.
    #[error("failed to run step: empty command")]
    EmptyCommand,
    /// The step's network cannot be confined as asked on this kernel.
    #[error("failed to confine the step's network: {reason}")]
    NetworkConfinement {
        /// Why, and what to do instead.
        reason: String,
    },
    /// The step's seccomp filter could not be made.
    #[error("failed to set up the step's seccomp filter: {reason}")]
    Seccomp {
        /// Why.
        reason: String,
    },
    /// A step's user or group, or a `--chown` owner, is not mapped in the user namespace
    /// rbuild runs in.
    #[error(
        "user {uid}:{gid} does not exist in the user namespace rbuild runs in (without \
         subordinate ids in /etc/subuid and /etc/subgid and newuidmap/newgidmap, only root \
         exists in it): give the calling user subordinate ids, or run rbuild as root"
    )]
    Unmapped {
        /// The step's uid.
        uid: u32,
        /// The step's gid.
        gid: u32,
    },
    /// A bind mount could not be placed in the step's root.
    #[error("failed to bind {source_path} on {target}: {reason}")]
    Bind {
        /// The host path.
        source_path: PathBuf,
        /// The path in the step's root.
        target: String,
        /// Why.
        reason: &'static str,
    },
}

/// A host directory or file bound into the step's root (`rbuild run -v`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// The host path (absolute).
    pub source: PathBuf,
    /// Where it appears in the step's root (absolute, without `..`); a missing mount
    /// point is created for the step only.
    pub target: String,
    /// Mount it read-only.
    pub readonly: bool,
    /// The source is rbuild's own, held for this step alone (a cache mount under its
    /// lock, a private cache, a writable bind's copy): the chroot isolation, which
    /// cannot mount, may move it into the step's root and back instead of copying it.
    pub movable: bool,
    /// The owner the step is shown for the mount's top directory where no owner but the
    /// build user's can be given on disk (a cache mount's `uid`/`gid` under the proot
    /// isolation, see [`crate::fakeroot`]); `None`: the one on disk.
    pub owner: Option<(u32, u32)>,
    /// For a socket source (an ssh mount's proxy, with the mount's owner and mode): the
    /// socket it relays to (the agent's). The isolations that cannot bind listen at the
    /// target themselves with the source's owner and mode and relay straight to this one,
    /// which the source's owner and mode may not let rbuild itself open.
    pub relay_to: Option<PathBuf>,
}

/// An empty tmpfs mounted in the step's root for the step only
/// (`RUN --mount=type=tmpfs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmpfsMount {
    /// Where it appears in the step's root (absolute, without `..`); a missing mount
    /// point is created for the step only.
    pub target: String,
    /// Its size limit in bytes; the kernel's default (half the memory) when `None`.
    pub size: Option<u64>,
}

/// A file of given contents in the step's root for the step only (`RUN
/// --mount=type=secret`): the sandbox writes it on a tmpfs of the step's own mount
/// namespace and binds it read-only on the target, so it is never on disk and goes
/// with the namespace, even when rbuild is killed.
#[derive(Clone, PartialEq, Eq)]
pub struct FileMount {
    /// The contents.
    pub data: Vec<u8>,
    /// Where it appears in the step's root (absolute, without `..`); a missing mount
    /// point is created for the step only.
    pub target: String,
    /// Its mode.
    pub mode: u32,
    /// Its owner, as seen in the step.
    pub uid: u32,
    /// Its group, as seen in the step.
    pub gid: u32,
}

impl std::fmt::Debug for FileMount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the contents: they are a secret.
        f.debug_struct("FileMount")
            .field("target", &self.target)
            .field("mode", &self.mode)
            .field("uid", &self.uid)
            .field("gid", &self.gid)
            .finish_non_exhaustive()
    }
}

/// Another root filesystem (a stage's or an image's, as a snapshot root) bound into the
/// step's root (`RUN --mount=type=bind,from=...`); its writes go to its own writable
/// directory, thrown away with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeMount {
    /// The tree, assembled as a step root is.
    pub root: StepRoot,
    /// The path inside the tree to bind (relative, checked not to cross a symbolic link);
    /// empty for the whole tree.
    pub source: PathBuf,
    /// Where the source appears in the step's root (absolute, without `..`).
    pub target: String,
    /// Mount it read-only.
    pub readonly: bool,
}

/// The form of a `RUN` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Exec form: the program and its arguments as given.
    Exec(Vec<String>),
    /// Shell form: run through the step's shell.
    Shell(String),
}

/// How the step reaches the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The default: the host's network namespace (the step reaches what the host
    /// reaches, through the host's resolver), confined: no `CAP_NET_RAW` (no `AF_PACKET`
    /// or raw sockets, so no capture of the host's traffic) and, with the sandbox
    /// executor, no connection to the host's abstract unix sockets (Landlock scoping,
    /// Linux 6.12 or later; without it such a step is refused).
    #[default]
    Default,
    /// The host's network namespace unconfined, `CAP_NET_RAW` included (`--network=host`,
    /// which a build must allow as the `network.host` entitlement).
    Host,
    /// A new network namespace with only loopback up.
    None,
}

impl Network {
    /// Whether the step shares the host's network namespace.
    pub fn shares_host(self) -> bool {
        self != Network::None
    }
}

/// How confined a step is (`RUN --security`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Security {
    /// docker's default capabilities and seccomp profile.
    #[default]
    Sandbox,
    /// Every capability and no seccomp filter (BuildKit's insecure mode; the build must
    /// allow it).
    Insecure,
}

/// Resource limits applied through cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// Maximum number of processes.
    pub pids: Option<u64>,
}

/// Cancels a running step (or build) from another thread: the step's whole process tree
/// is killed. Clones share one state.
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    own: Arc<AtomicBool>,
    /// A token whose cancellation this one follows (see [`child`](Self::child)).
    parent: Option<Arc<AtomicBool>>,
}

impl CancelToken {
    /// A token not yet cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new token that is cancelled when this one is, and can also be cancelled on its
    /// own without cancelling this one (a build's internal token under the embedder's).
    pub fn child(&self) -> Self {
        Self {
            own: Arc::default(),
            parent: Some(self.own.clone()),
        }
    }

    /// Asks the step to end now.
    pub fn cancel(&self) {
        self.own.store(true, Ordering::SeqCst);
    }

    /// Whether [`cancel`](Self::cancel) was called, on this token or its parent.
    pub fn is_cancelled(&self) -> bool {
        self.own.load(Ordering::SeqCst)
            || self
                .parent
                .as_ref()
                .is_some_and(|p| p.load(Ordering::SeqCst))
    }
}

/// Everything a `RUN` step needs besides its root.
#[derive(Debug, Clone)]
pub struct RunSpec {
    /// What to run.
    pub command: Command,
    /// The shell for [`Command::Shell`]; empty means [`DEFAULT_SHELL`].
    pub shell: Vec<String>,
    /// Environment variables, in order (later ones win).
    pub env: Vec<(String, String)>,
    /// Absolute working directory in the step's root, created when missing.
    pub workdir: String,
    /// `user[:group]`, by name or number; `None` is root.
    pub user: Option<String>,
    /// Network mode.
    pub network: Network,
    /// Capabilities and seccomp filter.
    pub security: Security,
    /// The build's host name, seen by the step and written to /etc/hostname.
    pub hostname: String,
    /// Optional cgroup limits.
    pub limits: Limits,
    /// Cancels the step when set.
    pub cancel: CancelToken,
    /// Give the command the caller's standard input instead of `/dev/null` (`rbuild run`).
    pub inherit_stdin: bool,
    /// Give the command a terminal of its own (`rbuild run -t`): standard input, output
    /// and error are a pseudo-terminal made in the root's `/dev/pts`, the output comes as
    /// [`Stream::Stdout`] and, with `inherit_stdin`, the caller's input goes to it. Only
    /// the sandbox executor supports it.
    pub terminal: Option<Terminal>,
    /// Give standard output and standard error one pipe, so the output keeps the order
    /// the process wrote it in (a build step's log); all of it then comes as
    /// [`Stream::Stdout`]. With two pipes (the default) the streams stay apart but a
    /// line written to one may arrive before an earlier line written to the other.
    pub merge_output: bool,
    /// Host paths bound into the root (`rbuild run -v`); only the sandbox executor
    /// supports them.
    pub mounts: Vec<BindMount>,
    /// Empty tmpfs mounts for the step only; only the sandbox executor supports them.
    pub tmpfs: Vec<TmpfsMount>,
    /// Files held in memory (secrets); only the sandbox executor supports them.
    pub files: Vec<FileMount>,
    /// Other trees bound into the root; only the sandbox executor supports them.
    pub trees: Vec<TreeMount>,
}

impl RunSpec {
    /// A spec running `command` as root in `/` on the default network.
    pub fn new(command: Command) -> Self {
        RunSpec {
            command,
            shell: Vec::new(),
            env: Vec::new(),
            workdir: "/".to_owned(),
            user: None,
            network: Network::Default,
            security: Security::Sandbox,
            hostname: "rbuild".to_owned(),
            limits: Limits::default(),
            cancel: CancelToken::new(),
            inherit_stdin: false,
            terminal: None,
            merge_output: false,
            mounts: Vec::new(),
            tmpfs: Vec::new(),
            files: Vec::new(),
            trees: Vec::new(),
        }
    }

    /// The program and arguments to execute.
    pub fn argv(&self) -> Result<Vec<String>, ExecError> {
        let argv = match &self.command {
            Command::Exec(args) => args.clone(),
            Command::Shell(line) => {
                let mut argv: Vec<String> = if self.shell.is_empty() {
                    DEFAULT_SHELL.iter().map(|s| (*s).to_owned()).collect()
                } else {
                    self.shell.clone()
                };
                argv.push(line.clone());
                argv
            }
        };
        if argv.is_empty() {
            return Err(ExecError::EmptyCommand);
        }
        Ok(argv)
    }
}

// Which output stream a chunk came from: the type progress events carry (one path to
// it, `progress::Stream`).
use crate::progress::Stream;

/// Receives a step's output as it is produced.
pub trait OutputSink {
    /// One chunk of output.
    fn output(&mut self, stream: Stream, bytes: &[u8]);
}

impl<F: FnMut(Stream, &[u8])> OutputSink for F {
    fn output(&mut self, stream: Stream, bytes: &[u8]) {
        self(stream, bytes)
    }
}

/// How a step's command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// It was killed by this signal.
    Signal(i32),
}

impl ExitStatus {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }
}

/// Runs build steps.
pub trait Executor {
    /// Runs `spec` on `snapshot`'s root, streaming output to `sink`.
    fn run(
        &self,
        snapshot: &Snapshot,
        spec: &RunSpec,
        sink: &mut dyn OutputSink,
    ) -> Result<ExitStatus, ExecError>;

    /// Whether [`Executor::run`] creates the step's working directory where the root
    /// lacks it (as BuildKit's executor does); when not, the caller makes it first.
    fn makes_workdir(&self) -> bool {
        true
    }
}
