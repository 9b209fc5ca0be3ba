//! errno as the code between `fork` and `exec` reads it: async-signal-safe helpers for
//! the init's system calls (the plan's operations, the working directory walk, the
//! terminal).

/// `Ok` for a zero return, else the errno (async-signal-safe).
pub(super) fn check(ret: libc::c_int) -> Result<(), i32> {
    if ret == 0 { Ok(()) } else { Err(errno()) }
}

/// The calling thread's errno (async-signal-safe).
pub(super) fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}
