//! Attack suite, exec follow-up (issue 13): device nodes in a step's root. Docker keeps
//! them dead with its devices cgroup; rbuild mounts the step's root, its /dev tmpfs and
//! its binds `nodev`, keeping only the binds of the host's null, zero, random, urandom,
//! full and tty live. Everything goes through the `rbuild` binary, as root.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::attack::{Attacks, run};
use support::run::{busybox_setup, rbuild};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn build(root: &Path, ctx: &Path, dockerfile: &str) -> Command {
    std::fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    let mut cmd = rbuild(root);
    cmd.args(["build", "--progress", "plain", "-t", "atk", "--no-cache"])
        .arg(ctx);
    cmd
}

#[test]
fn exec_followup_attacks() {
    let mut attacks = Attacks::new("exec-followup");

    attacks.attempt(
        "device-node-in-a-layer-is-live-in-run",
        "RUN mknod /z c 1 5 (a node in a layer), then RUN head -c 4 /z: the node opens (reads the host driver's zeros)",
        || {
            let (_dir, root, ctx) = busybox_setup(&[]);
            let df = "FROM busybox\nRUN mknod /z c 1 5\n\
                      RUN (head -c 4 /z | od -An -tx1 | tr -d ' \\n' | sed 's/^/LIVE-/') 2>/dev/null; echo\n";
            let out = run(&mut build(&root, &ctx, df))?;
            if text(&out).contains("LIVE-00000000") {
                return Err("a device node of a lower layer opened in RUN".to_owned());
            }
            Ok(())
        },
    );

    attacks.attempt(
        "device-node-made-in-run-is-live",
        "RUN mknod /b c 1 5 && mknod /dev/b2 c 1 5 and read them in the same step (root and /dev tmpfs)",
        || {
            let (_dir, root, ctx) = busybox_setup(&[]);
            let df = "FROM busybox\nRUN mknod /b c 1 5 && mknod /dev/b2 c 1 5 && \
                      for n in /b /dev/b2; do (head -c 4 $n | od -An -tx1 | tr -d ' \\n' | sed \"s|^|LIVE$n-|\") 2>/dev/null; echo; done\n";
            let out = run(&mut build(&root, &ctx, df))?;
            if text(&out).contains("LIVE/") {
                return Err(format!("a node made with mknod opened in RUN: {}", text(&out)));
            }
            Ok(())
        },
    );

    attacks.attempt(
        "device-node-in-a-run-volume-is-live",
        "rbuild run -v HOST:/v busybox: mknod /v/z c 1 5 and read it (a writable bind)",
        || {
            let (dir, root, _ctx) = busybox_setup(&[]);
            let host = dir.path().join("vol");
            std::fs::create_dir_all(&host).unwrap();
            let out = run(rbuild(&root)
                .arg("run")
                .arg("-v")
                .arg(format!("{}:/v", host.display()))
                .args([
                    "busybox",
                    "sh",
                    "-c",
                    "mknod /v/z c 1 5 && (head -c 4 /v/z | od -An -tx1 | tr -d ' \\n' | sed 's/^/LIVE-/') 2>/dev/null; echo",
                ]))?;
            if text(&out).contains("LIVE-00000000") {
                return Err("a node made in a volume opened in the container".to_owned());
            }
            Ok(())
        },
    );

    // Not an attack: the step's own /dev must keep working under nodev.
    attacks.attempt(
        "nodev-keeps-the-steps-dev-working",
        "RUN reads /dev/zero and /dev/urandom, writes /dev/null, opens a pty; /dev/tty fails with ENXIO (no controlling terminal)",
        || {
            let (_dir, root, ctx) = busybox_setup(&[]);
            let df = "FROM busybox\nRUN head -c 4 /dev/zero | od -An -tx1 | tr -d ' \\n' | sed 's/^/ZERO-/'; echo; \
                      echo x >/dev/null && echo NULL-OK; \
                      test $(head -c 16 /dev/urandom | wc -c) = 16 && echo URANDOM-OK; \
                      (echo x > /dev/tty) 2>&1 | grep -q 'No such device or address' && echo TTY-ENXIO; \
                      test -c /dev/pts/ptmx && echo PTMX-OK\n";
            let out = run(&mut build(&root, &ctx, df))?;
            let t = text(&out);
            for want in ["ZERO-00000000", "NULL-OK", "URANDOM-OK", "TTY-ENXIO", "PTMX-OK"] {
                if !t.contains(want) {
                    return Err(format!("the step's /dev broke: no {want} in {t}"));
                }
            }
            Ok(())
        },
    );

    attacks.finish();
}
