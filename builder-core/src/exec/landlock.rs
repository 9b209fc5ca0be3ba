//! Landlock's scoping of abstract unix sockets (Linux 6.12, Landlock ABI 6), the part of
//! Landlock the sandbox uses: a step on the default network shares the host's network
//! namespace, and with it the host's abstract unix socket names (`@/tmp/.X11-unix/X0`,
//! D-Bus, systemd's, any tool's); scoped, it can still make and use its own but not
//! connect to one made outside the step.
//!
//! Raw system calls rather than the `landlock` crate: the restriction is applied in the
//! step's init between `fork` and `exec`, where only async-signal-safe calls may run, and
//! the crate allocates (its ruleset builder) and sets `no_new_privs`, which the step must
//! not get (set-uid programs keep working in `RUN`, as under docker). Three system calls
//! on a stack struct do the job.

/// `LANDLOCK_CREATE_RULESET_VERSION` (`linux/landlock.h`): ask for the ABI version.
const CREATE_RULESET_VERSION: u32 = 1 << 0;

/// `LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET` (`linux/landlock.h`, ABI 6).
const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;

/// The first Landlock ABI with scopes.
pub(crate) const SCOPE_ABI: i64 = 6;

/// `struct landlock_ruleset_attr` (`linux/landlock.h`, ABI 6 layout).
#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

/// The kernel's Landlock ABI version; 0 when Landlock is absent or disabled.
pub(crate) fn abi() -> i64 {
    // SAFETY: with a null attribute, size 0 and the VERSION flag the kernel only returns
    // a number; nothing is read or written.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    version.max(0)
}

/// Restricts the calling process (and every process it will start) from connecting to
/// abstract unix sockets made outside its Landlock domain. Needs `CAP_SYS_ADMIN` in the
/// caller's user namespace (no `no_new_privs` is set). Async-signal-safe; returns the
/// errno on failure.
pub(crate) fn scope_abstract_unix_sockets() -> Result<(), i32> {
    let attr = RulesetAttr {
        handled_access_fs: 0,
        handled_access_net: 0,
        scoped: SCOPE_ABSTRACT_UNIX_SOCKET,
    };
    // SAFETY: `attr` is a live struct of the size passed; the kernel copies it.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            &raw const attr,
            std::mem::size_of::<RulesetAttr>(),
            0u32,
        )
    };
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: `fd` is the ruleset descriptor just returned, closed right after.
    let restricted = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, fd, 0u32) };
    let errno = last_errno();
    // SAFETY: closes the descriptor this function opened.
    unsafe { libc::close(fd as libc::c_int) };
    if restricted < 0 { Err(errno) } else { Ok(()) }
}

fn last_errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}
