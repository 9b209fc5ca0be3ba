//! Attack suite, independent review (issue 13, second round): attacks by a reviewer who
//! did not write the fixes. Only the attempts that broke rbuild are kept here; each fails
//! now and passes once the hole is closed. Everything goes through the `rbuild` binary,
//! as root, with canaries in temporary directories only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::attack::{Attacks, run, run_bounded};
use support::run::{busybox_setup, rbuild};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `rbuild build` of `dockerfile` written into `ctx`.
fn build(root: &Path, ctx: &Path, dockerfile: &str, extra: &[&str]) -> Command {
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let mut cmd = rbuild(root);
    cmd.args(["build", "--progress", "plain", "-t", "atk", "--no-cache"])
        .args(extra)
        .arg(ctx);
    cmd
}

/// A free port on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something listens on `port`.
fn wait_listening(port: u16) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "fake server on {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A child process killed when dropped (the fake servers).
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A minimal registry in python: `registry` mode asks for basic credentials, has no
/// blob, and answers an upload start with a `Location` on another origin
/// (`127.0.0.1:<other>`); `sink` mode accepts anything. Every request is logged as
/// one JSON line with its `Authorization` header.
const FAKE_REGISTRY: &str = r#"
import http.server, sys, json
port = int(sys.argv[1]); mode = sys.argv[2]; log = sys.argv[3]
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n: self.rfile.read(n)
        elif self.headers.get("Transfer-Encoding") == "chunked":
            while True:
                l = int(self.rfile.readline().strip(), 16)
                self.rfile.read(l + 2)
                if l == 0: break
    def send(self, code, hdrs={}):
        self.send_response(code)
        for k, v in hdrs.items(): self.send_header(k, v)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def any(self):
        with open(log, "a") as f:
            f.write(json.dumps({"port": port, "m": self.command, "p": self.path, "auth": self.headers.get("Authorization")}) + "\n")
        self.body()
        if mode == "sink":
            return self.send(201, {"Docker-Content-Digest": "sha256:" + "0" * 64})
        if self.headers.get("Authorization") is None:
            return self.send(401, {"WWW-Authenticate": 'Basic realm="x"'})
        if self.command == "HEAD": return self.send(404)
        if self.command == "POST" and "/blobs/uploads" in self.path:
            return self.send(202, {"Location": "http://127.0.0.1:%s/upload/abc" % mode, "Docker-Upload-UUID": "abc"})
        if self.command == "PUT" and "/manifests/" in self.path:
            return self.send(201, {"Docker-Content-Digest": "sha256:" + "0" * 64})
        if self.path == "/v2/": return self.send(200)
        return self.send(404)
    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = any
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"#;

fn fake_server(dir: &Path, port: u16, mode: &str, log: &Path) -> Server {
    let script = dir.join("fake_registry.py");
    std::fs::write(&script, FAKE_REGISTRY).unwrap();
    let child = Command::new("python3")
        .arg(&script)
        .arg(port.to_string())
        .arg(mode)
        .arg(log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3");
    let server = Server(child);
    wait_listening(port);
    server
}

/// A mount of a small tmpfs on `dir`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mounting a tmpfs on {}", dir.display());
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn independent_attacks() {
    let mut attacks = Attacks::new("independent");

    // Sandbox: the mount-point stubs are removed after the step by host paths that
    // follow whatever links the step left in its upper directory.
    attacks.attempt(
        "stub-removal-follows-a-link-the-step-planted",
        "RUN --mount=type=tmpfs,target=/a/b/s mv /a /a.old && ln -s HOSTDIR /a: after the step rbuild removes the stubs a/b/s and a/b through the link, on the host",
        || {
            let (dir, root, ctx) = busybox_setup(&[]);
            let victim = dir.path().join("victim");
            std::fs::create_dir_all(victim.join("b/s")).unwrap();
            let df = format!(
                "FROM busybox\nRUN --mount=type=tmpfs,target=/a/b/s mv /a /a.old && ln -s {} /a\n",
                victim.display()
            );
            let out = run(&mut build(&root, &ctx, &df, &[]))?;
            if !victim.join("b").exists() {
                return Err(format!(
                    "the host directories {0}/b/s and {0}/b were deleted by rbuild (build: {1})",
                    victim.display(),
                    out.status
                ));
            }
            Ok(())
        },
    );

    attacks.attempt(
        "run-stub-removal-follows-a-link",
        "rbuild run -v HOST:/a/b/s busybox sh -c 'mv /a /a.old; ln -s VICTIM /a': the stubs are removed through the link on the host",
        || {
            let (dir, root, _ctx) = busybox_setup(&[]);
            let victim = dir.path().join("victim");
            std::fs::create_dir_all(victim.join("b/s")).unwrap();
            let src = dir.path().join("src");
            std::fs::create_dir_all(&src).unwrap();
            let out = run(rbuild(&root)
                .arg("run")
                .arg("-v")
                .arg(format!("{}:/a/b/s", src.display()))
                .args(["busybox", "sh", "-c"])
                .arg(format!("mv /a /a.old && ln -s {} /a", victim.display())))?;
            if !victim.join("b").exists() {
                return Err(format!(
                    "the host directories {0}/b/s and {0}/b were deleted (run: {1})",
                    victim.display(),
                    out.status
                ));
            }
            Ok(())
        },
    );

    // Sandbox: `-v HOST:CTR:ro` is remounted read-only with mount(2), which ignores
    // MS_REC on a remount: mounts under HOST stay writable.
    attacks.attempt(
        "run-volume-ro-leaves-submounts-writable",
        "rbuild run -v HOST:/x:ro where HOST/sub is a mount point, then touch /x/sub/w",
        || {
            let (dir, root, _ctx) = busybox_setup(&[]);
            let host = dir.path().join("ro");
            let _sub = Tmpfs::mount(&host.join("sub"));
            let out = run(rbuild(&root)
                .arg("run")
                .arg("-v")
                .arg(format!("{}:/x:ro", host.display()))
                .args(["busybox", "sh", "-c", "touch /x/sub/w"]))?;
            if host.join("sub/w").exists() || out.status.success() {
                return Err(format!(
                    "the container wrote {}/sub/w through a :ro volume",
                    host.display()
                ));
            }
            Ok(())
        },
    );

    // Registry: an upload `Location` on another origin receives the registry's password.
    attacks.attempt(
        "push-upload-location-elsewhere-gets-the-password",
        "push to a registry (basic auth) whose upload answer is Location: http://127.0.0.1:OTHER/upload: the PUT to the other origin carries Authorization",
        || {
            let (dir, root, _ctx) = busybox_setup(&[]);
            let log = dir.path().join("requests.log");
            let (reg, other) = (free_port(), free_port());
            let _sink = fake_server(dir.path(), other, "sink", &log);
            let _reg = fake_server(dir.path(), reg, &other.to_string(), &log);
            let cfg = dir.path().join("docker");
            std::fs::create_dir_all(&cfg).unwrap();
            // robot:hunter2-independent
            std::fs::write(
                cfg.join("config.json"),
                format!(
                    r#"{{"auths":{{"127.0.0.1:{reg}":{{"auth":"cm9ib3Q6aHVudGVyMi1pbmRlcGVuZGVudA=="}}}}}}"#
                ),
            )
            .unwrap();
            let dest = format!("127.0.0.1:{reg}/app:1");
            let mut push = rbuild(&root);
            push.args(["push", "busybox", &dest])
                .env("DOCKER_CONFIG", &cfg)
                .env("RBUILD_HTTP_TIMEOUT", "10");
            let _ = run_bounded(push, Duration::from_secs(60), "it hung")?;
            let logged = std::fs::read_to_string(&log).unwrap_or_default();
            let leaked: Vec<&str> = logged
                .lines()
                .filter(|l| l.contains(&format!("\"port\": {other}")) && !l.contains("\"auth\": null"))
                .collect();
            if !leaked.is_empty() {
                return Err(format!(
                    "the other origin 127.0.0.1:{other} received the registry's credentials: {leaked:?}"
                ));
            }
            Ok(())
        },
    );

    // Build context: FROM docker-archive:// / oci-archive:// / oci-layout:// name any host
    // path from the (untrusted) Dockerfile, no entitlement needed.
    attacks.attempt(
        "from-archive-reads-a-host-archive-outside-the-context",
        "FROM docker-archive:///OUTSIDE/private.tar (a saved image outside the context), RUN cat /secret",
        || {
            let (dir, root, ctx) = busybox_setup(&[]);
            let mark = "PRIVATE-DATA-5e1f";
            let out = run(&mut build(
                &root,
                &ctx,
                &format!("FROM busybox\nRUN echo {mark}-x > /secret\n"),
                &[],
            ))?;
            support::attack::succeeded(&out)?;
            let private = dir.path().join("private");
            std::fs::create_dir_all(&private).unwrap();
            let tar = private.join("private.tar");
            let out = run(rbuild(&root).args(["save", "atk", "-o"]).arg(&tar))?;
            support::attack::succeeded(&out)?;
            run(rbuild(&root).args(["rmi", "atk"]))?;
            let ctx2 = dir.path().join("ctx2");
            std::fs::create_dir_all(&ctx2).unwrap();
            let df = format!(
                "FROM docker-archive://{}\nRUN cat /secret\n",
                tar.display()
            );
            let out = run(&mut build(&root, &ctx2, &df, &[]))?;
            if text(&out).contains(&format!("{mark}-x")) {
                return Err(
                    "an untrusted Dockerfile loaded a host archive outside its context and read its files"
                        .to_owned(),
                );
            }
            Ok(())
        },
    );

    attacks.attempt(
        "from-archive-error-quotes-a-host-file",
        "FROM docker-archive:///OUTSIDE/notes.txt (a host text file, like /etc/shadow): the tar error quotes its first line",
        || {
            let (dir, root, ctx) = busybox_setup(&[]);
            let notes = dir.path().join("notes.txt");
            // Longer than a tar header, no digits where tar reads its checksum: the tar
            // error names the "entry", the file's first line.
            let mut body = String::from("root:HOSTFILE-SECRET-9a:twenty:zero:nine:seven:::\n");
            for _ in 0..40 {
                body.push_str("user:*:never:zero:nine:seven:::\n");
            }
            std::fs::write(&notes, body).unwrap();
            let df = format!("FROM docker-archive://{}\n", notes.display());
            let out = run(&mut build(&root, &ctx, &df, &[]))?;
            if text(&out).contains("HOSTFILE-SECRET-9a") {
                return Err(format!(
                    "the build output quotes the host file: {}",
                    text(&out)
                ));
            }
            Ok(())
        },
    );

    attacks.attempt(
        "from-archive-fifo-hangs-the-build",
        "FROM docker-archive:///OUTSIDE/fifo (a FIFO nobody writes)",
        || {
            let (dir, root, ctx) = busybox_setup(&[]);
            let fifo = dir.path().join("fifo");
            let ok = Command::new("mkfifo")
                .arg(&fifo)
                .status()
                .unwrap()
                .success();
            assert!(ok, "mkfifo");
            let df = format!("FROM docker-archive://{}\n", fifo.display());
            let out = run_bounded(
                build(&root, &ctx, &df, &[]),
                Duration::from_secs(30),
                "it hung",
            )?;
            support::attack::refused(&out, "")
        },
    );

    // Build context: a read-only `RUN --mount=type=bind` of the context binds the host
    // directory itself, made read-only without MS_REC: a mount inside the context stays
    // writable to the (untrusted) Dockerfile.
    attacks.attempt(
        "bind-context-ro-leaves-submounts-writable",
        "a context holding a mount point sub/, RUN --mount=type=bind,target=/ctx touch /ctx/sub/w (read-only by default)",
        || {
            let (_dir, root, ctx) = busybox_setup(&[]);
            let _sub = Tmpfs::mount(&ctx.join("sub"));
            let df = "FROM busybox\nRUN --mount=type=bind,target=/ctx touch /ctx/sub/w || true\n";
            let _ = run(&mut build(&root, &ctx, df, &[]))?;
            if ctx.join("sub/w").exists() {
                return Err(format!(
                    "the step wrote {} on the host through a read-only bind of the context",
                    ctx.join("sub/w").display()
                ));
            }
            Ok(())
        },
    );

    // Build context: the directory context's Dockerfile may be a link to any host file;
    // its text is then quoted in the parse error (a tar context refuses the same link).
    attacks.attempt(
        "dir-context-dockerfile-link-to-host-file-quoted",
        "a directory context whose Dockerfile is a symlink to a host file outside it (like /etc/shadow)",
        || {
            let (dir, root, ctx) = busybox_setup(&[]);
            let host = dir.path().join("shadow");
            std::fs::write(&host, "root:SHADOW-LINE-3c7e:20228:0:99999:7:::\n").unwrap();
            std::os::unix::fs::symlink(&host, ctx.join("Dockerfile")).unwrap();
            let out = run(rbuild(&root).args(["build", "--progress", "plain"]).arg(&ctx))?;
            if text(&out).contains("SHADOW-LINE-3c7e") {
                return Err(format!(
                    "the host file's text is shown: {}",
                    text(&out)
                ));
            }
            Ok(())
        },
    );

    // Exporters: `-o type=local` recreates the image's device nodes (and set-uid files)
    // on the host with the image's modes: an untrusted Dockerfile leaves a 0666 block
    // device of the host's disk for any local user.
    attacks.attempt(
        "local-export-creates-host-device-nodes",
        "RUN mknod /disk b 254 0 && chmod 666 /disk, built with -o type=local,dest=OUT",
        || {
            let (dir, root, ctx) = busybox_setup(&[]);
            let dest = dir.path().join("out");
            let df = "FROM busybox\nRUN mknod /disk b 254 0 && chmod 666 /disk\n";
            let dest_arg = format!("type=local,dest={}", dest.display());
            let out = run(&mut build(&root, &ctx, df, &["-o", &dest_arg]))?;
            use std::os::unix::fs::FileTypeExt;
            if let Ok(meta) = std::fs::symlink_metadata(dest.join("disk")) {
                if meta.file_type().is_block_device() {
                    use std::os::unix::fs::PermissionsExt;
                    return Err(format!(
                        "the export made a block device {} (mode {:o}) on the host (build: {})",
                        dest.join("disk").display(),
                        meta.permissions().mode(),
                        out.status
                    ));
                }
            }
            Ok(())
        },
    );

    // Sandbox: the step is never put in a session of its own (no setsid): it keeps the
    // caller's controlling terminal, opens /dev/tty and, with TIOCSTI, types commands
    // into the caller's shell (CVE-2016-9962 / CVE-2017-5226 class).
    attacks.attempt(
        "build-step-keeps-the-callers-controlling-terminal",
        "rbuild build run from a terminal (script(1)); the step opens /dev/tty and writes to it",
        || {
            let (_dir, root, ctx) = busybox_setup(&[]);
            std::fs::write(
                ctx.join("Dockerfile"),
                "FROM busybox\nRUN (echo probe > /dev/tty) 2>/dev/null && echo HAS-CTTY-$((40+2)) || echo no-ctty\n",
            )
            .unwrap();
            let exe = rbuild(&root).get_program().to_string_lossy().into_owned();
            let line = format!(
                "{exe} build --progress plain --no-cache -t atk {} </dev/null",
                ctx.display()
            );
            let mut cmd = Command::new("script");
            cmd.args(["-qec", &line, "/dev/null"]).env("RBUILD_ROOT", &root);
            let out = run_bounded(cmd, Duration::from_secs(120), "it hung")?;
            if text(&out).contains("HAS-CTTY-42") {
                return Err("the step opened the caller's terminal (/dev/tty): it can inject input with TIOCSTI".to_owned());
            }
            Ok(())
        },
    );

    attacks.attempt(
        "run-container-keeps-the-callers-controlling-terminal",
        "rbuild run busybox sh -c 'echo probe > /dev/tty' from a terminal (script(1)), without -t",
        || {
            let (_dir, root, _ctx) = busybox_setup(&[]);
            let exe = rbuild(&root).get_program().to_string_lossy().into_owned();
            let line = format!(
                "{exe} run busybox sh -c '(echo probe > /dev/tty) 2>/dev/null && echo HAS-CTTY-$((40+2))' </dev/null"
            );
            let mut cmd = Command::new("script");
            cmd.args(["-qec", &line, "/dev/null"]).env("RBUILD_ROOT", &root);
            let out = run_bounded(cmd, Duration::from_secs(60), "it hung")?;
            if text(&out).contains("HAS-CTTY-42") {
                return Err("the container opened the caller's terminal (/dev/tty)".to_owned());
            }
            Ok(())
        },
    );

    // Archives: FROM docker-archive://F loads F as `rbuild load` would, names and all:
    // an archive in the (untrusted) context naming its image busybox:latest retags the
    // store's busybox:latest, which every later build FROM busybox then uses.
    attacks.attempt(
        "from-archive-in-context-retags-store-images",
        "a context holding evil.tar (RepoTags busybox:latest) and FROM docker-archive://evil.tar, built from the context directory; then rbuild run busybox cat /evil",
        || {
            let (dir, root, ctx) = busybox_setup(&[]);
            // The attacker's archive, made in a store of its own.
            let root2 = dir.path().join("store2");
            support::run::import(&root2, &support::run::fixture("busybox"), "busybox:latest", &[]);
            let ctx2 = dir.path().join("ctx2");
            std::fs::create_dir_all(&ctx2).unwrap();
            std::fs::write(
                ctx2.join("Dockerfile"),
                "FROM busybox\nRUN echo EVIL-$((40+2)) > /evil\n",
            )
            .unwrap();
            let out = run(rbuild(&root2)
                .args(["build", "-q", "-t", "busybox:latest"])
                .arg(&ctx2))?;
            support::attack::succeeded(&out)?;
            let out = run(rbuild(&root2)
                .args(["save", "busybox:latest", "-o"])
                .arg(ctx.join("evil.tar")))?;
            support::attack::succeeded(&out)?;
            std::fs::write(
                ctx.join("Dockerfile"),
                "FROM docker-archive://evil.tar\nRUN true\n",
            )
            .unwrap();
            let _ = run(rbuild(&root)
                .args(["build", "-q", "-t", "app", "."])
                .current_dir(&ctx))?;
            let out = run(rbuild(&root).args(["run", "busybox", "cat", "/evil"]))?;
            if text(&out).contains("EVIL-42") {
                return Err("the Dockerfile's archive replaced the store's busybox:latest".to_owned());
            }
            Ok(())
        },
    );

    attacks.finish();
}
