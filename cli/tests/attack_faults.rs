//! Fault attacks on the store (issue 13): `kill -9` at several points, a full disk
//! (a small tmpfs the test mounts), builds and prunes at once, truncated or corrupted
//! `index.json`, blobs, cache entries and unpacked layers, and games with the lock file.
//! rbuild holds when it refuses with a clear error (no panic), never damages what is
//! stored, and `store verify` (`--deep` for unpacked layers) names what was broken.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::attack::{Attacks, refused, succeeded};
use support::attack_store::*;
use support::require::require_tool;

const DOCKERFILE: &str = "FROM busybox\nRUN echo one > /one\nRUN echo two > /two\n";

/// `rbuild ARGS` on `root`, started in the background.
fn spawn(root: &Path, args: &[&str]) -> std::process::Child {
    support::run::rbuild(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting rbuild")
}

/// Holds when `out` failed without a panic (any message).
fn no_panic(out: &std::process::Output) -> Result<(), String> {
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() == Some(101) || stderr.contains("panicked") {
        return Err(format!("panicked: {stderr}"));
    }
    Ok(())
}

/// The blob file of the manifest `busybox:latest` names as its first layer.
fn first_layer_blob(root: &Path) -> PathBuf {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"][0]["digest"].as_str().unwrap().to_owned();
    let blobs = root.join("blobs/sha256");
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(blobs.join(manifest.trim_start_matches("sha256:"))).unwrap(),
    )
    .unwrap();
    blobs.join(
        m["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:"),
    )
}

/// A setup whose busybox layer is unpacked (a build ran on it); returns the layer dir.
fn unpacked(s: &Setup) -> Result<PathBuf, String> {
    s.build("base-user:latest", "FROM busybox\nRUN true\n")?;
    std::fs::read_dir(s.root.join("layers"))
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.join("bin/busybox").is_file())
        .ok_or_else(|| "setup: busybox's layer is not unpacked".to_string())
}

/// Kills `child` with SIGKILL once `ready` holds (or after `limit`).
fn kill_when(child: &mut std::process::Child, limit: Duration, ready: impl Fn() -> bool) {
    let start = Instant::now();
    while !ready() && start.elapsed() < limit {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// After a crash: the next command reclaims scratch, the store verifies, no mount is
/// left under the test's directory. The killed build's step processes die with it
/// (their parent-death signal), a moment after it: until they are gone they hold its
/// scratch's lock, and a command then leaves the scratch to a later one. So commands are
/// run for up to 10 s, until one has reclaimed it; the scratch must not outlive that.
fn recovered(s: &Setup) -> Result<(), String> {
    let mut left = Vec::new();
    for _ in 0..100 {
        succeeded(&s.run(&["images"]))?;
        left = support::run::scratch_entries(&s.root);
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if !left.is_empty() {
        return Err(format!("scratch left after the next open: {left:?}"));
    }
    let mounts = mounts_under(s.dir.path());
    if !mounts.is_empty() {
        return Err(format!("mounts left: {mounts:?}"));
    }
    verifies(&s.root)
}

#[test]
fn kills_full_disks_and_concurrency() {
    let mut a = Attacks::new("faults");

    a.attempt(
        "kill-9-inside-a-run-step",
        "kill -9 rbuild while a RUN step sleeps, then open the store again",
        || {
            let s = Setup::new();
            std::fs::write(s.ctx.join("Dockerfile"), "FROM busybox\nRUN sleep 30\n").unwrap();
            let mut child = spawn(&s.root, &["build", "-t", "k:1", &s.ctx.to_string_lossy()]);
            let marker = s.root.join("tmp");
            kill_when(&mut child, Duration::from_secs(20), || {
                !support::run::processes_with("sleep 30").is_empty()
                    && std::fs::read_dir(&marker).is_ok_and(|mut d| d.next().is_some())
            });
            // The step's own processes die with the sandbox's pid namespace.
            let start = Instant::now();
            while !support::run::processes_with("sleep 30").is_empty()
                && start.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            recovered(&s)
        },
    );
    a.attempt(
        "kill-9-while-committing-layers",
        "kill -9 rbuild at 10 moments of a build writing a 20 MB layer, checking the store each time",
        || {
            let s = Setup::new();
            std::fs::write(
                s.ctx.join("Dockerfile"),
                "FROM busybox\nRUN dd if=/dev/urandom of=/big bs=1M count=20 2>/dev/null\n",
            )
            .unwrap();
            for i in 0..10u64 {
                let mut child =
                    spawn(&s.root, &["build", "--no-cache", "-t", "k:2", &s.ctx.to_string_lossy()]);
                std::thread::sleep(Duration::from_millis(150 + 120 * i));
                let _ = child.kill();
                let _ = child.wait();
                recovered(&s).map_err(|e| format!("kill {i}: {e}"))?;
            }
            Ok(())
        },
    );
    a.attempt(
        "kill-9-during-import",
        "kill -9 `rbuild import` of the python3 rootfs at 3 moments",
        || {
            let s = Setup::new();
            let tar = support::run::fixture("python3");
            for delay in [50u64, 300, 800] {
                let mut child = spawn(&s.root, &["import", &tar.to_string_lossy(), "py:latest"]);
                std::thread::sleep(Duration::from_millis(delay));
                let _ = child.kill();
                let _ = child.wait();
                recovered(&s).map_err(|e| format!("after {delay} ms: {e}"))?;
            }
            Ok(())
        },
    );
    a.attempt(
        "enospc-on-a-small-tmpfs-store",
        "a store on a 48 MiB tmpfs: a RUN writing 80 MB must fail cleanly, leave no scratch, keep the store whole",
        || {
            let dir = tempfile::tempdir().unwrap();
            let mnt = dir.path().join("small");
            std::fs::create_dir_all(&mnt).unwrap();
            let out = Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=48m,mode=0700", "tmpfs"])
                .arg(&mnt)
                .output()
                .map_err(|e| format!("mount: {e}"))?;
            succeeded(&out).map_err(|e| format!("mounting the tmpfs: {e}"))?;
            let result = (|| {
                let root = mnt.join("store");
                support::run::import(&root, &support::run::fixture("busybox"), "busybox:latest", &[]);
                let ctx = dir.path().join("ctx");
                std::fs::create_dir_all(&ctx).unwrap();
                std::fs::write(
                    ctx.join("Dockerfile"),
                    "FROM busybox\nRUN dd if=/dev/urandom of=/big bs=1M count=80\n",
                )
                .unwrap();
                let out = run_on(&root, &["build", "-t", "full:1", &ctx.to_string_lossy()]);
                refused(&out, "space")?;
                succeeded(&run_on(&root, &["images"]))?;
                let left = support::run::scratch_entries(&root);
                if !left.is_empty() {
                    return Err(format!("scratch left: {left:?}"));
                }
                verifies(&root)?;
                // Still usable once there is room.
                std::fs::write(ctx.join("Dockerfile"), "FROM busybox\nRUN echo ok > /ok\n").unwrap();
                succeeded(&run_on(&root, &["build", "-t", "fits:1", &ctx.to_string_lossy()]))
            })();
            let _ = Command::new("umount").arg("-l").arg(&mnt).status();
            result
        },
    );
    a.attempt(
        "builds-and-prunes-at-once",
        "3 builds and 3 `rbuild prune --all` started together on one store",
        || {
            let s = Setup::new();
            let mut children = Vec::new();
            for i in 0..3 {
                let ctx = s.dir.path().join(format!("ctx{i}"));
                std::fs::create_dir_all(&ctx).unwrap();
                std::fs::write(
                    ctx.join("Dockerfile"),
                    format!("FROM busybox\nRUN echo {i} > /n\nRUN sleep 1\n"),
                )
                .unwrap();
                children.push((
                    format!("build {i}"),
                    spawn(
                        &s.root,
                        &["build", "-t", &format!("c:{i}"), &ctx.to_string_lossy()],
                    ),
                ));
                children.push((format!("prune {i}"), spawn(&s.root, &["prune", "--all"])));
            }
            for (what, child) in children {
                let out = child.wait_with_output().unwrap();
                no_panic(&out)?;
                // prune may refuse while builds hold the store; builds must succeed.
                if what.starts_with("build") {
                    succeeded(&out).map_err(|e| format!("{what}: {e}"))?;
                }
            }
            for i in 0..3 {
                let ctx = s.dir.path().join(format!("ctx{i}"));
                succeeded(&s.run(&["build", "-t", &format!("c:{i}"), &ctx.to_string_lossy()]))?;
            }
            recovered(&s)
        },
    );
    a.finish();
}

#[test]
fn corrupted_store_files_are_named_not_trusted() {
    let mut a = Attacks::new("faults");

    a.attempt(
        "truncated-index",
        "truncate index.json to half, then `rbuild images`",
        || {
            let s = Setup::new();
            let index = s.root.join("index.json");
            let bytes = std::fs::read(&index).unwrap();
            std::fs::write(&index, &bytes[..bytes.len() / 2]).unwrap();
            refused(&s.run(&["images"]), "index.json")
        },
    );
    a.attempt(
        "garbage-index",
        "replace index.json with binary garbage, then build FROM busybox",
        || {
            let s = Setup::new();
            std::fs::write(s.root.join("index.json"), [0xff, 0x00, 0x13, 0x37]).unwrap();
            std::fs::write(s.ctx.join("Dockerfile"), "FROM busybox\n").unwrap();
            refused(
                &s.run(&["build", "-t", "g:1", &s.ctx.to_string_lossy()]),
                "index.json",
            )
        },
    );
    a.attempt(
        "index-entry-to-missing-blob",
        "point index.json's entry at a digest that is not in the store, then `store verify` and `rbuild run`",
        || {
            let s = Setup::new();
            let index = s.root.join("index.json");
            let text = std::fs::read_to_string(&index).unwrap();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let d = v["manifests"][0]["digest"].as_str().unwrap().to_owned();
            let fake = format!("sha256:{}", "ab".repeat(32));
            std::fs::write(&index, text.replace(&d, &fake)).unwrap();
            let out = s.run(&["store", "verify"]);
            refused(&out, "not found")?;
            no_panic(&s.run(&["run", "busybox:latest", "true"]))
        },
    );
    a.attempt(
        "flipped-byte-in-layer-blob",
        "flip one byte of busybox's layer blob, then `store verify` and a build FROM busybox",
        || {
            let s = Setup::new();
            let blob = first_layer_blob(&s.root);
            let mut bytes = std::fs::read(&blob).unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x40;
            std::fs::write(&blob, bytes).unwrap();
            refused(&s.run(&["store", "verify"]), "corrupt")?;
            std::fs::write(s.ctx.join("Dockerfile"), "FROM busybox\nRUN true\n").unwrap();
            refused(
                &s.run(&["build", "-t", "x:1", &s.ctx.to_string_lossy()]),
                "corrupt",
            )
        },
    );
    a.attempt(
        "truncated-layer-blob",
        "truncate busybox's layer blob to 100 bytes, then `store verify`",
        || {
            let s = Setup::new();
            let blob = first_layer_blob(&s.root);
            let bytes = std::fs::read(&blob).unwrap();
            std::fs::write(&blob, &bytes[..100]).unwrap();
            refused(&s.run(&["store", "verify"]), "corrupt")
        },
    );
    a.attempt(
        "corrupted-cache-entries",
        "truncate and garble every file of the build cache, then build again",
        || {
            let s = Setup::new();
            s.build("c:1", DOCKERFILE)?;
            let files: Vec<PathBuf> = walkdir::WalkDir::new(s.root.join("cache"))
                .into_iter()
                .filter_map(Result::ok)
                .filter(|e| e.file_type().is_file())
                .map(|e| e.into_path())
                .collect();
            if files.is_empty() {
                return Err("setup: no cache file".into());
            }
            for (i, f) in files.iter().enumerate() {
                let bytes = std::fs::read(f).unwrap();
                let cut = if i % 2 == 0 { bytes.len() / 2 } else { 0 };
                std::fs::write(f, [&bytes[..cut], b"\xff{garbage"].concat()).unwrap();
            }
            let out = s.run(&["build", "-t", "c:2", &s.ctx.to_string_lossy()]);
            no_panic(&out)?;
            succeeded(&out)?;
            verifies(&s.root)
        },
    );
    a.attempt(
        "edited-unpacked-layer",
        "append bytes to bin/busybox in the unpacked layer; `store verify --deep` must name it, --repair remove it, a build then use a clean copy",
        || {
            let s = Setup::new();
            let layer = unpacked(&s)?;
            let target = layer.join("bin/busybox");
            let mut f = std::fs::OpenOptions::new().append(true).open(&target).unwrap();
            std::io::Write::write_all(&mut f, b"evil").unwrap();
            drop(f);
            refused(&s.run(&["store", "verify", "--deep"]), "bin/busybox")?;
            succeeded(&s.run(&["store", "verify", "--deep", "--repair"]))?;
            succeeded(&s.run(&["store", "verify", "--deep"]))?;
            std::fs::write(s.ctx.join("Dockerfile"), "FROM busybox\nRUN busybox true\n").unwrap();
            succeeded(&s.run(&["build", "--no-cache", "-t", "clean:1", &s.ctx.to_string_lossy()]))?;
            let again = std::fs::read(&target).map_err(|e| e.to_string())?;
            if again.ends_with(b"evil") {
                return Err("the edited busybox is still used".into());
            }
            Ok(())
        },
    );
    a.attempt(
        "planted-file-in-unpacked-layer",
        "add etc/evil and chmod 4755 bin/busybox in the unpacked layer; `store verify --deep` must name them",
        || {
            let s = Setup::new();
            let layer = unpacked(&s)?;
            std::fs::write(layer.join("etc/evil"), "x").unwrap();
            refused(&s.run(&["store", "verify", "--deep"]), "etc/evil")?;
            std::fs::remove_file(layer.join("etc/evil")).unwrap();
            let out = Command::new("chmod")
                .arg("4755")
                .arg(layer.join("bin/busybox"))
                .output()
                .unwrap();
            succeeded(&out)?;
            refused(&s.run(&["store", "verify", "--deep"]), "mode 4755")
        },
    );
    a.attempt(
        "removed-file-in-unpacked-layer",
        "delete bin/busybox's link bin/sh from the unpacked layer; `store verify --deep` must name it",
        || {
            let s = Setup::new();
            let layer = unpacked(&s)?;
            std::fs::remove_file(layer.join("bin/sh")).unwrap();
            refused(&s.run(&["store", "verify", "--deep"]), "bin/sh is missing")
        },
    );
    a.attempt(
        "lock-file-is-a-directory",
        "replace store.lock with a directory, then `rbuild images`",
        || {
            let s = Setup::new();
            std::fs::remove_file(s.root.join("store.lock")).unwrap();
            std::fs::create_dir(s.root.join("store.lock")).unwrap();
            refused(&s.run(&["images"]), "lock")
        },
    );
    a.attempt(
        "lock-file-deleted-during-a-build",
        "delete store.lock while a build runs, then prune and build: no panic, store whole",
        || {
            let s = Setup::new();
            std::fs::write(s.ctx.join("Dockerfile"), "FROM busybox\nRUN sleep 2\n").unwrap();
            let child = spawn(&s.root, &["build", "-t", "l:1", &s.ctx.to_string_lossy()]);
            std::thread::sleep(Duration::from_millis(500));
            let _ = std::fs::remove_file(s.root.join("store.lock"));
            let out = child.wait_with_output().unwrap();
            no_panic(&out)?;
            succeeded(&out)?;
            succeeded(&s.run(&["prune"]))?;
            verifies(&s.root)
        },
    );
    a.attempt(
        "prune-waits-for-a-held-lock",
        "hold store.lock shared with flock(1) (another user of the store), then `rbuild prune`: it must not remove a half-built layer",
        || {
            require_tool("flock", "util-linux");
            let s = Setup::new();
            std::fs::create_dir_all(s.root.join("layers/.unpack-inflight")).unwrap();
            let mut holder = Command::new("flock")
                .arg("-s")
                .arg(s.root.join("store.lock"))
                .args(["sleep", "30"])
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(300));
            let prune = spawn(&s.root, &["prune"]);
            std::thread::sleep(Duration::from_millis(1500));
            let kept = s.root.join("layers/.unpack-inflight").exists();
            let _ = holder.kill();
            let _ = holder.wait();
            let out = prune.wait_with_output().unwrap();
            no_panic(&out)?;
            succeeded(&out)?;
            if !kept {
                return Err("prune removed another process's scratch while it held the store".into());
            }
            verifies(&s.root)
        },
    );
    a.finish();
}
