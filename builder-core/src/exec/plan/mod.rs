//! The list of kernel operations that turn a forked child into a step's sandbox.
//!
//! The parent builds the whole [`Plan`] (every path already a `CString`); the child only
//! walks it. Between `fork` and `exec` of a multithreaded program only async-signal-safe
//! work is allowed: [`Plan::apply`] makes system calls on prepared data and never
//! allocates, locks or unwinds.

mod apply;

use std::ffi::CString;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::ExecError;

/// One step of sandbox set-up, run in the child.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// Stop mount events propagating back to the host (`mount --make-rprivate /`).
    MakeRootPrivate,
    /// Mount an overlay at `target` with the new mount API, one `lowerdir+` per layer.
    Overlay {
        /// Lower directories, topmost first (the order `lowerdir+` stacks them).
        lowers: Vec<CString>,
        upper: CString,
        work: CString,
        target: CString,
        userxattr: bool,
    },
    /// Bind-mount `source` on `target`, optionally recursive and read-only (which is
    /// also nosuid and nodev, but executable, as BuildKit's `rbind,ro`), or writable but nodev (device nodes in it do
    /// not open). The attributes apply to every mount beneath a recursive bind.
    Bind {
        source: CString,
        target: CString,
        recursive: bool,
        readonly: bool,
        nodev: bool,
    },
    /// A classic `mount(2)`.
    Mount {
        source: CString,
        target: CString,
        fstype: CString,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    /// `mkdir`, an existing directory being fine.
    Mkdir { path: CString, mode: u32 },
    /// Create an empty file (a mount point) if missing.
    Touch { path: CString },
    /// Create the file `path` (which must not exist) holding `data`, owned by
    /// `uid`:`gid` with `mode`: a secret's file on a tmpfs of the step's namespace.
    WriteFile {
        path: CString,
        data: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// `symlink(target, link)`.
    Symlink { target: CString, link: CString },
    /// Set the UTS namespace's host name.
    Hostname(CString),
    /// Make `new_root` the root and detach the old one.
    PivotRoot { new_root: CString },
    /// Make `new_root` the process's root directory (`chroot`, no namespace: the chroot
    /// isolation) and enter it.
    Chroot { new_root: CString },
    /// Bring the loopback interface of a fresh network namespace up.
    LoopbackUp,
    /// Create the working directory and its parents, following symlinks inside the
    /// root even when they dangle, then enter it ([`super::workdir::enter`]).
    WorkDir { path: CString },
    /// Drop to the step's user and groups (`groups` is `None` where setgroups is denied).
    Credentials {
        uid: libc::uid_t,
        gid: libc::gid_t,
        groups: Option<Vec<libc::gid_t>>,
    },
    /// Make `path` (a part of /proc) read-only: bound on itself, remounted read-only. A
    /// path the kernel does not have is skipped.
    ReadOnlyPath { path: CString },
    /// Hide `path`: `/dev/null` bound over a file, an empty read-only tmpfs over a
    /// directory. A path the kernel does not have is skipped.
    MaskPath { path: CString, null: CString },
    /// Drop every capability whose bit is set from the bounding set.
    DropBounding { capabilities: u64 },
    /// Shut the step off from abstract unix sockets made outside it (Landlock scoping;
    /// needs `CAP_SYS_ADMIN` here, as no `no_new_privs` is set).
    ScopeAbstractUnixSockets,
    /// Install seccomp filters, in order. No `no_new_privs`: the init still holds
    /// `CAP_SYS_ADMIN` here, and set-uid programs must keep working in the step, as
    /// under docker (runc installs its filter at the same point when
    /// `noNewPrivileges` is false).
    Seccomp {
        programs: Vec<Vec<seccompiler::sock_filter>>,
    },
    /// Set the permitted and effective sets to `permitted` and the inheritable set to
    /// `inheritable` (after the switch to the step's user).
    Capabilities { permitted: u64, inheritable: u64 },
    /// Wait until the monitor has run newuidmap/newgidmap on this process.
    WaitForIdMap { read_fd: i32, write_fd: i32 },
    /// Make a terminal in the root's `/dev/pts`, make it standard input, output, error
    /// and controlling terminal, and send its master on `socket_fd`
    /// ([`super::terminal::open_in_init`]).
    Terminal {
        socket_fd: i32,
        size: super::terminal::WindowSize,
        uid: u32,
        gid: u32,
    },
    /// Set `no_new_privs`, install `program` with a listener and send the listener on
    /// `socket_fd` ([`super::chown_calls::install_in_init`]): the proot isolation's trap
    /// of the step's `chown` calls.
    ChownCalls {
        socket_fd: i32,
        program: Vec<libc::sock_filter>,
    },
    /// In a new user namespace, map root inside to the caller outside (single mapping:
    /// `setgroups` denied first, as the kernel requires of unprivileged writers).
    MapSelf {
        /// The line for `uid_map`, e.g. `0 1000 1`.
        uid_map: Vec<u8>,
        /// The line for `gid_map`.
        gid_map: Vec<u8>,
    },
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::MakeRootPrivate => write!(f, "make / private"),
            Op::Overlay { target, lowers, .. } => {
                write!(f, "mount overlay of {} layers on {target:?}", lowers.len())
            }
            Op::Bind { source, target, .. } => write!(f, "bind {source:?} on {target:?}"),
            Op::Mount { fstype, target, .. } => write!(f, "mount {fstype:?} on {target:?}"),
            Op::Mkdir { path, .. } => write!(f, "create directory {path:?}"),
            Op::Touch { path } => write!(f, "create mount point {path:?}"),
            // Never the data: it is a secret.
            Op::WriteFile { path, .. } => write!(f, "write file {path:?}"),
            Op::Symlink { link, .. } => write!(f, "create symlink {link:?}"),
            Op::Hostname(name) => write!(f, "set host name {name:?}"),
            Op::PivotRoot { new_root } => write!(f, "pivot root into {new_root:?}"),
            Op::Chroot { new_root } => write!(f, "chroot into {new_root:?}"),
            Op::LoopbackUp => write!(f, "bring loopback up"),
            Op::WorkDir { path } => {
                write!(f, "enter working directory {path:?} inside the step's root")
            }
            Op::Credentials { uid, gid, .. } => write!(f, "switch to user {uid}:{gid}"),
            Op::ReadOnlyPath { path } => write!(f, "make {path:?} read-only"),
            Op::MaskPath { path, .. } => write!(f, "mask {path:?}"),
            Op::DropBounding { .. } => write!(f, "drop capabilities from the bounding set"),
            Op::ScopeAbstractUnixSockets => {
                write!(f, "shut off the host's abstract unix sockets (landlock)")
            }
            Op::Seccomp { .. } => write!(f, "install the seccomp filter"),
            Op::Capabilities { .. } => write!(f, "set the step's capabilities"),
            Op::WaitForIdMap { .. } => write!(f, "wait for the id mapping (newuidmap/newgidmap)"),
            Op::MapSelf { .. } => write!(f, "map the caller to root in the user namespace"),
            Op::Terminal { .. } => write!(f, "open a terminal in /dev/pts"),
            Op::ChownCalls { .. } => write!(f, "trap the step's chown calls (seccomp listener)"),
        }
    }
}

/// The operations, in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Plan {
    pub ops: Vec<Op>,
}

/// Which operation failed and with what errno.
pub(crate) type Failure = (usize, i32);

impl Plan {
    /// Adds the terminal's set-up ([`Op::Terminal`]) right after the working directory is
    /// entered: inside the pivoted root (its `/dev/pts`), before the step's user and
    /// confinement apply (opening `/dev/ptmx` and `TIOCSCTTY` are root's work).
    pub fn add_terminal(
        &mut self,
        socket_fd: i32,
        size: super::terminal::WindowSize,
        owner: &super::Credentials,
    ) {
        let at = self
            .ops
            .iter()
            .position(|op| matches!(op, Op::WorkDir { .. }))
            .map_or(self.ops.len(), |i| i + 1);
        self.ops.insert(
            at,
            Op::Terminal {
                socket_fd,
                size,
                uid: owner.uid,
                gid: owner.gid,
            },
        );
    }
}

/// `path` as an operation holds it.
pub(crate) fn cstr(path: &Path) -> Result<CString, ExecError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|e| ExecError::Io {
        action: "use path",
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
    })
}
