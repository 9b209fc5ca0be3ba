//! User-namespace id mappings for rootless steps, through newuidmap/newgidmap.
//!
//! The caller's own id maps to root inside; its /etc/subuid and /etc/subgid ranges, when
//! present, map to ids 1 and up (so `USER` and `chown` inside have ids to use). The
//! setuid helpers must be run from outside the new namespace once it exists: the monitor
//! does it between `clone` and letting the init go on, with argument vectors prepared
//! here, so that only `fork`, `execve` and `waitpid` happen after the fork.

use std::ffi::c_char;
use std::fs;
use std::path::Path;

/// The setuid helpers of the shadow suite (Debian package uidmap).
pub const NEWUIDMAP: &str = "/usr/bin/newuidmap";
/// See [`NEWUIDMAP`].
pub const NEWGIDMAP: &str = "/usr/bin/newgidmap";

/// How a rootless step's user namespace gets its id mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdMapping {
    /// newuidmap/newgidmap with the caller's /etc/subuid and /etc/subgid ranges.
    Helpers,
    /// Only the caller's own ids, written by the step's init itself; no helper needed,
    /// but `setgroups` is denied and only root exists inside.
    SelfOnly,
}

impl IdMapping {
    /// [`Helpers`](Self::Helpers) when both helpers are installed, else
    /// [`SelfOnly`](Self::SelfOnly).
    pub fn detect() -> Self {
        if Path::new(NEWUIDMAP).is_file() && Path::new(NEWGIDMAP).is_file() {
            IdMapping::Helpers
        } else {
            IdMapping::SelfOnly
        }
    }
}

/// `(inside, outside, count)` ranges: `id` to 0, then the subordinate range from 1.
pub(crate) fn ranges(id: u32, name: Option<&str>, subid_file: &str) -> Vec<(u32, u32, u32)> {
    let mut out = vec![(0, id, 1)];
    let text = fs::read_to_string(subid_file).unwrap_or_default();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() != 3 {
            continue;
        }
        let owner_matches = fields[0] == id.to_string() || Some(fields[0]) == name;
        if let (true, Ok(start), Ok(count)) = (
            owner_matches,
            fields[1].parse::<u32>(),
            fields[2].parse::<u32>(),
        ) {
            out.push((1, start, count));
            break;
        }
    }
    out
}

/// The caller's login name from the host's /etc/passwd (for /etc/subuid lookups).
pub(crate) fn host_user_name(uid: u32) -> Option<String> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 2 && fields[2] == uid.to_string()).then(|| fields[0].to_owned())
    })
}

/// One prepared run of a helper: `tool <pid> <ranges...>`, the pid filled in after fork.
pub(crate) struct HelperCall {
    path: Vec<u8>,
    args: Vec<Vec<u8>>,
    argv: Vec<*const c_char>,
}

// SAFETY: the raw pointers point into `path`/`args`, heap buffers owned by the same value
// and never reallocated after construction; they are only read.
unsafe impl Send for HelperCall {}
// SAFETY: as above.
unsafe impl Sync for HelperCall {}

/// Room for the decimal pid and its NUL.
const PID_SLOT: usize = 12;

impl HelperCall {
    pub fn new(tool: &str, ranges: &[(u32, u32, u32)]) -> Self {
        let mut path = tool.as_bytes().to_vec();
        path.push(0);
        let mut args: Vec<Vec<u8>> = vec![path.clone(), vec![0u8; PID_SLOT]];
        for (inside, outside, count) in ranges {
            for n in [inside, outside, count] {
                let mut arg = n.to_string().into_bytes();
                arg.push(0);
                args.push(arg);
            }
        }
        let mut argv: Vec<*const c_char> = args.iter().map(|a| a.as_ptr().cast()).collect();
        argv.push(std::ptr::null());
        HelperCall { path, args, argv }
    }

    /// Runs the helper on `pid` and says whether it succeeded. Async-signal-safe.
    ///
    /// # Safety
    /// Called in a forked child of a multithreaded program, before exec.
    pub unsafe fn run(&mut self, pid: libc::pid_t) -> bool {
        let slot = &mut self.args[1];
        let mut digits = [0u8; PID_SLOT];
        let mut n = pid as u64;
        let mut len = 0;
        loop {
            digits[len] = b'0' + (n % 10) as u8;
            n /= 10;
            len += 1;
            if n == 0 || len == PID_SLOT - 1 {
                break;
            }
        }
        for i in 0..len {
            slot[i] = digits[len - 1 - i];
        }
        slot[len] = 0;
        let envp: [*const c_char; 1] = [std::ptr::null()];
        // SAFETY: raw clone/execve/waitpid on prepared buffers; see the type's comment.
        unsafe {
            let child = libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0);
            if child == 0 {
                libc::execve(self.path.as_ptr().cast(), self.argv.as_ptr(), envp.as_ptr());
                libc::_exit(127);
            }
            if child < 0 {
                return false;
            }
            let mut status = 0;
            loop {
                let r = libc::waitpid(child as libc::pid_t, &mut status, 0);
                if r == child as libc::pid_t {
                    break;
                }
                if r < 0 && *libc::__errno_location() != libc::EINTR {
                    return false;
                }
            }
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
        }
    }
}

/// Both helpers and the pipe that releases the init once they have run.
pub(crate) struct IdMapCalls {
    pub uid: HelperCall,
    pub gid: HelperCall,
    /// Write end of the release pipe (the init holds the read end).
    pub release_fd: i32,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_follow_the_own_id() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("subuid");
        fs::write(&file, "other:100000:65536\nbuilder:200000:65536\n").unwrap();
        let got = ranges(1000, Some("builder"), file.to_str().unwrap());
        assert_eq!(got, vec![(0, 1000, 1), (1, 200000, 65536)]);
        let got = ranges(1001, Some("nobody-here"), file.to_str().unwrap());
        assert_eq!(got, vec![(0, 1001, 1)]);
    }

    #[test]
    fn helper_arguments_are_nul_terminated_with_a_pid_slot() {
        let call = HelperCall::new(NEWUIDMAP, &[(0, 1000, 1)]);
        assert_eq!(call.args.len(), 5);
        assert_eq!(call.args[2], b"0\0");
        assert_eq!(call.args[3], b"1000\0");
        assert!(call.argv.last().unwrap().is_null());
    }
}
