//! Running rbuild as an unprivileged user: the process enters a user namespace of its
//! own in which the caller is root.
//!
//! An unprivileged process may not mount, and the engine mounts step roots for its own
//! file work (`COPY`, `ADD`, `WORKDIR`) as well as for `RUN`. A program embedding
//! rbuild-core calls [`enter_user_namespace`] first thing in `main`, before it starts any
//! thread, as the `rbuild` binary does; from then on the process is root of a user
//! namespace (and has a mount namespace of its own) and every command works as it does
//! for root, within the ids the namespace maps:
//!
//! - the caller's uid and gid become 0;
//! - its ranges in `/etc/subuid` and `/etc/subgid` become ids 1 and up, through the
//!   setuid helpers `newuidmap` and `newgidmap` (Debian's `uidmap` package), the mapping
//!   `unshare --map-root-user --map-auto` and `buildah unshare` make;
//! - without subordinate ids (or without the helpers) only 0 exists inside, `setgroups`
//!   is denied, and files of base images owned by other ids are unpacked as owned by 0
//!   (what podman's `ignore_chown_errors` storage option does); a `USER` or `chown` to
//!   another id fails with a message saying so.
//!
//! Files the process writes to the store are owned, on the host, by the caller and its
//! subordinate ids: remove a store from outside rbuild with
//! `rbuild --root STORE system prune -a --cache-mounts` (after which what is left is the
//! caller's own) or inside `unshare --map-root-user --map-auto`.
//!
//! Unlike buildah (whose Go runtime has threads before `main`, so it re-executes itself
//! in a child made with `CLONE_NEWUSER` and forwards signals to it), a Rust program can
//! `unshare(CLONE_NEWUSER)` itself while it still has one thread: there is no second
//! process, so signals, the terminal, the exit code and `kill -9` behave as for any
//! program, and nothing outlives it.
//!
//! Setting [`SKIP_ENV`] keeps the process as it is: steps that run commands then get a
//! user namespace each (see [`SandboxExecutor`](crate::exec::SandboxExecutor)), but the engine's
//! own file work on overlay roots needs root.
//!
//! ```no_run
//! // First thing in main, before anything starts a thread:
//! if let Err(e) = rbuild_core::rootless::enter_user_namespace() {
//!     eprintln!("error: {e}");
//!     std::process::exit(1);
//! }
//! // ... then open the store, build ...
//! ```

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use rustix::thread::UnshareFlags;

use crate::exec::idmap::{HelperCall, IdMapping, NEWGIDMAP, NEWUIDMAP, host_user_name, ranges};
pub use crate::privilege::{ENTERED_ENV, entered};

/// Environment variable that, set to anything but `0` or the empty string, keeps
/// [`enter_user_namespace`] from entering a user namespace.
pub const SKIP_ENV: &str = "RBUILD_SKIP_USERNS";

/// What [`enter_user_namespace`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum UserNamespace {
    /// The process is already root (of the host or of a user namespace): nothing done.
    AlreadyRoot,
    /// [`SKIP_ENV`] is set: nothing done.
    Skipped,
    /// The process is now root of a new user namespace.
    Entered {
        /// Whether the caller's subordinate ids are mapped (ids 1 and up exist inside).
        subordinate_ids: bool,
    },
}

/// Why the process could not enter a user namespace.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RootlessError {
    /// The process already has more than one thread: the kernel refuses
    /// `unshare(CLONE_NEWUSER)` then.
    #[error(
        "cannot enter a user namespace: the process already runs several threads (call \
         enter_user_namespace first thing in main)"
    )]
    Threads,
    /// The kernel refused a new user namespace.
    #[error(
        "cannot create a user namespace as uid {uid}: denied by a container's seccomp \
         profile, or unprivileged user namespaces are disabled on this host (sysctl \
         kernel.unprivileged_userns_clone, user.max_user_namespaces)"
    )]
    Unshare {
        /// The caller.
        uid: u32,
        /// The kernel's answer.
        source: io::Error,
    },
    /// The helper process that maps the subordinate ids could not be made.
    #[error("cannot start the id-mapping helper")]
    Fork {
        /// The kernel's answer.
        source: io::Error,
    },
    /// newuidmap or newgidmap failed (its own message is on standard error).
    #[error(
        "{NEWUIDMAP} or {NEWGIDMAP} failed to map the subordinate ids of uid {uid} (check \
         its lines in /etc/subuid and /etc/subgid); set {SKIP_ENV}=1 to run without"
    )]
    Helper {
        /// The caller.
        uid: u32,
    },
    /// Writing the process's own id map failed.
    #[error("cannot write {path}")]
    WriteMap {
        /// The `/proc/self` file.
        path: PathBuf,
        /// The kernel's answer.
        source: io::Error,
    },
}

/// Whether [`SKIP_ENV`] asks to stay out of a user namespace.
fn skipped() -> bool {
    std::env::var_os(SKIP_ENV).is_some_and(|v| !v.is_empty() && v != "0")
}

/// Makes an unprivileged process root of a new user namespace (and of a new mount
/// namespace), with the caller's id as 0 and its subordinate ids as 1 and up, as
/// described in the [module documentation](self); does nothing as root or when
/// [`SKIP_ENV`] is set.
///
/// Call it before the process starts any thread (first thing in `main`): the kernel
/// refuses a user namespace to a multithreaded process ([`RootlessError::Threads`]).
pub fn enter_user_namespace() -> Result<UserNamespace, RootlessError> {
    let uid = rustix::process::geteuid().as_raw();
    if uid == 0 {
        return Ok(UserNamespace::AlreadyRoot);
    }
    if skipped() {
        return Ok(UserNamespace::Skipped);
    }
    let gid = rustix::process::getegid().as_raw();
    let name = host_user_name(uid);
    let uid_ranges = ranges(uid, uid, name.as_deref(), "/etc/subuid");
    let gid_ranges = ranges(gid, uid, name.as_deref(), "/etc/subgid");
    let subordinate_ids =
        IdMapping::detect() == IdMapping::Helpers && (uid_ranges.len() > 1 || gid_ranges.len() > 1);
    if subordinate_ids {
        unshare_mapped_by_helpers(uid, &uid_ranges, &gid_ranges)?;
    } else {
        unshare(uid)?;
        for (file, map) in [
            ("setgroups", "deny".to_owned()),
            ("uid_map", format!("0 {uid} 1")),
            ("gid_map", format!("0 {gid} 1")),
        ] {
            let path = PathBuf::from("/proc/self").join(file);
            fs::write(&path, map).map_err(|source| RootlessError::WriteMap { path, source })?;
        }
    }
    // SAFETY: the process has one thread (the kernel refuses CLONE_NEWUSER otherwise),
    // so nothing reads the environment concurrently.
    unsafe { std::env::set_var(ENTERED_ENV, uid.to_string()) };
    Ok(UserNamespace::Entered { subordinate_ids })
}

fn unshare(uid: u32) -> Result<(), RootlessError> {
    // SAFETY: neither CLONE_FILES nor CLONE_FS-sharing concerns apply to a process with
    // one thread; the flags only give it new user and mount namespaces.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWUSER | UnshareFlags::NEWNS) }.map_err(
        |e| match e {
            rustix::io::Errno::INVAL => RootlessError::Threads,
            e => RootlessError::Unshare {
                uid,
                source: e.into(),
            },
        },
    )
}

/// Unshares, with a helper forked beforehand (so it stays outside the new namespace,
/// where the setuid helpers keep their privilege) running newuidmap and newgidmap on this
/// process once the namespace exists.
fn unshare_mapped_by_helpers(
    uid: u32,
    uid_ranges: &[(u32, u32, u32)],
    gid_ranges: &[(u32, u32, u32)],
) -> Result<(), RootlessError> {
    let mut uid_call = HelperCall::new(NEWUIDMAP, uid_ranges);
    let mut gid_call = HelperCall::new(NEWGIDMAP, gid_ranges);
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| RootlessError::Fork { source: e.into() })?;
    let target = rustix::process::getpid().as_raw_nonzero().get();
    // SAFETY: the child only reads a pipe and runs the prepared helpers (clone, execve,
    // waitpid on buffers made before the fork), then leaves with _exit.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(RootlessError::Fork {
            source: io::Error::last_os_error(),
        });
    }
    if child == 0 {
        // SAFETY: as above; the child never returns into the caller's code.
        unsafe {
            libc::close(write.as_raw_fd());
            let mut byte = 0u8;
            let got = libc::read(read.as_raw_fd(), (&raw mut byte).cast(), 1);
            // End of file: the parent could not unshare and maps nothing.
            let code = if got != 1 {
                2
            } else if uid_call.run(target) && gid_call.run(target) {
                0
            } else {
                1
            };
            libc::_exit(code);
        }
    }
    drop(read);
    let unshared = unshare(uid);
    if unshared.is_ok() {
        // A failed write shows as the helper's exit code below.
        let _ = rustix::io::write(&write, b"u");
    }
    drop(write);
    let mut status = 0;
    loop {
        // SAFETY: waits for the child made above.
        let r = unsafe { libc::waitpid(child, &mut status, 0) };
        if r == child || io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
    unshared?;
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        return Err(RootlessError::Helper { uid });
    }
    Ok(())
}
