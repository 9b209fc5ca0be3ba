//! The built-in namespace sandbox.
//!
//! Process layout: the calling thread spawns a child through `std::process::Command`
//! (so std handles pipes, environment and `exec`), whose `pre_exec` hook makes it the
//! *monitor*: it asks for SIGKILL when the spawning thread dies, joins the step's cgroups
//! and `clone`s the *init* of new mount/PID/UTS/IPC(/net) namespaces, then only waits for
//! it and exits with its status. The init (PID 1 in its namespace) asks for SIGKILL when
//! the monitor dies, applies the prepared [`Plan`] (mounts, `pivot_root`, user) and
//! returns to std, which `exec`s the command. Killing the monitor (cancel, Ctrl-C, parent
//! death) kills the init, and the kernel then kills everything else in its PID namespace;
//! the mount namespace, and every mount in it, goes with the last process.
//!
//! Only async-signal-safe calls happen between `fork` and `exec`: everything is prepared
//! in the parent; `clone` is the raw system call (no `atfork` handlers run).
//!
//! Rootless use (an unprivileged caller) is not implemented by this back end yet: it needs
//! a user namespace with newuidmap/newgidmap, and fails at the first mount otherwise.

use std::ffi::CString;
use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use super::cgroup::Cgroups;
use super::plan::{Op, Plan};
use super::stubs::Stubs;
use super::user::{Credentials, resolve_user};
use super::{DEFAULT_PATH, ExecError, Executor, ExitStatus, Network, OutputSink, RunSpec, Stream};
use crate::snapshot::{LowerView, RootFs, Snapshot};

/// Devices bound from the host into the step's `/dev`.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Host files a step sees at the same path, generated per step.
const ETC_FILES: [&str; 3] = ["etc/resolv.conf", "etc/hosts", "etc/hostname"];

/// Runs steps in new namespaces with no outside program.
#[derive(Debug, Clone, Default)]
pub struct SandboxExecutor {
    _private: (),
}

impl SandboxExecutor {
    /// A sandbox executor.
    pub fn new() -> Self {
        Self::default()
    }
}

fn cstr(path: &Path) -> Result<CString, ExecError> {
    CString::new(path.as_os_str().as_bytes()).map_err(|e| ExecError::Io {
        action: "use path",
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
    })
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

/// Reads a small file of the image through the merged view, never through a symlink.
fn read_image_file(view: &LowerView, rel: &str) -> Result<Option<String>, ExecError> {
    let rel = Path::new(rel);
    if view.crosses_symlink(rel)? {
        return Ok(None);
    }
    match view.lookup(rel)? {
        Some(entry) if entry.is_file => fs::read_to_string(&entry.path)
            .map(Some)
            .map_err(io_err("read", &entry.path)),
        _ => Ok(None),
    }
}

impl Executor for SandboxExecutor {
    fn run(
        &self,
        snapshot: &Snapshot,
        spec: &RunSpec,
        sink: &mut dyn OutputSink,
    ) -> Result<ExitStatus, ExecError> {
        let argv = spec.argv()?;
        let view = snapshot.view();
        let creds = match &spec.user {
            None => Credentials::root(),
            Some(user) => resolve_user(
                user,
                read_image_file(&view, "etc/passwd")?.as_deref(),
                read_image_file(&view, "etc/group")?.as_deref(),
            )?,
        };
        let scratch = snapshot.scratch();
        let mut stubs = Stubs::new(snapshot.root().writable_dir());
        let built = build_plan(snapshot, spec, &creds, &view, scratch, &mut stubs);
        let result = built.and_then(|plan| {
            stubs.seal()?;
            spawn_and_wait(plan, spec, &creds, &argv, sink)
        });
        let cleaned = stubs.remove();
        let status = result?;
        cleaned?;
        Ok(status)
    }
}

fn build_plan(
    snapshot: &Snapshot,
    spec: &RunSpec,
    creds: &Credentials,
    view: &LowerView,
    scratch: &Path,
    stubs: &mut Stubs,
) -> Result<Plan, ExecError> {
    let mountpoint = scratch.join("rootfs");
    fs::create_dir_all(&mountpoint).map_err(io_err("create directory", &mountpoint))?;
    let mp = |rel: &str| cstr(&mountpoint.join(rel));
    let mut ops = vec![Op::MakeRootPrivate];
    match snapshot.root() {
        RootFs::Dir(dir) => ops.push(Op::Bind {
            source: cstr(dir)?,
            target: cstr(&mountpoint)?,
            recursive: true,
            readonly: false,
        }),
        RootFs::Overlay {
            lowers,
            upper,
            work,
            userxattr,
        } => ops.push(Op::Overlay {
            lowers: lowers
                .iter()
                .rev()
                .map(|l| cstr(l))
                .collect::<Result<_, _>>()?,
            upper: cstr(upper)?,
            work: cstr(work)?,
            target: cstr(&mountpoint)?,
            userxattr: *userxattr,
        }),
    }
    let nodev = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    if stubs.ensure(view, Path::new("proc"), true)? {
        ops.push(Op::Mount {
            source: c"proc".into(),
            target: mp("proc")?,
            fstype: c"proc".into(),
            flags: nodev,
            data: None,
        });
    }
    if stubs.ensure(view, Path::new("dev"), true)? {
        ops.push(Op::Mount {
            source: c"tmpfs".into(),
            target: mp("dev")?,
            fstype: c"tmpfs".into(),
            flags: libc::MS_NOSUID | libc::MS_STRICTATIME,
            data: Some(c"mode=755,size=65536k".into()),
        });
        for dev in DEVICES {
            let target = mp(&format!("dev/{dev}"))?;
            ops.push(Op::Touch {
                path: target.clone(),
            });
            ops.push(Op::Bind {
                source: cstr(&Path::new("/dev").join(dev))?,
                target,
                recursive: false,
                readonly: false,
            });
        }
        ops.push(Op::Mkdir {
            path: mp("dev/pts")?,
            mode: 0o755,
        });
        ops.push(Op::Mount {
            source: c"devpts".into(),
            target: mp("dev/pts")?,
            fstype: c"devpts".into(),
            flags: libc::MS_NOSUID | libc::MS_NOEXEC,
            data: Some(c"newinstance,ptmxmode=0666,mode=0620".into()),
        });
        ops.push(Op::Symlink {
            target: c"pts/ptmx".into(),
            link: mp("dev/ptmx")?,
        });
        ops.push(Op::Mkdir {
            path: mp("dev/shm")?,
            mode: 0o1777,
        });
        ops.push(Op::Mount {
            source: c"shm".into(),
            target: mp("dev/shm")?,
            fstype: c"tmpfs".into(),
            flags: nodev,
            data: Some(c"mode=1777,size=65536k".into()),
        });
        for (link, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            ops.push(Op::Symlink {
                target: cstr(Path::new(target))?,
                link: mp(&format!("dev/{link}"))?,
            });
        }
    }
    if stubs.ensure(view, Path::new("sys"), true)? {
        ops.push(Op::Mount {
            source: c"sysfs".into(),
            target: mp("sys")?,
            fstype: c"sysfs".into(),
            flags: nodev | libc::MS_RDONLY,
            data: None,
        });
    }
    for rel in ETC_FILES {
        let source = scratch.join(rel.replace('/', "-"));
        fs::write(&source, etc_file(rel, &spec.hostname)).map_err(io_err("write", &source))?;
        if stubs.ensure(view, Path::new(rel), false)? {
            ops.push(Op::Bind {
                source: cstr(&source)?,
                target: mp(rel)?,
                recursive: false,
                readonly: false,
            });
        }
    }
    ops.push(Op::Hostname(CString::new(spec.hostname.as_str()).map_err(
        |e| ExecError::Setup {
            stage: "set host name".to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
        },
    )?));
    if spec.network == Network::None {
        ops.push(Op::LoopbackUp);
    }
    ops.push(Op::PivotRoot {
        new_root: cstr(&mountpoint)?,
    });
    let mut prefixes = Vec::new();
    let mut prefix = PathBuf::from("/");
    for component in Path::new(&spec.workdir).components().skip(1) {
        prefix.push(component);
        prefixes.push(cstr(&prefix)?);
    }
    ops.push(Op::WorkDir { prefixes });
    ops.push(Op::Credentials {
        uid: creds.uid,
        gid: creds.gid,
        groups: creds.groups.clone(),
    });
    Ok(Plan { ops })
}

/// The contents of a generated /etc file: the host's resolver and hosts, the build's name.
fn etc_file(rel: &str, hostname: &str) -> String {
    match rel {
        "etc/hostname" => format!("{hostname}\n"),
        "etc/hosts" => {
            let mut hosts = fs::read_to_string("/etc/hosts")
                .unwrap_or_else(|_| "127.0.0.1\tlocalhost\n::1\tlocalhost\n".to_owned());
            if !hosts.ends_with('\n') {
                hosts.push('\n');
            }
            hosts.push_str(&format!("127.0.1.1\t{hostname}\n"));
            hosts
        }
        _ => fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    }
}

fn spawn_and_wait(
    plan: Plan,
    spec: &RunSpec,
    creds: &Credentials,
    argv: &[String],
    sink: &mut dyn OutputSink,
) -> Result<ExitStatus, ExecError> {
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let has = |name: &str| spec.env.iter().any(|(k, _)| k == name);
    if !has("PATH") {
        cmd.env("PATH", DEFAULT_PATH);
    }
    if !has("HOSTNAME") {
        cmd.env("HOSTNAME", &spec.hostname);
    }
    if let (false, Some(home)) = (has("HOME"), &creds.home) {
        cmd.env("HOME", home);
    }
    cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));

    let cgroups = Cgroups::create(&spec.limits)?;
    let result = spawn_in_cgroups(cmd, plan, spec, cgroups.as_ref(), argv, sink);
    if let Some(cgroups) = cgroups {
        cgroups.remove();
    }
    result
}

fn spawn_in_cgroups(
    mut cmd: std::process::Command,
    plan: Plan,
    spec: &RunSpec,
    cgroups: Option<&Cgroups>,
    argv: &[String],
    sink: &mut dyn OutputSink,
) -> Result<ExitStatus, ExecError> {
    let cgroup_fds: Vec<i32> = cgroups
        .map(|c| c.procs.iter().map(AsRawFd::as_raw_fd).collect())
        .unwrap_or_default();
    let (err_read, err_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| io_err("create pipe", Path::new("(error pipe)"))(e.into()))?;
    let err_fd = err_write.as_raw_fd();
    let stages: Vec<String> = plan.ops.iter().map(ToString::to_string).collect();
    let parent = rustix::process::getpid().as_raw_nonzero().get();
    let mut flags =
        libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC;
    if spec.network == Network::None {
        flags |= libc::CLONE_NEWNET;
    }
    // SAFETY: the hook only makes system calls on data prepared before the fork and never
    // returns in the monitor (it `_exit`s); see the module documentation.
    unsafe {
        cmd.pre_exec(move || {
            become_monitor(parent, flags, &cgroup_fds, err_fd);
            // Now the init of the new namespaces.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            match plan.apply() {
                Ok(()) => Ok(()),
                Err((index, errno)) => {
                    report(err_fd, index as u32, errno);
                    Err(std::io::Error::from_raw_os_error(errno))
                }
            }
        });
    }
    let spawned = cmd.spawn();
    drop(err_write);
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
    let (tx, rx) = mpsc::channel::<(Stream, Vec<u8>)>();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        readers.push(pump(out, Stream::Stdout, tx.clone()));
    }
    if let Some(err) = child.stderr.take() {
        readers.push(pump(err, Stream::Stderr, tx.clone()));
    }
    drop(tx);
    let mut killed = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(50)) {
            Ok((stream, bytes)) => sink.output(stream, &bytes),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if !killed && spec.cancel.is_cancelled() {
            // The init dies with the monitor (PDEATHSIG), and its namespace with it.
            unsafe { libc::kill(monitor as libc::pid_t, libc::SIGKILL) };
            killed = true;
        }
    }
    for reader in readers {
        let _ = reader.join();
    }
    let status = child
        .wait()
        .map_err(io_err("wait for step", Path::new(&argv[0])))?;
    if let Some(failure) = reported_failure(err_read, &stages) {
        return Err(failure);
    }
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => ExitStatus::Code(code),
        (None, Some(sig)) => ExitStatus::Signal(sig),
        (None, None) => ExitStatus::Code(-1),
    })
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
unsafe fn become_monitor(parent: i32, flags: libc::c_int, cgroup_fds: &[i32], err_fd: i32) {
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::getppid() != parent {
            libc::_exit(127);
        }
        for fd in cgroup_fds {
            if libc::write(*fd, b"0".as_ptr().cast(), 1) != 1 {
                report(err_fd, JOIN_CGROUP, *libc::__errno_location());
                libc::_exit(125);
            }
        }
        let pid = libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        );
        if pid == 0 {
            return;
        }
        if pid < 0 {
            libc::_exit(126);
        }
        // The monitor keeps no descriptor: the parent sees end-of-file on the output
        // pipes once the init and its descendants are gone.
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
        let mut status = 0;
        loop {
            let r = libc::waitpid(pid as libc::pid_t, &mut status, 0);
            if r == pid as libc::pid_t {
                break;
            }
            if r < 0 && *libc::__errno_location() != libc::EINTR {
                libc::_exit(126);
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

fn pump(
    mut from: impl Read + Send + 'static,
    stream: Stream,
    tx: mpsc::Sender<(Stream, Vec<u8>)>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 16 * 1024];
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
