//! Attacks on the chroot isolation (`--isolation chroot`, issue 16), run on the host as
//! root: what a step does to the files rbuild made for it only (`/dev/null`,
//! `/etc/resolv.conf`, `/etc/hosts`) must not reach the image, as with the namespace
//! sandbox (and BuildKit), where they are mounts; and a cancelled step leaves no process
//! behind and does not hold the build up.
//!
//! Needs root and the busybox fixture; the `--isolation auto` attack also podman and
//! runc.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::require::{require_root, require_tool};
use support::run::{busybox_setup, fixture, processes_with, rbuild, success};

/// The entries (`tar -tvf`-like: type, mode, path) of the image `isolation` builds
/// from `ctx`, exported as a tarball.
fn image_entries(root: &Path, ctx: &Path, isolation: &str) -> Vec<String> {
    let dest = root.join(format!("{isolation}.tar"));
    success(
        rbuild(root)
            .args(["build", "--progress", "plain", "--no-cache", "--isolation"])
            .arg(isolation)
            .arg("-o")
            .arg(format!("type=tar,dest={}", dest.display()))
            .arg(ctx),
    );
    let mut archive = tar::Archive::new(std::fs::File::open(&dest).expect("the exported tarball"));
    let mut entries: Vec<String> = archive
        .entries()
        .expect("reading the tarball")
        .map(|entry| {
            let entry = entry.expect("an entry");
            let header = entry.header();
            format!(
                "{:?} {:o} {}",
                header.entry_type(),
                header.mode().expect("a mode"),
                entry.path().expect("a path").display()
            )
        })
        .collect();
    entries.sort();
    entries
}

/// A step that replaces the files rbuild made for it (`sed -i` renames a new file over
/// /etc/hosts; `mv` over /etc/resolv.conf; `rm` and re-create /dev/null) must not carry
/// the container's hosts and resolver, or its own /dev/null, into the layer: in the
/// sandbox those are mounts the step cannot replace, and the image holds none of them.
#[test]
fn a_step_replacing_the_step_only_files_leaves_none_in_the_image() {
    let dockerfile = "FROM busybox:latest\n\
        RUN sed -i 's/localhost/lh/' /etc/hosts; \
            echo 'nameserver 192.0.2.1' > /tmp/r && { mv /tmp/r /etc/resolv.conf || rm /tmp/r; }; \
            rm -f /dev/null; echo mine > /dev/null; \
            echo kept > /etc/kept\n";
    let (_dir, root, ctx) = busybox_setup(&[("Dockerfile", dockerfile)]);
    let sandbox = image_entries(&root, &ctx, "sandbox");
    let chroot = image_entries(&root, &ctx, "chroot");
    for path in ["etc/hosts", "etc/resolv.conf", "dev/null"] {
        assert!(
            !chroot.iter().any(|e| e.ends_with(&format!(" {path}"))),
            "the chroot isolation left {path} in the image: {chroot:#?}"
        );
    }
    assert_eq!(sandbox, chroot, "the two isolations built different images");
}

/// Ctrl-C during a chroot RUN whose shell waits for a child: the build ends at once
/// (not when the child is done) and no process of the step is left.
#[test]
fn ctrl_c_ends_every_process_of_a_chroot_step() {
    let marker = "1789";
    let dockerfile = format!("FROM busybox:latest\nRUN echo started; sleep {marker}; echo done\n");
    let (_dir, root, ctx) = busybox_setup(&[("Dockerfile", &dockerfile)]);
    let mut child = rbuild(&root)
        .args([
            "build",
            "--progress",
            "plain",
            "--no-cache",
            "--isolation",
            "chroot",
        ])
        .arg(&ctx)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting rbuild");
    let started = Instant::now();
    while processes_with(&format!("sleep {marker}")).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the step never started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // SAFETY: kill takes plain integers; the pid is our running child's.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    let asked = Instant::now();
    let ended = loop {
        if let Some(status) = child.try_wait().expect("waiting for rbuild") {
            break Some(status);
        }
        if asked.elapsed() > Duration::from_secs(60) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let left = processes_with(&format!("sleep {marker}"));
    for (pid, _) in &left {
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    }
    if ended.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(
        left.is_empty(),
        "the step's child outlived the cancel: {left:?}"
    );
    assert!(ended.is_some(), "rbuild still ran a minute after Ctrl-C");
}

/// A step that leaves a child running in the background (`RUN sleep N & echo`): the
/// step ends with its shell, as in a PID namespace, and the child is gone.
#[test]
fn a_background_child_of_a_chroot_step_ends_with_it() {
    let marker = "1791";
    let dockerfile = format!("FROM busybox:latest\nRUN sleep {marker} & echo started\n");
    let (_dir, root, ctx) = busybox_setup(&[("Dockerfile", &dockerfile)]);
    let mut child = rbuild(&root)
        .args([
            "build",
            "--progress",
            "plain",
            "--no-cache",
            "--isolation",
            "chroot",
        ])
        .arg(&ctx)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting rbuild");
    let started = Instant::now();
    let ended = loop {
        if let Some(status) = child.try_wait().expect("waiting for rbuild") {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(60) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let left = processes_with(&format!("sleep {marker}"));
    for (pid, _) in &left {
        let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
    }
    if ended.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(left.is_empty(), "the step's child outlived it: {left:?}");
    assert!(
        ended.is_some_and(|s| s.success()),
        "rbuild did not end well within a minute: {ended:?}"
    );
}

/// Runs `rbuild import` of the busybox fixture, then `rbuild build --progress plain` of
/// `dockerfile`, in a podman container with `podman_args` (and the podman options these
/// hosts need), with rbuild, its libraries and nothing else as its root; the build's
/// output.
fn build_in_podman(podman_args: &[&str], dockerfile: &str) -> std::process::Output {
    require_root("podman runs the container as root");
    require_tool("podman", "podman");
    require_tool("ldd", "libc-bin");
    assert!(
        Path::new("/usr/sbin/runc").is_file(),
        "missing /usr/sbin/runc: install the Debian package runc"
    );
    let dir = tempfile::tempdir().expect("a temp dir");
    let rootfs = dir.path().join("rootfs");
    let exe = Path::new(env!("CARGO_BIN_EXE_rbuild"));
    std::fs::create_dir_all(rootfs.join("usr/local/bin")).expect("making the root");
    std::fs::create_dir_all(rootfs.join("tmp")).expect("making /tmp");
    std::fs::set_permissions(
        rootfs.join("tmp"),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .expect("opening /tmp to all");
    std::fs::copy(exe, rootfs.join("usr/local/bin/rbuild")).expect("copying rbuild");
    let ldd = success(Command::new("ldd").arg(exe));
    for lib in String::from_utf8_lossy(&ldd.stdout)
        .split_whitespace()
        .filter(|word| word.starts_with('/'))
    {
        let inside = rootfs.join(&lib[1..]);
        std::fs::create_dir_all(inside.parent().expect("a parent")).expect("a lib dir");
        std::fs::copy(lib, &inside).unwrap_or_else(|e| panic!("copying {lib}: {e}"));
    }
    let shared = dir.path().join("w");
    std::fs::create_dir_all(shared.join("ctx")).expect("making the context");
    std::fs::write(shared.join("ctx/Dockerfile"), dockerfile).expect("writing the Dockerfile");
    std::fs::copy(fixture("busybox"), shared.join("busybox.tar")).expect("copying the fixture");
    // Whoever the container runs as owns its store and context.
    success(Command::new("chown").args(["-R", "1000:1000"]).arg(&shared));
    let pod = |args: &[&str]| {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(dir.path().join("podman"))
            .arg("--runroot")
            .arg(dir.path().join("podman-run"))
            .args([
                "run",
                "--rm",
                "--runtime",
                "/usr/sbin/runc",
                "--network",
                "host",
            ])
            // Within the limits of a host's shell (podman asks for its own, too high).
            .args([
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
            ])
            .args(podman_args)
            .args(["-e", "RBUILD_ROOT=/w/store", "-v"])
            .arg(format!("{}:/w", shared.display()))
            .arg("--rootfs")
            .arg(&rootfs)
            .arg("/usr/local/bin/rbuild")
            .args(args);
        cmd.output()
            .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
    };
    let out = pod(&["import", "/w/busybox.tar", "busybox:latest"]);
    assert!(
        out.status.success(),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    pod(&["build", "--progress", "plain", "/w/ctx"])
}

/// `--isolation auto` in a container that may create namespaces (CAP_SYS_ADMIN added)
/// but lacks capabilities the sandbox gives a step (podman drops CAP_MKNOD and
/// CAP_AUDIT_WRITE by default): the sandbox cannot start there, chroot can, and auto
/// must pick the one that builds.
#[test]
fn auto_picks_chroot_where_the_sandbox_lacks_its_capabilities() {
    let out = build_in_podman(
        &["--cap-add", "SYS_ADMIN"],
        "FROM busybox:latest\nRUN echo ran > /ran\n",
    );
    assert!(
        out.status.success(),
        "auto chose an isolation that cannot run here: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `--isolation auto` as a user without capabilities under podman's own seccomp profile,
/// which (unlike a pod's) lets it make a user namespace: the namespaces can be made, but
/// the kernel refuses the step's /proc there (the container's /proc is partly masked).
/// auto must see it and, with no proot in this container, pick chroot, whose RUN then
/// fails saying it needs CAP_SYS_CHROOT and that proot would do, not with a mount error of
/// the sandbox.
#[test]
fn auto_in_a_restricted_container_that_allows_user_namespaces_says_what_run_lacks() {
    let out = build_in_podman(
        &[
            "--user",
            "1000:1000",
            "--cap-drop=ALL",
            "--security-opt",
            "no-new-privileges",
        ],
        "FROM busybox:latest\nRUN echo ran > /ran\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "RUN built without any capability: {stderr}"
    );
    assert!(
        stderr.contains("notice: namespaces cannot be created here")
            && stderr.contains("the chroot isolation needs CAP_SYS_CHROOT")
            && stderr.contains("apt-get install proot"),
        "auto did not pick chroot or did not say what RUN lacks: {stderr}"
    );
}

/// What a step makes in /dev (`ln -s /proc/self/fd /dev/fd`, which Dockerfiles written
/// for kaniko do; a file; a directory) stays out of the image, as in the sandbox (and
/// BuildKit), where /dev is a file system of the step's own.
#[test]
fn what_a_chroot_step_makes_in_dev_stays_out_of_the_image() {
    let dockerfile = "FROM busybox:latest\n\
        RUN ln -s /proc/self/fd /dev/fd; touch /dev/zz; mkdir -p /dev/d/e; touch /dev/d/e/f; \
            echo kept > /kept\n";
    let (_dir, root, ctx) = busybox_setup(&[("Dockerfile", dockerfile)]);
    let sandbox = image_entries(&root, &ctx, "sandbox");
    let chroot = image_entries(&root, &ctx, "chroot");
    assert_eq!(sandbox, chroot, "the two isolations built different images");
}

/// A root step that can mount (rbuild run as root on a host, or in a container given
/// CAP_SYS_ADMIN) mounts in rbuild's own mount namespace, there being no other: the
/// mount must not outlive the step, and what is in it must not reach the image (with a
/// mount namespace of the step's own, as in BuildKit, it goes with the step).
#[test]
fn a_mount_a_chroot_step_makes_goes_with_it() {
    let dockerfile = "FROM busybox:latest\n\
        RUN mkdir /m && mount -t tmpfs none /m && echo x > /m/f && echo kept > /kept\n";
    let (dir, root, ctx) = busybox_setup(&[("Dockerfile", dockerfile)]);
    let dest = root.join("chroot.tar");
    let out = rbuild(&root)
        .args(["build", "--progress", "plain", "--isolation", "chroot"])
        .arg("-o")
        .arg(format!("type=tar,dest={}", dest.display()))
        .arg(&ctx)
        .output()
        .expect("running rbuild");
    let left = support::run::mounts_under(dir.path());
    for mount in left.iter().rev() {
        let _ = Command::new("umount").args(["-l", mount]).status();
    }
    assert!(left.is_empty(), "the step's mounts outlived it: {left:?}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = success(Command::new("tar").arg("-tf").arg(&dest));
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.lines().any(|l| l.trim_end_matches('/') == "kept"),
        "{listing}"
    );
    assert!(
        !listing.lines().any(|l| l.starts_with("m/f")),
        "the tmpfs's file reached the image: {listing}"
    );
}

/// `--isolation chroot` with `--runtime`: the two choose how RUN steps run, and the
/// runtime silently won (steps ran in runc with /proc, not chrooted): refused instead.
#[test]
fn isolation_and_runtime_together_are_refused() {
    let (_dir, root, ctx) = busybox_setup(&[("Dockerfile", "FROM busybox:latest\nRUN true\n")]);
    let out = rbuild(&root)
        .args([
            "build",
            "--isolation",
            "chroot",
            "--runtime",
            "/usr/sbin/runc",
        ])
        .arg(&ctx)
        .output()
        .expect("running rbuild");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--isolation") && stderr.contains("--runtime"),
        "not refused: {stderr}"
    );
}

/// `RUN --mount=type=ssh` in the chroot isolation: a socket listens at the target
/// (relaying to the agent), and is gone after the step (it was refused, first naming
/// bind and cache mounts, then saying ssh needs a mount).
#[test]
fn an_ssh_mount_gives_the_step_a_socket_at_its_target() {
    require_tool("ssh-agent", "openssh-client");
    let dockerfile = "# syntax=docker/dockerfile:1\nFROM busybox:latest\n\
        RUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo socket > /seen\n\
        RUN test ! -e /run/buildkit && cat /seen\n";
    let (dir, root, ctx) = busybox_setup(&[("Dockerfile", dockerfile)]);
    let sock = dir.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .arg("-D")
        .arg("-a")
        .arg(&sock)
        .stdout(Stdio::null())
        .spawn()
        .expect("starting ssh-agent");
    let started = Instant::now();
    while !sock.exists() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = rbuild(&root)
        .args([
            "build",
            "--progress",
            "plain",
            "--isolation",
            "chroot",
            "--ssh",
            "default",
        ])
        .env("SSH_AUTH_SOCK", &sock)
        .arg(&ctx)
        .output()
        .expect("running rbuild");
    let _ = agent.kill();
    let _ = agent.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
}
