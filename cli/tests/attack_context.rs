//! Attacks on the build context and step mounts through the `rbuild` binary (issue 13):
//! symlinks, `..` and absolute paths in COPY sources, context tars on stdin, FIFOs,
//! devices and hostile names in a context, `.dockerignore` and Dockerfile tricks, COPY
//! and WORKDIR destinations through the image's symlinks, `--from` sources, and bind,
//! cache and tmpfs mounts. Each build runs in a store and directories of its own; a host
//! directory beside the contexts holds a secret no build may read and must stay as it
//! was. The rootless attempts run as `rbuild-rootless` (scripts/test creates it).
//!
//! Over 600 lines on purpose: six suites of attempts on one boundary (the context and
//! step mounts), each a list read top to bottom around the same host secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

mod support;

use support::attack::{Attacks, absent, refused, succeeded};
use support::attack_context::{
    Lab, TarEntry, chown, gzip, holds, mkfifo, names, not_hung, nowhere, set_mode, symlink,
    tar_stream,
};

const ROOTLESS: &str = "rbuild-rootless";

fn ctx_arg(ctx: &Path) -> &str {
    ctx.to_str().expect("UTF-8 lab paths")
}

#[test]
fn copy_sources_stay_inside_the_context() {
    let lab = Lab::new();
    let host = lab.host.display().to_string();
    let mut a = Attacks::new("context");

    a.attempt(
        "copy_link_to_host_file",
        "COPY of a context symlink to a host file (absolute target)",
        || {
            let ctx = lab.context("FROM busybox\nCOPY evil /x\n", &[]);
            symlink(&format!("{host}/secret"), &ctx.join("evil"));
            let (out, dir) = lab.build(&[ctx_arg(&ctx)], None);
            not_hung(&out)?;
            nowhere(&out, &dir, &lab.secret)?;
            // BuildKit follows the source's own link inside the context root: not there.
            refused(&out, "not found")
        },
    );

    a.attempt(
        "copy_dir_holding_escaping_link",
        "COPY dir/ / where dir holds evil -> the host directory",
        || {
            let ctx = lab.context("FROM busybox\nCOPY dir/ /d/\n", &[("dir/ok", "ok")]);
            symlink(&host, &ctx.join("dir/evil"));
            let (out, dir) = lab.build(&[ctx_arg(&ctx)], None);
            succeeded(&out)?;
            nowhere(&out, &dir, &lab.secret)?;
            let link = std::fs::read_link(dir.join("d/evil"))
                .map_err(|e| format!("/d/evil is not a symlink: {e}"))?;
            if link != lab.host {
                return Err(format!("/d/evil points at {}", link.display()));
            }
            Ok(())
        },
    );

    a.attempt(
        "copy_link_dir_with_slash",
        "COPY hl/ /y/ where hl -> the host directory (trailing slash)",
        || {
            let ctx = lab.context("FROM busybox\nCOPY hl/ /y/\n", &[]);
            symlink(&host, &ctx.join("hl"));
            let (out, dir) = lab.build(&[ctx_arg(&ctx)], None);
            not_hung(&out)?;
            nowhere(&out, &dir, &lab.secret)
        },
    );

    a.attempt(
        "copy_dotdot_and_absolute_sources",
        "COPY ../../../<host>/secret, COPY /etc/passwd, COPY ../../etc/passwd: resolved in the context",
        || {
            let df = format!(
                "FROM busybox\nCOPY /etc/passwd /a\nCOPY ../../etc/passwd /b\nCOPY ../../../../../..{host}/secret /c\n"
            );
            let rel_secret = format!("{}/secret", host.trim_start_matches('/'));
            let ctx = lab.context(
                &df,
                &[("etc/passwd", "CTX-PASSWD"), (&rel_secret, "CTX-SECRET")],
            );
            let (out, dir) = lab.build(&[ctx_arg(&ctx)], None);
            succeeded(&out)?;
            nowhere(&out, &dir, &lab.secret)?;
            holds(&dir.join("a"), "CTX-PASSWD")?;
            holds(&dir.join("b"), "CTX-PASSWD")?;
            holds(&dir.join("c"), "CTX-SECRET")
        },
    );

    a.attempt(
        "copy_through_parent_links",
        "COPY rootlink/etc/passwd and rootlink/*/passwd where rootlink -> /",
        || {
            let ctx = lab.context(
                "FROM busybox\nCOPY rootlink/etc/passwd /e\nCOPY rootlink/*/passwd /w/\nCOPY up/etc/passwd /u\n",
                &[("etc/passwd", "CTX-PASSWD")],
            );
            symlink("/", &ctx.join("rootlink"));
            symlink("../../../../..", &ctx.join("up"));
            let (out, dir) = lab.build(&[ctx_arg(&ctx)], None);
            succeeded(&out)?;
            holds(&dir.join("e"), "CTX-PASSWD")?;
            holds(&dir.join("w/passwd"), "CTX-PASSWD")?;
            holds(&dir.join("u"), "CTX-PASSWD")
        },
    );

    a.attempt(
        "add_link_to_host_archive",
        "ADD of a context symlink to a host tar (ADD extracts local archives)",
        || {
            let tar = lab.fresh("hosttar").join("host.tar");
            std::fs::write(&tar, tar_stream(&[TarEntry::file("from-host", b"x")], true)).unwrap();
            let ctx = lab.context("FROM busybox\nADD evil.tar /a/\n", &[]);
            symlink(tar.to_str().unwrap(), &ctx.join("evil.tar"));
            let (out, dir) = lab.build(&[ctx_arg(&ctx)], None);
            not_hung(&out)?;
            absent(&dir.join("a/from-host"))?;
            refused(&out, "not found")
        },
    );

    a.attempt(
        "copy_parents_dotdot",
        "COPY --parents ../../etc/passwd and a link-led path: placed under the destination",
        || {
            let ctx = lab.context(
                "FROM busybox\nCOPY --parents ../../etc/passwd /p/\n",
                &[("etc/passwd", "CTX-PASSWD")],
            );
            let (out, dir) = lab.build(&[ctx_arg(&ctx)], None);
            succeeded(&out)?;
            holds(&dir.join("p/etc/passwd"), "CTX-PASSWD")
        },
    );

    a.attempt(
        "copy_swapped_dir_race",
        "a context directory swapped for a symlink to the host and back during 4 builds (COPY and rw bind)",
        || {
            let ctx = lab.context(
                "FROM busybox\nCOPY sub/ /s/\nRUN --mount=type=bind,source=sub,target=/m,rw cat /m/secret > /r || true\n",
                &[("sub/secret", "CTX")],
            );
            let stop = std::sync::atomic::AtomicBool::new(false);
            std::thread::scope(|s| {
                let flipper = s.spawn(|| {
                    let sub = ctx.join("sub");
                    let (parked, tmp) = (ctx.join("sub.dir"), ctx.join("sub.tmp"));
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        std::fs::rename(&sub, &parked).unwrap();
                        std::os::unix::fs::symlink(&host, &tmp).unwrap();
                        std::fs::rename(&tmp, &sub).unwrap();
                        std::fs::rename(&sub, &tmp).unwrap();
                        std::fs::rename(&parked, &sub).unwrap();
                        std::fs::remove_file(&tmp).unwrap();
                    }
                });
                let mut verdict = Ok(());
                for _ in 0..4 {
                    let (out, dir) = lab.build(&[ctx_arg(&ctx)], None);
                    if let Err(e) = not_hung(&out).and_then(|()| nowhere(&out, &dir, &lab.secret))
                    {
                        verdict = Err(e);
                        break;
                    }
                }
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                flipper.join().unwrap();
                verdict
            })
        },
    );

    a.finish();
}

#[test]
fn a_context_tar_cannot_reach_the_host() {
    let lab = Lab::new();
    let host = lab.host.display().to_string();
    let df = b"FROM busybox\nCOPY . /x/\n";
    let mut a = Attacks::new("context");

    a.attempt(
        "tar_dotdot_entry",
        "a context tar on stdin with an entry ../../../<host>/planted",
        || {
            let name = format!("../../../../../../../..{host}/planted");
            let tar = tar_stream(
                &[
                    TarEntry::file("Dockerfile", df),
                    TarEntry::file(&name, b"x"),
                ],
                true,
            );
            let (out, _) = lab.build(&["-"], Some(&tar));
            refused(&out, "escapes the context")?;
            absent(&lab.host.join("planted"))
        },
    );

    a.attempt(
        "tar_absolute_entry",
        "a context tar with an absolute entry /<host>/planted-abs",
        || {
            let name = format!("{host}/planted-abs");
            let tar = tar_stream(
                &[
                    TarEntry::file("Dockerfile", df),
                    TarEntry::file(&name, b"x"),
                ],
                true,
            );
            let (out, _) = lab.build(&["-"], Some(&tar));
            refused(&out, "escapes the context")?;
            absent(&lab.host.join("planted-abs"))
        },
    );

    a.attempt(
        "tar_symlink_then_file",
        "a context tar with l -> <host>, then a file l/planted-link",
        || {
            let tar = tar_stream(
                &[
                    TarEntry::file("Dockerfile", df),
                    TarEntry::link("l", b'2', &host),
                    TarEntry::file("l/planted-link", b"x"),
                ],
                true,
            );
            let (out, _) = lab.build(&["-"], Some(&tar));
            refused(&out, "beneath a symlink")?;
            absent(&lab.host.join("planted-link"))
        },
    );

    a.attempt(
        "tar_hardlinks_to_host",
        "context tars with a hard link to <host>/secret (absolute) and to ../../<host>/secret",
        || {
            let abs = format!("{host}/secret");
            let up = format!("../../../../../../..{host}/secret");
            for target in [abs.as_str(), up.as_str()] {
                let tar = tar_stream(
                    &[
                        TarEntry::file("Dockerfile", df),
                        TarEntry::link("h", b'1', target),
                    ],
                    true,
                );
                let (out, dir) = lab.build(&["-"], Some(&tar));
                refused(&out, "escapes the context")?;
                nowhere(&out, &dir, &lab.secret)?;
            }
            Ok(())
        },
    );

    a.attempt(
        "tar_dockerfile_link_to_host",
        "a context tar whose Dockerfile is a symlink to a host file (its text must not be shown)",
        || {
            let tar = tar_stream(
                &[TarEntry::link(
                    "Dockerfile",
                    b'2',
                    &format!("{host}/secret"),
                )],
                true,
            );
            let (out, _) = lab.build(&["-"], Some(&tar));
            refused(&out, "no such file in the build context")?;
            nowhere(&out, Path::new("/nonexistent"), &lab.secret)
        },
    );

    a.attempt(
        "tar_dockerignore_link_to_host",
        "a context tar whose .dockerignore links to a host file excluding everything",
        || {
            let ignore = lab.fresh("ignore").join("all");
            std::fs::write(&ignore, "*\n").unwrap();
            let target = ignore.display().to_string();
            let tar = tar_stream(
                &[
                    TarEntry::file("Dockerfile", b"FROM busybox\nCOPY keep /keep\n"),
                    TarEntry::file("keep", b"kept"),
                    TarEntry::link(".dockerignore", b'2', &target),
                ],
                true,
            );
            let (out, dir) = lab.build(&["-"], Some(&tar));
            succeeded(&out)?;
            holds(&dir.join("keep"), "kept")
        },
    );

    a.attempt(
        "tar_huge_declared_size",
        "a context tar declaring an 8 GiB file but ending after 1 KiB",
        || {
            let mut entry = TarEntry::file("big", &[b'a'; 1024]);
            entry.declared = Some(0o777_7777_7777);
            let tar = tar_stream(&[TarEntry::file("Dockerfile", df), entry], false);
            let (out, _) = lab.build(&["-"], Some(&tar));
            not_hung(&out)?;
            refused(&out, "context tar")?;
            if support::run::scratch_entries(&lab.store).is_empty() {
                Ok(())
            } else {
                Err("the unpacked context was left in the store's tmp".to_owned())
            }
        },
    );

    a.attempt(
        "tar_gzip_bomb",
        "a gzip context tar of 64 MiB of zeros, with RBUILD_ARCHIVE_RATIO_ABOVE=1 MiB and MAX_RATIO=100",
        || {
            let zeros = vec![0u8; 64 << 20];
            let tar = tar_stream(
                &[TarEntry::file("Dockerfile", df), TarEntry::file("zeros", &zeros)],
                true,
            );
            let bomb = gzip(&tar);
            let env = [
                ("RBUILD_ARCHIVE_RATIO_ABOVE", "1048576"),
                ("RBUILD_ARCHIVE_MAX_RATIO", "100"),
            ];
            let (out, _) = lab.build_env(&["-"], Some(&bomb), None, &[], &env);
            not_hung(&out)?;
            refused(&out, "context tar refused: it expands to more than 100 times")?;
            if support::run::scratch_entries(&lab.store).is_empty() {
                Ok(())
            } else {
                Err("the unpacked context was left in the store's tmp".to_owned())
            }
        },
    );

    a.attempt(
        "tar_device_node",
        "a context tar with a character device entry 1:5 copied into the image",
        || {
            let mut dev = TarEntry::link("zero", b'3', "");
            dev.dev = (1, 5);
            let tar = tar_stream(
                &[
                    TarEntry::file("Dockerfile", b"FROM busybox\nCOPY zero /zero\n"),
                    dev,
                ],
                true,
            );
            let (out, dir) = lab.build(&["-"], Some(&tar));
            not_hung(&out)?;
            let meta = std::fs::symlink_metadata(dir.join("zero"));
            match meta {
                Ok(m) if m.file_type().is_char_device() => {
                    Err("a device node from the context tar reached the image".to_owned())
                }
                _ => Ok(()),
            }
        },
    );

    a.finish();
}

#[test]
fn dockerfile_and_dockerignore_are_read_safely() {
    let lab = Lab::new();
    let host = lab.host.display().to_string();
    let mut a = Attacks::new("context");
    // rbuild is limited to 2 GiB of address space: before the fix these read forever.
    let memory = ["--as=2147483648"];

    a.attempt(
        "dockerignore_dev_zero",
        ".dockerignore -> /dev/zero in the context (resolved inside the context: no rules)",
        || {
            let ctx = lab.context("FROM busybox\nCOPY f /f\n", &[("f", "F")]);
            symlink("/dev/zero", &ctx.join(".dockerignore"));
            let (out, dir) = lab.build_with(&[ctx_arg(&ctx)], None, None, &memory);
            not_hung(&out)?;
            succeeded(&out)?;
            holds(&dir.join("f"), "F")
        },
    );

    a.attempt(
        "dockerignore_fifo",
        ".dockerignore is a FIFO nobody writes",
        || {
            let ctx = lab.context("FROM busybox\nCOPY f /f\n", &[("f", "F")]);
            mkfifo(&ctx.join(".dockerignore"));
            let (out, _) = lab.build(&[ctx_arg(&ctx)], None);
            not_hung(&out)?;
            refused(&out, ".dockerignore: is a named pipe")
        },
    );

    a.attempt(
        "dockerignore_link_to_host_file",
        ".dockerignore -> a host file holding `*` (BuildKit reads it inside the context)",
        || {
            let ignore = lab.fresh("ignore").join("all");
            std::fs::write(&ignore, "*\n").unwrap();
            let ctx = lab.context("FROM busybox\nCOPY f /f\n", &[("f", "F")]);
            symlink(&ignore.display().to_string(), &ctx.join(".dockerignore"));
            let (out, dir) = lab.build(&[ctx_arg(&ctx)], None);
            succeeded(&out)?;
            holds(&dir.join("f"), "F")
        },
    );

    a.attempt(
        "dockerignore_reincludes_outside",
        ".dockerignore `*`, `!../../<host>`, `!/../secret`, `!f`: only f is sent",
        || {
            let ignore = format!("*\n!../../../..{host}\n!/../secret\n!../{host}/secret\n!f\n");
            let ctx = lab.context("FROM busybox\nCOPY . /x/\n", &[("f", "F"), ("g", "G")]);
            std::fs::write(ctx.join(".dockerignore"), ignore).unwrap();
            let (out, dir) = lab.build(&[ctx_arg(&ctx)], None);
            succeeded(&out)?;
            nowhere(&out, &dir, &lab.secret)?;
            let got = names(&dir.join("x"));
            if got == ["f"] {
                Ok(())
            } else {
                Err(format!("/x holds {got:?}"))
            }
        },
    );

    a.attempt(
        "dockerignore_pattern_bomb",
        ".dockerignore lines of 2,000,000 `?` and 500,000 `*a` against a 3800-byte path",
        || {
            let ctx = lab.context("FROM busybox\nCOPY . /x/\n", &[("f", "F")]);
            let ignore = format!("{}\n{}\n", "?".repeat(2_000_000), "*a".repeat(500_000));
            std::fs::write(ctx.join(".dockerignore"), ignore).unwrap();
            let deep = vec!["d".repeat(200); 19].join("/");
            std::fs::create_dir_all(ctx.join(&deep)).unwrap();
            let (out, dir) = lab.build_with(&[ctx_arg(&ctx)], None, None, &memory);
            not_hung(&out)?;
            succeeded(&out)?;
            holds(&dir.join("x/f"), "F")
        },
    );

    a.attempt(
        "dockerignore_beside_dockerfile_links_out",
        "Dockerfile.dockerignore in the context -> /dev/zero, and -> a host file holding `*`",
        || {
            let ignore = lab.fresh("ignore").join("all");
            std::fs::write(&ignore, "*\n").unwrap();
            for target in ["/dev/zero", ignore.to_str().unwrap()] {
                let ctx = lab.context("FROM busybox\nCOPY f /f\n", &[("f", "F")]);
                symlink(target, &ctx.join("Dockerfile.dockerignore"));
                let (out, dir) = lab.build_with(&[ctx_arg(&ctx)], None, None, &memory);
                not_hung(&out)?;
                succeeded(&out).map_err(|e| format!("-> {target}: {e}"))?;
                holds(&dir.join("f"), "F")?;
            }
            Ok(())
        },
    );

    a.attempt(
        "dockerfile_dev_zero",
        "the context's Dockerfile -> /dev/zero",
        || {
            let ctx = lab.fresh("ctx");
            symlink("/dev/zero", &ctx.join("Dockerfile"));
            // The default Dockerfile resolves inside the context: the link's /dev/zero
            // is the context's, which it lacks.
            let (out, _) = lab.build_with(&[ctx_arg(&ctx)], None, None, &memory);
            not_hung(&out)?;
            refused(&out, "no such file in the build context")?;
            // Named with -f, the path is read as given: the device is refused.
            let file = ctx.join("Dockerfile");
            let (out, _) = lab.build_with(
                &["-f", file.to_str().unwrap_or_default(), ctx_arg(&ctx)],
                None,
                None,
                &memory,
            );
            not_hung(&out)?;
            refused(&out, "is a character device, not a regular file")
        },
    );

    a.attempt(
        "dockerfile_fifo",
        "the context's Dockerfile is a FIFO nobody writes",
        || {
            let ctx = lab.fresh("ctx");
            mkfifo(&ctx.join("Dockerfile"));
            let (out, _) = lab.build(&[ctx_arg(&ctx)], None);
            not_hung(&out)?;
            refused(&out, "")
        },
    );

    a.attempt(
        "dockerfile_from_process_substitution",
        "-f /dev/stdin fed by a pipe still works (a pipe is a legitimate Dockerfile)",
        || {
            let ctx = lab.context("", &[("f", "F")]);
            let (out, dir) = lab.build(
                &["-f", "/dev/stdin", ctx_arg(&ctx)],
                Some(b"FROM busybox\nCOPY f /f\n"),
            );
            succeeded(&out)?;
            holds(&dir.join("f"), "F")
        },
    );

    a.finish();
}

#[test]
fn destinations_and_other_stages_stay_in_their_roots() {
    let lab = Lab::new();
    let host = lab.host.display().to_string();
    let mut a = Attacks::new("context");
    let untouched = |what: &str| -> Result<(), String> {
        let got = names(&lab.host);
        if got == ["secret"] {
            holds(&lab.host.join("secret"), &lab.secret)
        } else {
            Err(format!("{what}: the host directory now holds {got:?}"))
        }
    };

    a.attempt(
        "copy_dest_through_root_link",
        "RUN ln -s / /escape; COPY x /escape<host>/ and COPY x /escape<host>/secret",
        || {
            let df = format!(
                "FROM busybox\nRUN ln -s / /escape\nCOPY x /escape{host}/\nCOPY x /escape{host}/secret\n"
            );
            let ctx = lab.context(&df, &[("x", "payload")]);
            let (out, dir) = lab.build(&[ctx_arg(&ctx)], None);
            succeeded(&out)?;
            untouched("COPY through /escape")?;
            holds(&dir.join(format!("{}/secret", host.trim_start_matches('/'))), "payload")
        },
    );

    a.attempt(
        "copy_dest_proc_self_root",
        "RUN ln -s /proc/self/root<host> /d; COPY x /d/",
        || {
            let df = format!("FROM busybox\nRUN ln -s /proc/self/root{host} /d\nCOPY x /d/\n");
            let ctx = lab.context(&df, &[("x", "payload")]);
            let (out, _) = lab.build(&[ctx_arg(&ctx)], None);
            not_hung(&out)?;
            untouched("COPY through /proc/self/root")
        },
    );

    a.attempt(
        "workdir_through_dotdot_link",
        "RUN ln -s ../../../../..<host> /w; WORKDIR /w/sub; COPY x .",
        || {
            let df = format!(
                "FROM busybox\nRUN ln -s ../../../../../../..{host} /w\nWORKDIR /w/sub\nCOPY x .\n"
            );
            let ctx = lab.context(&df, &[("x", "payload")]);
            let (out, _) = lab.build(&[ctx_arg(&ctx)], None);
            not_hung(&out)?;
            untouched("WORKDIR through a .. link")
        },
    );

    a.attempt(
        "copy_from_stage_escapes",
        "COPY --from=s ../../<host>/secret, /lnk/secret (lnk -> <host>), /sl (-> <host>/secret)",
        || {
            let df = format!(
                "FROM busybox AS s\nRUN mkdir -p {host} && echo STAGE > {host}/secret && ln -s {host} /lnk && ln -s {host}/secret /sl\n\
                 FROM busybox\nCOPY --from=s ../../../../../../..{host}/secret /a\nCOPY --from=s /lnk/secret /b\nCOPY --from=s /sl /c\n"
            );
            let ctx = lab.context(&df, &[]);
            let (out, dir) = lab.build(&[ctx_arg(&ctx)], None);
            succeeded(&out)?;
            nowhere(&out, &dir, &lab.secret)?;
            for name in ["a", "b", "c"] {
                holds(&dir.join(name), "STAGE\n")?;
            }
            untouched("COPY --from")
        },
    );

    a.finish();
}

#[test]
fn step_mounts_stay_in_their_roots() {
    let lab = Lab::new();
    let host = lab.host.display().to_string();
    let mut a = Attacks::new("context");

    a.attempt(
        "bind_source_leaves_context",
        "RUN --mount=type=bind with source=../.., /../../<host>, sub/../../.. and a link out",
        || {
            for source in ["../..", &format!("/../../..{host}"), "sub/../../..", "out"] {
                let df = format!(
                    "FROM busybox\nRUN --mount=type=bind,source={source},target=/m cat /m/secret > /r || true\n"
                );
                let ctx = lab.context(&df, &[("sub/f", "f")]);
                symlink(&host, &ctx.join("out"));
                let (out, dir) = lab.build(&[ctx_arg(&ctx)], None);
                not_hung(&out)?;
                nowhere(&out, &dir, &lab.secret).map_err(|e| format!("source={source}: {e}"))?;
                if out.status.success() {
                    continue;
                }
                refused(&out, "leaves the build context")?;
            }
            Ok(())
        },
    );

    a.attempt(
        "bind_from_stage_dotdot",
        "RUN --mount=type=bind,from=s,source=../../../<host>: the stage's tree, not the host",
        || {
            let df = format!(
                "FROM busybox AS s\nRUN mkdir -p {host} && echo STAGE > {host}/secret\n\
                 FROM busybox\nRUN --mount=type=bind,from=s,source=../../../../../..{host},target=/m cat /m/secret > /r\n"
            );
            let ctx = lab.context(&df, &[]);
            let (out, dir) = lab.build(&[ctx_arg(&ctx)], None);
            succeeded(&out)?;
            holds(&dir.join("r"), "STAGE\n")
        },
    );

    a.attempt(
        "bind_rw_writes_back",
        "RUN --mount=type=bind,rw writes, deletes and plants a link in the context",
        || {
            let ctx = lab.context(
                "FROM busybox\nRUN --mount=type=bind,source=sub,target=/m,rw sh -c 'echo hacked > /m/f; rm -f /m/g; echo new > /m/n; ln -s / /m/l'\n",
                &[("sub/f", "orig"), ("sub/g", "g")],
            );
            let (out, _) = lab.build(&[ctx_arg(&ctx)], None);
            succeeded(&out)?;
            holds(&ctx.join("sub/f"), "orig")?;
            let got = names(&ctx.join("sub"));
            if got == ["f", "g"] {
                Ok(())
            } else {
                Err(format!("the context's sub/ now holds {got:?}"))
            }
        },
    );

    a.attempt(
        "bind_context_with_fifo_and_excluded_files",
        "RUN --mount=type=bind of a context with a FIFO and .dockerignore'd secrets (copied bind)",
        || {
            let ctx = lab.context(
                "FROM busybox\nRUN --mount=type=bind,target=/m ls -a /m > /r\n",
                &[("keep", "k"), ("private.key", "PRIVATE")],
            );
            std::fs::write(ctx.join(".dockerignore"), "*.key\n").unwrap();
            mkfifo(&ctx.join("pipe"));
            let (out, dir) = lab.build(&[ctx_arg(&ctx)], None);
            not_hung(&out)?;
            succeeded(&out)?;
            let listed = std::fs::read_to_string(dir.join("r")).map_err(|e| e.to_string())?;
            if listed.contains("private.key") || !listed.contains("keep") {
                return Err(format!("the bind showed {listed:?}"));
            }
            Ok(())
        },
    );

    a.attempt(
        "cache_id_escapes",
        "RUN --mount=type=cache,id=../../../<host>/c and id=<host>: stays in <store>/cache-mounts",
        || {
            let df = format!(
                "FROM busybox\nRUN --mount=type=cache,id=../../../../../../..{host}/c,target=/c touch /c/planted\n\
                 RUN --mount=type=cache,id={host},target=/c touch /c/planted2\n"
            );
            let ctx = lab.context(&df, &[]);
            let (out, _) = lab.build(&[ctx_arg(&ctx)], None);
            succeeded(&out)?;
            absent(&lab.host.join("c"))?;
            absent(&lab.host.join("planted2"))?;
            let caches = names(&lab.store.join("cache-mounts"));
            if caches.iter().any(|n| n.contains('/') || n == "..") {
                return Err(format!("cache directories {caches:?}"));
            }
            Ok(())
        },
    );

    a.attempt(
        "cache_and_tmpfs_odd_targets",
        "cache mounts on /proc and /, a 100 TiB tmpfs and a long cache id",
        || {
            let long = "x".repeat(300);
            let df = format!(
                "FROM busybox\nRUN --mount=type=cache,target=/proc true\nRUN --mount=type=tmpfs,target=/t,size=100t true\nRUN --mount=type=cache,id={long},target=/c true\n"
            );
            let ctx = lab.context(&df, &[]);
            let (out, _) = lab.build(&[ctx_arg(&ctx)], None);
            not_hung(&out)?;
            // BuildKit takes all of these (a cache id of any length among them).
            succeeded(&out)
        },
    );

    a.finish();
}

#[test]
fn odd_context_contents_are_copied_or_refused_clearly() {
    let lab = Lab::new();
    let mut a = Attacks::new("context");

    a.attempt(
        "fifo_socket_device_in_context",
        "COPY . of a context with a FIFO, a socket and a /dev/zero device node",
        || {
            let ctx = lab.context("FROM busybox\nCOPY . /x/\n", &[("f", "F")]);
            mkfifo(&ctx.join("fifo"));
            let _sock = std::os::unix::net::UnixListener::bind(ctx.join("sock")).unwrap();
            let st = std::process::Command::new("mknod")
                .arg(ctx.join("zero"))
                .args(["c", "1", "5"])
                .status()
                .unwrap();
            assert!(st.success(), "mknod (coreutils) failed");
            let (out, dir) = lab.build(&[ctx_arg(&ctx)], None);
            not_hung(&out)?;
            succeeded(&out)?;
            let fifo = std::fs::symlink_metadata(dir.join("x/fifo")).map_err(|e| e.to_string())?;
            if !fifo.file_type().is_fifo() {
                return Err("the FIFO was not copied as a FIFO".to_owned());
            }
            absent(&dir.join("x/sock"))
        },
    );

    a.attempt(
        "growing_file",
        "COPY and a rw bind of a (sparse) file that grows by 1 MiB steps to 64 MiB during the build",
        || {
            let ctx = lab.context(
                "FROM busybox\nCOPY grow /grow\nRUN --mount=type=bind,target=/m,rw wc -c < /m/grow > /r\n",
                &[],
            );
            let file = std::fs::File::create(ctx.join("grow")).unwrap();
            file.set_len(1 << 20).unwrap();
            let stop = std::sync::atomic::AtomicBool::new(false);
            std::thread::scope(|s| {
                s.spawn(|| {
                    let mut len = 1u64 << 20;
                    while len < 64 << 20 && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        len += 1 << 20;
                        file.set_len(len).unwrap();
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                });
                let (out, dir) = lab.build(&[ctx_arg(&ctx)], None);
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                not_hung(&out)?;
                succeeded(&out)?;
                let copied = std::fs::metadata(dir.join("grow")).map_err(|e| e.to_string())?;
                if copied.len() > 64 << 20 {
                    return Err(format!("{} bytes copied", copied.len()));
                }
                Ok(())
            })
        },
    );

    a.attempt(
        "hostile_names",
        "COPY . of names with a newline, an escape sequence, invalid UTF-8, and a 3800-byte path",
        || {
            use std::os::unix::ffi::OsStrExt;
            let ctx = lab.context("FROM busybox\nCOPY . /x/\n", &[]);
            let odd: [&[u8]; 3] = [b"nl\nname", b"esc\x1b[31mred", b"bad\xff\xfe"];
            for name in odd {
                std::fs::write(ctx.join(std::ffi::OsStr::from_bytes(name)), "n").unwrap();
            }
            let deep = vec!["d".repeat(200); 19].join("/");
            std::fs::create_dir_all(ctx.join(&deep)).unwrap();
            std::fs::write(ctx.join(&deep).join("f"), "deep").unwrap();
            let (out, dir) = lab.build(&[ctx_arg(&ctx)], None);
            succeeded(&out)?;
            for name in odd {
                absent(&dir.join("x").join(std::ffi::OsStr::from_bytes(name)))
                    .err()
                    .ok_or_else(|| format!("{:?} was not copied", String::from_utf8_lossy(name)))?;
            }
            holds(&dir.join("x").join(&deep).join("f"), "deep")
        },
    );

    a.attempt(
        "wide_directory",
        "COPY of a directory with 20,000 entries",
        || {
            let ctx = lab.context("FROM busybox\nCOPY wide /wide/\n", &[]);
            let wide = ctx.join("wide");
            std::fs::create_dir(&wide).unwrap();
            for i in 0..20_000 {
                std::fs::write(wide.join(format!("f{i}")), "").unwrap();
            }
            let (out, dir) = lab.build(&[ctx_arg(&ctx)], None);
            not_hung(&out)?;
            succeeded(&out)?;
            let n = names(&dir.join("wide")).len();
            if n == 20_000 {
                Ok(())
            } else {
                Err(format!("{n} entries copied"))
            }
        },
    );

    // One store of rbuild-rootless's own for both rootless attempts.
    let store = lab.user_store(ROOTLESS);

    a.attempt(
        "walk_error_names_the_entry_once",
        "a context directory that cannot be read (mode 000, another user's) as rbuild-rootless",
        || {
            let ctx = lab.context("FROM busybox\nCOPY . /x/\n", &[("locked/f", "f")]);
            chown(&ctx, ROOTLESS);
            // Another user's: rbuild runs as root of its own user namespace, which reads
            // a 000 directory of the user's own (as buildah does) but not one of a user
            // its namespace does not map.
            chown(&ctx.join("locked"), "root");
            set_mode(&ctx.join("locked"), 0o000);
            let (out, _) = lab.build_with(&[ctx_arg(&ctx)], None, Some((ROOTLESS, &store)), &[]);
            refused(&out, "locked: permission denied")?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.matches("Permission denied").count() > 1 {
                return Err(format!("the cause is repeated: {stderr}"));
            }
            Ok(())
        },
    );

    a.attempt(
        "rootless_bind_and_dockerignore",
        "as rbuild-rootless: bind source=../.., .dockerignore -> /dev/zero, Dockerfile -> /dev/zero",
        || {
            let ctx = lab.context(
                "FROM busybox\nRUN --mount=type=bind,source=../..,target=/m ls /m\n",
                &[],
            );
            symlink("/dev/zero", &ctx.join(".dockerignore"));
            chown(&ctx, ROOTLESS);
            let user = Some((ROOTLESS, store.as_path()));
            let (out, _) = lab.build_with(&[ctx_arg(&ctx)], None, user, &["--as=2147483648"]);
            not_hung(&out)?;
            refused(&out, "leaves the build context")?;
            let ctx2 = lab.fresh("ctx");
            symlink("/dev/zero", &ctx2.join("Dockerfile"));
            chown(&ctx2, ROOTLESS);
            let (out, _) = lab.build_with(&[ctx_arg(&ctx2)], None, user, &["--as=2147483648"]);
            not_hung(&out)?;
            // The default Dockerfile resolves inside the context, which has no /dev/zero.
            refused(&out, "no such file in the build context")
        },
    );

    a.finish();
}
