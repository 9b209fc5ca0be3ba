//! Attacks on rbuild's exports and messages (issue 13), through the CLI: `save`, `-o
//! type=oci|docker` and OCI directories verify blobs and replace their destination
//! atomically; control bytes in entry, file, image and manifest names never reach the
//! terminal raw.
//!
//! `RBUILD_ATTACK_BIN=/path/to/rbuild` runs the attacks against another build of rbuild
//! (the one before a fix, to see them break it). The helpers are
//! `support/attack_archives.rs`'s, shared with the other `attack_archive*.rs` suites.

mod support;

use std::fs;
use std::process::{Command, Stdio};

use support::attack::{Attacks, absent, refused, run, succeeded};
use support::attack_archives::*;
use support::require::require_root;

#[test]
fn exports_verify_and_replace_atomically() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let mut attacks = Attacks::new("archives");

    // Finding 5: corrupt blobs must not be exported.
    let root = busybox_store(dir, "corrupt");
    let ctx = dir.join("ctx");
    fs::create_dir_all(&ctx).expect("ctx");
    fs::write(ctx.join("a"), "a").expect("a");
    fs::write(ctx.join("Dockerfile"), "FROM busybox\nCOPY a /a\n").expect("Dockerfile");
    let mut first = rbuild(&root);
    first
        .args(["build", "--progress", "plain", "-t", "app:1"])
        .arg(&ctx);
    support::run::success(&mut first);
    let layers = layer_blobs(&root, "app:1");
    let top = layers.last().expect("a layer").clone();
    flip(&root, &top);

    for (name, args) in [
        ("save-docker", vec!["save", "-o", "OUT", "app:1"]),
        (
            "save-oci",
            vec!["save", "--format", "oci", "-o", "OUT", "app:1"],
        ),
        (
            "build-o-oci",
            vec![
                "build",
                "--progress",
                "plain",
                "-t",
                "app:1",
                "-o",
                "type=oci,dest=OUT",
                "CTX",
            ],
        ),
        (
            "build-o-docker",
            vec![
                "build",
                "--progress",
                "plain",
                "-t",
                "app:1",
                "-o",
                "type=docker,dest=OUT",
                "CTX",
            ],
        ),
        (
            "build-o-oci-dir",
            vec![
                "build",
                "--progress",
                "plain",
                "-t",
                "app:1",
                "-o",
                "type=oci,tar=false,dest=OUT",
                "CTX",
            ],
        ),
    ] {
        attacks.attempt(
            &format!("export-corrupt-blob-{name}"),
            &format!(
                "a byte of the image's top layer blob flipped in the store, then rbuild {}",
                args.join(" ")
            ),
            || {
                let out_path = dir.join(format!("{name}.out"));
                let mut cmd = rbuild(&root);
                for a in &args {
                    match *a {
                        "CTX" => cmd.arg(&ctx),
                        // OUT alone or inside -o type=...,dest=OUT.
                        other => cmd.arg(other.replace("OUT", &out_path.to_string_lossy())),
                    };
                }
                let out = run(&mut cmd)?;
                if out.status.success() {
                    return Err(format!(
                        "exit 0 with a corrupt blob; wrote {}",
                        out_path.display()
                    ));
                }
                let all = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
                if !all.contains("corrupt") {
                    return Err(format!("refused without saying the blob is corrupt: {all}"));
                }
                if out_path.is_file() {
                    return Err("a partial archive was left".into());
                }
                if out_path.join("index.json").exists() {
                    return Err("the layout directory looks complete".into());
                }
                if out_path.join("blobs/sha256").join(&top).exists() {
                    return Err("the corrupt blob was written under its name".into());
                }
                Ok(())
            },
        );
    }

    // Finding 14: kill -9 and ENOSPC leave the old file.
    let big_root = dir.join("big");
    let rootfs = dir.join("rootfs.tar");
    {
        let data: Vec<u8> = {
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            (0..(48 << 20))
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        };
        let mut tar = RawTar::new();
        tar.file("noise", &data);
        fs::write(&rootfs, tar.finish()).expect("rootfs");
    }
    let mut imp = rbuild(&big_root);
    imp.env("RBUILD_ARCHIVE_RATIO_ABOVE", "1000000000000")
        .args(["import"])
        .arg(&rootfs)
        .arg("big:1");
    support::run::success(&mut imp);

    for (name, args) in [
        (
            "save",
            vec!["save", "--format", "oci", "-o", "OUT", "big:1"],
        ),
        ("save-docker", vec!["save", "-o", "OUT", "big:1"]),
    ] {
        attacks.attempt(
            &format!("export-kill-9-{name}"),
            &format!(
                "kill -9 of rbuild {} while it writes, over an existing OUT",
                args.join(" ")
            ),
            || {
                let sub = dir.join(format!("kill-{name}"));
                fs::create_dir_all(&sub).map_err(|e| e.to_string())?;
                let out_path = put(&sub, "out.tar", b"OLD ARCHIVE");
                let mut cmd = rbuild(&big_root);
                for a in &args {
                    if *a == "OUT" {
                        cmd.arg(&out_path);
                    } else {
                        cmd.arg(a);
                    }
                }
                let mut child = cmd
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| e.to_string())?;
                // Wait until the export has started writing (a new file beside OUT, or
                // OUT itself changed), then kill it.
                let mut seen = false;
                for _ in 0..20_000 {
                    let entries = fs::read_dir(&sub).map(|r| r.count()).unwrap_or(0);
                    let changed = fs::read(&out_path)
                        .map(|b| b != b"OLD ARCHIVE")
                        .unwrap_or(true);
                    if entries > 1 || changed {
                        seen = true;
                        break;
                    }
                    if child.try_wait().map_err(|e| e.to_string())?.is_some() {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                // SAFETY: not needed; Child::kill sends SIGKILL.
                let _ = child.kill();
                let status = child.wait().map_err(|e| e.to_string())?;
                if !seen {
                    return Err(format!(
                        "never saw the export start (exit {status}); cannot judge"
                    ));
                }
                let now = fs::read(&out_path).map_err(|e| format!("OUT is gone: {e}"))?;
                println!(
                    "  ({})",
                    if status.success() {
                        "the export finished before the kill"
                    } else {
                        "killed mid-export"
                    }
                );
                if status.success() {
                    // It finished before the kill: then OUT must be the whole new archive.
                    return if now != b"OLD ARCHIVE" {
                        Ok(())
                    } else {
                        Err("exit 0 but OUT unchanged".into())
                    };
                }
                if now != b"OLD ARCHIVE" {
                    return Err(format!(
                        "killed mid-export, OUT now holds {} bytes of a partial archive",
                        now.len()
                    ));
                }
                Ok(())
            },
        );
    }

    let small = dir.join("tiny-tmpfs");
    fs::create_dir_all(&small).expect("mount point");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "rbuild-attack-enospc"])
        .arg(&small)
        .status()
        .expect("running mount");
    assert!(
        mounted.success(),
        "mounting a 4 MiB tmpfs for the ENOSPC attempts failed"
    );
    for (name, old) in [("over-old", true), ("no-old", false)] {
        attacks.attempt(
            &format!("export-enospc-{name}"),
            &format!(
                "rbuild save -o F of a 48 MiB image onto a full 4 MiB tmpfs ({})",
                if old { "F exists" } else { "no F" }
            ),
            || {
                let out_path = small.join(format!("{name}.tar"));
                if old {
                    fs::write(&out_path, b"OLD ARCHIVE").map_err(|e| e.to_string())?;
                }
                let mut cmd = rbuild(&big_root);
                cmd.args(["save", "-o"]).arg(&out_path).arg("big:1");
                let out = run(&mut cmd)?;
                refused(&out, "")?;
                if old {
                    let now = fs::read(&out_path).map_err(|e| format!("F is gone: {e}"))?;
                    if now != b"OLD ARCHIVE" {
                        return Err(format!("F was damaged: {} bytes", now.len()));
                    }
                } else {
                    absent(&out_path)?;
                }
                let left: Vec<_> = fs::read_dir(&small)
                    .map_err(|e| e.to_string())?
                    .flatten()
                    .map(|e| e.file_name())
                    .collect();
                let expected = usize::from(old)
                    + usize::from(name == "no-old" && small.join("over-old.tar").exists());
                if left.len() > expected {
                    return Err(format!("temporary files left behind: {left:?}"));
                }
                Ok(())
            },
        );
    }
    attacks.attempt(
        "export-enospc-type-tar",
        "rbuild build -o type=tar,dest=F of a 48 MiB image onto a full 4 MiB tmpfs, F existing",
        || {
            let c2 = dir.join("ctx-big");
            fs::create_dir_all(&c2).map_err(|e| e.to_string())?;
            fs::write(c2.join("Dockerfile"), "FROM big:1\n").map_err(|e| e.to_string())?;
            let out_path = small.join("rootfs.tar");
            fs::write(&out_path, b"OLD ARCHIVE").map_err(|e| e.to_string())?;
            let mut cmd = rbuild(&big_root);
            cmd.env("RBUILD_ARCHIVE_RATIO_ABOVE", "1000000000000")
                .args(["build", "--progress", "plain", "-o"])
                .arg(format!("type=tar,dest={}", out_path.display()))
                .arg(&c2);
            let out = run(&mut cmd)?;
            if out.status.success() {
                return Err("exit 0 on a full disk".into());
            }
            let now = fs::read(&out_path).map_err(|e| format!("F is gone: {e}"))?;
            if now != b"OLD ARCHIVE" {
                return Err(format!("F was damaged: {} bytes", now.len()));
            }
            Ok(())
        },
    );
    let _ = Command::new("umount").arg(&small).status();

    attacks.finish();
}
#[test]
fn errors_escape_control_bytes() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let root = busybox_store(dir, "store");
    let mut attacks = Attacks::new("archives");
    let evil = "\x1b]0;pwned\x07\x1b[2J\rX";

    attacks.attempt(
        "escape-entry-name",
        "rbuild import of a tar whose entry name ../<ESC ] 0;pwned BEL ESC[2J CR>X holds terminal escapes",
        || {
            let mut t = RawTar::new();
            t.entry(format!("../{evil}").as_bytes(), FILE, b"", 0o644, b"x");
            let path = put(dir, "esc.tar", &t.finish());
            let out = run(rbuild(&root).arg("import").arg(&path).arg("esc:1"))?;
            refused(&out, "'..'")?;
            no_raw_controls(&out)
        },
    );
    attacks.attempt(
        "escape-file-name",
        "rbuild load -i of a missing file whose name holds ESC, BEL and CR",
        || {
            let out = run(rbuild(&root)
                .arg("load")
                .arg("-i")
                .arg(dir.join(format!("missing{evil}.tar"))))?;
            refused(&out, "")?;
            no_raw_controls(&out)
        },
    );
    attacks.attempt(
        "escape-image-name",
        "rbuild save of an image name holding ESC, BEL and CR",
        || {
            let out = run(rbuild(&root)
                .arg("save")
                .arg("-o")
                .arg(dir.join("x.tar"))
                .arg(format!("busybox{evil}")))?;
            refused(&out, "")?;
            no_raw_controls(&out)
        },
    );
    attacks.attempt(
        "escape-manifest-fields",
        "rbuild load of a docker archive whose RepoTags and Config hold ESC, BEL and CR",
        || {
            let manifest = serde_json::to_vec(&serde_json::json!([{"Config": format!("{evil}/../../c"), "RepoTags": [format!("x{evil}:1")], "Layers": []}]))
                .map_err(|e| e.to_string())?;
            let mut t = RawTar::new();
            t.file("manifest.json", &manifest);
            let out = run(rbuild(&root).arg("load").arg("-i").arg(put(dir, "m.tar", &t.finish())))?;
            refused(&out, "")?;
            no_raw_controls(&out)?;
            let manifest = serde_json::to_vec(&serde_json::json!([{"Config": "c.json", "RepoTags": [format!("x{evil}:1")], "Layers": []}]))
                .map_err(|e| e.to_string())?;
            let mut t = RawTar::new();
            t.file("manifest.json", &manifest).file("c.json", &config_json(&[]));
            let out = run(rbuild(&root).arg("load").arg("-i").arg(put(dir, "m2.tar", &t.finish())))?;
            refused(&out, "")?;
            no_raw_controls(&out)
        },
    );
    attacks.attempt(
        "escape-add-entry-in-build",
        "a build whose ADD extracts a tar with an entry ../<escapes>, progress plain",
        || {
            let ctx = dir.join("ctx");
            fs::create_dir_all(&ctx).map_err(|e| e.to_string())?;
            let mut t = RawTar::new();
            t.entry(
                format!("../../../../{evil}").as_bytes(),
                FILE,
                b"",
                0o644,
                b"x",
            );
            fs::write(ctx.join("e.tar"), t.finish()).map_err(|e| e.to_string())?;
            fs::write(ctx.join("Dockerfile"), "FROM busybox\nADD e.tar /x/\n")
                .map_err(|e| e.to_string())?;
            let out = run(rbuild(&root)
                .args(["build", "--progress", "plain"])
                .arg(&ctx))?;
            if out.status.success() {
                return Err("the build accepted the entry".into());
            }
            no_raw_controls(&out)
        },
    );
    attacks.attempt(
        "escape-step-name-in-progress",
        "a Dockerfile whose RUN line holds ESC ] 0;pwned BEL ESC[2J: the step name in plain progress and the summary",
        || {
            let ctx = dir.join("ctx-step-name");
            fs::create_dir_all(&ctx).map_err(|e| e.to_string())?;
            fs::write(ctx.join("Dockerfile"), format!("FROM busybox\nRUN echo '{evil}' > /dev/null\n"))
                .map_err(|e| e.to_string())?;
            let out = run(rbuild(&root)
                .args(["build", "--progress", "plain"])
                .arg(&ctx))?;
            succeeded(&out)?;
            no_raw_controls(&out)
        },
    );
    attacks.attempt(
        "escape-dockerfile-caret-kept",
        "a Dockerfile error still prints its line and caret on separate lines",
        || {
            let ctx = dir.join("ctx2");
            fs::create_dir_all(&ctx).map_err(|e| e.to_string())?;
            fs::write(ctx.join("Dockerfile"), "FROM busybox\nNOPE x\n")
                .map_err(|e| e.to_string())?;
            let out = run(rbuild(&root)
                .args(["build", "--progress", "plain"])
                .arg(&ctx))?;
            let err = stderr(&out);
            if out.status.success() || !err.contains('\n') || !err.contains('^') {
                return Err(format!("no multi-line caret error: {err}"));
            }
            Ok(())
        },
    );
    attacks.finish();
}
