//! Attacks on `RUN --mount=type=cache` and `type=bind` in the chroot isolation
//! (`--isolation chroot`, issue 16 part 3), which places a mount's tree at its target by
//! moving or copying it instead of mounting it. Run on the host as root.
//!
//! Needs root and the busybox fixture.

mod support;

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use support::run::{busybox_setup, rbuild};

/// Runs `rbuild build --isolation <isolation>` on `ctx` and returns its output, or None
/// when it had not ended after a minute (it is then killed).
fn build_within_a_minute(root: &Path, ctx: &Path, isolation: &str) -> Option<Output> {
    let mut child = rbuild(root)
        .args(["build", "--progress", "plain", "--no-cache", "--isolation"])
        .arg(isolation)
        .arg(ctx)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting rbuild");
    let started = Instant::now();
    while child.try_wait().expect("waiting for rbuild").is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Some(child.wait_with_output().expect("reading rbuild's output"))
}

/// One step with the same cache id at two targets: the chroot isolation, which can put
/// the cache's directory in one place only, says so at once, where it used to wait
/// forever on the cache's lock that the step itself held.
#[test]
fn one_cache_at_two_targets_of_a_step_is_refused_not_waited_for_in_the_chroot_isolation() {
    let (_dir, root, ctx) = busybox_setup(&[(
        "Dockerfile",
        "FROM busybox:latest\n\
         RUN --mount=type=cache,id=one,target=/a --mount=type=cache,id=one,target=/b \
         echo hi > /a/f\n",
    )]);
    let out = build_within_a_minute(&root, &ctx, "chroot")
        .expect("the build with one cache at two targets never ended");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the build succeeded: {stderr}");
    assert!(
        stderr.contains("id=one") && stderr.contains("/a") && stderr.contains("/b"),
        "the error names neither the cache nor its targets: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "rbuild panicked: {stderr}");
}

/// The same step with `sharing=locked` in the namespace sandbox: the step holds the
/// cache's lock once and mounts the cache at both targets (it used to wait forever on
/// its own lock).
#[test]
fn one_locked_cache_at_two_targets_of_a_step_is_mounted_at_both_in_the_sandbox() {
    let (_dir, root, ctx) = busybox_setup(&[(
        "Dockerfile",
        "FROM busybox:latest\n\
         RUN --mount=type=cache,id=one,target=/a,sharing=locked \
         --mount=type=cache,id=one,target=/b,sharing=locked \
         echo hi > /a/f && cat /b/f\n",
    )]);
    let out = build_within_a_minute(&root, &ctx, "sandbox")
        .expect("the build with one locked cache at two targets never ended");
    let log =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the build failed: {log}");
    assert!(
        log.lines().any(|line| line.ends_with(" hi")),
        "the step did not read at /b what it wrote at /a: {log}"
    );
}

/// Whether the lock file at `path` could be locked exclusively within `wait`, trying
/// without blocking; the lock is then held as long as the returned file is open.
fn lock_within(path: &Path, wait: Duration) -> Option<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening {}: {e}", path.display()));
    let started = Instant::now();
    loop {
        // SAFETY: flock on a descriptor this function owns.
        let r = unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        };
        if r == 0 {
            return Some(file);
        }
        if started.elapsed() > wait {
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A step with caches `b` then `a` while another build's step, which takes them in the
/// order of their names, holds `a` and wants `b`: rbuild must not hold `b` while it
/// waits for `a` (each would wait for the other forever, as the chroot isolation locks
/// every cache exclusively), so the other gets `b`, and then both builds end.
#[test]
fn steps_locking_the_same_caches_in_the_chroot_isolation_never_wait_on_each_other() {
    let (_dir, root, ctx) = busybox_setup(&[(
        "Dockerfile",
        "FROM busybox:latest\n\
         RUN --mount=type=cache,id=b,target=/b --mount=type=cache,id=a,target=/a \
         echo both\n",
    )]);
    let caches = root.join("cache-mounts");
    std::fs::create_dir_all(&caches).expect("creating the cache mounts' directory");
    let held_a = lock_within(&caches.join("a.lock"), Duration::ZERO).expect("locking a");
    let mut child = rbuild(&root)
        .args(["build", "--progress", "plain", "--no-cache", "--isolation"])
        .arg("chroot")
        .arg(&ctx)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting rbuild");
    // rbuild reaches the step and waits for `a`.
    std::thread::sleep(Duration::from_secs(5));
    let held_b = lock_within(&caches.join("b.lock"), Duration::from_secs(10));
    let got_b = held_b.is_some();
    drop(held_b);
    drop(held_a);
    let started = Instant::now();
    while child.try_wait().expect("waiting for rbuild").is_none() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the build never ended once both caches were free");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().expect("reading rbuild's output");
    assert!(
        got_b,
        "rbuild held cache b while it waited for cache a: two such steps wait on each \
         other forever"
    );
    assert!(
        out.status.success(),
        "the build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A cache at `/dev`: what the step writes there is the cache's, kept for the next
/// step as with a mount; the chroot isolation's clean-up of what a step leaves in the
/// image's `/dev` must not reach into the cache.
#[test]
fn a_cache_at_dev_keeps_the_files_the_step_writes_in_the_chroot_isolation() {
    let (_dir, root, ctx) = busybox_setup(&[(
        "Dockerfile",
        "FROM busybox:latest\n\
         RUN --mount=type=cache,id=dev,target=/dev echo kept > /dev/written\n",
    )]);
    let out = build_within_a_minute(&root, &ctx, "chroot").expect("the build never ended");
    assert!(
        out.status.success(),
        "the build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = root.join("cache-mounts/dev/written");
    assert_eq!(
        std::fs::read_to_string(&written).ok().as_deref(),
        Some("kept\n"),
        "{} is not what the step wrote",
        written.display()
    );
}

/// A secret inside a cache's target: the chroot isolation, which writes the secret
/// before it moves the cache in (so the step would never see it) and cannot put it in
/// the cache (it would stay there after the step), says so, where the step used to run
/// without its secret.
#[test]
fn a_secret_inside_a_cache_is_refused_by_name_in_the_chroot_isolation() {
    let (dir, root, ctx) = busybox_setup(&[(
        "Dockerfile",
        "FROM busybox:latest\n\
         RUN --mount=type=cache,id=c,target=/c --mount=type=secret,id=s,target=/c/s \
         cat /c/s\n",
    )]);
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "hush\n").expect("writing the secret");
    let out = support::run::output(
        rbuild(&root)
            .args(["build", "--progress", "plain", "--no-cache", "--isolation"])
            .arg("chroot")
            .arg("--secret")
            .arg(format!("id=s,src={}", secret.display()))
            .arg(&ctx),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the build succeeded: {stderr}");
    assert!(
        stderr.contains("secret at /c/s") && stderr.contains("mount at /c"),
        "the error names neither the secret nor the mount: {stderr}"
    );
    assert!(
        !root.join("cache-mounts/c/s").exists(),
        "the secret was left in the cache"
    );
}
