//! Attacks on rbuild's layer handling (issue 13), through the CLI: base images from
//! `FROM oci-archive://` / `docker-archive://` / `oci-layout://`, sparse tar entries
//! wherever a tar is read (import, ADD, a context on stdin, a loaded layer), and `rbuild
//! import` of hostile entries.
//!
//! `RBUILD_ATTACK_BIN=/path/to/rbuild` runs the attacks against another build of rbuild
//! (the one before a fix, to see them break it). The helpers are
//! `support/attack_archives.rs`'s, shared with the other `attack_archive*.rs` suites.

mod support;

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::process::{Command, Output};

use support::attack::{Attacks, absent, as_user, refused, run, succeeded};
use support::attack_archives::*;
use support::require::{require_root, require_user};
use support::run::fixture;

#[test]
fn base_images_from_archives_and_layouts() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let root = busybox_store(dir, "store");
    let ctx = dir.join("ctx");
    fs::create_dir_all(&ctx).expect("ctx");
    let build = |dockerfile: &str, extra: &[&str]| -> Result<Output, String> {
        fs::write(ctx.join("Dockerfile"), dockerfile).map_err(|e| e.to_string())?;
        let mut cmd = rbuild(&root);
        cmd.args(["build", "--progress", "plain"])
            .args(extra)
            .arg(&ctx);
        run(&mut cmd)
    };
    // The archives and layouts below are outside the context: the invoker allows them.
    let allow = format!("fs.read={}", dir.display());
    let mut attacks = Attacks::new("archives");

    attacks.attempt(
        "from-docker-archive-dotdot",
        "FROM docker-archive:// of an archive whose manifest.json Config is ../../../../etc/hostname",
        || {
            let mut tar = RawTar::new();
            tar.file("manifest.json", br#"[{"Config":"../../../../etc/hostname","Layers":[]}]"#);
            let archive = put(dir, "fdotdot.tar", &tar.finish());
            let out = build(
                &format!("FROM docker-archive://{}\n", archive.display()),
                &["--allow", &allow],
            )?;
            let mut all = out.stderr.clone();
            all.extend_from_slice(&out.stdout);
            if out.status.success() || !String::from_utf8_lossy(&all).contains("'..'") {
                return Err(format!("not refused for '..': {}", String::from_utf8_lossy(&all)));
            }
            Ok(())
        },
    );

    attacks.attempt(
        "cache-from-local-blob-symlink",
        "--cache-from type=local,src=DIR where DIR (a CI artifact) holds its cache manifest as a symlink to a file outside DIR with the same bytes",
        || {
            let cache = dir.join("cache-link");
            let first = build(
                "FROM busybox:latest\nRUN echo cached > /c\n",
                &["--cache-to", &format!("type=local,dest={}", cache.display())],
            )?;
            if !first.status.success() {
                return Err(format!("the exporting build failed: {}", stderr(&first)));
            }
            let index: serde_json::Value = serde_json::from_slice(
                &fs::read(cache.join("index.json")).map_err(|e| e.to_string())?,
            )
            .map_err(|e| e.to_string())?;
            let digest = index["manifests"][0]["digest"]
                .as_str()
                .ok_or("the cache index names no manifest")?
                .trim_start_matches("sha256:")
                .to_string();
            let blob = cache.join("blobs/sha256").join(&digest);
            let outside = dir.join("outside-the-cache-dir");
            fs::rename(&blob, &outside).map_err(|e| e.to_string())?;
            std::os::unix::fs::symlink(&outside, &blob).map_err(|e| e.to_string())?;
            let fresh = dir.join("fresh-store");
            support::run::import(&fresh, &fixture("busybox"), "busybox:latest", &[]);
            let mut cmd = rbuild(&fresh);
            cmd.args(["build", "--progress", "plain", "--cache-from"])
                .arg(format!("type=local,src={}", cache.display()))
                .arg(&ctx);
            let out = run(&mut cmd)?;
            let text = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
            if !text.contains("symbolic link") {
                return Err(format!("the symlinked cache manifest was read: {text}"));
            }
            Ok(())
        },
    );

    attacks.attempt(
        "from-oci-layout-blob-symlink",
        "FROM oci-layout://DIR whose blobs/sha256/<digest of /etc/hostname> is a symlink to /etc/hostname",
        || {
            let hostname = fs::read("/etc/hostname").map_err(|e| e.to_string())?;
            let hhex = sha256(&hostname);
            let config = config_json(std::slice::from_ref(&hhex));
            let cdig = sha256(&config);
            let manifest = manifest_json((&cdig, config.len() as u64), &[(&hhex, hostname.len() as u64)]);
            let mdig = sha256(&manifest);
            let l = dir.join("layout-link");
            fs::create_dir_all(l.join("blobs/sha256")).map_err(|e| e.to_string())?;
            fs::write(l.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(|e| e.to_string())?;
            fs::write(l.join("index.json"), index_json(&[(descriptor(MANIFEST, &mdig, manifest.len() as u64), None)])).map_err(|e| e.to_string())?;
            fs::write(l.join(format!("blobs/sha256/{mdig}")), &manifest).map_err(|e| e.to_string())?;
            fs::write(l.join(format!("blobs/sha256/{cdig}")), &config).map_err(|e| e.to_string())?;
            std::os::unix::fs::symlink("/etc/hostname", l.join(format!("blobs/sha256/{hhex}"))).map_err(|e| e.to_string())?;
            let out = build(
                &format!("FROM oci-layout://{}\n", l.display()),
                &["--allow", &allow],
            )?;
            if out.status.success() {
                return Err("built from a layout whose layer is a host file".into());
            }
            if store_has(&root, &hhex) {
                return Err("the host file was stored".into());
            }
            let all = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
            if !all.contains("symlink") {
                return Err(format!("refused without saying why: {all}"));
            }
            Ok(())
        },
    );

    attacks.attempt(
        "from-oci-archive-rewritten-in-place",
        "FROM oci-archive://F, then F rewritten in place (same inode) with another image of the same size and its mtime set back; build again",
        || {
            let make = |content: &[u8], name: &str| -> Vec<u8> {
                let layer = RawTar::new().file("marker", content).finish();
                oci_archive(&layer, name)
            };
            let a = make(b"one", "example.com/m:1");
            let b = make(b"two", "example.com/m:1");
            if a.len() != b.len() {
                return Err(format!("test archives differ in size: {} {}", a.len(), b.len()));
            }
            let f = put(dir, "base.tar", &a);
            let meta = fs::metadata(&f).map_err(|e| e.to_string())?;
            let out_dir = dir.join("out1");
            let df = format!("FROM oci-archive://{}\n", f.display());
            let o1 = build(
                &df,
                &["--allow", &allow, "-o", &format!("type=local,dest={}", out_dir.display())],
            )?;
            succeeded(&o1)?;
            let first = fs::read(out_dir.join("marker")).map_err(|e| e.to_string())?;
            if first != b"one" {
                return Err("the first build did not see the first archive".into());
            }
            // Rewrite in place: same inode, same size; then the old mtime back.
            let mut file = fs::OpenOptions::new().write(true).open(&f).map_err(|e| e.to_string())?;
            file.write_all(&b).map_err(|e| e.to_string())?;
            drop(file);
            let touch = Command::new("touch")
                .arg("-m")
                .arg("-d")
                .arg(format!("@{}.{:09}", meta.mtime(), meta.mtime_nsec()))
                .arg(&f)
                .status()
                .map_err(|e| e.to_string())?;
            if !touch.success() {
                return Err("touch failed".into());
            }
            let m2 = fs::metadata(&f).map_err(|e| e.to_string())?;
            if (m2.ino(), m2.size(), m2.mtime(), m2.mtime_nsec()) != (meta.ino(), meta.size(), meta.mtime(), meta.mtime_nsec()) {
                return Err("could not keep inode, size and mtime".into());
            }
            let out_dir2 = dir.join("out2");
            let o2 = build(
                &df,
                &["--allow", &allow, "-o", &format!("type=local,dest={}", out_dir2.display())],
            )?;
            succeeded(&o2)?;
            let second = fs::read(out_dir2.join("marker")).map_err(|e| e.to_string())?;
            if second != b"two" {
                return Err(format!("the build used the old content: {:?}", String::from_utf8_lossy(&second)));
            }
            Ok(())
        },
    );

    attacks.attempt(
        "add-archive-dotdot-and-symlink",
        "ADD of a local tar holding ../../canary, then one holding a symlink esc -> / and esc/<canary path>",
        || {
            let canary = dir.join("add-canary");
            let mut t1 = RawTar::new();
            t1.entry(format!("../../../../../../..{}", canary.display()).as_bytes(), FILE, b"", 0o644, b"x");
            fs::write(ctx.join("t1.tar"), t1.finish()).map_err(|e| e.to_string())?;
            let o1 = build("FROM busybox\nADD t1.tar /x/\n", &[])?;
            absent(&canary)?;
            if o1.status.success() {
                return Err("ADD accepted a '..' entry".into());
            }
            let mut t2 = RawTar::new();
            t2.entry(b"esc", SYMLINK, b"/", 0o777, b"");
            t2.entry(format!("esc{}", canary.display()).as_bytes(), FILE, b"", 0o644, b"x");
            fs::write(ctx.join("t2.tar"), t2.finish()).map_err(|e| e.to_string())?;
            let _ = build("FROM busybox\nADD t2.tar /y/\n", &[])?;
            absent(&canary)
        },
    );

    attacks.finish();
}
#[test]
fn sparse_entries_are_refused_everywhere() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = tmp.path();
    let mut attacks = Attacks::new("archives");
    // A sparse file: 4 MiB with data at the start and the end.
    let src = dir.join("src");
    fs::create_dir_all(&src).expect("src");
    let sparse = src.join("sparse.bin");
    make_sparse(&sparse);
    let mut tars = Vec::new();
    for format in ["gnu", "pax"] {
        let tar = dir.join(format!("sparse-{format}.tar"));
        let ok = Command::new("tar")
            .args(["--sparse", &format!("--format={format}"), "-cf"])
            .arg(&tar)
            .arg("-C")
            .arg(&src)
            .arg("sparse.bin")
            .status()
            .expect("GNU tar is needed for the sparse attempts");
        assert!(ok.success(), "GNU tar --sparse --format={format} failed");
        tars.push((format, tar));
    }
    let root = busybox_store(dir, "store");
    let ctx = dir.join("ctx");
    fs::create_dir_all(&ctx).expect("ctx");
    for (format, tar) in &tars {
        attacks.attempt(
            &format!("import-sparse-{format}"),
            &format!(
                "rbuild import of a {format}-format sparse tar (tar --sparse --format={format})"
            ),
            || {
                refused(
                    &run(rbuild(&root)
                        .arg("import")
                        .arg(tar)
                        .arg(format!("sparse-{format}:1")))?,
                    "sparse file",
                )
            },
        );
        attacks.attempt(
            &format!("add-sparse-{format}"),
            &format!("ADD of a {format}-format sparse tar in a build"),
            || {
                fs::copy(tar, ctx.join("s.tar")).map_err(|e| e.to_string())?;
                fs::write(ctx.join("Dockerfile"), "FROM busybox\nADD s.tar /x/\n")
                    .map_err(|e| e.to_string())?;
                let out = run(rbuild(&root)
                    .args(["build", "--progress", "plain"])
                    .arg(&ctx))?;
                let all = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
                if out.status.success() || !all.contains("sparse file") {
                    return Err(format!("not refused as sparse: {all}"));
                }
                Ok(())
            },
        );
        attacks.attempt(
            &format!("context-stdin-sparse-{format}"),
            &format!(
                "a build context on stdin that is a {format}-format sparse tar (with a Dockerfile)"
            ),
            || {
                let c = dir.join(format!("cstdin-{format}"));
                fs::create_dir_all(&c).map_err(|e| e.to_string())?;
                fs::write(c.join("Dockerfile"), "FROM busybox\nCOPY sparse.bin /\n")
                    .map_err(|e| e.to_string())?;
                make_sparse(&c.join("sparse.bin"));
                let ctar = dir.join(format!("ctx-{format}.tar"));
                let ok = Command::new("tar")
                    .args(["--sparse", &format!("--format={format}"), "-cf"])
                    .arg(&ctar)
                    .arg("-C")
                    .arg(&c)
                    .args(["Dockerfile", "sparse.bin"])
                    .status()
                    .map_err(|e| e.to_string())?;
                if !ok.success() {
                    return Err("tar failed".into());
                }
                let out = run(rbuild(&root)
                    .args(["build", "--progress", "plain", "-"])
                    .stdin(fs::File::open(&ctar).map_err(|e| e.to_string())?))?;
                let all = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
                if out.status.success() || !all.contains("sparse file") {
                    return Err(format!("not refused as sparse: {all}"));
                }
                Ok(())
            },
        );
    }
    attacks.attempt(
        "load-sparse-layer",
        "rbuild load of an OCI archive whose layer is a GNU sparse tar, then a build FROM it",
        || {
            let layer = fs::read(&tars[0].1).map_err(|e| e.to_string())?;
            let archive = put(
                dir,
                "sparse-oci.tar",
                &oci_archive(&layer, "example.com/sparse:1"),
            );
            let loaded = run(rbuild(&root).arg("load").arg("-i").arg(&archive))?;
            succeeded(&loaded)?;
            fs::write(
                ctx.join("Dockerfile"),
                "FROM example.com/sparse:1\nCOPY Dockerfile /d\n",
            )
            .map_err(|e| e.to_string())?;
            let out = run(rbuild(&root)
                .args(["build", "--progress", "plain"])
                .arg(&ctx))?;
            let all = format!("{}{}", stderr(&out), String::from_utf8_lossy(&out.stdout));
            if out.status.success() || !all.contains("sparse file") {
                return Err(format!("not refused as sparse: {all}"));
            }
            Ok(())
        },
    );
    attacks.finish();
}

#[test]
fn import_refuses_hostile_entries() {
    require_root("it uses namespaces, overlay mounts and fixture recipes");
    require_user(
        ROOTLESS,
        "create it as scripts/test does (useradd and /etc/subuid ranges)",
    );
    let tmp = shared_tempdir();
    let dir = tmp.path();
    let mut attacks = Attacks::new("archives");
    let canary = dir.join("import-canary");
    let import =
        |root: &Path, tar: &[u8], file: &str, user: Option<&str>| -> Result<Output, String> {
            let path = put(dir, file, tar);
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644))
                .map_err(|e| e.to_string())?;
            let mut cmd = rbuild(root);
            cmd.arg("import").arg(&path).arg("hostile:1");
            match user {
                Some(u) => run(&mut as_user(u, &cmd)),
                None => run(&mut cmd),
            }
        };
    let canary_rel = format!("../../../../../../../..{}", canary.display());
    for user in [None, Some(ROOTLESS)] {
        let who = user.unwrap_or("root");
        let root = dir.join(format!("store-{who}"));
        let cases: Vec<(&str, &str, Vec<u8>, &str)> = vec![
            (
                "dotdot",
                "an entry ../../<canary>",
                RawTar::new()
                    .entry(canary_rel.as_bytes(), FILE, b"", 0o644, b"x")
                    .finish(),
                "'..'",
            ),
            (
                "absolute",
                "an entry with the canary's absolute path",
                RawTar::new()
                    .entry(canary.to_string_lossy().as_bytes(), FILE, b"", 0o644, b"x")
                    .finish(),
                "absolute",
            ),
            (
                "symlink-then-write",
                "a symlink esc -> <tmp dir> then a file esc/import-canary",
                {
                    let mut t = RawTar::new();
                    t.entry(
                        b"esc",
                        SYMLINK,
                        dir.to_string_lossy().as_bytes(),
                        0o777,
                        b"",
                    );
                    t.entry(b"esc/import-canary", FILE, b"", 0o644, b"x");
                    t.finish()
                },
                "symlink",
            ),
            (
                "hardlink-outside",
                "a hardlink to ../../etc/passwd",
                RawTar::new()
                    .entry(b"pw", HARDLINK, b"../../../../etc/passwd", 0o644, b"")
                    .finish(),
                "",
            ),
            (
                "hardlink-later-entry",
                "a hardlink to an entry that comes later",
                {
                    let mut t = RawTar::new();
                    t.entry(b"early", HARDLINK, b"late", 0o644, b"");
                    t.file("late", b"x");
                    t.finish()
                },
                "",
            ),
            (
                "hardlink-self",
                "a hardlink to itself",
                RawTar::new()
                    .entry(b"self", HARDLINK, b"self", 0o644, b"")
                    .finish(),
                "",
            ),
            (
                "whiteout-dotdot",
                "a whiteout .wh... (hides '..')",
                RawTar::new()
                    .entry(b"a/.wh..", FILE, b"", 0o644, b"")
                    .finish(),
                "",
            ),
            (
                "pax-path-dotdot",
                "a PAX path record ../../<canary> over a harmless header name",
                {
                    let mut t = RawTar::new();
                    t.pax(&[("path", canary_rel.as_bytes())]);
                    t.file("harmless", b"x");
                    t.finish()
                },
                "'..'",
            ),
            (
                "pax-linkpath-dotdot",
                "a PAX linkpath record ../../etc/shadow on a hardlink",
                {
                    let mut t = RawTar::new();
                    t.pax(&[("linkpath", b"../../../../etc/shadow")]);
                    t.entry(b"sh", HARDLINK, b"harmless", 0o644, b"");
                    t.finish()
                },
                "",
            ),
        ];
        for (name, what, tar, needle) in cases {
            let root = root.clone();
            attacks.attempt(
                &format!("import-{name}-{who}"),
                &format!("as {who}: rbuild import of a rootfs tar with {what}"),
                || {
                    let out = import(&root, &tar, &format!("{name}-{who}.tar"), user)?;
                    absent(&canary)?;
                    if !needle.is_empty() {
                        refused(&out, needle)?;
                    } else if out.status.code() == Some(101) || stderr(&out).contains("panicked") {
                        return Err(format!("panicked: {}", stderr(&out)));
                    }
                    if fs::symlink_metadata("/etc/passwd")
                        .map(|m| m.nlink())
                        .unwrap_or(1)
                        > 1
                    {
                        return Err("/etc/passwd gained a hardlink".into());
                    }
                    Ok(())
                },
            );
        }

        attacks.attempt(
            &format!("import-opaque-whiteout-at-root-{who}"),
            &format!(
                "as {who}: rbuild import of a tar whose first entry is .wh..wh..opq at its root"
            ),
            || {
                let mut t = RawTar::new();
                t.file(".wh..wh..opq", b"");
                t.file("kept", b"x");
                let out = import(&root, &t.finish(), &format!("opq-{who}.tar"), user)?;
                if out.status.code() == Some(101) {
                    return Err("panicked".into());
                }
                Ok(())
            },
        );

        attacks.attempt(
            &format!("import-setuid-device-{who}"),
            &format!("as {who}: rbuild import of a tar with a setuid-root file and a char device 1:1 (/dev/mem)"),
            || {
                let mut t = RawTar::new();
                t.entry(b"suid", FILE, b"", 0o4755, b"#!/bin/sh\n");
                t.entry_dev(b"mem", CHAR, b"", 0o666, b"", 1, 1);
                let out = import(&root, &t.finish(), &format!("suid-{who}.tar"), user)?;
                if out.status.code() == Some(101) {
                    return Err("panicked".into());
                }
                if user.is_some() {
                    // Nothing in the user's store may be a device or a root-owned setuid file.
                    for entry in walk(&root) {
                        let m = fs::symlink_metadata(&entry).map_err(|e| e.to_string())?;
                        let ft = m.mode() & 0o170000;
                        if ft == 0o020000 && m.rdev() != 0 {
                            return Err(format!("a device node was made: {}", entry.display()));
                        }
                        if m.uid() == 0 && m.mode() & 0o4000 != 0 {
                            return Err(format!("a root-owned setuid file: {}", entry.display()));
                        }
                    }
                }
                Ok(())
            },
        );

        attacks.attempt(
            &format!("import-long-names-{who}"),
            &format!("as {who}: rbuild import of a tar with a 5000-byte PAX path and a 300-byte component"),
            || {
                let mut t = RawTar::new();
                let long = format!("{}x", "d/".repeat(2500));
                t.pax(&[("path", long.as_bytes())]);
                t.file("short", b"x");
                t.pax(&[("path", "c".repeat(300).as_bytes())]);
                t.file("short2", b"x");
                let out = import(&root, &t.finish(), &format!("long-{who}.tar"), user)?;
                if out.status.code() == Some(101) || stderr(&out).contains("panicked") {
                    return Err(format!("panicked: {}", stderr(&out)));
                }
                Ok(())
            },
        );
    }
    attacks.finish();
}
