//! The group list of a step under proot: `getgroups` and `setgroups`, answered by the
//! recorder ([`super::chown_calls`]).
//!
//! proot's fake root changes the uid and gid a step sees, not its supplementary groups:
//! without more, `id` in a `USER app` step lists the build user's groups (those of the
//! pod), not the groups `/etc/group` gives `app`, which BuildKit's executor sets. And no
//! process of the step may call `setgroups` for real (no `CAP_SETGID`). So the recorder
//! answers both: `getgroups` with the list the process last set, or one of its parents
//! (`su`, `runuser`, apt dropping to `_apt` set one before they `exec`), else the
//! step's (see [`super::user::Credentials::groups`]); `setgroups` keeps the list for the
//! process when the step runs as root (a `USER` step may not: `EPERM`, as the kernel
//! says without `CAP_SETGID`).

use std::collections::HashMap;

/// `getgroups(2)` and `setgroups(2)` on x86_64.
pub(super) const SYS_GETGROUPS: u32 = 115;
pub(super) const SYS_SETGROUPS: u32 = 116;

/// `NGROUPS_MAX` of Linux.
const NGROUPS_MAX: usize = 65536;

/// How many parents are looked through for a list a process inherited.
const MAX_ANCESTORS: usize = 64;

/// The group lists of a step's processes.
pub(super) struct Groups {
    /// The step's own list.
    step: Vec<u32>,
    /// Lists set by processes of the step, by process (thread group) id.
    set: HashMap<i32, Vec<u32>>,
}

impl Groups {
    pub(super) fn new(step: Vec<u32>) -> Groups {
        Groups {
            step,
            set: HashMap::new(),
        }
    }

    /// The groups the step runs with.
    pub(super) fn step(&self) -> &[u32] {
        &self.step
    }

    /// Answers a `getgroups` or `setgroups` of thread `tid`: the value to return, or an
    /// errno. `root` tells whether the step runs as root.
    pub(super) fn answer(&mut self, notif: &libc::seccomp_notif, root: bool) -> Result<i64, i32> {
        let tid = notif.pid as i32;
        let args = notif.data.args;
        let size = args[0] as i32;
        if size < 0 {
            return Err(libc::EINVAL);
        }
        let size = size as usize;
        match notif.data.nr as u32 {
            SYS_GETGROUPS => {
                let list = self.of(tid);
                if size == 0 {
                    return Ok(list.len() as i64);
                }
                if size < list.len() {
                    return Err(libc::EINVAL);
                }
                write_ids(notif.pid, args[1], list)?;
                Ok(list.len() as i64)
            }
            SYS_SETGROUPS => {
                if !root {
                    return Err(libc::EPERM);
                }
                if size > NGROUPS_MAX {
                    return Err(libc::EINVAL);
                }
                let list = read_ids(notif.pid, args[1], size)?;
                let process = super::chown_calls::thread_group(tid).ok_or(libc::ESRCH)?;
                self.set.insert(process, list);
                Ok(0)
            }
            _ => Err(libc::ENOSYS),
        }
    }

    /// The list of thread `tid`: its process's, else the nearest parent's that set one,
    /// else the step's.
    fn of(&self, tid: i32) -> &[u32] {
        let mut pid = super::chown_calls::thread_group(tid);
        for _ in 0..MAX_ANCESTORS {
            let Some(p) = pid else { break };
            if let Some(list) = self.set.get(&p) {
                return list;
            }
            pid = parent(p);
        }
        &self.step
    }
}

/// The parent of process `pid` (`PPid:` of `/proc/PID/status`).
fn parent(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("PPid:"))
        .and_then(|ppid| ppid.trim().parse().ok())
        .filter(|ppid| *ppid > 0)
}

/// Writes `ids` at `address` in process `pid`'s memory (`EFAULT` where the process may
/// not write, as the kernel would answer).
fn write_ids(pid: u32, address: u64, ids: &[u32]) -> Result<(), i32> {
    let bytes: Vec<u8> = ids.iter().flat_map(|id| id.to_ne_bytes()).collect();
    super::stat_calls::write_memory(pid, address, &bytes).map_err(|_| libc::EFAULT)
}

/// Reads `count` ids at `address` in process `pid`'s memory.
fn read_ids(pid: u32, address: u64, count: usize) -> Result<Vec<u32>, i32> {
    use std::os::unix::fs::FileExt;
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).map_err(|_| libc::ESRCH)?;
    let mut bytes = vec![0u8; count * 4];
    mem.read_exact_at(&mut bytes, address)
        .map_err(|_| libc::EFAULT)?;
    Ok(bytes
        .chunks_exact(4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}
