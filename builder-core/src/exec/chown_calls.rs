//! The `chown` calls of a step that runs under proot, trapped and kept as owners of the
//! image.
//!
//! Under the proot isolation the step's processes run as the build user, who owns every
//! file on disk and may give none away; proot's fake root lets `chown` to root pass and
//! would make a `chown` to anyone else fail (or, with some versions, pass and change
//! nothing). A `chown -R app /app` or a `useradd -m` must still leave those owners in
//! the image, as [`crate::fakeroot`]'s table keeps them for `COPY --chown`. So the init
//! installs, before it starts proot, a seccomp filter that hands every `chown`,
//! `fchown`, `lchown` and `fchownat` of the step to rbuild (`SECCOMP_RET_USER_NOTIF`,
//! Linux 5.0, allowed to any process with `no_new_privs`); a [`Recorder`] thread in rbuild
//! resolves the path the call names inside the step's root (its own `openat2` with
//! `RESOLVE_IN_ROOT`, from the process's working directory or directory descriptor read
//! in `/proc`), notes the path, its inode and the ids asked for, and answers as the
//! kernel would have for root: success, or the error resolving the path gave. Nothing
//! changes on disk; after the step the owners go into the table
//! ([`crate::snapshot::Snapshot::follow_run`]).
//!
//! proot (Debian's 5.1 traces every call) has already put the path in terms of the host
//! and turned the id the step runs as into the build user's when the filter sees a call:
//! the recorder undoes both, the ids from what it saw proot change (`super::proot_ids`;
//! where it saw nothing of proot's, a `chown` to the build user's own id is taken as one
//! to the step's user).
//!
//! The same filter fails with `ENOSYS` the system calls with paths that proot does not
//! translate (newer than it), and the recorder ends the step when its first process has
//! ended ([`StepEnd`]): proot itself would wait for every process it left running. The
//! step's `stat` calls go to the recorder too, which answers them with the owners and
//! modes of the image, the step's own `chown` calls included ([`super::stat_calls`]).
//! A system call of a 32-bit program kills it (proot would not translate
//! it). A step that runs as another user than root may not give a file to anyone else
//! (EPERM), though it is not checked that it owns the file.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use super::group_calls::{self, Groups};
use super::proot_ids::{self, Asked, ProotIds};
use super::stat_calls::{self, StatAnswer, StatView};
use super::terminal::ConsoleSocket;
use crate::fakeroot::OwnerCall;

/// `chown(2)`, `fchown(2)`, `lchown(2)` and `fchownat(2)` on x86_64.
const SYS_CHOWN: u32 = 92;
const SYS_FCHOWN: u32 = 93;
const SYS_LCHOWN: u32 = 94;
pub(super) const SYS_FCHOWNAT: u32 = 260;
/// The four calls that change an owner.
const CHOWN_CALLS: [u32; 4] = [SYS_CHOWN, SYS_FCHOWN, SYS_LCHOWN, SYS_FCHOWNAT];
/// `execve(2)`: let through, but the first one of a process other than proot tells
/// which process is the step's first ([`StepEnd`]).
const SYS_EXECVE: u32 = 59;
/// `exit_group(2)`: let through; the status the step's first process gives is the step's.
const SYS_EXIT_GROUP: u32 = 231;

/// `AUDIT_ARCH_X86_64` (linux/audit.h).
const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;

/// The system calls that go to the recorder: the four `chown` calls, `execve` and
/// `exit_group` (see [`StepEnd`]), `newfstatat` and `fstat` ([`super::stat_calls`]; not
/// the older `stat` and `lstat`, which proot itself makes for every path it translates,
/// several times each: sending them too made every path call of a step 4 to 8 times
/// slower),
/// `getgroups` and `setgroups` ([`super::group_calls`]).
const NOTIFIED: [u32; 11] = [
    SYS_CHOWN,
    SYS_FCHOWN,
    SYS_LCHOWN,
    SYS_FCHOWNAT,
    SYS_EXECVE,
    SYS_EXIT_GROUP,
    stat_calls::SYS_FSTAT,
    stat_calls::SYS_NEWFSTATAT,
    group_calls::SYS_GETGROUPS,
    group_calls::SYS_SETGROUPS,
    proot_ids::SYS_PROCESS_VM_WRITEV,
];

/// The BPF program: a system call of another architecture than x86_64 (a 32-bit
/// program's, `int 0x80`) kills the process, as the sandbox's filter does, since proot
/// does not translate those; the calls of [`NOTIFIED`] go to the listener; the system
/// calls with paths that proot does not translate fail with `ENOSYS`, as on a kernel
/// without them, so that the C library falls back to ones it does (see
/// [`UNTRANSLATED`]); everything else is allowed (the other filters of the process
/// still apply).
pub(crate) fn filter() -> Vec<libc::sock_filter> {
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |op: u32, k: u32, jt: usize| libc::sock_filter {
        code: (libc::BPF_JMP | op | libc::BPF_K) as u16,
        jt: u8::try_from(jt).expect("the program is short"),
        jf: 0,
        k,
    };
    let load = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
    let ret = libc::BPF_RET | libc::BPF_K;
    let enosys = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
    // The tests, in order, and where each goes when it holds.
    enum To {
        Notify,
        Enosys,
        Allow,
    }
    let mut tests: Vec<(u32, u32, To)> = Vec::new();
    tests.extend(NOTIFIED.iter().map(|&nr| (libc::BPF_JEQ, nr, To::Notify)));
    tests.extend(
        UNTRANSLATED
            .iter()
            .map(|&nr| (libc::BPF_JEQ, nr, To::Enosys)),
    );
    tests.extend(PATHLESS.iter().map(|&nr| (libc::BPF_JEQ, nr, To::Allow)));
    tests.push((libc::BPF_JGE, UNTRANSLATED_FROM, To::Enosys));
    // struct seccomp_data: nr at 0, arch at 4. After the tests: allow, notify, enosys,
    // kill.
    // `ptrace(PTRACE_SETREGS, ...)` (proot's, see `proot_ids`) goes to the listener too:
    // the request is the first argument, whose low word is at 16.
    let tests_at = 6;
    let allow_at = tests_at + tests.len();
    let (notify_at, enosys_at, kill_at) = (allow_at + 1, allow_at + 2, allow_at + 3);
    let short = |n: usize| u8::try_from(n).expect("the program is short");
    let mut program = vec![
        stmt(load, 4),
        libc::sock_filter {
            jf: short(kill_at - 2),
            ..jump(libc::BPF_JEQ, AUDIT_ARCH_X86_64, 0)
        },
        stmt(load, 0),
        libc::sock_filter {
            jf: 2,
            ..jump(libc::BPF_JEQ, proot_ids::SYS_PTRACE, 0)
        },
        stmt(load, 16),
        libc::sock_filter {
            jf: short(allow_at - 6),
            ..jump(libc::BPF_JEQ, proot_ids::PTRACE_SETREGS, notify_at - 6)
        },
    ];
    for (i, (op, nr, to)) in tests.into_iter().enumerate() {
        let target = match to {
            To::Notify => notify_at,
            To::Enosys => enosys_at,
            To::Allow => allow_at,
        };
        program.push(jump(op, nr, target - (tests_at + i) - 1));
    }
    program.extend([
        stmt(ret, libc::SECCOMP_RET_ALLOW),
        stmt(ret, libc::SECCOMP_RET_USER_NOTIF),
        stmt(ret, enosys),
        stmt(ret, libc::SECCOMP_RET_KILL_PROCESS),
    ]);
    program
}

/// System calls newer than what proot knows (Debian 12 has proot 5.1) whose paths it
/// would hand to the kernel untranslated, so that they name the container's files, not
/// the step's: `statx` (coreutils' `ls` and `stat`), `execveat`; and from
/// [`UNTRANSLATED_FROM`] on, everything since Linux 5.1 (`openat2`, `faccessat2`, which
/// glibc's `access` uses, `fchmodat2`, `open_tree`, io_uring's `openat`, the `*xattrat`
/// calls). On `ENOSYS` the C library and programs fall back to the older calls.
const UNTRANSLATED: [u32; 2] = [332, 322];
/// Calls from [`UNTRANSLATED_FROM`] on that name no path and are let through:
/// `close_range` (the init itself uses it), `pidfd_open` and `pidfd_send_signal`.
const PATHLESS: [u32; 3] = [436, 434, 424];
const UNTRANSLATED_FROM: u32 = 424;

/// In the init, before `exec`: sets `no_new_privs`, installs `program` with a listener
/// and sends the listener on `socket` (then closes it here). Async-signal-safe.
pub(super) fn install_in_init(socket: RawFd, program: &[libc::sock_filter]) -> Result<(), i32> {
    use super::errno::{check, errno};
    let Ok(len) = libc::c_ushort::try_from(program.len()) else {
        return Err(libc::E2BIG);
    };
    let fprog = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: prctl and seccomp take integers and a pointer to `fprog`, a live local
    // whose `filter` points at `program`; the rest are calls on descriptors this process
    // owns and on stack data.
    unsafe {
        check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
        let listener = libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
            &fprog as *const libc::sock_fprog,
        );
        if listener < 0 {
            return Err(errno());
        }
        let listener = listener as RawFd;
        // Orphans of the step (a daemon's double fork) stay under proot, where the
        // recorder finds them when the step's first process has ended.
        check(libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))?;
        let pid = libc::getpid().to_ne_bytes();
        let sent = super::terminal::send_fd_with(socket, listener, &pid);
        libc::close(listener);
        sent
    }
}

/// The rbuild side: a thread that takes the listener from the init and answers the
/// step's calls until [`Recorder::finish`].
pub(crate) struct Recorder {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Recorded>,
}

/// What the recorder learnt of a step: its chown calls, how its first process ended
/// (proot's own status is the last process's), and whether it made more calls than are
/// kept.
#[derive(Debug, Default)]
pub(crate) struct Recorded {
    pub calls: Vec<OwnerCall>,
    pub first_status: Option<super::ExitStatus>,
    pub overflowed: bool,
    /// Bytes of paths in `calls`.
    bytes: usize,
    /// What `calls` gave each inode so far (the last uid and the last gid given), for
    /// the step's `stat` calls to look up at once.
    given: stat_calls::Given,
}

impl Recorder {
    /// Starts the thread on the parent end of `socket`; `root` is the step's root, `ids`
    /// the ids of the build user and of the step, `view` what the step's `stat` calls are
    /// to show of owners and modes (none: what proot shows).
    pub(crate) fn start(
        socket: &ConsoleSocket,
        root: &Path,
        ids: Ids,
        groups: Vec<u32>,
        view: Option<crate::snapshot::OwnerView>,
        cancel: super::CancelToken,
    ) -> io::Result<Recorder> {
        let parent = socket.parent.try_clone()?;
        let root_fd = rustix::fs::open(
            root,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        let root = std::fs::canonicalize(root)?;
        let device = rustix::fs::fstat(&root_fd)?.st_dev;
        let view = view.map(|view| StatView { view, device });
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("chown-calls".to_owned())
            .spawn(move || {
                let step = Step {
                    root_fd: &root_fd,
                    root: &root,
                    ids,
                    view: view.as_ref(),
                };
                serve(&parent, &step, Groups::new(groups), &stopped, &cancel)
            })?;
        Ok(Recorder { stop, thread })
    }

    /// Once the step's processes are gone: what was learnt of it.
    pub(crate) fn finish(self) -> Recorded {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().unwrap_or_default()
    }
}

/// Waits for `fd` to be readable for up to 50 ms; whether it is, and whether it hung up.
fn wait_readable(fd: RawFd, timeout_ms: i32) -> (bool, bool) {
    let mut poll = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll reads and writes the one `pollfd`.
    let ready = unsafe { libc::poll(&mut poll, 1, timeout_ms) };
    (
        ready > 0 && poll.revents & libc::POLLIN != 0,
        ready > 0 && poll.revents & (libc::POLLHUP | libc::POLLERR) != 0,
    )
}

/// What the recorder knows of the step it serves.
struct Step<'a> {
    root_fd: &'a OwnedFd,
    root: &'a Path,
    ids: Ids,
    view: Option<&'a StatView>,
}

fn serve(
    socket: &OwnedFd,
    step_root: &Step<'_>,
    mut groups: Groups,
    stop: &AtomicBool,
    cancel: &super::CancelToken,
) -> Recorded {
    let mut recorded = Recorded::default();
    // The listener and proot's pid, once the init sends them (never, when its set-up
    // failed first).
    let mut pid = [0u8; 4];
    let listener = loop {
        let (readable, _) = wait_readable(socket.as_raw_fd(), 50);
        if readable {
            match super::terminal::receive_fd_with(socket, &mut pid) {
                Some(fd) => break fd,
                None => return recorded,
            }
        }
        if stop.load(Ordering::SeqCst) {
            return recorded;
        }
    };
    // Each notification hands the CPU straight to this thread and back (Linux 6.6:
    // SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP); without it, every call waits for the
    // scheduler twice. Older kernels refuse the flag, which changes nothing else.
    // SAFETY: the ioctl reads one u64 flag word.
    unsafe {
        let flags: u64 = 1;
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SET_FLAGS,
            &flags as *const u64,
        );
    }
    let mut step = StepEnd::new(i32::from_ne_bytes(pid));
    let mut proot_changes = ProotIds::default();
    let mut last_check = std::time::Instant::now();
    // Once the step is over, whatever still calls (a process that left proot's tree)
    // is not waited for: dropping the listener fails its calls with ENOSYS.
    while !stop.load(Ordering::SeqCst) {
        let (readable, hung_up) = wait_readable(listener.as_raw_fd(), 50);
        if readable {
            answer_one(
                &listener,
                step_root,
                &mut groups,
                &mut proot_changes,
                &mut recorded,
                &mut step,
            );
        } else if hung_up {
            // Every process of the filter is gone.
            break;
        }
        // Cancelled: the whole step goes, what left the process group too.
        if cancel.is_cancelled() {
            step.ended = true;
        }
        // Looked at every 20 ms, not after every call (each look reads /proc).
        if !readable || last_check.elapsed() >= std::time::Duration::from_millis(20) {
            step.check();
            last_check = std::time::Instant::now();
        }
    }
    recorded.first_status = step.status;
    recorded
}

/// How many chown calls of one step are kept; beyond that, or beyond
/// [`MAX_CALL_BYTES`] of paths, the step fails (proot's fake root would turn a refusal
/// into success, and an owner would be lost unseen), so that a step calling without end
/// cannot exhaust rbuild's memory.
const MAX_CALLS: usize = 1 << 20;
/// The most bytes of paths the kept calls may hold together.
const MAX_CALL_BYTES: usize = 64 << 20;

/// The end of a step under proot, as a PID namespace's would be: proot waits for every
/// process of the step, so when the step's first process (proot's child) has ended,
/// what it left running (a daemon, `cmd &`) is killed, and proot ends with it.
struct StepEnd {
    proot: i32,
    first: Option<i32>,
    ended: bool,
    /// How the first process ended, once known.
    status: Option<super::ExitStatus>,
}

impl StepEnd {
    fn new(proot: i32) -> StepEnd {
        StepEnd {
            proot,
            first: None,
            ended: false,
            status: None,
        }
    }

    /// A process of the step called `execve`: the first such process that is not proot
    /// is proot's first child, the step's first process (proot forks it, and it execs
    /// the step's command before it can make any other process).
    fn exec_by(&mut self, pid: i32) {
        if self.first.is_none() && pid != self.proot {
            self.first = Some(pid);
        }
    }

    /// A process of the step called `exit_group(code)`: the first process's code is the
    /// step's.
    fn exit_by(&mut self, tid: i32, code: i32) {
        // The calling thread may be any of the process's (a Go program's).
        if self.first.is_some() && self.first == thread_group(tid) {
            self.status = Some(super::ExitStatus::Code(code & 0xff));
        }
    }

    /// Called every poll: notices the end of the first process, then kills what is left
    /// of the step (again each time, for what was starting meanwhile).
    fn check(&mut self) {
        if self.ended {
            for pid in descendants(self.proot) {
                // SAFETY: kill takes plain integers; `pid` is a process below proot,
                // which is our own step's.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            return;
        }
        if let Some(first) = self.first {
            self.ended = !running(first);
            // Ended without an exit_group seen (a signal): the zombie's status says
            // how, if proot has not reaped it yet; else proot's status stands.
            if self.ended && self.status.is_none() {
                self.status = zombie_status(first);
            }
        }
    }
}

/// The children of process `pid` (`/proc/PID/task/*/children`).
fn children(pid: i32) -> Vec<i32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for task in tasks.flatten() {
        if let Ok(list) = std::fs::read_to_string(task.path().join("children")) {
            found.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    found
}

/// Every process below `pid`, children first.
fn descendants(pid: i32) -> Vec<i32> {
    let mut all = Vec::new();
    let mut next = children(pid);
    while let Some(pid) = next.pop() {
        next.extend(children(pid));
        all.push(pid);
    }
    all
}

/// How zombie `pid` ended (`/proc/PID/stat` field 52, its wait status).
fn zombie_status(pid: i32) -> Option<super::ExitStatus> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let status: i32 = rest.split_whitespace().nth(49)?.parse().ok()?;
    Some(match status & 0x7f {
        0 => super::ExitStatus::Code((status >> 8) & 0xff),
        signal => super::ExitStatus::Signal(signal),
    })
}

/// The process (thread group) thread `tid` belongs to.
pub(super) fn thread_group(tid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Tgid:"))
        .and_then(|tgid| tgid.trim().parse().ok())
}

/// Whether process `pid` is alive (not gone, not a zombie waiting for proot).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // `pid (comm) S ...`: the state follows the last `)`.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X')
    })
}

/// Receives one notification and answers it; a notification whose process died is
/// dropped.
fn answer_one(
    listener: &OwnedFd,
    step_root: &Step<'_>,
    groups: &mut Groups,
    proot_changes: &mut ProotIds,
    recorded: &mut Recorded,
    step: &mut StepEnd,
) {
    let Step { ids, view, .. } = *step_root;
    // SAFETY: all-zero is a valid `seccomp_notif`, as the kernel requires it on entry.
    let mut notif: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: the ioctl writes one `seccomp_notif` into `notif`.
    let r = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &mut notif,
        )
    };
    if r < 0 {
        return;
    }
    let nr = notif.data.nr as u32;
    let is_stat = matches!(
        nr,
        stat_calls::SYS_STAT
            | stat_calls::SYS_FSTAT
            | stat_calls::SYS_LSTAT
            | stat_calls::SYS_NEWFSTATAT
    );
    let by_proot = notif.pid as i32 == step.proot;
    let is_proots = nr == proot_ids::SYS_PTRACE || nr == proot_ids::SYS_PROCESS_VM_WRITEV;
    if nr == SYS_EXECVE || nr == SYS_EXIT_GROUP || is_stat || is_proots {
        let mut flags = libc::SECCOMP_USER_NOTIF_FLAG_CONTINUE as u32;
        let mut val = 0;
        if is_proots {
            if by_proot && nr == proot_ids::SYS_PTRACE {
                proot_changes.setregs(step.proot, notif.data.args, &CHOWN_CALLS);
            } else if by_proot {
                if let Some(done) = proot_changes.skip_write(step.proot, notif.data.args) {
                    (flags, val) = (0, done);
                }
            }
        } else if nr == SYS_EXECVE {
            step.exec_by(notif.pid as i32);
        } else if nr == SYS_EXIT_GROUP {
            step.exit_by(notif.pid as i32, notif.data.args[0] as i32);
        } else if let Some(view) = view.filter(|_| notif.pid as i32 != step.proot) {
            // proot's own calls (its path translation) go on as they are.
            let answer = stat_calls::answer(&notif, view, &recorded.given, ids, || {
                id_valid(listener, notif.id)
            });
            match answer {
                StatAnswer::Written { buffer, owner } => {
                    flags = 0;
                    // proot turns the build user's id it reads back into the step's.
                    let rewritten = [
                        owner.0 == ids.build.0 && ids.build.0 != ids.step.0,
                        owner.1 == ids.build.1 && ids.build.1 != ids.step.1,
                    ];
                    proot_changes.wrote_stat(notif.pid as i32, buffer, rewritten);
                }
                StatAnswer::Continue => {
                    proot_changes.wrote_stat(notif.pid as i32, 0, [false, false]);
                }
            }
        }
        let mut resp = libc::seccomp_notif_resp {
            id: notif.id,
            val,
            error: 0,
            flags,
        };
        // SAFETY: the ioctl reads one `seccomp_notif_resp`; a process that died
        // meanwhile makes it fail with ENOENT, which changes nothing.
        unsafe {
            libc::ioctl(
                listener.as_raw_fd(),
                libc::SECCOMP_IOCTL_NOTIF_SEND,
                &mut resp,
            )
        };
        return;
    }
    let (val, error) = if nr == group_calls::SYS_GETGROUPS || nr == group_calls::SYS_SETGROUPS {
        match groups.answer(&notif, ids.step.0 == 0) {
            Ok(val) => (val, 0),
            Err(errno) => (-1, -errno),
        }
    } else {
        let asked = proot_changes.take_asked(notif.pid as i32, nr, notif.data.args);
        owner_answer(&notif, step_root, groups.step(), asked, listener, recorded)
    };
    let mut resp = libc::seccomp_notif_resp {
        id: notif.id,
        val,
        error,
        flags: 0,
    };
    // SAFETY: the ioctl reads one `seccomp_notif_resp`; a process that died meanwhile
    // makes it fail with ENOENT, which changes nothing.
    unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &mut resp,
        )
    };
}

/// The answer to a `chown` call (value, negated errno), kept in `recorded`.
fn owner_answer(
    notif: &libc::seccomp_notif,
    step_root: &Step<'_>,
    groups: &[u32],
    asked: Asked,
    listener: &OwnedFd,
    recorded: &mut Recorded,
) -> (i64, i32) {
    let Step {
        root_fd, root, ids, ..
    } = *step_root;
    let result = owner_call(notif, root_fd, root, ids, groups, asked, || {
        id_valid(listener, notif.id)
    });
    match result {
        Ok(Some(call)) => {
            // Shown to the step's stat calls from now on, unless refused below.
            let key = (call.inode.0, call.inode.1, call.born);
            let before = recorded.given.get(&key).copied();
            let given = recorded.given.entry(key).or_default();
            *given = (call.uid.or(given.0), call.gid.or(given.1));
            let calls = &mut recorded.calls;
            match calls.last_mut() {
                // The same inode again (a loop, `chown -R` over links): one entry.
                Some(last) if (last.inode, last.born) == (call.inode, call.born) => {
                    last.uid = call.uid.or(last.uid);
                    last.gid = call.gid.or(last.gid);
                    (0, 0)
                }
                _ if recorded.overflowed => {
                    restore_given(&mut recorded.given, key, before);
                    (-1, -libc::EPERM)
                }
                _ => {
                    recorded.bytes += call.rel.as_os_str().len();
                    if calls.len() >= MAX_CALLS || recorded.bytes > MAX_CALL_BYTES {
                        recorded.overflowed = true;
                        restore_given(&mut recorded.given, key, before);
                        (-1, -libc::EPERM)
                    } else {
                        calls.push(call);
                        (0, 0)
                    }
                }
            }
        }
        Ok(None) => (0, 0),
        Err(errno) => (-1, -errno),
    }
}

/// Puts back what `given` held for `key` before a refused call.
fn restore_given(
    given: &mut stat_calls::Given,
    key: (u64, u64, Option<std::time::SystemTime>),
    before: Option<(Option<u32>, Option<u32>)>,
) {
    match before {
        Some(before) => {
            given.insert(key, before);
        }
        None => {
            given.remove(&key);
        }
    }
}

/// Whether the notification `id` is still pending (its process has not died and been
/// replaced by another with the same pid): checked after reading that process's memory.
fn id_valid(listener: &OwnedFd, id: u64) -> bool {
    let mut id = id;
    // SAFETY: the ioctl reads one u64.
    unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
            &mut id,
        ) == 0
    }
}

/// What the call of `notif` asks for, or the errno to answer it with.
fn owner_call(
    notif: &libc::seccomp_notif,
    root_fd: &OwnedFd,
    root: &Path,
    ids: Ids,
    groups: &[u32],
    asked: Asked,
    valid: impl Fn() -> bool,
) -> Result<Option<OwnerCall>, i32> {
    let pid = notif.pid;
    let args = notif.data.args;
    let id = |raw: u64| (raw as u32 != u32::MAX).then_some(raw as u32);
    let (base, path, follow, uid, gid) = match notif.data.nr as u32 {
        SYS_CHOWN => (Base::Cwd, Some(args[0]), true, args[1], args[2]),
        SYS_LCHOWN => (Base::Cwd, Some(args[0]), false, args[1], args[2]),
        SYS_FCHOWN => (Base::Fd(args[0] as i32), None, true, args[1], args[2]),
        SYS_FCHOWNAT => {
            let flags = args[4] as i32;
            if flags & !(libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH) != 0 {
                return Err(libc::EINVAL);
            }
            let dir = if args[0] as i32 == libc::AT_FDCWD {
                Base::Cwd
            } else {
                Base::Fd(args[0] as i32)
            };
            let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
            (dir, Some(args[1]), follow, args[2], args[3])
        }
        _ => return Err(libc::ENOSYS),
    };
    let name = match path {
        Some(address) => read_path(pid, address)?,
        None => Vec::new(),
    };
    if !valid() {
        return Err(libc::ESRCH);
    }
    if name.is_empty()
        && path.is_some()
        && !matches!(args.get(4), Some(f) if *f as i32 & libc::AT_EMPTY_PATH != 0 && notif.data.nr as u32 == SYS_FCHOWNAT)
    {
        return Err(libc::ENOENT);
    }
    // The path inside the root the call names. proot (tracing every call) has already
    // put it in terms of the host when the filter sees it: an absolute path in the
    // root's directory. A path proot left alone is the step's own, from its root.
    let inside: PathBuf = if name.first() == Some(&b'/') {
        let named = Path::new(std::ffi::OsStr::from_bytes(&name));
        match named.strip_prefix(root) {
            Ok(within) => Path::new("/").join(within),
            Err(_) if notif_path_is_host(named) => return Err(libc::EPERM),
            Err(_) => named.to_path_buf(),
        }
    } else {
        let link = match base {
            Base::Cwd => format!("/proc/{pid}/cwd"),
            Base::Fd(fd) => format!("/proc/{pid}/fd/{fd}"),
        };
        let host =
            std::fs::read_link(&link).map_err(|e| e.raw_os_error().unwrap_or(libc::EBADF))?;
        let within = host.strip_prefix(root).map_err(|_| libc::EPERM)?;
        let mut inside = Path::new("/").join(within);
        if !name.is_empty() {
            inside.push(std::ffi::OsStr::from_bytes(&name));
        }
        inside
    };
    // A step that runs as another user than root may give files to no one else, and
    // to no group but its own ones.
    // The ids as the step asked for them, where proot's change was seen (see
    // `proot_ids`); else the build user's id stands for the step's.
    let (uid, gid) = match asked {
        Asked::Ids(uid, gid) => (id(uid), id(gid)),
        Asked::Unchanged => (id(uid), id(gid)),
        Asked::Unknown => (
            id(uid).map(|uid| ids.uid(uid)),
            id(gid).map(|gid| ids.gid(gid)),
        ),
    };
    if ids.step.0 != 0
        && (uid.is_some_and(|u| u != ids.step.0)
            || gid.is_some_and(|g| g != ids.step.1 && !groups.contains(&g)))
    {
        return Err(libc::EPERM);
    }
    let (rel, inode, born, file) = resolve(root_fd, root, &inside, follow)?;
    if uid.is_some() || gid.is_some() {
        drop_set_ids(&file);
    }
    // The root directory has no entry in a layer: its owner is the base image's.
    if rel.as_os_str().is_empty() {
        return Ok(None);
    }
    Ok(Some(OwnerCall {
        rel,
        inode,
        born,
        uid,
        gid,
    }))
}

/// Whether `path` is a host path proot binds into the step (its device nodes, `/proc`,
/// `/sys`): a step may not give those away.
fn notif_path_is_host(path: &Path) -> bool {
    ["/dev", "/proc", "/sys"]
        .iter()
        .any(|p| path.starts_with(p))
}

/// The ids proot puts in a call: it turns the id the step runs as (0 under `-0`) into
/// the build user's, which may then stand for nothing else.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ids {
    /// The build user's uid and gid (this process's).
    pub build: (u32, u32),
    /// The step's uid and gid (what proot shows the step as).
    pub step: (u32, u32),
}

impl Ids {
    fn uid(&self, uid: u32) -> u32 {
        if uid == self.build.0 {
            self.step.0
        } else {
            uid
        }
    }

    fn gid(&self, gid: u32) -> u32 {
        if gid == self.build.1 {
            self.step.1
        } else {
            gid
        }
    }
}

/// Where a relative path of a call starts.
enum Base {
    Cwd,
    Fd(i32),
}

/// Reads the NUL-terminated path at `address` in process `pid`'s memory.
pub(super) fn read_path(pid: u32, address: u64) -> Result<Vec<u8>, i32> {
    use std::os::unix::fs::FileExt;
    let mem = std::fs::File::open(format!("/proc/{pid}/mem"))
        .map_err(|e| e.raw_os_error().unwrap_or(libc::ESRCH))?;
    let mut name = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        let offset = address + name.len() as u64;
        let n = mem.read_at(&mut chunk, offset).map_err(|_| libc::EFAULT)?;
        if n == 0 {
            return Err(libc::EFAULT);
        }
        if let Some(end) = chunk[..n].iter().position(|b| *b == 0) {
            name.extend_from_slice(&chunk[..end]);
            return Ok(name);
        }
        name.extend_from_slice(&chunk[..n]);
        if name.len() > libc::PATH_MAX as usize {
            return Err(libc::ENAMETOOLONG);
        }
    }
}

/// What [`resolve`] found: the path relative to the root, the inode (device, number),
/// its birth time and an `O_PATH` descriptor of it.
type Resolved = (PathBuf, (u64, u64), Option<std::time::SystemTime>, OwnedFd);

/// Opens `inside` (an absolute path as the step sees it) within the root, following a
/// last symbolic link when `follow`: the path relative to the root it resolves to, its
/// inode, birth time and an `O_PATH` descriptor of it; the errno the step would get
/// otherwise.
fn resolve(root_fd: &OwnedFd, root: &Path, inside: &Path, follow: bool) -> Result<Resolved, i32> {
    use rustix::fs::{Mode, OFlags, ResolveFlags};
    let rel = inside.strip_prefix("/").unwrap_or(inside);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let mut flags = OFlags::PATH | OFlags::CLOEXEC;
    if !follow {
        flags |= OFlags::NOFOLLOW;
    }
    let opened = crate::beneath::openat2_settled(
        root_fd,
        &*CString::new(rel.as_os_str().as_bytes()).map_err(|_| libc::EINVAL)?,
        flags,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| e.raw_os_error())?;
    let stat = rustix::fs::fstat(&opened).map_err(|e| e.raw_os_error())?;
    let host = std::fs::read_link(format!("/proc/self/fd/{}", opened.as_raw_fd()))
        .map_err(|e| e.raw_os_error().unwrap_or(libc::EBADF))?;
    let rel = host.strip_prefix(root).map_err(|_| libc::EPERM)?;
    Ok((
        rel.to_path_buf(),
        (stat.st_dev, stat.st_ino),
        birth(&opened),
        opened,
    ))
}

/// The birth time of the open file, as `std::fs::Metadata::created` gives it (what the
/// copy snapshotter compares).
fn birth(file: &OwnedFd) -> Option<std::time::SystemTime> {
    std::fs::metadata(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .and_then(|m| m.created())
        .ok()
}

/// What the kernel does to a file whose owner changes: a regular file loses its
/// set-user-ID bit, and its set-group-ID bit when group execution is allowed (Linux
/// treats root as anyone here). `file` is an `O_PATH` descriptor.
fn drop_set_ids(file: &OwnedFd) {
    let Ok(stat) = rustix::fs::fstat(file) else {
        return;
    };
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
        return;
    }
    let mut mode = stat.st_mode & 0o7777;
    mode &= !libc::S_ISUID;
    if mode & libc::S_IXGRP != 0 {
        mode &= !libc::S_ISGID;
    }
    if mode != stat.st_mode & 0o7777 {
        let _ = rustix::fs::chmod(
            format!("/proc/self/fd/{}", file.as_raw_fd()),
            rustix::fs::Mode::from_raw_mode(mode),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filter_sends_the_owner_stat_and_group_calls_and_execve_and_refuses_what_proot_cannot_translate()
     {
        let program = filter();
        // Each jump lands on an instruction of the program.
        for (i, insn) in program.iter().enumerate() {
            if insn.code & 0x7 == libc::BPF_JMP as u16 {
                assert!(i + 1 + (insn.jt as usize) < program.len());
                assert!(i + 1 + (insn.jf as usize) < program.len());
            }
        }
        let run_with = |arch: u32, nr: u32, request: u32| {
            let mut pc = 0;
            let mut acc = 0u32;
            loop {
                let insn = &program[pc];
                let taken = match insn.code as u32 {
                    c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                        acc = match insn.k {
                            0 => nr,
                            4 => arch,
                            16 => request,
                            other => panic!("a load at {other}"),
                        };
                        pc += 1;
                        continue;
                    }
                    c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => acc == insn.k,
                    c if c == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K => acc >= insn.k,
                    _ => return insn.k,
                };
                pc += 1 + usize::from(if taken { insn.jt } else { insn.jf });
            }
        };
        let run = |arch: u32, nr: u32| run_with(arch, nr, 0);
        // proot's register writes go to the listener; its other ptrace requests do not.
        assert_eq!(
            run_with(AUDIT_ARCH_X86_64, 101, 13),
            libc::SECCOMP_RET_USER_NOTIF
        );
        for request in [0, 7, 12, 24] {
            assert_eq!(
                run_with(AUDIT_ARCH_X86_64, 101, request),
                libc::SECCOMP_RET_ALLOW
            );
        }
        for nr in [
            SYS_CHOWN,
            SYS_FCHOWN,
            SYS_LCHOWN,
            SYS_FCHOWNAT,
            SYS_EXECVE,
            SYS_EXIT_GROUP,
            5,
            262,
            115,
            116,
            311,
        ] {
            assert_eq!(run(AUDIT_ARCH_X86_64, nr), libc::SECCOMP_RET_USER_NOTIF);
        }
        for nr in [
            0, 1, 3, 4, 6, 7, 57, 60, 90, 91, 95, 257, 259, 261, 263, 316, 423, 424, 434, 436,
        ] {
            assert_eq!(run(AUDIT_ARCH_X86_64, nr), libc::SECCOMP_RET_ALLOW);
        }
        // statx, execveat, openat2, faccessat2, fchmodat2, io_uring_setup, a future call.
        for nr in [332, 322, 437, 439, 452, 425, 500, 0x4000_0000 | 332] {
            assert_eq!(
                run(AUDIT_ARCH_X86_64, nr),
                libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32
            );
        }
        // Another architecture (i386: `int 0x80`) is killed.
        assert_eq!(run(0x4000_0003, 182), libc::SECCOMP_RET_KILL_PROCESS);
    }
}
