//! Attack suite, secrets (issue 13): `--secret` values, `--ssh` sockets and mount stubs,
//! build arguments with secret-looking names. Each attempt goes through the `rbuild`
//! binary, as root and, for the kill -9 attempt, as the unprivileged `rbuild-rootless`.
//!
//! Decided and documented: a RUN that prints its own secret (`cat /run/secrets/x`) shows
//! it in the step's output, as BuildKit does (no masking): that is the Dockerfile's own
//! doing. Everything rbuild itself writes (layers, history, config, cache entries,
//! progress events, errors) never holds the value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::attack::{Attacks, as_user, files_holding, refused, run, run_bounded, succeeded};
use support::require::require_root;
use support::run::{busybox_setup, fixture, processes_with, rbuild};

/// A value no fixture holds: found anywhere, it leaked.
const SECRET: &str = "s3cr3t-value-7f1d9c2a";

/// The secret's sha256 in hex: steps compare against it, so no Dockerfile holds the value.
fn secret_sha256() -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(SECRET.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn no_leak(root: &Path, outputs: &[&Output]) -> Result<(), String> {
    let files = files_holding(root, SECRET.as_bytes());
    if !files.is_empty() {
        return Err(format!("the secret is in the store: {files:?}"));
    }
    for out in outputs {
        if text(out).contains(SECRET) {
            return Err(format!("the secret is in rbuild's output: {}", text(out)));
        }
    }
    Ok(())
}

/// A build of `dockerfile` in `ctx`, uncompressed layers (so a search of the store sees
/// their contents), tagged `tag`.
fn build(root: &Path, ctx: &Path, dockerfile: &str, tag: &str, extra: &[&str]) -> Command {
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let mut cmd = rbuild(root);
    cmd.args(["build", "--compression", "none", "-t", tag])
        .args(extra)
        .arg(ctx);
    cmd
}

/// The image's root filesystem, exported to `dest` (`-o type=local`).
fn export_rootfs(root: &Path, ctx: &Path, tag: &str, dest: &Path) -> Result<(), String> {
    let df = format!("FROM {tag}\n");
    let out = run(&mut build(
        root,
        ctx,
        &df,
        "export-tmp",
        &["-o", &format!("type=local,dest={}", dest.display())],
    ))?;
    succeeded(&out)
}

fn secret_file(dir: &Path) -> PathBuf {
    let path = dir.join("secret.txt");
    std::fs::write(&path, SECRET).unwrap();
    path
}

/// Kills `pid` with SIGKILL.
fn kill9(pid: u32) {
    // SAFETY: kill has no memory preconditions; the pid is our own child's.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

/// Waits (bounded) until a process whose command line holds `marker` runs; true if so.
fn wait_for_process(marker: &str, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if !processes_with(marker).is_empty() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// kill -9 of rbuild while a RUN with a secret mounted sleeps: the value is found
/// neither in the store nor in rbuild's temporary directory (`TMPDIR`, one of this
/// attempt's own: searching the machine's /tmp measured what other work put there),
/// during the step or after the kill.
fn kill_during_secret_step(user: Option<&str>) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    // A value of this attempt only, in a file outside the searches (skipped by path).
    let value = format!(
        "kill9-secret-{}-{}",
        std::process::id(),
        user.unwrap_or("root")
    );
    let secret = dir.path().join("kill-secret.txt");
    std::fs::write(&secret, &value).unwrap();
    let marker = format!("rbuild-secret-kill-{}", user.unwrap_or("root"));
    let df = format!(
        "FROM busybox\nRUN --mount=type=secret,id=tok,required=true sh -c 'cat /run/secrets/tok >/dev/null; sleep 300; true {marker}'\n"
    );
    std::fs::write(ctx.join("Dockerfile"), df).unwrap();
    let wrap = |cmd: Command| match user {
        Some(u) => as_user(u, &cmd),
        None => cmd,
    };
    if let Some(u) = user {
        let status = Command::new("chown")
            .args(["-R", &format!("{u}:"), &dir.path().display().to_string()])
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("chown to {u} failed"));
        }
    }
    let mut import = rbuild(&root);
    import
        .arg("import")
        .arg(fixture("busybox"))
        .arg("busybox:latest");
    succeeded(&run(&mut wrap(import))?)?;
    let mut cmd = rbuild(&root);
    cmd.args(["build", "--progress", "plain", "--secret"])
        .arg(format!("id=tok,src={}", secret.display()))
        .arg(&ctx)
        .env("TMPDIR", &tmp);
    let child = wrap(cmd)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let started = wait_for_process(&marker, Duration::from_secs(90));
    let during = files_holding(&root, value.as_bytes());
    let during_tmp = files_holding(&tmp, value.as_bytes());
    kill9(child.id());
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !started {
        return Err(format!(
            "the step never started: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // The step's processes go with rbuild (bounded wait).
    let start = Instant::now();
    while !processes_with(&marker).is_empty() && start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut found = during;
    found.extend(during_tmp);
    found.extend(files_holding(&root, value.as_bytes()));
    found.extend(files_holding(&tmp, value.as_bytes()));
    found.retain(|p| *p != secret);
    found.sort();
    found.dedup();
    if found.is_empty() {
        Ok(())
    } else {
        Err(format!("the secret's value is on disk: {found:?}"))
    }
}

#[test]
fn attack_secrets() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    let mut attacks = Attacks::new("secrets");
    let (dir, root, ctx) = busybox_setup(&[]);
    let secret = secret_file(dir.path());
    let secret_arg = format!("id=tok,src={}", secret.display());

    attacks.attempt(
        "value-nowhere-stored",
        "build with --secret, RUN reading it, --progress rawjson and --explain-cache; search the whole store, the output and inspect for the value",
        || {
            let df = "FROM busybox\nRUN --mount=type=secret,id=tok wc -c /run/secrets/tok > /len\nRUN --mount=type=secret,id=tok,target=/etc/tok cp /etc/tok /dev/null\n";
            let mut cmd = build(&root, &ctx, df, "sec1", &["--secret", &secret_arg, "--explain-cache"]);
            let plain = run(&mut cmd)?;
            succeeded(&plain)?;
            let mut cmd = build(&root, &ctx, df, "sec1", &["--secret", &secret_arg, "--progress", "rawjson", "--explain-cache"]);
            let raw = run(&mut cmd)?;
            succeeded(&raw)?;
            let inspect = run(rbuild(&root).args(["inspect", "sec1"]))?;
            no_leak(&root, &[&plain, &raw, &inspect])
        },
    );

    attacks.attempt(
        "env-form",
        "--secret id=tok,env=VAR and RUN --mount=type=secret,id=tok,env=TOK: the value reaches the step's environment only",
        || {
            let df = &format!("FROM busybox\nRUN --mount=type=secret,id=tok,env=TOK sh -c 'test \"$(printf %s \"$TOK\" | sha256sum | cut -c1-64)\" = {}'\n", secret_sha256());
            let mut cmd = build(&root, &ctx, df, "sec2", &["--secret", "id=tok,env=ATTACK_SECRET_VAR", "--progress", "rawjson"]);
            cmd.env("ATTACK_SECRET_VAR", SECRET);
            let out = run(&mut cmd)?;
            succeeded(&out)?;
            let inspect = run(rbuild(&root).args(["inspect", "sec2"]))?;
            no_leak(&root, &[&out, &inspect])
        },
    );

    attacks.attempt(
        "missing-source-file",
        "--secret id=tok,src=<missing file> with a required secret mount",
        || {
            let df = "FROM busybox\nRUN --mount=type=secret,id=tok,required=true true\n";
            let out = run(&mut build(
                &root,
                &ctx,
                df,
                "sec3",
                &["--secret", "id=tok,src=/nonexistent/secret"],
            ))?;
            refused(&out, "secret tok")
        },
    );

    attacks.attempt(
        "source-is-fifo",
        "--secret src= a FIFO nobody writes: rbuild must refuse, not hang reading it",
        || {
            let fifo = dir.path().join("fifo");
            let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
            // SAFETY: a valid C string path.
            if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
                return Err("mkfifo failed".into());
            }
            let df = "FROM busybox\nRUN --mount=type=secret,id=tok true\n";
            let cmd = build(
                &root,
                &ctx,
                df,
                "sec4",
                &["--secret", &format!("id=tok,src={}", fifo.display())],
            );
            let out = run_bounded(cmd, Duration::from_secs(60), "it hung")?;
            refused(&out, "not a regular file")
        },
    );

    attacks.attempt(
        "source-is-device",
        "--secret src=/dev/zero (an endless device): refused, not read into memory without end",
        || {
            let df = "FROM busybox\nRUN --mount=type=secret,id=tok true\n";
            let cmd = build(
                &root,
                &ctx,
                df,
                "sec5",
                &["--secret", "id=tok,src=/dev/zero"],
            );
            let out = run_bounded(cmd, Duration::from_secs(60), "it hung")?;
            refused(&out, "not a regular file")
        },
    );

    attacks.attempt(
        "source-is-directory",
        "--secret src=/etc (a directory)",
        || {
            let df = "FROM busybox\nRUN --mount=type=secret,id=tok true\n";
            let out = run(&mut build(
                &root,
                &ctx,
                df,
                "sec6",
                &["--secret", "id=tok,src=/etc"],
            ))?;
            refused(&out, "secret tok")
        },
    );

    attacks.attempt(
        "source-too-large",
        "--secret src= a 1 MiB file (BuildKit's limit is 500 KiB)",
        || {
            let big = dir.path().join("big");
            std::fs::write(&big, vec![b'a'; 1 << 20]).unwrap();
            let df = "FROM busybox\nRUN --mount=type=secret,id=tok true\n";
            let out = run(&mut build(
                &root,
                &ctx,
                df,
                "sec7",
                &["--secret", &format!("id=tok,src={}", big.display())],
            ))?;
            refused(&out, "more than")
        },
    );

    attacks.attempt(
        "source-is-symlink",
        "--secret src= a symbolic link to the secret file: followed (it is the caller's own path), the value still stored nowhere",
        || {
            let link = dir.path().join("link");
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&secret, &link).unwrap();
            let df = &format!("FROM busybox\nRUN --mount=type=secret,id=tok,required=true sh -c 'test \"$(sha256sum < /run/secrets/tok | cut -c1-64)\" = {}'\n", secret_sha256());
            let out = run(&mut build(&root, &ctx, df, "sec8", &["--secret", &format!("id=tok,src={}", link.display())]))?;
            succeeded(&out)?;
            no_leak(&root, &[&out])
        },
    );

    attacks.attempt(
        "mounted-over-existing-file",
        "a secret mounted over a file the image has (/etc/app/token): the step sees the secret, the image keeps its own file",
        || {
            let df = &format!("FROM busybox\nRUN mkdir -p /etc/app && echo original > /etc/app/token\nRUN --mount=type=secret,id=tok,target=/etc/app/token sh -c 'test \"$(sha256sum < /etc/app/token | cut -c1-64)\" = {}'\n", secret_sha256());
            let out = run(&mut build(&root, &ctx, df, "sec9", &["--secret", &secret_arg]))?;
            succeeded(&out)?;
            no_leak(&root, &[&out])?;
            let dest = dir.path().join("rootfs9");
            export_rootfs(&root, &ctx, "sec9", &dest)?;
            let kept = std::fs::read_to_string(dest.join("etc/app/token")).map_err(|e| e.to_string())?;
            if kept != "original\n" {
                return Err(format!("the image's /etc/app/token became {kept:?}"));
            }
            Ok(())
        },
    );

    attacks.attempt(
        "kill9-root",
        "kill -9 rbuild (root) while a RUN with a secret mounted sleeps; search the store and rbuild's TMPDIR for the value during and after",
        || kill_during_secret_step(None),
    );

    attacks.attempt(
        "kill9-rootless",
        "kill -9 rbuild run by rbuild-rootless while a RUN with a secret mounted sleeps; search its store and its TMPDIR for the value",
        || kill_during_secret_step(Some("rbuild-rootless")),
    );

    attacks.attempt(
        "secret-stub-parents",
        "a secret mount in an image without /run: /run and /run/secrets must not stay in the image",
        || {
            let df = "FROM busybox\nRUN rm -rf /run\nRUN --mount=type=secret,id=tok true\n";
            let out = run(&mut build(
                &root,
                &ctx,
                df,
                "sec11",
                &["--secret", &secret_arg],
            ))?;
            succeeded(&out)?;
            let dest = dir.path().join("rootfs11");
            export_rootfs(&root, &ctx, "sec11", &dest)?;
            if dest.join("run").exists() {
                return Err("/run (created for the secret mount) is in the image".into());
            }
            Ok(())
        },
    );

    attacks.attempt(
        "cache-tmpfs-stub-parents",
        "cache and tmpfs mounts on deep new targets (/a/b/c, /x/y): none of their created parents stays in the image",
        || {
            let df = "FROM busybox\nRUN --mount=type=cache,target=/a/b/c --mount=type=tmpfs,target=/x/y true\n";
            let out = run(&mut build(&root, &ctx, df, "sec12", &[]))?;
            succeeded(&out)?;
            let dest = dir.path().join("rootfs12");
            export_rootfs(&root, &ctx, "sec12", &dest)?;
            for p in ["a", "x"] {
                if dest.join(p).exists() {
                    return Err(format!("/{p} (created for a mount) is in the image"));
                }
            }
            Ok(())
        },
    );

    attacks.attempt(
        "step-writes-into-stub-dir",
        "a step writing next to its secret (/run/secrets/mine): its file is the step's and stays; the secret does not",
        || {
            let df = "FROM busybox\nRUN rm -rf /run\nRUN --mount=type=secret,id=tok sh -c 'echo mine > /run/secrets/mine'\n";
            let out = run(&mut build(&root, &ctx, df, "sec13", &["--secret", &secret_arg]))?;
            succeeded(&out)?;
            let dest = dir.path().join("rootfs13");
            export_rootfs(&root, &ctx, "sec13", &dest)?;
            if !dest.join("run/secrets/mine").is_file() {
                return Err("the step's own file /run/secrets/mine was removed".into());
            }
            if dest.join("run/secrets/tok").exists() {
                return Err("the secret's mount point stayed".into());
            }
            Ok(())
        },
    );

    attacks.attempt(
        "ssh-socket-stub-and-reach",
        "an ssh mount: /run/buildkit must not stay in the image, and the next step cannot reach the agent's socket",
        || {
            let sock = dir.path().join("agent.sock");
            let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
            let df = "FROM busybox\nRUN rm -rf /run\nRUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\"\nRUN sh -c 'test ! -e /run/buildkit && test -z \"$SSH_AUTH_SOCK\"'\n";
            let out = run(&mut build(&root, &ctx, df, "sec14", &["--ssh", &format!("default={}", sock.display())]))?;
            succeeded(&out)?;
            let dest = dir.path().join("rootfs14");
            export_rootfs(&root, &ctx, "sec14", &dest)?;
            if dest.join("run").exists() {
                return Err("/run (created for the ssh socket) is in the image".into());
            }
            Ok(())
        },
    );

    attacks.attempt(
        "build-arg-password",
        "ARG PASSWORD with --build-arg PASSWORD=...: the value goes to the history, so rbuild must warn and point at --secret",
        || {
            let df = "FROM busybox\nARG PASSWORD\nRUN echo building\n";
            let out = run(&mut build(&root, &ctx, df, "sec15", &["--build-arg", "PASSWORD=hunter2"]))?;
            succeeded(&out)?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            if !(stderr.contains("PASSWORD") && stderr.contains("--secret")) {
                return Err(format!("no warning pointing at --secret: {stderr}"));
            }
            Ok(())
        },
    );

    attacks.attempt(
        "env-token",
        "ENV GITHUB_TOKEN=... and ARG db_api_key: both warned about",
        || {
            let df = "FROM busybox\nENV GITHUB_TOKEN=abc\nARG db_api_key=x\n";
            let out = run(&mut build(&root, &ctx, df, "sec16", &[]))?;
            succeeded(&out)?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            if !(stderr.contains("GITHUB_TOKEN") && stderr.contains("db_api_key")) {
                return Err(format!("missing warnings: {stderr}"));
            }
            Ok(())
        },
    );

    attacks.attempt(
        "harmless-names",
        "ARG VERSION, ARG PUBLIC_KEY, ENV AUTHOR: no secret warning (no noise)",
        || {
            let df = "FROM busybox\nARG VERSION=1\nARG PUBLIC_KEY=k\nENV AUTHOR=me KEYBOARD=us\n";
            let out = run(&mut build(&root, &ctx, df, "sec17", &[]))?;
            succeeded(&out)?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("sensitive") {
                return Err(format!("a harmless name was warned about: {stderr}"));
            }
            Ok(())
        },
    );

    attacks.attempt(
        "secret-never-in-history",
        "ARG TOKEN passed as --build-arg and a secret mounted in the same RUN: history has the build arg (warned), never the secret",
        || {
            let df = "FROM busybox\nARG TOKEN\nRUN --mount=type=secret,id=tok true\n";
            let out = run(&mut build(&root, &ctx, df, "sec18", &["--secret", &secret_arg, "--build-arg", "TOKEN=visible"]))?;
            succeeded(&out)?;
            let inspect = run(rbuild(&root).args(["inspect", "sec18"]))?;
            no_leak(&root, &[&out, &inspect])
        },
    );

    drop(dir);
    // Unreadable store permissions must not be what kept the value safe.
    let _ = std::fs::Permissions::from_mode(0o700);
    attacks.finish();
}
