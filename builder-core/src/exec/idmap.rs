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

/// The most lines a user namespace's id map may have (the kernel's
/// `UID_GID_MAP_MAX_EXTENTS`).
const MAX_MAP_LINES: usize = 340;

/// `(inside, outside, count)` ranges: `own` (the caller's uid, or its gid for the group
/// map) to 0, then every range that `subid_file` (/etc/subuid or /etc/subgid) gives the
/// user, from 1 on, in file order.
///
/// Both files name the user, never a group: a line is the caller's when its first field
/// is its login `name` or its uid `owner` in decimal, as newuidmap and newgidmap look
/// them up. Lines the kernel would refuse are mended rather than passed on to fail the
/// whole map: malformed lines and empty ranges are skipped; ids already mapped (the own
/// id inside a range, a range listed twice or overlapping another) are left out of the
/// later range; a range running past the last id is cut; beyond the kernel's 340 lines
/// the rest is dropped.
pub(crate) fn ranges(
    own: u32,
    owner: u32,
    name: Option<&str>,
    subid_file: &str,
) -> Vec<(u32, u32, u32)> {
    // Ids are u32 and an extent must end at or before u32::MAX (the kernel refuses one
    // whose first + count wraps): half-open u64 intervals make that plain.
    const END: u64 = u32::MAX as u64;
    let mut out = vec![(0, own, 1)];
    let mut taken: Vec<(u64, u64)> = vec![(u64::from(own), u64::from(own) + 1)];
    let mut inside: u64 = 1;
    let text = fs::read_to_string(subid_file).unwrap_or_default();
    let owner = owner.to_string();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        let [user, start, count] = fields[..] else {
            continue;
        };
        if user != owner && Some(user) != name {
            continue;
        }
        let (Ok(start), Ok(count)) = (start.parse::<u32>(), count.parse::<u32>()) else {
            continue;
        };
        let start = u64::from(start);
        let mut pieces = vec![(start, (start + u64::from(count)).min(END))];
        for &(t_start, t_end) in &taken {
            pieces = pieces
                .into_iter()
                .flat_map(|(s, e)| {
                    if e <= t_start || t_end <= s {
                        vec![(s, e)]
                    } else {
                        vec![(s, t_start.max(s)), (t_end.min(e), e)]
                    }
                })
                .filter(|(s, e)| s < e)
                .collect();
        }
        for (s, e) in pieces {
            let len = (e - s).min(END - inside);
            if len == 0 || out.len() == MAX_MAP_LINES {
                return out;
            }
            // Both fit in u32: s < e <= END, inside + len <= END.
            out.push((inside as u32, s as u32, len as u32));
            taken.push((s, s + len));
            inside += len;
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

    fn ranges_in(own: u32, owner: u32, name: &str, file: &str) -> Vec<(u32, u32, u32)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("subid");
        fs::write(&path, file).unwrap();
        ranges(own, owner, Some(name), path.to_str().unwrap())
    }

    #[test]
    fn subordinate_ranges_follow_the_own_id() {
        let file = "other:100000:65536\nbuilder:200000:65536\n";
        assert_eq!(
            ranges_in(1000, 1000, "builder", file),
            vec![(0, 1000, 1), (1, 200000, 65536)]
        );
        assert_eq!(
            ranges_in(1001, 1001, "nobody-here", file),
            vec![(0, 1001, 1)]
        );
    }

    /// /etc/subgid names the user (by login or uid), never its group: a gid that equals
    /// another user's uid must not take that user's range, and the user's own numeric line
    /// counts when its gid differs from its uid.
    #[test]
    fn subordinate_groups_are_looked_up_by_the_user() {
        let file = "100:500000:65536\n1001:600000:65536\n";
        assert_eq!(
            ranges_in(100, 1001, "bob", file),
            vec![(0, 100, 1), (1, 600000, 65536)]
        );
    }

    /// Every range of the user is mapped, one after the other inside, and what the kernel
    /// would refuse (overlaps, the own id, wrap-around, empty or malformed lines) is
    /// mended or skipped instead of failing the whole map.
    #[test]
    fn odd_subid_files_give_maps_the_kernel_accepts() {
        let file = "builder:200000:10\n\
                    # a comment\n\
                    builder:abc:10\n\
                    builder:300000:0\n\
                    builder:200005:10\n\
                    builder:999:3\n\
                    builder: 1:2\n\
                    builder:4294967290:100\n";
        assert_eq!(
            ranges_in(1000, 1000, "builder", file),
            vec![
                (0, 1000, 1),
                (1, 200000, 10),
                (11, 200010, 5),
                (16, 999, 1),
                (17, 1001, 1),
                (18, 4294967290, 5),
            ]
        );
        let huge = "builder:100000:4294967295\n";
        assert_eq!(
            ranges_in(1000, 1000, "builder", huge),
            vec![(0, 1000, 1), (1, 100000, 4294867295)]
        );
        let lines: String = (0..400)
            .map(|i| format!("builder:{}:1\n", 100000 + 2 * i))
            .collect();
        assert_eq!(ranges_in(1000, 1000, "builder", &lines).len(), 340);
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
