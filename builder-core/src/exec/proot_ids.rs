//! Undoing proot's swap of root for the build user's uid, where it would make two owners
//! one.
//!
//! proot's fake root (`-0`, and `-i` for a `USER` step) turns the id the step runs as
//! into the build user's real one both ways: a `chown(f, 0, 0)` reaches the kernel as
//! `chown(f, 1000, 1000)` when the build user is 1000, and a `stat` that finds 1000 is
//! shown 0. Where the image itself has uid 1000 (a pod's `runAsUser: 1000` and an
//! image's first user, as `useradd` makes it) the two are one: a `chown app` was taken for
//! root's, and a file of app's showed root. proot is itself under the step's seccomp
//! filter, so the recorder sees what it does to a traced process:
//! - proot writes a process's registers with `ptrace(PTRACE_SETREGS)` at the entry of
//!   each call it changes; the filter sends those to the recorder, which reads the call
//!   and its arguments as the process made them (`/proc/TID/syscall`, still the
//!   original ones) and, for a `chown` call, keeps the ids asked for until the call
//!   reaches the filter itself; a `chown` call proot did not change (an `fchown` to
//!   another id than the step's) reaches it as asked, once proot was seen to write
//!   registers this way at all (else the build user's id is taken for the step's, as
//!   before);
//! - proot writes a `stat` answer's uid and gid back with `process_vm_writev`, 4 bytes
//!   each; where the recorder wrote that `struct stat` itself with the build user's id as
//!   the image's (see `stat_calls`), it answers those writes as done without doing them.
//!
//! Everything else of proot's goes on to the kernel unchanged.

use std::collections::HashMap;
use std::os::unix::fs::FileExt;

/// `ptrace(2)`, its `PTRACE_SETREGS` request, and `process_vm_writev(2)` on x86_64.
pub(super) const SYS_PTRACE: u32 = 101;
pub(super) const PTRACE_SETREGS: u32 = 13;
pub(super) const SYS_PROCESS_VM_WRITEV: u32 = 311;

/// Where `struct stat` keeps `st_uid` and `st_gid` on x86_64.
const STAT_UID: u64 = 28;
const STAT_GID: u64 = 32;

/// Index of `rax` and `orig_rax` in x86_64's `struct user_regs_struct`.
const REG_RAX: u64 = 10;
const REG_ORIG_RAX: u64 = 15;
/// Index of the six argument registers there, in order: rdi, rsi, rdx, r10, r8, r9.
const REG_ARGS: [u64; 6] = [14, 13, 12, 7, 9, 8];

/// What the recorder learnt of proot's changes, by traced thread.
#[derive(Default)]
pub(super) struct ProotIds {
    /// What proot did to a thread's pending `chown` call, by thread.
    asked: HashMap<i32, Pending>,
    /// The `struct stat` the recorder last wrote for a thread with the build user's id
    /// in it: its address, and which of uid (0) and gid (1) proot may not rewrite.
    written: HashMap<i32, (u64, [bool; 2])>,
    /// Whether proot was seen writing registers with `PTRACE_SETREGS` (it does for the
    /// step's first `execve`): then a call it did not rewrite reached the filter as the
    /// step made it.
    seen: bool,
    /// proot's memory, opened once (proot writes registers at nearly every call).
    proot_mem: Option<(i32, std::fs::File)>,
}

/// What proot did to a thread's `chown` call at its entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// The call `nr` asked for `uid` and `gid`, and proot made its arguments `args`
    /// (what the filter then sees; a call of another thread that reused the id, after
    /// this one was killed, has other arguments).
    Ids {
        nr: u32,
        uid: u64,
        gid: u64,
        args: [u64; 6],
    },
    /// proot wrote the thread's registers but they could not be read (a process that
    /// made itself non-dumpable hides `/proc/TID/syscall`): the next `chown` is not known.
    Unread,
}

/// The ids a `chown` call asked for, as far as proot's changes were seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Asked {
    /// These, before proot changed them.
    Ids(u64, u64),
    /// Those the filter sees: proot did not change the call.
    Unchanged,
    /// Not known: proot was never seen changing a call.
    Unknown,
}

impl ProotIds {
    /// proot called `ptrace(PTRACE_SETREGS, tid, 0, regs)`: at the entry of a `chown`
    /// call, keeps the ids the thread asked for.
    pub(super) fn setregs(&mut self, proot: i32, args: [u64; 6], chown_calls: &[u32]) {
        self.seen = true;
        let tid = args[1] as i32;
        // At the entry, rax is -ENOSYS and orig_rax the call (the exit's rax is the
        // result): read from the registers proot writes, so that only a chown call's
        // entry costs more.
        let regs = args[3];
        let (Some(rax), Some(orig)) = (
            self.read_proot(proot, regs + REG_RAX * 8),
            self.read_proot(proot, regs + REG_ORIG_RAX * 8),
        ) else {
            // Whatever this call is, the thread's next chown is not known.
            self.asked.insert(tid, Pending::Unread);
            return;
        };
        if rax != (-(libc::ENOSYS as i64)) as u64
            || !chown_calls.iter().any(|nr| u64::from(*nr) == orig)
        {
            return;
        }
        let mut new_args = [0u64; 6];
        for (arg, reg) in new_args.iter_mut().zip(REG_ARGS) {
            match self.read_proot(proot, regs + reg * 8) {
                Some(value) => *arg = value,
                None => {
                    self.asked.insert(tid, Pending::Unread);
                    return;
                }
            }
        }
        let pending = match syscall_of(tid) {
            Some((nr, call_args)) if u64::from(nr) == orig => {
                // chown, fchown, lchown: (_, uid, gid); fchownat: (dir, path, uid, gid).
                let (uid, gid) = if nr == super::chown_calls::SYS_FCHOWNAT {
                    (call_args[2], call_args[3])
                } else {
                    (call_args[1], call_args[2])
                };
                Pending::Ids {
                    nr,
                    uid,
                    gid,
                    args: new_args,
                }
            }
            _ => Pending::Unread,
        };
        self.asked.insert(tid, pending);
    }

    /// The ids thread `tid` asked for in its `chown` call `nr`, which reached the filter
    /// with `args`, before proot changed them. What was kept for the thread but does not
    /// match the call (another call, a thread that reused a dead one's id) or could not be
    /// read makes it unknown, never unchanged.
    pub(super) fn take_asked(&mut self, tid: i32, nr: u32, args: [u64; 6]) -> Asked {
        match self.asked.remove(&tid) {
            Some(Pending::Ids {
                nr: asked,
                uid,
                gid,
                args: made,
            }) if asked == nr && made == args => Asked::Ids(uid, gid),
            Some(_) => Asked::Unknown,
            None if self.seen => Asked::Unchanged,
            None => Asked::Unknown,
        }
    }

    /// The recorder wrote a `struct stat` at `address` for `tid`; `keep` tells whether
    /// its uid and gid are the build user's, which proot would turn into the step's.
    pub(super) fn wrote_stat(&mut self, tid: i32, address: u64, keep: [bool; 2]) {
        if keep.iter().any(|k| *k) {
            self.written.insert(tid, (address, keep));
        } else {
            self.written.remove(&tid);
        }
    }

    /// proot called `process_vm_writev(tid, local, 1, remote, 1, 0)`: whether it is the
    /// rewrite of an id the recorder wrote, to be answered as done (its length) without
    /// being made.
    pub(super) fn skip_write(&mut self, proot: i32, args: [u64; 6]) -> Option<i64> {
        let tid = args[0] as i32;
        let (address, keep) = *self.written.get(&tid)?;
        if args[2] != 1 || args[4] != 1 {
            return None;
        }
        // struct iovec { void *base; size_t len; } of the remote side, in proot's memory.
        let base = self.read_proot(proot, args[3])?;
        let len = self.read_proot(proot, args[3] + 8)?;
        if len != 4 {
            return None;
        }
        let which = if base == address + STAT_UID && keep[0] {
            0
        } else if base == address + STAT_GID && keep[1] {
            1
        } else {
            return None;
        };
        let entry = self.written.get_mut(&tid)?;
        entry.1[which] = false;
        if !entry.1.iter().any(|k| *k) {
            self.written.remove(&tid);
        }
        Some(4)
    }
}

impl ProotIds {
    /// Eight bytes at `address` in proot's (`pid`'s) memory.
    fn read_proot(&mut self, pid: i32, address: u64) -> Option<u64> {
        if self.proot_mem.as_ref().is_none_or(|(p, _)| *p != pid) {
            let mem = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
            self.proot_mem = Some((pid, mem));
        }
        let (_, mem) = self.proot_mem.as_ref()?;
        let mut bytes = [0u8; 8];
        mem.read_exact_at(&mut bytes, address).ok()?;
        Some(u64::from_ne_bytes(bytes))
    }
}

/// The call thread `tid` is in and its six arguments (`/proc/TID/syscall`).
fn syscall_of(tid: i32) -> Option<(u32, [u64; 6])> {
    let text = std::fs::read_to_string(format!("/proc/{tid}/syscall")).ok()?;
    let mut fields = text.split_whitespace();
    let nr: u32 = fields.next()?.parse().ok()?;
    let mut args = [0u64; 6];
    for arg in &mut args {
        let hex = fields.next()?.trim_start_matches("0x");
        *arg = u64::from_str_radix(hex, 16).ok()?;
    }
    Some((nr, args))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_chown_is_taken_only_by_the_call_it_was_kept_for() {
        let mut ids = ProotIds::default();
        assert_eq!(
            ids.take_asked(5, 93, [3, 999, 995, 0, 0, 0]),
            Asked::Unknown
        );
        ids.seen = true;
        assert_eq!(
            ids.take_asked(5, 93, [3, 999, 995, 0, 0, 0]),
            Asked::Unchanged
        );
        let kept = Pending::Ids {
            nr: 93,
            uid: 0,
            gid: 0,
            args: [3, 999, 995, 0, 0, 0],
        };
        ids.asked.insert(5, kept);
        assert_eq!(
            ids.take_asked(5, 93, [3, 999, 995, 0, 0, 0]),
            Asked::Ids(0, 0)
        );
        // A thread that reused a killed one's id, with other arguments.
        ids.asked.insert(5, kept);
        assert_eq!(
            ids.take_asked(5, 93, [4, u64::from(u32::MAX), 1000, 0, 0, 0]),
            Asked::Unknown
        );
        // Registers that could not be read.
        ids.asked.insert(5, Pending::Unread);
        assert_eq!(
            ids.take_asked(5, 93, [3, 999, 995, 0, 0, 0]),
            Asked::Unknown
        );
    }

    #[test]
    fn a_stat_rewrite_of_a_kept_id_is_skipped_once_and_others_go_on() {
        let mut ids = ProotIds::default();
        // Not proot's memory here: the iovec is read from this process.
        let me = std::process::id() as i32;
        let address = 0x1000u64;
        ids.wrote_stat(7, address, [true, false]);
        let iov = |base: u64| Box::new([base, 4u64]);
        let uid = iov(address + STAT_UID);
        let gid = iov(address + STAT_GID);
        let args = |iov: &[u64; 2]| [7, 0, 1, iov.as_ptr() as u64, 1, 0];
        assert_eq!(ids.skip_write(me, args(&gid)), None, "the gid is not kept");
        assert_eq!(ids.skip_write(me, args(&uid)), Some(4));
        assert_eq!(ids.skip_write(me, args(&uid)), None, "once");
    }
}
