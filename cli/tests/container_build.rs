//! issue 16: `rbuild build` inside a container with a Kubernetes pod's default security,
//! reproduced with podman as the issue says (docker's default seccomp profile, podman's
//! default capabilities: no CAP_SYS_ADMIN, no CAP_MKNOD, no privileged mode). There the
//! namespace sandbox cannot be made; rbuild says so once and runs RUN steps with the
//! chroot isolation. Checked: the image equals the one the namespace sandbox builds on
//! the host for the same Dockerfile (every entry's path, type, mode, owner and size);
//! what the chroot isolation cannot do fails saying why; containers that share a
//! registry cache reuse each other's steps; and friendlyhello, built in the container
//! and exported as an OCI archive, answers when podman runs that archive on the host.
//!
//! Under the restricted Pod Security Standard (user 1000, no capabilities) files cannot be
//! given other owners on disk: they are kept in a side table and the image must still
//! equal what root builds on the host, header for header.
//!
//! Needs root, podman, runc, docker-registry, the busybox and python3 fixtures, and
//! PyPI reachable (friendlyhello's `pip install`). The container's root is made here:
//! the rbuild binary and the libraries `ldd` lists for it.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::registry::Registry;
use support::require::{require_root, require_tool};
use support::run::{fixture, import, rbuild, success, workspace};

/// A container root holding the test's rbuild binary, and podman's private storage.
struct Pod {
    dir: tempfile::TempDir,
}

impl Pod {
    fn new() -> Pod {
        require_root("podman runs the containers as root");
        require_tool("podman", "podman");
        require_tool("ldd", "libc-bin");
        assert!(
            Path::new("/usr/sbin/runc").is_file(),
            "missing /usr/sbin/runc: install the Debian package runc"
        );
        let dir = tempfile::tempdir().expect("a temp dir");
        let root = dir.path().join("rootfs");
        let bin = root.join("usr/local/bin");
        std::fs::create_dir_all(&bin).expect("making the container's root");
        let exe = Path::new(env!("CARGO_BIN_EXE_rbuild"));
        std::fs::copy(exe, bin.join("rbuild")).expect("copying rbuild into the root");
        // proot, for RUN steps where no capability is held (as rbuild's own image has it).
        require_tool("proot", "proot");
        std::fs::copy("/usr/bin/proot", bin.join("proot")).expect("copying proot into the root");
        for exe in [exe, Path::new("/usr/bin/proot")] {
            let ldd = success(Command::new("ldd").arg(exe));
            for line in String::from_utf8_lossy(&ldd.stdout).lines() {
                // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or the loader's
                // `/lib64/ld-linux-x86-64.so.2 (0x...)`.
                let Some(lib) = line
                    .split_whitespace()
                    .find(|word| word.starts_with('/'))
                    .map(PathBuf::from)
                else {
                    continue;
                };
                let inside = root.join(lib.strip_prefix("/").expect("absolute"));
                std::fs::create_dir_all(inside.parent().expect("a parent"))
                    .expect("making a library directory");
                std::fs::copy(&lib, &inside)
                    .unwrap_or_else(|e| panic!("copying {}: {e}", lib.display()));
            }
        }
        // A /tmp anyone may write, as rbuild's image has (proot keeps its files there).
        std::fs::create_dir_all(root.join("tmp")).expect("making /tmp");
        std::fs::set_permissions(
            root.join("tmp"),
            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
        )
        .expect("making /tmp writable");
        std::fs::create_dir_all(dir.path().join("w")).expect("making the shared dir");
        Pod { dir }
    }

    /// The directory shared with the containers as `/w`.
    fn shared(&self) -> PathBuf {
        self.dir.path().join("w")
    }

    /// `podman run` with this pod's private storage and what podman needs on these
    /// hosts (runc, bounded ulimits), in the host's network; options and the image or
    /// `--rootfs` follow.
    fn podman_run(&self) -> Command {
        let mut cmd = self.podman();
        cmd.args(["run", "--runtime", "/usr/sbin/runc"])
            .args([
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
            ])
            .args(["--network", "host"]);
        cmd
    }

    /// `podman` with this pod's private storage; the subcommand follows.
    fn podman(&self) -> Command {
        let mut cmd = Command::new("podman");
        cmd.arg("--root")
            .arg(self.dir.path().join("podman"))
            .arg("--runroot")
            .arg(self.dir.path().join("podman-run"));
        cmd
    }

    /// Runs `rbuild ARGS` in a container with default security (`restricted`: the
    /// restricted Pod Security Standard's user 1000, no capabilities, no privilege
    /// escalation), with `/w` shared and the store in `/w/<store>`.
    fn rbuild(&self, store: &str, restricted: bool, args: &[&str]) -> Output {
        // Removed below, not with `--rm`: podman 4.3's `run --rm` sometimes loses the race
        // with its own clean-up and exits 127 "getting exit code of container ... no such
        // exit code (container in state running)" although the command inside finished.
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let name = format!(
            "rbuild-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mut cmd = self.podman_run();
        cmd.args(["--name", &name])
            .arg("-v")
            .arg(format!("{}:/w", self.shared().display()))
            .args(["-e", &format!("RBUILD_ROOT=/w/{store}"), "-e", "HOME=/w"]);
        if restricted {
            cmd.args(["--user", "1000:1000", "--cap-drop=ALL"])
                .args(["--security-opt", "no-new-privileges"]);
        }
        cmd.arg("--rootfs")
            .arg(self.dir.path().join("rootfs"))
            .arg("/usr/local/bin/rbuild")
            .args(args);
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
        let _ = self
            .podman()
            .args(["rm", "--force", "--time", "0", &name])
            .output();
        out
    }
}

fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Every entry of a rootfs tar as `type mode uid/gid size path`, sorted, without times.
fn entries(tar: &Path) -> Vec<String> {
    let file = std::fs::File::open(tar).unwrap_or_else(|e| panic!("{}: {e}", tar.display()));
    let mut archive = tar::Archive::new(file);
    let mut all: Vec<String> = archive
        .entries()
        .expect("a tar")
        .map(|entry| {
            let entry = entry.expect("a tar entry");
            let header = entry.header();
            format!(
                "{:?} {:o} {}/{} {} {}",
                header.entry_type(),
                header.mode().expect("a mode"),
                header.uid().expect("a uid"),
                header.gid().expect("a gid"),
                header.size().expect("a size"),
                String::from_utf8_lossy(&entry.path_bytes())
            )
        })
        .collect();
    all.sort();
    all
}

const DOCKERFILE: &str = "FROM busybox
RUN echo hi > /hi && ls /dev/null && mkdir -p /var/cache/x && echo cached > /var/cache/x/f
WORKDIR /app
COPY a.txt ./
RUN echo more >> a.txt && rm -r /var/cache/x && ln -s /app/a.txt /link && chmod 0700 /root
RUN <<EOF
#!/bin/sh
echo from-a-script > /script-out
EOF
USER 1234:55
RUN id > /tmp/id && echo discarded > /dev/null
";

#[test]
fn a_default_security_container_builds_by_chroot_what_the_sandbox_builds() {
    let pod = Pod::new();
    let ctx = pod.shared().join("ctx");
    std::fs::create_dir_all(&ctx).expect("making the context");
    std::fs::write(ctx.join("Dockerfile"), DOCKERFILE).expect("writing the Dockerfile");
    std::fs::write(ctx.join("a.txt"), "a\n").expect("writing a context file");
    let busybox = fixture("busybox");
    std::fs::copy(&busybox, pod.shared().join("busybox.tar")).expect("copying the fixture");

    let out = pod.rbuild(
        "store",
        false,
        &["import", "/w/busybox.tar", "busybox:latest"],
    );
    assert!(
        out.status.success(),
        "import in the container: {}",
        text(&out)
    );
    let out = pod.rbuild(
        "store",
        false,
        &[
            "build",
            "--progress",
            "plain",
            "-o",
            "type=tar,dest=/w/chroot.tar",
            "/w/ctx",
        ],
    );
    assert!(
        out.status.success(),
        "build in the container: {}",
        text(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr
            .matches("notice: namespaces cannot be created here")
            .count(),
        1,
        "one notice of the chroot isolation: {}",
        text(&out)
    );

    // The same Dockerfile on the host, in the namespace sandbox.
    let host = tempfile::tempdir().expect("a temp dir");
    import(host.path(), &busybox, "busybox:latest", &[]);
    let sandbox_tar = host.path().join("sandbox.tar");
    success(
        rbuild(host.path())
            .args([
                "build",
                "--progress",
                "plain",
                "--isolation",
                "sandbox",
                "-o",
            ])
            .arg(format!("type=tar,dest={}", sandbox_tar.display()))
            .arg(&ctx),
    );
    let chroot = entries(&pod.shared().join("chroot.tar"));
    let sandbox = entries(&sandbox_tar);
    let only_chroot: Vec<&String> = chroot.iter().filter(|e| !sandbox.contains(e)).collect();
    let only_sandbox: Vec<&String> = sandbox.iter().filter(|e| !chroot.contains(e)).collect();
    assert!(
        only_chroot.is_empty() && only_sandbox.is_empty(),
        "the chroot build differs from the sandbox's:\nonly chroot: {only_chroot:#?}\nonly sandbox: {only_sandbox:#?}"
    );
    assert!(
        chroot.iter().any(|e| e.ends_with(" tmp/id")),
        "the last RUN ran: {chroot:#?}"
    );

    // A secret is a file for the step only, never in the image.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN --mount=type=secret,id=tok,mode=0400 test \"$(cat /run/secrets/tok)\" = s3cret && touch /done\n",
    )
    .expect("writing the Dockerfile");
    std::fs::write(pod.shared().join("tok"), "s3cret").expect("writing the secret");
    let out = pod.rbuild(
        "store",
        false,
        &[
            "build",
            "--progress",
            "plain",
            "--secret",
            "id=tok,src=/w/tok",
            "-o",
            "type=tar,dest=/w/secret.tar",
            "/w/ctx",
        ],
    );
    assert!(out.status.success(), "a secret by chroot: {}", text(&out));
    let listed = entries(&pod.shared().join("secret.tar"));
    assert!(listed.iter().any(|e| e.ends_with(" done")), "{listed:#?}");
    assert!(
        !listed
            .iter()
            .any(|e| e.contains("secrets") || e.ends_with(" run/")),
        "the secret's file or its directories reached the image: {listed:#?}"
    );

    // What the chroot isolation cannot give fails saying why, and names the way out.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN --network=none echo offline\n",
    )
    .expect("writing the Dockerfile");
    let out = pod.rbuild("store", false, &["build", "--progress", "plain", "/w/ctx"]);
    assert!(
        !out.status.success(),
        "--network=none by chroot: {}",
        text(&out)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("chroot isolation: --network=none needs a network namespace"),
        "the reason: {}",
        text(&out)
    );
}

#[test]
fn containers_sharing_a_registry_cache_run_no_step_another_built() {
    let pod = Pod::new();
    let registry = Registry::start(None);
    let addr = registry.addr.clone();
    // The base comes from the registry, so every container's store resolves it alike.
    let host = tempfile::tempdir().expect("a temp dir");
    let base = format!("{addr}/busybox:latest");
    import(host.path(), &fixture("busybox"), &base, &[]);
    success(rbuild(host.path()).args(["push", &base]));

    let common = format!(
        "FROM {base}\nRUN echo step-one > /one\nCOPY shared.txt /shared.txt\nRUN cat /shared.txt > /two\n"
    );
    for (name, extra) in [("a", ""), ("b", ""), ("c", "RUN echo only-c > /c\n")] {
        let ctx = pod.shared().join(name);
        std::fs::create_dir_all(&ctx).expect("making a context");
        std::fs::write(ctx.join("Dockerfile"), format!("{common}{extra}"))
            .expect("writing a Dockerfile");
        std::fs::write(ctx.join("shared.txt"), "the same in every context\n")
            .expect("writing a context file");
    }
    let cache = format!("{addr}/cache:main");
    let first = pod.rbuild(
        "store-a",
        false,
        &[
            "build",
            "--progress",
            "plain",
            "--cache-to",
            &format!("type=registry,ref={cache},mode=max"),
            "/w/a",
        ],
    );
    assert!(
        first.status.success(),
        "the first builder: {}",
        text(&first)
    );

    // Two more builders at once, each with a store of its own, reading the cache.
    let (second, third) = std::thread::scope(|s| {
        let run = |store: &'static str, ctx: &'static str| {
            let pod = &pod;
            let cache = cache.clone();
            s.spawn(move || {
                pod.rbuild(
                    store,
                    false,
                    &[
                        "build",
                        "--progress",
                        "plain",
                        "--cache-from",
                        &format!("type=registry,ref={cache}"),
                        ctx,
                    ],
                )
            })
        };
        let b = run("store-b", "/w/b");
        let c = run("store-c", "/w/c");
        (b.join().expect("builder b"), c.join().expect("builder c"))
    });
    assert!(
        second.status.success(),
        "the second builder: {}",
        text(&second)
    );
    assert!(
        third.status.success(),
        "the third builder: {}",
        text(&third)
    );
    for out in [&second, &third] {
        let log = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = log.lines().collect();
        for step in [
            "] RUN echo step-one > /one",
            "] COPY shared.txt /shared.txt",
            "] RUN cat /shared.txt > /two",
        ] {
            let header = lines
                .iter()
                .position(|l| l.starts_with('#') && l.ends_with(step))
                .unwrap_or_else(|| panic!("no step{step}: {}", text(out)));
            let number = lines[header].split(' ').next().expect("#N");
            assert_eq!(
                lines.get(header + 1).copied(),
                Some(&format!("{number} CACHED")[..]),
                "step{step} ran although the first builder built it: {}",
                text(out)
            );
        }
    }
    let third_log = String::from_utf8_lossy(&third.stderr);
    let own = third_log
        .lines()
        .position(|l| l.ends_with("] RUN echo only-c > /c"))
        .unwrap_or_else(|| panic!("the third builder's own step: {}", text(&third)));
    assert!(
        third_log
            .lines()
            .nth(own + 1)
            .is_some_and(|l| l.ends_with(" DONE") || l.contains(" DONE ")),
        "the third builder's own step ran: {}",
        text(&third)
    );
}

/// A container podman runs detached on the host, removed (killed at once) when dropped,
/// so a failed assertion leaves no server running.
struct Detached<'a> {
    pod: &'a Pod,
    name: String,
}

impl Detached<'_> {
    /// What the container printed, for failure messages.
    fn logs(&self) -> String {
        match self.pod.podman().args(["logs", &self.name]).output() {
            Ok(out) => text(&out),
            Err(e) => format!("podman logs {}: {e}", self.name),
        }
    }
}

impl Drop for Detached<'_> {
    fn drop(&mut self) {
        // The app is the container's pid 1, which ignores SIGTERM: no grace period.
        let _ = self
            .pod
            .podman()
            .args(["rm", "--force", "--time", "0", &self.name])
            .output();
    }
}

/// A TCP port of 127.0.0.1 that nothing listens on now.
fn free_port() -> u16 {
    let listener = TcpListener::bind(("127.0.0.1", 0)).expect("binding a free port");
    listener.local_addr().expect("the bound address").port()
}

/// `GET /` on 127.0.0.1:`port`, as HTTP/1.0 (the server closes after answering).
fn get_root(port: u16) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

#[test]
fn friendlyhello_built_in_a_default_security_container_runs_on_the_host() {
    let pod = Pod::new();
    let python3 = fixture("python3");
    // A link is enough (the import only reads it) and saves copying 195 MB.
    let base_tar = pod.shared().join("python3.tar");
    if std::fs::hard_link(&python3, &base_tar).is_err() {
        std::fs::copy(&python3, &base_tar).expect("copying the python3 fixture");
    }
    let ctx = pod.shared().join("friendlyhello");
    std::fs::create_dir_all(&ctx).expect("making the context");
    let example = workspace().join("examples/friendlyhello");
    for entry in std::fs::read_dir(&example).expect("reading examples/friendlyhello") {
        let entry = entry.expect("an example file");
        if entry.file_type().expect("a file type").is_file() {
            std::fs::copy(entry.path(), ctx.join(entry.file_name())).expect("copying");
        }
    }

    let out = pod.rbuild(
        "store",
        false,
        &[
            "import",
            "/w/python3.tar",
            "rbuild-fixtures/python3:bookworm",
        ],
    );
    assert!(
        out.status.success(),
        "import in the container: {}",
        text(&out)
    );
    let out = pod.rbuild(
        "store",
        false,
        &[
            "build",
            "--progress",
            "plain",
            "-t",
            "friendlyhello",
            "-o",
            "type=oci,dest=/w/friendlyhello.oci.tar",
            "/w/friendlyhello",
        ],
    );
    assert!(
        out.status.success(),
        "friendlyhello's build in the container: {}",
        text(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr
            .matches(
                "notice: namespaces cannot be created here (a container with default \
                 security?): RUN steps run with --isolation chroot"
            )
            .count(),
        1,
        "one notice of the chroot isolation: {}",
        text(&out)
    );
    assert!(
        stderr.contains("Successfully installed"),
        "pip install ran: {}",
        text(&out)
    );

    // podman runs the exported archive on the host; the app listens on PORT.
    let port = free_port();
    let name = format!("rbuild-friendlyhello-{}", std::process::id());
    let archive = pod.shared().join("friendlyhello.oci.tar");
    let started = Instant::now();
    let run = pod
        .podman_run()
        .args(["--detach", "--name", &name, "-e"])
        .arg(format!("PORT={port}"))
        .arg(format!("oci-archive:{}", archive.display()))
        .output()
        .expect("running podman run");
    let server = Detached { pod: &pod, name };
    assert!(
        run.status.success(),
        "podman runs the exported image: {}",
        text(&run)
    );
    let page = loop {
        match get_root(port) {
            Ok(page) => break page,
            Err(e) => {
                assert!(
                    started.elapsed() < Duration::from_secs(120),
                    "no answer on 127.0.0.1:{port} ({e}):\n{}",
                    server.logs()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    assert!(page.starts_with("HTTP/1."), "{page}");
    assert!(page.contains("Hello World!"), "{page}");
    assert!(
        page.contains("cannot connect to Redis, counter disabled"),
        "{page}"
    );
}

/// Every entry of a rootfs tar as `path type mode uid/gid link content-hash`, sorted.
fn headers(tar: &Path) -> Vec<String> {
    use sha2::{Digest as _, Sha256};
    use std::io::Read as _;
    let file = std::fs::File::open(tar).unwrap_or_else(|e| panic!("{}: {e}", tar.display()));
    let mut archive = tar::Archive::new(file);
    let mut all: Vec<String> = archive
        .entries()
        .expect("a tar")
        .map(|entry| {
            let mut entry = entry.expect("a tar entry");
            let header = entry.header().clone();
            let link = entry
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .unwrap_or_default();
            let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let mut body = Vec::new();
            entry.read_to_end(&mut body).expect("an entry's content");
            let hash: String = Sha256::digest(&body)
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect();
            format!(
                "{path} {:?} {:o} {}/{} ->{link} {hash}",
                header.entry_type(),
                header.mode().expect("a mode"),
                header.uid().expect("a uid"),
                header.gid().expect("a gid"),
            )
        })
        .collect();
    all.sort();
    all
}

/// A tar of `entries` (path, type, uid, gid, mode, content or link target).
fn owned_tar(path: &Path, entries: &[(&str, tar::EntryType, u64, u64, u32, &str)]) {
    let mut builder = tar::Builder::new(std::fs::File::create(path).expect("creating a tar"));
    for (name, kind, uid, gid, mode, body) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_uid(*uid);
        header.set_gid(*gid);
        header.set_mode(*mode);
        header.set_mtime(1_700_000_000);
        if kind.is_symlink() || kind.is_hard_link() {
            header.set_size(0);
            builder
                .append_link(&mut header, name, body)
                .expect("a tar link");
        } else {
            let data = if kind.is_dir() {
                &b""[..]
            } else {
                body.as_bytes()
            };
            header.set_size(data.len() as u64);
            builder
                .append_data(&mut header, name, data)
                .expect("a tar entry");
        }
    }
    builder.finish().expect("finishing a tar");
}

const RESTRICTED_DOCKERFILE: &str = "FROM owned AS src
COPY a.txt /srv/over-owned.txt
FROM busybox
COPY a.txt b.sh /files/
COPY dir /dir
COPY --chown=1234:5678 dir /chowned/
COPY --chown=1234:5678 a.txt /chowned-file
COPY --chown=1234:5678 dir /dir/
COPY --chmod=0750 b.sh /b.sh
COPY --chown=1234:5678 --chmod=4755 b.sh /suid.sh
ADD owned.tar /added/
RUN mkdir -p /ran/sub && echo r > /ran/sub/f && cp /b.sh /ran/suid && chmod 6755 /ran/suid \
 && chown -R 1234:5678 /ran && chown 7:8 /ran/sub/f && chmod 4755 /ran/sub/f \
 && rm /files/a.txt && echo x >> /added/pkg/conf && mv /chowned-file /moved-file \
 && ln -s /ran/sub/f /ran/link && chown -h 9:9 /ran/link && chown root:root /dir/sub/f
WORKDIR /work/sub
USER 1234:5678
WORKDIR /userwd
RUN mkdir made && echo m > made/f && ln -s f made/l && id -u > made/id
ENV X=y
COPY --from=src /srv /from-src
";

#[test]
fn a_restricted_container_builds_under_proot_the_image_root_builds_with_every_owner() {
    let pod = Pod::new();
    let shared = pod.shared();
    let ctx = shared.join("ctx");
    std::fs::create_dir_all(ctx.join("dir/sub")).expect("making the context");
    std::fs::write(ctx.join("Dockerfile"), RESTRICTED_DOCKERFILE).expect("a Dockerfile");
    std::fs::write(ctx.join("a.txt"), "a\n").expect("a context file");
    std::fs::write(ctx.join("b.sh"), "#!/bin/sh\necho b\n").expect("a context file");
    std::fs::write(ctx.join("dir/sub/f"), "f\n").expect("a context file");
    std::os::unix::fs::symlink("sub/f", ctx.join("dir/link")).expect("a context link");
    use tar::EntryType::{Directory as D, Link as H, Regular as F, Symlink as L};
    // An archive ADD extracts with its owners.
    owned_tar(
        &ctx.join("owned.tar"),
        &[
            ("pkg/", D, 2000, 3000, 0o755, ""),
            ("pkg/bin", F, 2000, 3000, 0o755, "binary\n"),
            ("pkg/link", L, 2001, 3001, 0o777, "bin"),
            ("pkg/hard", H, 2000, 3000, 0o755, "pkg/bin"),
            // The last header naming the inode gives it its owner and mode.
            ("pkg/hard2", H, 2002, 3002, 0o750, "pkg/hard"),
            // Directories their owner may not write, filled by later entries.
            ("pkg/ro/", D, 2000, 3000, 0o555, ""),
            ("pkg/ro/f", F, 2000, 3000, 0o444, "ro\n"),
            ("pkg/shut/", D, 0, 0, 0o500, ""),
            ("pkg/shut/g", F, 0, 0, 0o000, "g\n"),
            ("pkg/setgid", F, 0, 3000, 0o2755, "sg\n"),
            ("pkg/conf", F, 2000, 3000, 0o644, "c\n"),
            ("pkg/private/", D, 65534, 65534, 0o700, ""),
            ("pkg/private/key", F, 65534, 65534, 0o600, "k\n"),
        ],
    );
    // A base image whose layer has owners other than root.
    owned_tar(
        &shared.join("owned-base.tar"),
        &[
            ("srv/", D, 4321, 8765, 0o750, ""),
            ("srv/data", F, 4321, 8765, 0o640, "data\n"),
            ("srv/mine", L, 4321, 8765, 0o777, "data"),
            ("tmp/", D, 0, 0, 0o1777, ""),
            // As Fedora's and UBI's /usr/bin.
            ("usr/", D, 0, 0, 0o755, ""),
            ("usr/bin/", D, 0, 0, 0o555, ""),
            ("usr/bin/tool", F, 0, 0, 0o755, "tool\n"),
            ("etc/", D, 0, 0, 0o755, ""),
            ("etc/gshadow", F, 0, 0, 0o000, "g\n"),
        ],
    );
    let busybox = fixture("busybox");
    std::fs::copy(&busybox, shared.join("busybox.tar")).expect("copying the fixture");
    success(Command::new("chown").args(["-R", "1000:1000"]).arg(&shared));

    let restricted = |args: &[&str]| {
        let out = pod.rbuild("store", true, args);
        assert!(out.status.success(), "{args:?} restricted: {}", text(&out));
    };
    restricted(&["import", "/w/busybox.tar", "busybox:latest"]);
    restricted(&["import", "/w/owned-base.tar", "owned:latest"]);
    let restricted_build = pod.rbuild(
        "store",
        true,
        &[
            "build",
            "--progress",
            "plain",
            "-o",
            "type=tar,dest=/w/restricted.tar",
            "/w/ctx",
        ],
    );
    assert!(
        restricted_build.status.success(),
        "restricted build: {}",
        text(&restricted_build)
    );
    // COPY over the base with other owners, exported as is.
    let on_base = shared.join("on-base");
    std::fs::create_dir_all(&on_base).expect("a second context");
    std::fs::write(
        on_base.join("Dockerfile"),
        "FROM owned AS base\nCOPY a.txt /srv/a.txt\nCOPY --chown=7:8 a.txt /srv/b.txt\n\
         COPY a.txt /usr/bin/\nCOPY --chmod=555 d /ro\nCOPY a.txt /ro/\n\
         FROM base\nCOPY --from=base /etc/gshadow /ro /copied/\n",
    )
    .expect("a Dockerfile");
    std::fs::write(on_base.join("a.txt"), "a\n").expect("a context file");
    std::fs::create_dir_all(on_base.join("d")).expect("a context directory");
    std::fs::write(on_base.join("d/f"), "f\n").expect("a context file");
    success(
        Command::new("chown")
            .args(["-R", "1000:1000"])
            .arg(&on_base),
    );
    restricted(&[
        "build",
        "--progress",
        "plain",
        "-o",
        "type=tar,dest=/w/on-base.tar",
        "/w/on-base",
    ]);

    // The same builds as root on the host, in the namespace sandbox.
    let host = tempfile::tempdir().expect("a temp dir");
    import(host.path(), &busybox, "busybox:latest", &[]);
    import(
        host.path(),
        &shared.join("owned-base.tar"),
        "owned:latest",
        &[],
    );
    for (context, restricted_tar) in [(&ctx, "restricted.tar"), (&on_base, "on-base.tar")] {
        let root_tar = host.path().join(format!("root-{restricted_tar}"));
        success(
            rbuild(host.path())
                .args([
                    "build",
                    "--progress",
                    "plain",
                    "--isolation",
                    "sandbox",
                    "-o",
                ])
                .arg(format!("type=tar,dest={}", root_tar.display()))
                .arg(context),
        );
        let unprivileged = headers(&shared.join(restricted_tar));
        let root = headers(&root_tar);
        let only_restricted: Vec<&String> =
            unprivileged.iter().filter(|e| !root.contains(e)).collect();
        let only_root: Vec<&String> = root.iter().filter(|e| !unprivileged.contains(e)).collect();
        assert!(
            only_restricted.is_empty() && only_root.is_empty(),
            "{restricted_tar}: the restricted build differs from root's:\n\
             only restricted: {only_restricted:#?}\nonly root: {only_root:#?}"
        );
        assert!(
            root.iter().any(|e| e.contains(" 4321/8765 ")),
            "the base's owners are in the image: {root:#?}"
        );
    }
    let on_base = headers(&shared.join("on-base.tar"));
    for kept in [
        "usr/bin/ Directory 555 0/0",
        "ro/ Directory 555 0/0",
        "copied/gshadow Regular 0 0/0",
    ] {
        assert!(
            on_base.iter().any(|e| e.starts_with(kept)),
            "no {kept:?} in {on_base:#?}"
        );
    }
    let image = headers(&shared.join("restricted.tar"));
    for owned in [
        "added/pkg/ro/ Directory 555 2000/3000",
        "added/pkg/shut/g Regular 0 0/0",
        "chowned/sub/f Regular 644 1234/5678",
        "dir/sub/ Directory 755 1234/5678",
        "suid.sh Regular 4755 1234/5678",
        "added/pkg/setgid Regular 2755 0/3000",
        "added/pkg/link Symlink 777 2001/3001 ->bin",
        "userwd/ Directory 755 1234/5678",
        // What the RUN steps under proot gave: chown calls, the step's user.
        "ran/ Directory 755 1234/5678",
        "ran/sub/f Regular 4755 7/8",
        "ran/suid Regular 755 1234/5678",
        "ran/link Symlink 777 9/9",
        "dir/sub/f Regular 644 0/0",
        "moved-file Regular 644 1234/5678",
        "added/pkg/conf Regular 644 2000/3000",
        "userwd/made/ Directory 755 1234/5678",
        "userwd/made/l Symlink 777 1234/5678",
        "userwd/made/id Regular 644 1234/5678",
    ] {
        assert!(
            image.iter().any(|e| e.starts_with(owned)),
            "no {owned:?} in {image:#?}"
        );
    }

    // Left to choose, rbuild ran the RUN steps under proot and said so; the chroot
    // isolation asked for cannot run them, and says what is missing.
    assert!(
        String::from_utf8_lossy(&restricted_build.stderr).contains("--isolation proot"),
        "the notice: {}",
        text(&restricted_build)
    );
    std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN true\n").expect("a Dockerfile");
    let out = pod.rbuild(
        "store",
        true,
        &[
            "build",
            "--progress",
            "plain",
            "--isolation",
            "chroot",
            "/w/ctx",
        ],
    );
    assert!(!out.status.success(), "RUN restricted: {}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("needs CAP_SYS_CHROOT") && said.contains("apt-get install proot"),
        "the reason: {}",
        text(&out)
    );
}
