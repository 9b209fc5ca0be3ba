//! `rbuild run` on the busybox fixture imported into a temporary store: exit codes,
//! the image's config against the command line, stdin, networking, and that nothing of
//! a run is kept.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::require::require_root;
use support::run::{
    fixture, import, mounts_under, output, processes_with, rbuild, scratch_entries, success,
};

/// One store for the whole file: `plain` (CMD only) and `configured` (entrypoint, env,
/// working directory, user).
fn store() -> &'static Path {
    static STORE: OnceLock<tempfile::TempDir> = OnceLock::new();
    STORE
        .get_or_init(|| {
            require_root("it uses namespaces, overlay mounts and fixture recipes");
            let tar = fixture("busybox");
            let dir = tempfile::tempdir().expect("creating a temp store");
            import(dir.path(), &tar, "plain", &[r#"CMD ["echo", "from-cmd"]"#]);
            import(
                dir.path(),
                &tar,
                "configured",
                &[
                    r#"ENTRYPOINT ["/bin/echo", "ep"]"#,
                    r#"CMD ["c1", "c2"]"#,
                    "ENV GREETING=hello WHO=image",
                    "WORKDIR /tmp",
                    "USER nobody",
                ],
            );
            dir
        })
        .path()
}

/// A store of its own with `plain` only, for tests that check the scratch directory
/// (runs of other tests would show up in a shared one).
fn own_store() -> tempfile::TempDir {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    let dir = tempfile::tempdir().expect("creating a temp store");
    import(dir.path(), &fixture("busybox"), "plain", &[]);
    dir
}

fn run(args: &[&str]) -> Output {
    output(rbuild(store()).arg("run").args(args))
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("rbuild exited with a code")
}

#[test]
fn the_exit_code_is_the_commands() {
    assert_eq!(code(&run(&["plain", "true"])), 0);
    assert_eq!(code(&run(&["plain", "sh", "-c", "exit 7"])), 7);
    assert_eq!(code(&run(&["plain", "sh", "-c", "exit 255"])), 255);
}

#[test]
fn rbuild_own_failures_use_dockers_codes() {
    let missing = run(&["plain", "no-such-program"]);
    assert_eq!(code(&missing), 127, "{missing:?}");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no-such-program"));
    assert_eq!(code(&run(&["plain", "/etc/passwd"])), 126);
    let unknown = run(&["no-such-image"]);
    assert_eq!(code(&unknown), 125);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no-such-image"));
    assert_eq!(code(&run(&["-w", "relative", "plain", "true"])), 125);
}

/// docker's options for long-lived containers are refused with what to do instead; `-i`
/// is accepted (standard input is always passed through).
#[test]
fn options_for_kept_containers_are_refused_with_a_reason() {
    for (args, says) in [
        (&["-d", "plain", "true"][..], "-d is not supported"),
        (
            &["-p", "8080:80", "plain", "true"][..],
            "already reachable on the host",
        ),
        (
            &["--name", "web", "plain", "true"][..],
            "--name is not supported",
        ),
    ] {
        let out = run(args);
        assert_eq!(code(&out), 125, "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert_eq!(code(&run(&["-i", "plain", "true"])), 0);
}

/// `-it` from a pipe fails as `docker run -it` does (its words, exit code 1); `-t` alone
/// needs no terminal of rbuild's: the command gets one of its own (docker 28.5 alike:
/// `tty` prints /dev/pts/0, lines end with the terminal's CR LF).
#[test]
fn a_terminal_without_one_to_type_from() {
    let out = output(
        rbuild(store())
            .args(["run", "-it", "plain", "true"])
            .stdin(Stdio::null()),
    );
    assert_eq!(code(&out), 1, "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).trim(),
        "the input device is not a TTY"
    );
    let out = output(
        rbuild(store())
            .args(["run", "-t", "plain", "sh", "-c", "tty; exit 4"])
            .stdin(Stdio::null()),
    );
    assert_eq!(code(&out), 4, "{out:?}");
    assert_eq!(stdout(&out), "/dev/pts/0\r\n");
    // Piped: stdout and stderr stay apart, stdin is not a terminal.
    let out = run(&["-i", "plain", "sh", "-c", "tty; true"]);
    assert_eq!(stdout(&out), "not a tty\n");
}

#[test]
fn arguments_replace_cmd() {
    assert_eq!(
        stdout(&success(rbuild(store()).args(["run", "plain"]))),
        "from-cmd\n"
    );
    let out = run(&["plain", "echo", "-n", "--rm", "x"]);
    assert_eq!(
        stdout(&out),
        "--rm x",
        "options after the image belong to the command"
    );
}

#[test]
fn entrypoint_takes_cmd_or_arguments_and_a_new_one_drops_cmd() {
    assert_eq!(stdout(&run(&["configured"])), "ep c1 c2\n");
    assert_eq!(stdout(&run(&["configured", "a"])), "ep a\n");
    assert_eq!(
        stdout(&run(&["--entrypoint", "/bin/echo", "configured"])),
        "\n"
    );
    assert_eq!(
        stdout(&run(&["--entrypoint", "/bin/echo", "configured", "z"])),
        "z\n"
    );
    assert_eq!(
        stdout(&run(&["--entrypoint", "", "configured", "echo", "no-ep"])),
        "no-ep\n"
    );
}

#[test]
fn environment_comes_from_the_image_then_the_command_line() {
    let out = success(
        rbuild(store())
            .env("FROM_HOST", "host-value")
            .args([
                "run",
                "-e",
                "WHO=cli",
                "-e",
                "FROM_HOST",
                "-e",
                "UNSET_HERE",
            ])
            .args(["--entrypoint", "/bin/sh", "configured", "-c"])
            .arg("echo $GREETING $WHO $FROM_HOST ${UNSET_HERE-unset} $PATH"),
    );
    assert_eq!(
        stdout(&out),
        "hello cli host-value unset /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
    );
}

#[test]
fn working_directory_and_user_come_from_the_image_or_the_options() {
    let probe = [
        "--entrypoint",
        "/bin/sh",
        "configured",
        "-c",
        "echo $(pwd) $(id -u):$(id -g)",
    ];
    assert_eq!(stdout(&run(&probe)), "/tmp 65534:65534\n");
    let mut args = vec!["-w", "/var", "-u", "0:65534"];
    args.extend(probe);
    assert_eq!(stdout(&run(&args)), "/var 0:65534\n");
    // A working directory missing from the image is created for the run.
    assert_eq!(
        stdout(&run(&["-w", "/new/dir", "plain", "pwd"])),
        "/new/dir\n"
    );
}

/// issue 14 bug 6: groups and HOME as `docker run --user` gives them: the primary group
/// always, supplementary groups only without an explicit group, HOME `/` for a uid
/// /etc/passwd does not list.
#[test]
fn user_groups_and_home_are_dockers() {
    let probe = |user: &str| {
        stdout(&run(&[
            "-u",
            user,
            "plain",
            "sh",
            "-c",
            "echo $(id -G) $HOME",
        ]))
    };
    assert_eq!(probe("root"), "0 /root\n");
    assert_eq!(probe("nobody:nogroup"), "65534 /nonexistent\n");
    assert_eq!(probe("0:65534"), "65534 /root\n");
    assert_eq!(probe("2000"), "0 /\n");
    assert_eq!(probe("2000:2001"), "2001 /\n");
}

#[test]
fn standard_input_reaches_the_command() {
    let mut child = rbuild(store())
        .args(["run", "plain", "sh", "-c", "tr a-z A-Z; echo done >&2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting rbuild run");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(b"through stdin\n")
        .expect("writing to rbuild's stdin");
    let out = child.wait_with_output().expect("waiting for rbuild run");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&out), "THROUGH STDIN\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "done\n");
}

#[test]
fn network_is_the_hosts_by_default_and_loopback_only_with_none() {
    let host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .expect("reading the host's interfaces")
        .map(|e| {
            e.expect("an interface")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let shared = stdout(&run(&["plain", "ls", "/sys/class/net"]));
    for iface in &host {
        assert!(
            shared.split_whitespace().any(|i| i == iface),
            "{iface} missing in {shared}"
        );
    }
    let none = stdout(&run(&[
        "--network",
        "none",
        "plain",
        "ls",
        "/sys/class/net",
    ]));
    assert_eq!(none.split_whitespace().collect::<Vec<_>>(), ["lo"]);
}

#[test]
fn a_file_written_by_one_run_is_gone_in_the_next() {
    let own = own_store();
    let run = |args: &[&str]| output(rbuild(own.path()).arg("run").args(args));
    let first = run(&[
        "plain",
        "sh",
        "-c",
        "echo x > /written && rm /bin/ls && cat /written",
    ]);
    assert_eq!(stdout(&first), "x\n", "{first:?}");
    assert_eq!(code(&run(&["plain", "test", "-e", "/written"])), 1);
    assert_eq!(code(&run(&["plain", "test", "-e", "/bin/ls"])), 0);
    assert_eq!(scratch_entries(own.path()), Vec::<String>::new());
}

/// As root and as another user: changing ids clears a process's parent-death signal, and a
/// `USER nobody` container once kept running after rbuild was stopped.
#[test]
fn sigterm_to_rbuild_stops_the_container_and_leaves_nothing_behind() {
    for (user, number) in [(None, "3217"), (Some("65534:65534"), "3218")] {
        let own = own_store();
        let marker = format!("sleep {number}");
        let mut cmd = rbuild(own.path());
        cmd.arg("run");
        if let Some(user) = user {
            cmd.args(["-u", user]);
        }
        let mut child = cmd
            .args(["plain", "sh", "-c", &marker])
            .spawn()
            .expect("starting rbuild run");
        let started = Instant::now();
        while processes_with(&marker).len() < 2 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the container's sleep never started ({user:?})"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: kill on the child's pid, which this test owns and has not reaped.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        // Bounded: a container that ignores the stop keeps rbuild waiting forever.
        let stopping = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for rbuild run") {
                break status;
            }
            if stopping.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                for (pid, _) in processes_with(number) {
                    // SAFETY: kill on pids of this test's own marker command.
                    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
                }
                panic!("rbuild run ({user:?}) did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(
            !status.success(),
            "a stopped container does not exit 0: {status}"
        );
        let gone = Instant::now();
        while processes_with(number)
            .iter()
            .any(|(_, l)| l.starts_with("sleep"))
        {
            assert!(
                gone.elapsed() < Duration::from_secs(10),
                "the container's process outlived rbuild ({user:?}): {:?}",
                processes_with(number)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(mounts_under(own.path()), Vec::<String>::new());
        assert_eq!(scratch_entries(own.path()), Vec::<String>::new());
    }
}

#[test]
fn volumes_bind_host_paths_read_write_or_read_only() {
    let host = tempfile::tempdir().expect("creating a host directory");
    let dir = host.path().to_str().expect("a UTF-8 temp path");
    std::fs::write(host.path().join("in.txt"), "from host\n").expect("writing in.txt");
    let rw = format!("{dir}:/data");
    let out = run(&[
        "-v",
        &rw,
        "plain",
        "sh",
        "-c",
        "cat /data/in.txt; echo back > /data/out.txt",
    ]);
    assert_eq!(stdout(&out), "from host\n", "{out:?}");
    assert_eq!(
        std::fs::read_to_string(host.path().join("out.txt")).expect("the container's write"),
        "back\n"
    );
    // A missing mount point is made for the run only; :ro refuses writes.
    let ro = format!("{dir}:/deep/new/dir:ro");
    let out = run(&[
        "-v",
        &ro,
        "plain",
        "sh",
        "-c",
        "cat /deep/new/dir/in.txt; touch /deep/new/dir/x",
    ]);
    assert_eq!(stdout(&out), "from host\n", "{out:?}");
    assert_ne!(code(&out), 0, "a read-only volume accepted a write");
    assert!(!host.path().join("x").exists());
    assert_eq!(
        code(&run(&["plain", "test", "-e", "/deep"])),
        1,
        "the mount point was kept"
    );
    // A single file.
    let file = format!("{dir}/in.txt:/etc/motd");
    assert_eq!(
        stdout(&run(&["-v", &file, "plain", "cat", "/etc/motd"])),
        "from host\n"
    );
    // What cannot be mounted fails as rbuild's own failure.
    for bad in [
        "relative:/x",
        &format!("{dir}:/x/../y"),
        &format!("{dir}:/x:rx"),
        // Never followed from the host: a symbolic link of the image (busybox's applets).
        &format!("{dir}:/bin/sh"),
    ] {
        let out = run(&["-v", bad, "plain", "true"]);
        assert_eq!(code(&out), 125, "{bad}: {out:?}");
    }
}

/// An image whose `/dev` is not a directory (a symlink, as a hostile image may ship
/// one pointing at `/proc/self/fd`, or a file) gets no `/dev` of rbuild's: `run -t` then
/// refuses with why (125), instead of opening whatever the image's `/dev/ptmx` names.
#[test]
fn a_terminal_needs_a_dev_directory_in_the_image() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let unpacked = std::process::Command::new("tar")
        .arg("-xf")
        .arg(fixture("busybox"))
        .arg("-C")
        .arg(&rootfs)
        .status()
        .expect("running tar");
    assert!(unpacked.success(), "tar -x failed: {unpacked}");
    let store = dir.path().join("store");
    let dev = rootfs.join("dev");
    for (name, make) in [
        (
            "devlink",
            (|dev: &Path| std::os::unix::fs::symlink("/tmp", dev))
                as fn(&Path) -> std::io::Result<()>,
        ),
        ("devfile", |dev: &Path| {
            std::fs::write(dev, "not a directory")
        }),
    ] {
        let _ = std::fs::remove_dir_all(&dev);
        let _ = std::fs::remove_file(&dev);
        make(&dev).unwrap();
        let _ = std::os::unix::fs::symlink("/proc/self/fd/1", rootfs.join("tmp/ptmx"));
        let tar = dir.path().join(format!("{name}.tar"));
        let packed = std::process::Command::new("tar")
            .arg("-cf")
            .arg(&tar)
            .arg("-C")
            .arg(&rootfs)
            .arg(".")
            .status()
            .expect("running tar");
        assert!(packed.success(), "tar -c failed: {packed}");
        import(&store, &tar, name, &[]);
        let out = output(
            rbuild(&store)
                .args(["run", "-t", name, "tty"])
                .stdin(Stdio::null()),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(code(&out), 125, "{name}: {out:?}");
        assert!(
            stderr.contains("/dev is not a directory"),
            "{name}: the error says why: {stderr}"
        );
        // Without -t the image runs as it is.
        let out = output(rbuild(&store).args(["run", name, "true"]));
        assert_eq!(code(&out), 0, "{name}: {out:?}");
    }
}

/// A store named by a relative `--root` (from the working directory) runs and cleans up
/// like any other: its scratch is recognised as under the store.
#[test]
fn a_relative_store_root_runs_and_leaves_nothing() {
    let dir = own_store();
    let parent = dir.path().parent().expect("the store has a parent");
    let name = dir.path().file_name().expect("the store has a name");
    let out = output(
        rbuild(Path::new(name))
            .current_dir(parent)
            .args(["run", "plain", "echo", "hi"]),
    );
    assert_eq!(
        (code(&out), stdout(&out).as_str()),
        (0, "hi\n"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        scratch_entries(dir.path()).is_empty(),
        "{:?}",
        scratch_entries(dir.path())
    );
}
