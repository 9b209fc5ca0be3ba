//! Starting a program under a monitor process, in new namespaces, and waiting for it.
//!
//! Process layout: the calling thread spawns a child through `std::process::Command`
//! (so std handles pipes, environment and `exec`), whose `pre_exec` hook makes it the
//! *monitor*: it asks for SIGKILL when the spawning thread dies, joins the step's cgroups
//! and `clone`s the *init* of new namespaces, then only waits for it and exits with its
//! status. The init (PID 1 in its namespace) asks for SIGKILL when the monitor dies,
//! applies the prepared [`Plan`] and returns to std, which `exec`s the program. Killing the
//! monitor (cancel, Ctrl-C, parent death) kills the init, and the kernel then kills
//! everything else in its PID namespace; the mount namespace, and every mount in it, goes
//! with the last process. Without a PID namespace (the chroot isolation) the monitor
//! leads a process group the step's processes share, killed on cancel and once the init
//! has exited; the monitor is also a child subreaper, so what leaves the group (`setsid`,
//! a daemon) comes to it once its parents are gone and is ended then too. It does not die
//! with rbuild: told of rbuild's death (kill -9) by a signal, it ends every process below
//! it and exits.
//!
//! Only async-signal-safe calls happen between `fork` and `exec`: everything is prepared
//! in the parent; `clone` is the raw system call (no `atfork` handlers run). The death
//! signal follows the *thread* that spawned: [`launch`] waits on that same thread.

use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use super::cgroup::Cgroups;
use super::idmap::IdMapCalls;
use super::plan::Plan;
use super::terminal::{self, ConsoleSocket, InputCopy, Terminal};
use super::{CancelToken, ExecError, ExitStatus, Limits, OutputSink, Stream};

/// What to start and how.
pub(crate) struct Launch<'a> {
    /// Program and arguments, resolved through `PATH` of `env` after the plan ran.
    pub argv: &'a [String],
    /// The complete environment.
    pub env: Vec<(String, String)>,
    /// Set-up run by the init before `exec`.
    pub plan: Plan,
    /// `CLONE_NEW*` flags of the init.
    pub clone_flags: libc::c_int,
    /// Run the program as a child of the init rather than as the init itself (runc
    /// cannot be PID 1: it clones with `CLONE_PARENT`, which an init may not use).
    pub nested_init: bool,
    /// cgroup limits for the whole tree.
    pub limits: &'a Limits,
    /// Kills the tree when set.
    pub cancel: &'a CancelToken,
    /// newuidmap/newgidmap runs the monitor makes for a new user namespace.
    pub id_map: Option<IdMapCalls>,
    /// Pass the caller's standard input through instead of `/dev/null`.
    pub inherit_stdin: bool,
    /// A terminal for the program: the init makes it (its [`Plan`] holds the
    /// [`Op::Terminal`](super::plan::Op::Terminal) writing to the socket's child end)
    /// and hands its master over the socket.
    pub console: Option<(ConsoleSocket, &'a Terminal)>,
    /// One pipe for standard output and error ([`super::RunSpec::merge_output`]).
    pub merge_output: bool,
}

fn io_err<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ExecError + 'a {
    move |source| ExecError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Starts `launch`, streams its output to `sink`, and returns how it ended.
pub(crate) fn launch(
    launch: Launch<'_>,
    sink: &mut dyn OutputSink,
) -> Result<ExitStatus, ExecError> {
    let argv = launch.argv;
    let Some(program) = argv.first() else {
        return Err(ExecError::EmptyCommand);
    };
    let mut merged = None;
    let mut cmd = std::process::Command::new(program);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(if launch.inherit_stdin && launch.console.is_none() {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
    if launch.console.is_some() {
        // The init puts the terminal on 0, 1 and 2.
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
    } else if launch.merge_output {
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| io_err("create pipe", Path::new("(output pipe)"))(e.into()))?;
        let write2 = write
            .try_clone()
            .map_err(io_err("create pipe", Path::new("(output pipe)")))?;
        cmd.stdout(Stdio::from(write)).stderr(Stdio::from(write2));
        merged = Some(read);
    } else {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let cgroups = Cgroups::create(launch.limits)?;
    let result = spawn_in_cgroups(cmd, launch, cgroups.as_ref(), merged, sink);
    if let Some(cgroups) = cgroups {
        cgroups.remove();
    }
    result
}

fn spawn_in_cgroups(
    mut cmd: std::process::Command,
    launch: Launch<'_>,
    cgroups: Option<&Cgroups>,
    merged: Option<OwnedFd>,
    sink: &mut dyn OutputSink,
) -> Result<ExitStatus, ExecError> {
    let Launch {
        argv,
        plan,
        clone_flags: flags,
        nested_init,
        cancel,
        mut id_map,
        inherit_stdin,
        console,
        ..
    } = launch;
    let cgroup_fds: Vec<i32> = cgroups
        .map(|c| c.procs.iter().map(AsRawFd::as_raw_fd).collect())
        .unwrap_or_default();
    let (err_read, err_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| io_err("create pipe", Path::new("(error pipe)"))(e.into()))?;
    let err_fd = err_write.as_raw_fd();
    let (status_read, status_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| io_err("create pipe", Path::new("(status pipe)"))(e.into()))?;
    let status_fd = status_write.as_raw_fd();
    let stages: Vec<String> = plan.ops.iter().map(ToString::to_string).collect();
    let parent = rustix::process::getpid().as_raw_nonzero().get();
    // SAFETY: the hook only makes system calls on data prepared before the fork and never
    // returns in the monitor (it `_exit`s); see the module documentation.
    unsafe {
        cmd.pre_exec(move || {
            become_monitor(
                parent,
                flags,
                &cgroup_fds,
                err_fd,
                status_fd,
                id_map.as_mut(),
            );
            // Now the init of the new namespaces.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            // A session of its own, with no controlling terminal: the caller's terminal
            // is not the step's (/dev/tty fails with ENXIO, TIOCSTI on an inherited
            // terminal descriptor fails with EPERM: CVE-2016-9962, CVE-2017-5226).
            // Without a PID namespace the monitor made it, so that its process group
            // holds the step's processes (see `become_monitor`).
            if flags & libc::CLONE_NEWPID != 0 && libc::setsid() < 0 {
                let errno = std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EPERM);
                report(err_fd, NEW_SESSION, errno);
                return Err(std::io::Error::from_raw_os_error(errno));
            }
            match plan.apply() {
                Ok(()) => {
                    if nested_init {
                        fork_and_wait(0, None, err_fd, None, None);
                        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    }
                    if let Err(errno) = close_inherited_on_exec() {
                        report(err_fd, CLOSE_INHERITED, errno);
                        return Err(std::io::Error::from_raw_os_error(errno));
                    }
                    Ok(())
                }
                Err((index, errno)) => {
                    report(err_fd, index as u32, errno);
                    Err(std::io::Error::from_raw_os_error(errno))
                }
            }
        });
    }
    let spawned = cmd.spawn();
    // The command holds the write ends of a merged output pipe: closed here, so the
    // reader sees end-of-file when the step's processes are gone.
    drop(cmd);
    drop(err_write);
    drop(status_write);
    let console = console.map(|(socket, terminal)| {
        drop(socket.child);
        (socket.parent, terminal)
    });
    let mut child = match spawned {
        Ok(child) => child,
        Err(source) => {
            return Err(
                reported_failure(err_read, &stages).unwrap_or(ExecError::Spawn {
                    program: argv[0].clone(),
                    source,
                }),
            );
        }
    };
    let monitor = child.id();
    // Bounded: when the sink is slower than the step writes, the readers wait, the pipes
    // fill and the step blocks in write(2): back-pressure, not memory growth.
    let (tx, rx) = mpsc::sync_channel::<(Stream, Vec<u8>)>(CHUNKS_IN_FLIGHT);
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(pump(out, Stream::Stdout, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(pump(err, Stream::Stderr, tx.clone()));
    }
    if let Some(both) = merged {
        readers.push(pump(fs::File::from(both), Stream::Stdout, tx.clone()));
    }
    let mut attached = None;
    let mut input = None;
    if let Some((socket, terminal)) = &console {
        if let Some(master) = wait_for_master(socket, cancel, monitor) {
            terminal.attach(&master);
            attached = Some(*terminal);
            // Without a reader the step would block on a full terminal: end it.
            match terminal::output_reader(&master) {
                Ok(reader) => readers.push(pump(reader, Stream::Stdout, tx.clone())),
                Err(_) => cancel.cancel(),
            }
            if inherit_stdin {
                input = InputCopy::start(&master).ok();
            }
        }
    }
    drop(tx);
    let mut killed = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok((stream, bytes)) => sink.output(stream, &bytes),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if !killed && cancel.is_cancelled() {
            // The init dies with the monitor (PDEATHSIG), and its namespace with it.
            // Without a PID namespace the monitor leads a process group holding the
            // step's processes: all of them go (none yet if it has not made it).
            // SAFETY: kill takes plain integers; `monitor` is the pid of our own child, not
            // yet reaped (waited for below), so it names no other process, and no process
            // group but the one it leads.
            unsafe {
                if flags & libc::CLONE_NEWPID == 0 {
                    libc::kill(-(monitor as libc::pid_t), libc::SIGKILL);
                }
                libc::kill(monitor as libc::pid_t, libc::SIGKILL);
            }
            killed = true;
        }
    }
    for reader in readers {
        let _ = reader.join();
    }
    if let Some(input) = input {
        input.stop();
    }
    if let Some(terminal) = attached {
        terminal.detach();
    }
    let mut raw = [0u8; 4];
    let status = if fs::File::from(status_read).read_exact(&mut raw).is_ok() {
        // The monitor is still dropping the step's namespace: reap it in the background.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        std::process::ExitStatus::from_raw(i32::from_ne_bytes(raw))
    } else {
        child
            .wait()
            .map_err(io_err("wait for step", Path::new(&argv[0])))?
    };
    if let Some(failure) = reported_failure(err_read, &stages) {
        return Err(failure);
    }
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => ExitStatus::Code(code),
        (None, Some(sig)) => ExitStatus::Signal(sig),
        (None, None) => ExitStatus::Code(-1),
    })
}

/// The terminal's master, once the init hands it over; `None` when the init ended
/// first (its set-up failed: the error pipe says why) or the step was cancelled.
fn wait_for_master(socket: &OwnedFd, cancel: &CancelToken, monitor: u32) -> Option<OwnedFd> {
    loop {
        let mut fd = libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll reads and writes the one `pollfd`.
        let ready = unsafe { libc::poll(&mut fd, 1, 50) };
        if ready > 0 {
            return terminal::receive_fd(socket);
        }
        if cancel.is_cancelled() {
            // The init dies with the monitor (PDEATHSIG).
            // SAFETY: kill takes plain integers; `monitor` is our own child, not yet
            // reaped, so the pid names no other process.
            unsafe { libc::kill(monitor as libc::pid_t, libc::SIGKILL) };
            return None;
        }
    }
}

/// The set-up failure the monitor or init reported on the error pipe, if any. Called
/// once every writer is gone (failed spawn, or after the wait).
fn reported_failure(err_read: OwnedFd, stages: &[String]) -> Option<ExecError> {
    let mut msg = [0u8; 8];
    fs::File::from(err_read).read_exact(&mut msg).ok()?;
    let index = u32::from_ne_bytes([msg[0], msg[1], msg[2], msg[3]]);
    let errno = i32::from_ne_bytes([msg[4], msg[5], msg[6], msg[7]]);
    let stage = match index {
        JOIN_CGROUP => "join the step's cgroups".to_owned(),
        CREATE_NAMESPACES if errno == libc::EPERM || errno == libc::ENOSYS => {
            "create the step's namespaces (denied, as inside a container with default \
             security: build with --isolation chroot, ExecutorKind::Chroot to an embedder)"
                .to_owned()
        }
        CREATE_NAMESPACES => "create the step's namespaces".to_owned(),
        MAP_IDS => "map ids with newuidmap/newgidmap".to_owned(),
        CLOSE_INHERITED => "close the descriptors rbuild inherited".to_owned(),
        NEW_SESSION => "start a new session (setsid)".to_owned(),
        i => stages
            .get(i as usize)
            .cloned()
            .unwrap_or_else(|| format!("operation {i}")),
    };
    Some(ExecError::Setup {
        stage,
        source: std::io::Error::from_raw_os_error(errno),
    })
}

/// The error-pipe code of a failure to join the step's cgroups.
const JOIN_CGROUP: u32 = u32::MAX;
/// The error-pipe code of a failure to create the step's namespaces (`clone`).
const CREATE_NAMESPACES: u32 = u32::MAX - 1;
/// The error-pipe code of a failed newuidmap/newgidmap run.
const MAP_IDS: u32 = u32::MAX - 2;

/// The error-pipe code of a failure to mark inherited descriptors close-on-exec.
const CLOSE_INHERITED: u32 = u32::MAX - 3;

/// The error-pipe code of a failure to start the step's own session.
const NEW_SESSION: u32 = u32::MAX - 4;

/// `CLOSE_RANGE_CLOEXEC` (`linux/close_range.h`, Linux 5.11).
const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;

/// Marks every descriptor above standard error close-on-exec, so the step's program
/// starts with 0, 1 and 2 only: a descriptor rbuild's caller left open (a directory, a
/// host file open for writing) would otherwise reach the step, and from a directory
/// `/proc/self/fd/N/..` climbs to the host's root (runc's CVE-2024-21626). Marked rather
/// than closed: std's own exec-error pipe, the error pipe and the id-map pipe are among
/// them and still work until `exec` (all are close-on-exec already). Async-signal-safe.
fn close_inherited_on_exec() -> Result<(), i32> {
    // SAFETY: close_range only changes descriptor flags of this process.
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error()
            .raw_os_error()
            .unwrap_or(libc::EIO))
    }
}

/// Tells the parent which set-up operation failed (async-signal-safe).
fn report(err_fd: i32, index: u32, errno: i32) {
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&index.to_ne_bytes());
    msg[4..].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: writes a stack buffer to a descriptor this process owns.
    unsafe { libc::write(err_fd, msg.as_ptr().cast(), msg.len()) };
}

/// In the forked child: become the monitor, and return only in the cloned init.
///
/// # Safety
/// Called between fork and exec; async-signal-safe calls only.
unsafe fn become_monitor(
    parent: i32,
    flags: libc::c_int,
    cgroup_fds: &[i32],
    err_fd: i32,
    status_fd: i32,
    id_map: Option<&mut IdMapCalls>,
) {
    // SAFETY: the caller upholds this function's contract (between fork and exec); every
    // call below is async-signal-safe and takes integers, descriptors this process owns, or
    // a static byte string.
    unsafe {
        let own_namespace = flags & libc::CLONE_NEWPID != 0;
        // With a PID namespace the monitor dies with rbuild, the init with it, and the
        // kernel ends the rest. Without one nothing would end the step's processes: the
        // monitor outlives rbuild to end them itself (see `fork_and_wait`).
        if own_namespace {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        } else {
            // Told by a signal it waits for (see `fork_and_wait`), kept pending meanwhile.
            let set = watched_signals();
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            libc::signal(libc::SIGCHLD, libc::SIG_DFL);
            libc::prctl(libc::PR_SET_PDEATHSIG, PARENT_GONE);
        }
        if libc::getppid() != parent {
            libc::_exit(127);
        }
        // Without a PID namespace nothing ends the step's other processes with its init:
        // the monitor starts a session (no controlling terminal) whose process group the
        // init and its children share, and which is killed on cancel and when the init
        // has exited (see `fork_and_wait`), as a PID namespace's would be. As a child
        // subreaper it also inherits whatever leaves the group and loses its parent (a
        // daemon that called setsid), to end it then.
        if !own_namespace {
            if libc::setsid() < 0 {
                report(err_fd, NEW_SESSION, *libc::__errno_location());
                libc::_exit(125);
            }
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        }
        for fd in cgroup_fds {
            if libc::write(*fd, b"0".as_ptr().cast(), 1) != 1 {
                report(err_fd, JOIN_CGROUP, *libc::__errno_location());
                libc::_exit(125);
            }
        }
        let watch = (!own_namespace).then_some(parent);
        fork_and_wait(flags, Some(status_fd), err_fd, id_map, watch);
    }
}

/// Descriptor numbers the monitor keeps: the step's mount namespace and the status pipe.
const KEEP_NS_FD: i32 = 1000;
const KEEP_STATUS_FD: i32 = 1001;

/// Clones a child with `flags` (raw `clone`, so no `atfork` handler runs). Returns in the
/// child; the parent keeps no descriptor, waits for the child and exits as it did.
///
/// With `status_fd` (the monitor), the parent first opens the child's mount namespace,
/// so that tearing it down (unmounting the step's root, /proc, /dev, ...) does not delay
/// the child's exit, and writes the child's wait status to `status_fd` before exiting:
/// the caller learns the result while the namespace goes away in the background. Every
/// process of the step is gone by then (an init's exit waits for its namespace's).
///
/// # Safety
/// Called between fork and exec; async-signal-safe calls only.
unsafe fn fork_and_wait(
    flags: libc::c_int,
    status_fd: Option<i32>,
    err_fd: i32,
    id_map: Option<&mut IdMapCalls>,
    watch_parent: Option<i32>,
) {
    // SAFETY: the caller upholds this function's contract (between fork and exec); the raw
    // clone passes no stack or TLS pointers (the child continues on a copy of this stack,
    // as after fork), and every call below is async-signal-safe on integers, owned
    // descriptors or static bytes.
    unsafe {
        let pid = libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        );
        if pid == 0 {
            if watch_parent.is_some() {
                // The step gets the signal mask rbuild had.
                let set = watched_signals();
                libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            }
            return;
        }
        if pid < 0 {
            report(err_fd, CREATE_NAMESPACES, *libc::__errno_location());
            libc::_exit(126);
        }
        if let Some(map) = id_map {
            // The init waits on the release pipe; on failure it reads end-of-file.
            if map.uid.run(pid as libc::pid_t) && map.gid.run(pid as libc::pid_t) {
                libc::write(map.release_fd, b"1".as_ptr().cast(), 1);
            } else {
                report(err_fd, MAP_IDS, libc::EPERM);
            }
        }
        // No other descriptor stays open here: the parent sees end-of-file on the output
        // pipes once the child and its descendants are gone.
        let mut report_fd = -1;
        if let Some(fd) = status_fd {
            // /proc takes no leading zeros: "/proc/PID/ns/mnt".
            let mut path = [0u8; 40];
            let mut len = 0;
            for part in [&b"/proc/"[..], &decimal(pid as u64)[..], &b"/ns/mnt"[..]] {
                for &b in part.iter().filter(|b| **b != 0) {
                    path[len] = b;
                    len += 1;
                }
            }
            let ns = libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
            if ns >= 0 {
                libc::dup2(ns, KEEP_NS_FD);
            }
            libc::dup2(fd, KEEP_STATUS_FD);
            report_fd = KEEP_STATUS_FD;
            libc::syscall(libc::SYS_close_range, 0u32, (KEEP_NS_FD - 1) as u32, 0u32);
            libc::syscall(
                libc::SYS_close_range,
                (KEEP_STATUS_FD + 1) as u32,
                u32::MAX,
                0u32,
            );
        } else {
            libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
        }
        let mut status = 0;
        loop {
            // Watching the parent (rbuild) too: the child's end (SIGCHLD) and the
            // parent's (PARENT_GONE) stay pending until taken here, so neither is missed
            // between a look and the wait.
            let options = if watch_parent.is_some() {
                libc::WNOHANG
            } else {
                0
            };
            let r = libc::waitpid(pid as libc::pid_t, &mut status, options);
            if r == pid as libc::pid_t {
                break;
            }
            if r < 0 && *libc::__errno_location() != libc::EINTR {
                libc::_exit(126);
            }
            if let Some(parent) = watch_parent {
                if libc::getppid() != parent {
                    // rbuild is gone (kill -9): the step goes with it, as a PID
                    // namespace's would.
                    end_descendants();
                    libc::_exit(137);
                }
                let set = watched_signals();
                let most = libc::timespec {
                    tv_sec: 1,
                    tv_nsec: 0,
                };
                libc::sigtimedwait(&set, std::ptr::null_mut(), &most);
            }
        }
        if report_fd >= 0 {
            let bytes = status.to_ne_bytes();
            libc::write(report_fd, bytes.as_ptr().cast(), bytes.len());
            if flags & libc::CLONE_NEWPID == 0 {
                // What the step left running goes with it: what left the process
                // group and came to the monitor, then the group (the monitor's, see
                // `become_monitor`), the monitor too: its status is sent.
                end_descendants();
                libc::kill(0, libc::SIGKILL);
            }
        }
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        let sig = libc::WTERMSIG(status);
        libc::signal(sig, libc::SIG_DFL);
        libc::kill(libc::getpid(), sig);
        libc::_exit(128 + sig);
    }
}

/// `n` in decimal, without leading zeros, right-aligned after NUL padding (so that
/// skipping NULs gives the digits). Async-signal-safe.
fn decimal(mut n: u64) -> [u8; 20] {
    let mut out = [0u8; 20];
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return out;
        }
    }
}

/// The signal the monitor of a step without a PID namespace gets when rbuild dies.
const PARENT_GONE: libc::c_int = libc::SIGUSR2;

/// SIGCHLD and [`PARENT_GONE`]: what a monitor watching its parent waits for.
fn watched_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset and sigaddset write the local set; all-zero is a valid set to
    // start from.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigaddset(&mut set, PARENT_GONE);
        set
    }
}

/// Kills every descendant of this process, a child subreaper: its children, then those
/// that come to it when their parents die, until none is left (bounded: a process killed
/// cannot fork again, so each round leaves only the orphans of the last).
///
/// # Safety
/// Called between fork and exec; async-signal-safe calls only.
unsafe fn end_descendants() {
    // SAFETY: open, read, close, kill, waitpid and nanosleep on integers, this stack's
    // buffers and a path built here; async-signal-safe.
    unsafe {
        // /proc takes no leading zeros: "/proc/self/task/PID/children".
        let mut path = [0u8; 64];
        let mut len = 0;
        for part in [
            &b"/proc/self/task/"[..],
            &decimal(libc::getpid() as u64)[..],
        ] {
            for &b in part.iter().filter(|b| **b != 0) {
                path[len] = b;
                len += 1;
            }
        }
        for &b in b"/children" {
            path[len] = b;
            len += 1;
        }
        for _ in 0..10_000 {
            let mut any = false;
            let fd = libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd >= 0 {
                let mut buf = [0u8; 4096];
                let mut pid: i32 = 0;
                let mut digits = false;
                loop {
                    let got = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
                    if got <= 0 {
                        break;
                    }
                    for &b in &buf[..got as usize] {
                        if b.is_ascii_digit() {
                            pid = pid.saturating_mul(10).saturating_add(i32::from(b - b'0'));
                            digits = true;
                        } else if digits {
                            libc::kill(pid, libc::SIGKILL);
                            any = true;
                            pid = 0;
                            digits = false;
                        }
                    }
                }
                if digits {
                    libc::kill(pid, libc::SIGKILL);
                    any = true;
                }
                libc::close(fd);
            }
            let mut status = 0;
            while libc::waitpid(-1, &mut status, libc::WNOHANG) > 0 {}
            if !any && libc::waitpid(-1, &mut status, libc::WNOHANG) < 0 {
                // No child left, none to come.
                return;
            }
            let pause = libc::timespec {
                tv_sec: 0,
                tv_nsec: 5_000_000,
            };
            libc::nanosleep(&pause, std::ptr::null_mut());
        }
    }
}

/// Output chunks (of at most [`CHUNK`] bytes) queued between the pipe readers and the
/// sink.
const CHUNKS_IN_FLIGHT: usize = 4;

/// The most one read of a step's output pipe takes.
const CHUNK: usize = 16 * 1024;

fn pump(
    mut from: impl Read + Send + 'static,
    stream: Stream,
    tx: mpsc::SyncSender<(Stream, Vec<u8>)>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.send((stream, buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_has_no_leading_zeros() {
        let digits = |n| {
            decimal(n)
                .iter()
                .filter(|b| **b != 0)
                .map(|b| *b as char)
                .collect::<String>()
        };
        assert_eq!(digits(0), "0");
        assert_eq!(digits(7), "7");
        assert_eq!(digits(4_194_304), "4194304");
        assert_eq!(digits(u64::MAX), u64::MAX.to_string());
    }
}
