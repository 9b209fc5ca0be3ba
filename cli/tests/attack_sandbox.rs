//! Attacks on the sandbox boundary (issue 13), through the `rbuild` binary: inherited
//! descriptors, the default network (raw sockets, the host's abstract unix sockets),
//! unbounded step output, and the classic container escapes (/proc and /sys writes,
//! mounts and namespaces, devices, signals to host processes, the host name,
//! entitlements), in `rbuild build` and `rbuild run`, as root and as the unprivileged
//! `rbuild-rootless` user (created by scripts/test).
//!
//! Over 600 lines on purpose: six suites of attempts on one boundary (the sandbox), each
//! a list read top to bottom, sharing the probes at the top.

mod support;

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::attack::{Attacks, absent, as_user, refused, run, succeeded};
use support::require::require_root;
use support::run::{fixture, import, rbuild};

/// The unprivileged user of the rootless attempts.
const ROOTLESS_USER: &str = "rbuild-rootless";

/// A store with busybox and python3, a context directory, and the temp dir holding them.
struct Setup {
    dir: tempfile::TempDir,
    root: PathBuf,
    ctx: PathBuf,
}

impl Setup {
    fn new(images: &[&str]) -> Self {
        require_root("it uses namespaces, overlay mounts and fixture recipes");
        let dir = tempfile::tempdir().expect("a temp dir");
        let root = dir.path().join("store");
        for image in images {
            import(&root, &fixture(image), &format!("{image}:latest"), &[]);
        }
        let ctx = dir.path().join("ctx");
        std::fs::create_dir_all(&ctx).expect("the context");
        Setup { dir, root, ctx }
    }

    /// A fresh host directory for canaries, beside the store.
    fn host_dir(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path).expect("a host dir");
        path
    }

    /// `rbuild build` of `dockerfile` with `args`, plain progress, no cache.
    fn build(&self, dockerfile: &str, args: &[&str]) -> Command {
        self.build_with(dockerfile, "plain", args)
    }

    /// `rbuild build` of `dockerfile` with `args`, `progress`, no cache.
    fn build_with(&self, dockerfile: &str, progress: &str, args: &[&str]) -> Command {
        let file = self.ctx.join("Dockerfile");
        std::fs::write(&file, dockerfile).expect("writing the Dockerfile");
        let mut cmd = rbuild(&self.root);
        cmd.args(["build", "--progress", progress, "--no-cache"])
            .args(args)
            .arg(&self.ctx);
        cmd
    }

    /// `rbuild run IMAGE sh -c SCRIPT` with `args` before the image.
    fn run(&self, args: &[&str], image: &str, script: &str) -> Command {
        let mut cmd = rbuild(&self.root);
        cmd.arg("run").args(args).args([image, "sh", "-c", script]);
        cmd
    }
}

/// `cmd` started by bash after `redirections` (`exec 8<DIR`), as a caller of rbuild
/// leaving descriptors open would.
fn with_open_fds(redirections: &str, cmd: &Command) -> Command {
    let mut shell = Command::new("bash");
    shell
        .arg("-c")
        .arg(format!("{redirections}; exec \"$@\""))
        .arg("bash")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => shell.env(key, value),
            None => shell.env_remove(key),
        };
    }
    shell
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Whether a line of the step's own output starts with `marker`: plain progress prints
/// output as `#N SECS TEXT` (and a failure's tail as `SECS TEXT`), `rbuild run` raw; the
/// echoed command lines (`#N [2/2] RUN ... echo MARKER`) never count.
fn printed(out: &Output, marker: &str) -> bool {
    text(out).lines().any(|line| {
        let mut rest = line.trim_start();
        if let Some(after) = rest.strip_prefix('#') {
            match after.split_once(' ') {
                Some((n, tail)) if n.chars().all(|c| c.is_ascii_digit()) => rest = tail,
                _ => return false,
            }
        }
        if let Some((secs, tail)) = rest.split_once(' ') {
            if !secs.is_empty() && secs.chars().all(|c| c.is_ascii_digit() || c == '.') {
                rest = tail;
            }
        }
        rest.starts_with(marker)
    })
}

/// Holds when `out` succeeded and the step printed no line starting with `marker` (what
/// it prints when its attack worked).
fn ran_without(out: &Output, marker: &str) -> Result<(), String> {
    succeeded(out)?;
    if printed(out, marker) {
        return Err(format!("the step printed {marker}: {}", text(out)));
    }
    Ok(())
}

/// Holds when `out` succeeded and the step printed a line starting with `marker`.
fn ran_with(out: &Output, marker: &str) -> Result<(), String> {
    succeeded(out)?;
    if !printed(out, marker) {
        return Err(format!("the step did not print {marker}: {}", text(out)));
    }
    Ok(())
}

/// A host process listening on an abstract unix socket named `name`, answering
/// "host-secret" to every connection; stops with the test.
fn abstract_listener(name: &str) -> UnixListener {
    let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("an abstract name");
    let listener = UnixListener::bind_addr(&addr).expect("binding an abstract socket");
    let served = listener.try_clone().expect("cloning the listener");
    std::thread::spawn(move || {
        for conn in served.incoming() {
            let Ok(mut conn) = conn else { return };
            let _ = std::io::Write::write_all(&mut conn, b"host-secret");
        }
    });
    listener
}

/// A python3 step line connecting to abstract socket `name`, printing what it reads.
fn abstract_probe(name: &str) -> String {
    format!(
        "python3 -c \"import socket; s=socket.socket(socket.AF_UNIX); \
         s.connect(b'\\\\0{name}'); print('GOT', s.recv(20))\" || echo connect-refused"
    )
}

/// A python3 step line opening an AF_PACKET socket on every interface.
const PACKET_PROBE: &str = "python3 -c \"import socket; socket.socket(socket.AF_PACKET, \
    socket.SOCK_RAW, 3); print('PACKET-OPEN')\" || echo packet-refused";

/// A python3 step line opening a raw IP socket.
const RAW_PROBE: &str = "python3 -c \"import socket; socket.socket(socket.AF_INET, \
    socket.SOCK_RAW, socket.IPPROTO_ICMP); print('RAW-OPEN')\" || echo raw-refused";

#[test]
fn inherited_descriptors_never_reach_a_step() {
    let s = Setup::new(&["busybox"]);
    let mut attacks = Attacks::new("sandbox");
    let climb = |what: &str, canary_dir: &Path| {
        format!(
            "ls -l /proc/self/fd/8 /proc/self/fd/9 2>/dev/null && echo FD-VISIBLE; \
             echo pwned > /proc/self/fd/8/../{what} 2>/dev/null && echo CLIMBED; \
             echo pwned >&9 2>/dev/null && echo WROTE-FD9; \
             cat /proc/self/fd/8/../../../etc/hostname 2>/dev/null && echo READ-HOST; \
             test -e {} && echo SAW-HOST-PATH; true",
            canary_dir.display()
        )
    };
    for (name, is_run) in [("build", false), ("run", true)] {
        let host = s.host_dir(&format!("fd-{name}"));
        let inner = host.join("inner");
        std::fs::create_dir_all(&inner).expect("inner dir");
        let written = host.join("written.txt");
        std::fs::write(&written, "").expect("a host file");
        let canary = host.join(format!("canary-{name}"));
        let script = climb(&format!("canary-{name}"), &host);
        let cmd = if is_run {
            s.run(&[], "busybox:latest", &script)
        } else {
            s.build(&format!("FROM busybox:latest\nRUN {script}\n"), &[])
        };
        let redirect = format!("exec 8<'{}' 9>>'{}'", inner.display(), written.display());
        attacks.attempt(
            &format!("fd-dir-climb-{name}"),
            &format!(
                "rbuild {name} started with `exec 8<dir 9>>file`: the step lists fd 8 and 9, \
                 writes /proc/self/fd/8/../canary (host dir, CVE-2024-21626 class) and \
                 writes to fd 9 (a host file open for writing)"
            ),
            || {
                let out = run(&mut with_open_fds(&redirect, &cmd))?;
                ran_without(&out, "FD-VISIBLE")?;
                ran_without(&out, "CLIMBED")?;
                ran_without(&out, "WROTE-FD9")?;
                ran_without(&out, "READ-HOST")?;
                absent(&canary)?;
                let content = std::fs::read_to_string(&written).map_err(|e| e.to_string())?;
                if !content.is_empty() {
                    return Err(format!("the host file was written: {content:?}"));
                }
                Ok(())
            },
        );
    }
    // The working directory is entered before exec, while every inherited descriptor is
    // still open: `/proc/self/fd/8` is then a way out of the root, for reading
    // (`cat secret` from the host directory) and for creating (a dangling link's target
    // is made where it would be).
    let wd = s.host_dir("fd-workdir");
    std::fs::write(wd.join("secret"), "HOST-SECRET\n").expect("a host file");
    let redirect = format!("exec 8<'{}'", wd.display());
    let read_script = "cat secret 2>/dev/null; ls ../../.. 2>/dev/null | head -3; true";
    let cases: [(&str, &dyn Fn() -> Command); 3] = [
        ("workdir-fd-build", &|| {
            s.build(
                &format!("FROM busybox:latest\nWORKDIR /proc/self/fd/8\nRUN {read_script}\n"),
                &[],
            )
        }),
        ("workdir-fd-run", &|| {
            s.run(&["-w", "/proc/self/fd/8"], "busybox:latest", read_script)
        }),
        ("workdir-fd-dangling-link", &|| {
            s.build(
                "FROM busybox:latest\nRUN ln -s /proc/self/fd/8/made /x\nWORKDIR /x/deeper\n\
                 RUN echo pwned > canary; true\n",
                &[],
            )
        }),
    ];
    for (name, cmd) in cases {
        attacks.attempt(
            name,
            "rbuild started with `exec 8<dir`: the step's working directory is \
             /proc/self/fd/8 (or a dangling link through it), so the step starts in the \
             host directory (CVE-2024-21626 class)",
            || {
                let out = run(&mut with_open_fds(&redirect, &cmd()))?;
                if printed(&out, "HOST-SECRET") {
                    return Err(format!("the step read the host file: {}", text(&out)));
                }
                absent(&wd.join("made"))?;
                refused(&out, "inside the step's root")
            },
        );
    }
    let high = s.host_dir("fd-high");
    attacks.attempt(
        "fd-high-number",
        "rbuild build started with a directory open at fd 1000: the step climbs \
         /proc/self/fd/1000/.. to write a canary beside it",
        || {
            let cmd = s.build(
                "FROM busybox:latest\nRUN echo x > /proc/self/fd/1000/../canary-high \
                 2>/dev/null && echo CLIMBED; true\n",
                &[],
            );
            let out = run(&mut with_open_fds(
                &format!("exec 1000<'{}'", high.join(".").display()),
                &cmd,
            ))?;
            ran_without(&out, "CLIMBED")?;
            absent(&s.dir.path().join("canary-high"))
        },
    );
    attacks.finish();
}

#[test]
fn the_default_network_gives_no_raw_sockets_nor_the_hosts_abstract_sockets_and_python_escapes_fail()
{
    let s = Setup::new(&["python3"]);
    let name = format!("rbuild-attack-sandbox-{}", std::process::id());
    let _listener = abstract_listener(&name);
    let probe = abstract_probe(&name);
    let mut attacks = Attacks::new("sandbox");
    attacks.attempt(
        "af-packet-default-build",
        "a RUN step on the default network opens an AF_PACKET socket (captures the host's \
         loopback traffic) and a raw ICMP socket",
        || {
            let out = run(&mut s.build(
                &format!("FROM python3:latest\nRUN {PACKET_PROBE}\nRUN {RAW_PROBE}\n"),
                &[],
            ))?;
            ran_without(&out, "PACKET-OPEN")?;
            ran_without(&out, "RAW-OPEN")?;
            ran_with(&out, "packet-refused")
        },
    );
    attacks.attempt(
        "abstract-socket-default-build",
        "a RUN step on the default network connects to an abstract unix socket a host \
         process listens on",
        || {
            let out = run(&mut s.build(&format!("FROM python3:latest\nRUN {probe}\n"), &[]))?;
            ran_without(&out, "GOT")?;
            ran_with(&out, "connect-refused")
        },
    );
    attacks.attempt(
        "own-abstract-socket-still-works",
        "a RUN step makes and uses an abstract unix socket of its own (scoping must not \
         break what stays inside the step)",
        || {
            let out = run(&mut s.build(
                "FROM python3:latest\nRUN python3 -c \"import socket; \
                 a=socket.socket(socket.AF_UNIX); a.bind(b'\\\\0own'); a.listen(1); \
                 b=socket.socket(socket.AF_UNIX); b.connect(b'\\\\0own'); print('OWN-OK')\"\n",
                &[],
            ))?;
            ran_with(&out, "OWN-OK")
        },
    );
    attacks.attempt(
        "network-host-flag-without-allow",
        "rbuild build --network=host without --allow network.host",
        || {
            let out = run(&mut s.build("FROM python3:latest\nRUN true\n", &["--network=host"]))?;
            refused(&out, "pass --allow network.host")
        },
    );
    attacks.attempt(
        "run-network-host-without-allow",
        "a Dockerfile's RUN --network=host without --allow network.host",
        || {
            let out = run(&mut s.build(
                &format!("FROM python3:latest\nRUN --network=host {PACKET_PROBE}\n"),
                &[],
            ))?;
            refused(
                &out,
                "RUN --network=host is not allowed: pass --allow network.host",
            )
        },
    );
    attacks.attempt(
        "network-host-with-allow",
        "RUN --network=host with --allow network.host gets the host network unconfined \
         (AF_PACKET and the host's abstract socket work: the probes detect a hole)",
        || {
            let out = run(&mut s.build(
                &format!(
                    "FROM python3:latest\nRUN --network=host {PACKET_PROBE}\n\
                     RUN --network=host {probe}\n"
                ),
                &["--allow", "network.host"],
            ))?;
            ran_with(&out, "PACKET-OPEN")?;
            ran_with(&out, "GOT")
        },
    );
    attacks.attempt(
        "af-packet-and-abstract-default-run",
        "rbuild run (default network) opens AF_PACKET and connects to the host's abstract \
         socket",
        || {
            let out = run(&mut s.run(&[], "python3:latest", &format!("{PACKET_PROBE}; {probe}")))?;
            ran_without(&out, "PACKET-OPEN")?;
            ran_without(&out, "GOT")?;
            ran_with(&out, "connect-refused")
        },
    );
    attacks.attempt(
        "run-network-host",
        "rbuild run --network host (asked for explicitly) gets the host network unconfined",
        || {
            let out = run(&mut s.run(&["--network", "host"], "python3:latest", &probe))?;
            ran_with(&out, "GOT")
        },
    );
    attacks.attempt(
        "setuid-ping-regains-net-raw",
        "a set-uid root copy of python3 run by an unprivileged USER tries AF_PACKET (the \
         bounding set must not hold CAP_NET_RAW either)",
        || {
            let out = run(&mut s.build(
                "FROM python3:latest\nRUN cp /usr/bin/python3 /usr/local/bin/sp && \
                     chmod 4755 /usr/local/bin/sp\nUSER nobody\n\
                     RUN sp -c \"import socket; socket.socket(socket.AF_PACKET, \
                     socket.SOCK_RAW, 3); print('PACKET-OPEN')\" || echo packet-refused\n",
                &[],
            ))?;
            ran_without(&out, "PACKET-OPEN")?;
            ran_with(&out, "packet-refused")
        },
    );
    attacks.attempt(
        "ptrace-monitor-and-host",
        "a step looks for processes beyond its own (the monitor, rbuild) in /proc and \
         attaches with ptrace to the host pid of the test (passed as a build argument)",
        || {
            let pid = std::process::id().to_string();
            let out = run(&mut s.build(
                "FROM python3:latest\nARG HOSTPID\nRUN n=$(ls /proc | grep -c '^[0-9]'); \
                 test $n -gt 10 && echo MANY-PIDS-$n; grep -l 'rbuil[d]' \
                 /proc/[0-9]*/cmdline 2>/dev/null && echo SAW-RBUILD; \
                 python3 -c \"import ctypes,sys; l=ctypes.CDLL(None); \
                 print('PTRACE', l.ptrace(16, int(sys.argv[1]), 0, 0))\" $HOSTPID; true\n",
                &["--build-arg", &format!("HOSTPID={pid}")],
            ))?;
            ran_without(&out, "MANY-PIDS")?;
            ran_without(&out, "SAW-RBUILD")?;
            ran_without(&out, "PTRACE 0")?;
            ran_with(&out, "PTRACE -1")
        },
    );
    attacks.attempt(
        "kernel-keyring",
        "a step reads /proc/keys and adds a key to the session keyring (add_key, keyctl)",
        || {
            let out = run(&mut s.build(
                "FROM python3:latest\nRUN test -s /proc/keys && echo KEYS-VISIBLE; \
                 python3 -c \"import ctypes; l=ctypes.CDLL(None, use_errno=True); \
                 r=l.syscall(248, b'user', b'rbuild-attack', b'x', 1, -3); \
                 print('ADD-KEY-OK' if r >= 0 else 'add-key-refused')\"\n",
                &[],
            ))?;
            ran_without(&out, "KEYS-VISIBLE")?;
            ran_without(&out, "ADD-KEY-OK")?;
            ran_with(&out, "add-key-refused")
        },
    );
    attacks.finish();
}

#[test]
fn classic_escapes_from_a_step_fail() {
    let s = Setup::new(&["busybox"]);
    let mut attacks = Attacks::new("sandbox");
    let step = |script: &str| s.build(&format!("FROM busybox:latest\nRUN {script}\n"), &[]);
    attacks.attempt(
        "proc-sys-write",
        "a step writes /proc/sys/kernel/core_pattern (its own value back) and \
         /proc/sysrq-trigger",
        || {
            let out = run(&mut step(
                "cat /proc/sys/kernel/core_pattern > /tmp/cp; \
                 cat /tmp/cp > /proc/sys/kernel/core_pattern 2>/dev/null && echo SYSCTL-WRITTEN; \
                 echo h > /proc/sysrq-trigger 2>/dev/null && echo SYSRQ-WRITTEN; true",
            ))?;
            ran_without(&out, "SYSCTL-WRITTEN")?;
            ran_without(&out, "SYSRQ-WRITTEN")
        },
    );
    attacks.attempt(
        "sys-write",
        "a step writes /sys/kernel/uevent_helper (its own value back) and creates a file \
         under /sys",
        || {
            let out = run(&mut step(
                "v=$(cat /sys/kernel/uevent_helper 2>/dev/null); \
                 echo \"$v\" > /sys/kernel/uevent_helper 2>/dev/null && echo SYS-WRITTEN; \
                 touch /sys/canary 2>/dev/null && echo SYS-WRITTEN; true",
            ))?;
            ran_without(&out, "SYS-WRITTEN")
        },
    );
    attacks.attempt(
        "proc-1-root-climb",
        "a step climbs /proc/1/root/.. and /proc/self/root/../.. looking for the host's \
         store",
        || {
            let store = s.root.display().to_string();
            let out = run(&mut step(&format!(
                "ls /proc/1/root/..{store} 2>/dev/null && echo SAW-STORE; \
                 ls /proc/self/root/../..{store} 2>/dev/null && echo SAW-STORE; \
                 ls /proc/1/cwd/../../..{store} 2>/dev/null && echo SAW-STORE; true"
            )))?;
            ran_without(&out, "SAW-STORE")
        },
    );
    attacks.attempt(
        "mount-in-step",
        "a step mounts a tmpfs, a new proc and a cgroup v1 hierarchy (release_agent, \
         CVE-2022-0492), and unmounts /proc",
        || {
            let out = run(&mut step(
                "mkdir -p /tmp/m; mount -t tmpfs none /tmp/m 2>/dev/null && echo MOUNTED; \
                 mount -t proc proc /tmp/m 2>/dev/null && echo MOUNTED; \
                 mount -t cgroup -o memory cgroup /tmp/m 2>/dev/null && echo MOUNTED; \
                 umount /proc 2>/dev/null && echo MOUNTED; true",
            ))?;
            ran_without(&out, "MOUNTED")
        },
    );
    attacks.attempt(
        "unshare-setns-pivot-root",
        "a step unshares user and mount namespaces, enters pid 1's namespaces with nsenter, \
         and pivot_roots",
        || {
            let out = run(&mut step(
                "unshare -U -r true 2>/dev/null && echo UNSHARED; \
                 unshare -m true 2>/dev/null && echo UNSHARED; \
                 nsenter -t 1 -m -u true 2>/dev/null && echo ENTERED; \
                 mkdir -p /tmp/n/old; pivot_root /tmp/n /tmp/n/old 2>/dev/null \
                 && echo PIVOTED; true",
            ))?;
            ran_without(&out, "UNSHARED")?;
            ran_without(&out, "ENTERED")?;
            ran_without(&out, "PIVOTED")
        },
    );
    attacks.attempt(
        "mknod-host-disk",
        "a step makes a block device node of the host's root disk and reads it, and a char \
         node of /dev/mem and /dev/kmsg",
        || {
            use std::os::unix::fs::MetadataExt;
            let dev = std::fs::metadata("/").map_err(|e| e.to_string())?.dev();
            let (major, minor) = (libc::major(dev), libc::minor(dev));
            let out = run(&mut step(&format!(
                "mknod /tmp/disk b {major} {minor} 2>/dev/null; \
                 [ \"$(head -c 512 /tmp/disk 2>/dev/null | wc -c)\" -gt 0 ] && echo READ-DISK; \
                 mknod /tmp/mem c 1 1 2>/dev/null; \
                 [ \"$(head -c 16 /tmp/mem 2>/dev/null | wc -c)\" -gt 0 ] && echo READ-MEM; \
                 mknod /tmp/kmsg c 1 11 2>/dev/null; \
                 [ \"$(head -c 16 /tmp/kmsg 2>/dev/null | wc -c)\" -gt 0 ] && echo READ-KMSG; \
                 true"
            )))?;
            ran_without(&out, "READ-DISK")?;
            ran_without(&out, "READ-MEM")?;
            ran_without(&out, "READ-KMSG")
        },
    );
    attacks.attempt(
        "cgroup-escape",
        "a step moves itself to the root cgroup (writes /sys/fs/cgroup/*/cgroup.procs) and \
         creates a cgroup",
        || {
            let out = run(&mut step(
                "for f in /sys/fs/cgroup/cgroup.procs /sys/fs/cgroup/*/cgroup.procs; do \
                 echo $$ > $f 2>/dev/null && echo MOVED; done; \
                 mkdir /sys/fs/cgroup/memory/rbuild-attack 2>/dev/null && echo CREATED; true",
            ))?;
            ran_without(&out, "MOVED")?;
            ran_without(&out, "CREATED")
        },
    );
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_rbuild"));
    attacks.attempt(
        "proc-self-exe-overwrite",
        "a step writes through /proc/self/exe and /proc/1/exe (runc's CVE-2019-5736): the \
         host's rbuild binary must not change",
        || {
            let before = std::fs::metadata(&exe).map_err(|e| e.to_string())?;
            let out = run(&mut step(
                "cp /bin/busybox /tmp/bb; /tmp/bb sh -c 'echo pwn > /proc/self/exe' \
                 2>/dev/null && echo WROTE-EXE; \
                 /tmp/bb sh -c 'echo pwn > /proc/1/exe' 2>/dev/null && echo WROTE-EXE; \
                 for p in /proc/[0-9]*; do readlink $p/exe; done | grep -v busybox \
                 | grep -q rbuild && echo SAW-RBUILD-EXE; true",
            ))?;
            ran_without(&out, "SAW-RBUILD-EXE")?;
            let after = std::fs::metadata(&exe).map_err(|e| e.to_string())?;
            if (before.len(), before.modified().ok()) != (after.len(), after.modified().ok()) {
                return Err("the rbuild binary changed".into());
            }
            Ok(())
        },
    );
    attacks.attempt(
        "kill-host-process",
        "a step sends SIGKILL to a host process's pid (passed as a build argument) and to \
         every pid it can name",
        || {
            let mut victim = Command::new("sleep")
                .arg("120")
                .spawn()
                .map_err(|e| format!("starting sleep: {e}"))?;
            let pid = victim.id().to_string();
            let out = run(&mut s.build(
                "FROM busybox:latest\nARG VICTIM\nRUN kill -9 $VICTIM 2>/dev/null; \
                 kill -9 -1 2>/dev/null; true\n",
                &["--build-arg", &format!("VICTIM={pid}")],
            ));
            let alive = matches!(victim.try_wait(), Ok(None));
            let _ = victim.kill();
            let _ = victim.wait();
            succeeded(&out?)?;
            if alive {
                Ok(())
            } else {
                Err(format!("host process {pid} was killed"))
            }
        },
    );
    attacks.attempt(
        "hostname-change",
        "a step sets the host name (hostname, /proc/sys/kernel/hostname): the host's must \
         not change",
        || {
            let before =
                std::fs::read_to_string("/proc/sys/kernel/hostname").map_err(|e| e.to_string())?;
            let out = run(&mut step(
                "hostname rbuild-pwned 2>/dev/null && echo RENAMED; \
                 echo rbuild-pwned > /proc/sys/kernel/hostname 2>/dev/null && echo RENAMED; \
                 true",
            ))?;
            let after =
                std::fs::read_to_string("/proc/sys/kernel/hostname").map_err(|e| e.to_string())?;
            if before != after {
                return Err(format!("the host name changed to {after}"));
            }
            ran_without(&out, "RENAMED")
        },
    );
    attacks.attempt(
        "security-insecure-without-allow",
        "RUN --security=insecure without --allow security.insecure",
        || {
            let out = run(&mut step("--security=insecure true"))?;
            refused(&out, "pass --allow security.insecure")
        },
    );
    attacks.attempt(
        "run-same-set",
        "rbuild run: mount, unshare, /proc/sys write, mknod of the host disk, kill -1",
        || {
            let out = run(&mut s.run(
                &[],
                "busybox:latest",
                "mount -t tmpfs none /mnt 2>/dev/null && echo ESCAPED; \
                 unshare -m true 2>/dev/null && echo ESCAPED; \
                 cat /proc/sys/kernel/core_pattern > /tmp/cp; \
                 cat /tmp/cp > /proc/sys/kernel/core_pattern 2>/dev/null && echo ESCAPED; \
                 touch /sys/canary 2>/dev/null && echo ESCAPED; \
                 hostname pwned 2>/dev/null && echo ESCAPED; true",
            ))?;
            ran_without(&out, "ESCAPED")
        },
    );
    attacks.finish();
}

/// Peak RSS in KiB of `cmd` run under GNU time (`/usr/bin/time -f %M`), and its output.
fn peak_rss(cmd: &Command, discard_stdout: bool) -> Result<(u64, Output), String> {
    let time = Path::new("/usr/bin/time");
    if !time.exists() {
        return Err("/usr/bin/time (Debian package time) is missing: install it".into());
    }
    let report = tempfile::NamedTempFile::new().map_err(|e| e.to_string())?;
    let mut timed = Command::new(time);
    timed
        .args(["-f", "%M", "-o"])
        .arg(report.path())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        if let Some(value) = value {
            timed.env(key, value);
        }
    }
    if discard_stdout {
        timed.stdout(std::process::Stdio::null());
    }
    let out = run(&mut timed)?;
    let kib = std::fs::read_to_string(report.path())
        .map_err(|e| e.to_string())?
        .lines()
        .last()
        .and_then(|l| l.trim().parse().ok())
        .ok_or("no peak RSS in /usr/bin/time's report")?;
    Ok((kib, out))
}

#[test]
fn a_noisy_step_cannot_grow_rbuild() {
    let s = Setup::new(&["busybox"]);
    let mut attacks = Attacks::new("sandbox");
    // 300 MB of 201-byte lines, then a last line and a failure.
    let noisy = "FROM busybox:latest\nRUN yes \"$(printf %0200d 0)\" | head -c 300000000; \
                 echo the-real-last-line; exit 3\n";
    for progress in ["plain", "rawjson"] {
        attacks.attempt(
            &format!("noisy-output-{progress}"),
            &format!(
                "a RUN step writes 300 MB to stdout with --progress {progress}: rbuild's \
                 peak RSS stays under 150 MB, the log says it was clipped, the failure \
                 still shows the real last line"
            ),
            || {
                let cmd = s.build_with(noisy, progress, &[]);
                let (kib, out) = peak_rss(&cmd, false)?;
                let all = text(&out);
                if out.status.success() || !all.contains("exit code: 3") {
                    return Err(format!(
                        "expected the step's failure (exit code 3): {}",
                        out.status
                    ));
                }
                if all.contains("panicked") {
                    return Err("rbuild panicked".into());
                }
                if kib > 150 * 1024 {
                    return Err(format!("peak RSS {kib} KiB"));
                }
                if !all.contains("[output clipped, log limit 2MiB reached]") {
                    return Err("no clipping notice in the output".into());
                }
                if !all.contains("the-real-last-line") {
                    return Err("the last line is not shown".into());
                }
                if all.len() > 8 * 1024 * 1024 {
                    return Err(format!("{} bytes of output", all.len()));
                }
                Ok(())
            },
        );
    }
    attacks.attempt(
        "endless-line",
        "a RUN step writes 200 MB without a line end: bounded RSS, clipped",
        || {
            let (kib, out) = peak_rss(
                &s.build(
                    "FROM busybox:latest\nRUN head -c 200000000 /dev/zero | tr '\\0' x\n",
                    &[],
                ),
                false,
            )?;
            succeeded(&out)?;
            if kib > 150 * 1024 {
                return Err(format!("peak RSS {kib} KiB"));
            }
            ran_with(&out, "[output clipped")
        },
    );
    attacks.attempt(
        "noisy-run",
        "rbuild run writes 200 MB to its standard output: bounded RSS",
        || {
            let cmd = s.run(&[], "busybox:latest", "yes | head -c 200000000");
            let (kib, out) = peak_rss(&cmd, true)?;
            succeeded(&out)?;
            if kib > 150 * 1024 {
                return Err(format!("peak RSS {kib} KiB"));
            }
            Ok(())
        },
    );
    attacks.finish();
}

#[test]
fn rootless_steps_get_neither_descriptors_nor_abstract_sockets() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    let status = Command::new("id").arg(ROOTLESS_USER).output();
    assert!(
        matches!(&status, Ok(out) if out.status.success()),
        "user {ROOTLESS_USER} is missing: create it as scripts/test does"
    );
    let dir = tempfile::tempdir().expect("a temp dir");
    let home = dir.path().join("home");
    std::fs::create_dir_all(home.join("ctx")).expect("dirs");
    let chown = Command::new("chown")
        .args(["-R", ROOTLESS_USER])
        .arg(dir.path())
        .status()
        .expect("chown");
    assert!(chown.success(), "chown of the temp dir failed");
    let as_rootless = |cmd: &Command| as_user(ROOTLESS_USER, cmd);
    let ctx = home.join("ctx");
    // A store per attempt, each built in once.
    let build = |image: &str, dockerfile: &str| {
        let root = home.join(format!("store-{image}"));
        let mut import = rbuild(&root);
        import
            .arg("import")
            .arg(fixture(image))
            .arg(format!("{image}:latest"));
        let out = as_rootless(&import).output().expect("import");
        assert!(out.status.success(), "rootless import: {}", text(&out));
        std::fs::write(ctx.join("Dockerfile"), dockerfile).expect("Dockerfile");
        let mut cmd = rbuild(&root);
        cmd.args(["build", "--progress", "plain", "--no-cache"])
            .arg(&ctx);
        cmd
    };
    let name = format!("rbuild-attack-rootless-{}", std::process::id());
    let _listener = abstract_listener(&name);
    let mut attacks = Attacks::new("sandbox");
    let inner = home.join("inner");
    std::fs::create_dir_all(&inner).expect("inner");
    let written = home.join("written.txt");
    std::fs::write(&written, "").expect("host file");
    let _ = Command::new("chown")
        .args(["-R", ROOTLESS_USER])
        .arg(&home)
        .status();
    attacks.attempt(
        "fd-dir-climb-rootless",
        "rbuild build as rbuild-rootless started with `exec 8<dir 9>>file`: the step climbs \
         /proc/self/fd/8/.. and writes to fd 9",
        || {
            let cmd = build(
                "busybox",
                "FROM busybox:latest\nRUN ls /proc/self/fd/8 2>/dev/null && echo FD-VISIBLE; \
                 echo x > /proc/self/fd/8/../canary 2>/dev/null && echo CLIMBED; \
                 echo pwned >&9 2>/dev/null && echo WROTE-FD9; true\n",
            );
            let redirect = format!("exec 8<'{}' 9>>'{}'", inner.display(), written.display());
            let out = run(&mut with_open_fds(&redirect, &as_rootless(&cmd)))?;
            ran_without(&out, "FD-VISIBLE")?;
            ran_without(&out, "CLIMBED")?;
            ran_without(&out, "WROTE-FD9")?;
            absent(&home.join("canary"))?;
            match std::fs::read_to_string(&written) {
                Ok(content) if content.is_empty() => Ok(()),
                other => Err(format!("the host file: {other:?}")),
            }
        },
    );
    attacks.attempt(
        "abstract-socket-rootless",
        "a rootless RUN step connects to a host process's abstract unix socket and opens \
         AF_PACKET",
        || {
            let out = run(&mut as_rootless(&build(
                "python3",
                &format!(
                    "FROM python3:latest\nRUN {}\nRUN {PACKET_PROBE}\n",
                    abstract_probe(&name)
                ),
            )))?;
            ran_without(&out, "GOT")?;
            ran_with(&out, "connect-refused")?;
            ran_without(&out, "PACKET-OPEN")
        },
    );
    attacks.finish();
}

/// A user or group id in the image's own /etc/passwd or /etc/group beyond 2^31-1 wrapped
/// to 32 bits: `app:x:4294967296:...` with `USER app` ran the step as root, and a group
/// 4294967296 listing the user gave it group root. docker 28.5 (runc) refuses such ids.
#[test]
fn image_ids_out_of_range_never_become_root() {
    let s = Setup::new(&["busybox"]);
    let mut attacks = Attacks::new("sandbox");
    for (name, setup, user) in [
        (
            "passwd-uid-wraps-to-root",
            "printf 'app:x:4294967296:4294967296::/:/bin/sh\\n' >> /etc/passwd",
            "app",
        ),
        ("numeric-uid-out-of-range", "true", "2147483648:0"),
        (
            "group-gid-wraps-to-root",
            "printf 'wrap:x:4294967296:nobody\\n' >> /etc/group",
            "nobody",
        ),
    ] {
        attacks.attempt(
            name,
            "the image's files give the step's user an id of 2^32, which is 0 in 32 bits",
            || {
                let out = run(&mut s.build(
                    &format!(
                        "FROM busybox:latest\nRUN {setup}\nUSER {user}\n\
                         RUN id; id -u | grep -qx 0 && echo RAN-AS-ROOT; \
                         id -G | tr ' ' '\\n' | grep -qx 0 && echo IN-ROOT-GROUP; true\n"
                    ),
                    &[],
                ))?;
                if printed(&out, "RAN-AS-ROOT") || printed(&out, "IN-ROOT-GROUP") {
                    return Err(format!("the step got root's ids: {}", text(&out)));
                }
                refused(&out, "2147483647")
            },
        );
    }
    attacks.finish();
}
