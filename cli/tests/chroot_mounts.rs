//! `RUN --mount=type=cache` and `type=bind` in the chroot isolation (issue 16, part 3),
//! which cannot mount: the mount's tree is placed at its target for the step and taken
//! away after it. The image, the steps' output and the cache must be what the namespace
//! sandbox (real mounts) gives, but for the read-only flag, which a chroot cannot
//! enforce. Run on the host as root with `--isolation chroot`.
//!
//! Needs root and the busybox fixture.

mod support;

use std::path::Path;

use support::run::{busybox_setup, rbuild, success};

/// The layer digests of the image `isolation` builds from `ctx` with a fixed
/// `SOURCE_DATE_EPOCH` (an OCI layout tarball's manifest), and the steps' output lines
/// without their times. The store's cache mounts are emptied first.
fn build(root: &Path, ctx: &Path, isolation: &str) -> (Vec<String>, Vec<String>) {
    let _ = std::fs::remove_dir_all(root.join("cache-mounts"));
    let dest = root.join(format!("{isolation}.oci.tar"));
    let out = success(
        rbuild(root)
            .env("SOURCE_DATE_EPOCH", "0")
            .args(["build", "--progress", "plain", "--no-cache", "--isolation"])
            .arg(isolation)
            .arg("-o")
            .arg(format!("type=oci,dest={}", dest.display()))
            .arg(ctx),
    );
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    // `#5 0.017 text`: a step's output line; its time varies.
    let lines = log
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ' ');
            let (step, time, text) = (parts.next()?, parts.next()?, parts.next()?);
            (step.starts_with('#') && time.parse::<f64>().is_ok()).then(|| format!("{step} {text}"))
        })
        .collect();
    let mut archive = tar::Archive::new(std::fs::File::open(&dest).expect("the OCI tarball"));
    let mut blobs = std::collections::HashMap::new();
    for entry in archive.entries().expect("reading the tarball") {
        let mut entry = entry.expect("an entry");
        let path = entry.path().expect("a path").display().to_string();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).expect("reading an entry");
        blobs.insert(path, data);
    }
    let json = |path: &str| -> serde_json::Value {
        serde_json::from_slice(&blobs[path]).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let blob = |digest: &serde_json::Value| {
        format!(
            "blobs/sha256/{}",
            digest
                .as_str()
                .expect("a digest")
                .trim_start_matches("sha256:")
        )
    };
    let index = json("index.json");
    let manifest = json(&blob(&index["manifests"][0]["digest"]));
    let layers = manifest["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|layer| layer["digest"].as_str().expect("a digest").to_owned())
        .collect();
    (layers, lines)
}

/// Cache mounts over a directory the image has (hidden for the step, as a mount hides
/// it), over a missing one (made for the step only, with the cache's owner and mode),
/// kept from one step to the next; binds of the context (whole, one file over a file the
/// image has, writable), of another stage's directory; tmpfs mounts over a new and an
/// existing directory: the chroot isolation builds the sandbox's image and the steps
/// print the same.
#[test]
fn cache_and_bind_mounts_in_the_chroot_isolation_build_the_sandbox_image() {
    let dockerfile = "FROM busybox:latest AS src\n\
        RUN mkdir -p /data /var/cache/apt && echo fromstage > /data/x && echo img > /var/cache/apt/img && echo base > /etc/a.txt\n\
        FROM src\n\
        RUN --mount=type=cache,target=/var/cache/apt sh -c 'ls -A /var/cache/apt; echo one >> /var/cache/apt/log'\n\
        RUN --mount=type=cache,target=/var/cache/apt sh -c 'cat /var/cache/apt/log; echo two >> /var/cache/apt/log'\n\
        RUN --mount=type=cache,target=/var/cache/apt,sharing=private cat /var/cache/apt/log\n\
        RUN --mount=type=cache,target=/new/cache,uid=1000,mode=0700 sh -c 'stat -c \"%u %a\" /new/cache; touch /new/cache/f'\n\
        RUN --mount=type=bind,target=/src sh -c 'ls -A /src; cat /src/a.txt /src/sub/b.txt'\n\
        RUN --mount=type=bind,source=a.txt,target=/etc/a.txt cat /etc/a.txt\n\
        RUN --mount=type=bind,from=src,source=/data,target=/mnt/d cat /mnt/d/x\n\
        RUN --mount=type=bind,target=/src,rw sh -c 'echo w > /src/new; ls -A /src'\n\
        RUN --mount=type=tmpfs,target=/scratch sh -c 'stat -c \"%u %a\" /scratch; echo t > /scratch/t; cat /scratch/t'\n\
        RUN --mount=type=tmpfs,target=/data sh -c 'ls -A /data; echo t > /data/t'\n\
        RUN echo after > /after; ls -A /var/cache/apt /etc/a.txt; cat /etc/a.txt; ls /mnt /new /src /scratch 2>&1; ls -A /data || true\n";
    let (_dir, root, ctx) = busybox_setup(&[
        ("Dockerfile", dockerfile),
        ("a.txt", "context\n"),
        ("sub/b.txt", "sub\n"),
    ]);
    let (sandbox_layers, sandbox_lines) = build(&root, &ctx, "sandbox");
    let (chroot_layers, chroot_lines) = build(&root, &ctx, "chroot");
    assert_eq!(
        chroot_lines, sandbox_lines,
        "the steps printed different things"
    );
    assert!(
        chroot_lines.iter().any(|l| l.ends_with(" one"))
            && chroot_lines.iter().any(|l| l.ends_with(" 1000 700")),
        "the cache did not carry over or lacked its owner: {chroot_lines:#?}"
    );
    assert_eq!(
        chroot_layers, sandbox_layers,
        "the two isolations built different layers"
    );
}

/// A step that removes a cache mount's target and puts a link to the container's /etc
/// there: the link must not become the cache (the next step would be given /etc), what
/// the image had at the target comes back, and nothing outside the step's root changes.
#[test]
fn a_step_replacing_a_placed_mount_with_a_link_gets_neither_the_link_nor_the_host() {
    let dockerfile = "FROM busybox:latest\n\
        RUN mkdir -p /var/cache/apt && echo img > /var/cache/apt/img\n\
        RUN --mount=type=cache,id=c,target=/var/cache/apt sh -c 'echo secret > /var/cache/apt/s; rm -rf /var/cache/apt; ln -s /etc /var/cache/apt'\n\
        RUN --mount=type=bind,target=/src sh -c 'rm -rf /src; ln -s /etc /src'\n\
        RUN --mount=type=cache,id=c,target=/c sh -c 'ls -A /c; touch /c/made-in-cache'\n\
        RUN cat /var/cache/apt/img; ls -A /var/cache/apt; test ! -e /src\n";
    let (dir, root, ctx) = busybox_setup(&[("Dockerfile", dockerfile)]);
    let out = success(
        rbuild(&root)
            .args([
                "build",
                "--progress",
                "plain",
                "--isolation",
                "chroot",
                "-t",
                "x",
            ])
            .arg(&ctx),
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        !log.contains("passwd") && !log.contains("hosts"),
        "the cache was given the container's /etc:\n{log}"
    );
    assert!(
        log.contains(" img"),
        "the image's /var/cache/apt did not come back:\n{log}"
    );
    let cache = root.join("cache-mounts");
    for entry in walk(&cache) {
        let meta = std::fs::symlink_metadata(&entry).expect("stat");
        assert!(
            !meta.file_type().is_symlink(),
            "a link of the step's became part of the store's caches: {}",
            entry.display()
        );
    }
    assert!(
        !Path::new("/etc/made-in-cache").exists(),
        "a step wrote into the host's /etc"
    );
    drop(dir);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(walk(&path));
            }
            out.push(path);
        }
    }
    out
}

/// Two stages using one shared cache at once (`--jobs 2`): the chroot isolation gives it
/// to one step at a time (it moves the directory), so both steps see it whole and the
/// cache holds both lines afterwards.
#[test]
fn a_shared_cache_goes_to_one_chroot_step_at_a_time() {
    let step = |name: &str| {
        format!(
            "FROM busybox:latest AS {name}\n\
             RUN --mount=type=cache,id=shared,target=/c sh -c 'echo {name} >> /c/log; sleep 1; test -f /c/log && echo {name} saw $(wc -l < /c/log)' > /{name}\n"
        )
    };
    let dockerfile = format!(
        "{}{}FROM busybox:latest\nCOPY --from=a /a /a\nCOPY --from=b /b /b\n\
         RUN --mount=type=cache,id=shared,target=/c cat /c/log\n",
        step("a"),
        step("b")
    );
    let (_dir, root, ctx) = busybox_setup(&[("Dockerfile", &dockerfile)]);
    let out = success(
        rbuild(&root)
            .args([
                "build",
                "--progress",
                "plain",
                "--jobs",
                "2",
                "--isolation",
                "chroot",
            ])
            .arg(&ctx),
    );
    let log = String::from_utf8_lossy(&out.stderr);
    let last: Vec<&str> = log
        .lines()
        .filter(|l| l.ends_with(" a") || l.ends_with(" b"))
        .collect();
    assert_eq!(last.len(), 2, "the cache lost a step's line:\n{log}");
}
