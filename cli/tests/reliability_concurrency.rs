//! Concurrency (issue 9, item 2): 8 builds at once on one store, half of them the same
//! Dockerfile and context, the rest different ones, all on the same base and the same
//! `RUN --mount=type=cache` id, with `rbuild prune` running in a loop among them. Every
//! build succeeds, every image holds what its Dockerfile wrote, prune never removes what
//! a running build uses (it waits for the store lock), and the store verifies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use support::reliability::*;
use support::require::require_root;

const BUILDS: usize = 8;

fn dockerfile(variant: &str) -> String {
    format!(
        "FROM busybox
RUN --mount=type=cache,id=shared,target=/cache echo {variant} >> /cache/log && sleep 0.3
COPY payload /payload
RUN cat /payload > /out && echo built-{variant} >> /out && test ! -e /cache/log
"
    )
}

#[test]
fn eight_builds_and_a_prune_loop_share_one_store() {
    require_root("builds mount overlays and run steps in namespaces");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    import_busybox(&root);

    // Builds 0-3: one Dockerfile and context; builds 4-7: one each.
    let mut expected = Vec::new();
    let mut contexts = Vec::new();
    for i in 0..BUILDS {
        let variant = if i < 4 {
            "same".to_owned()
        } else {
            format!("v{i}")
        };
        let ctx = dir.path().join(format!("ctx{i}"));
        std::fs::create_dir_all(&ctx).unwrap();
        std::fs::write(ctx.join("Dockerfile"), dockerfile(&variant)).unwrap();
        let payload = format!("payload of {variant}\n");
        let mut data = payload.clone().into_bytes();
        data.extend(
            noise(i as u64 / 4 + 10, 1 << 20)
                .iter()
                .map(|b| b'a' + b % 26),
        );
        data.push(b'\n');
        std::fs::write(ctx.join("payload"), &data).unwrap();
        expected.push(format!("built-{variant}"));
        contexts.push(ctx);
    }

    let done = Arc::new(AtomicBool::new(false));
    let prunes = Arc::new(AtomicUsize::new(0));
    let waited = Arc::new(AtomicUsize::new(0));
    let pruner = {
        let (root, done, prunes, waited) =
            (root.clone(), done.clone(), prunes.clone(), waited.clone());
        std::thread::spawn(move || {
            // At least 3 prunes, whatever the timing: one may wait for every build.
            while !done.load(Ordering::SeqCst) || prunes.load(Ordering::SeqCst) < 3 {
                // Every other prune also removes every unpacked layer and cache mount.
                let args: &[&str] = if prunes.load(Ordering::SeqCst) % 2 == 0 {
                    &["prune"]
                } else {
                    &["prune", "--all", "--cache-mounts"]
                };
                let out = rbuild(&root, args);
                assert!(out.status.success(), "prune failed: {}", stderr(&out));
                if stderr(&out).contains("waiting for the other rbuild processes") {
                    waited.fetch_add(1, Ordering::SeqCst);
                }
                prunes.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    // Let the pruner start before the builds, so it also runs while they start.
    std::thread::sleep(std::time::Duration::from_millis(100));

    let children: Vec<_> = contexts
        .iter()
        .enumerate()
        .map(|(i, ctx)| {
            spawn(
                &root,
                &[
                    "build",
                    "--progress",
                    "plain",
                    "-t",
                    &format!("conc{i}:latest"),
                    ctx.to_str().unwrap(),
                ],
            )
        })
        .collect();
    let mut failures = Vec::new();
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        if !out.status.success() {
            failures.push(format!("build {i}: {}", stderr(&out)));
        }
    }
    done.store(true, Ordering::SeqCst);
    pruner.join().expect("the prune loop panicked");
    assert!(
        failures.is_empty(),
        "builds failed:\n{}",
        failures.join("\n")
    );
    let prunes = prunes.load(Ordering::SeqCst);
    let waited = waited.load(Ordering::SeqCst);
    println!("{BUILDS} builds, {prunes} prunes among them, {waited} of which waited for builds");
    assert!(
        waited >= 1,
        "no prune ever found a build running: the test did not overlap them"
    );

    for (i, want) in expected.iter().enumerate() {
        let out = rbuild(
            &root,
            &[
                "run",
                "--rm",
                &format!("conc{i}:latest"),
                "tail",
                "-n",
                "1",
                "/out",
            ],
        );
        assert!(out.status.success(), "run conc{i}: {}", stderr(&out));
        assert_eq!(stdout(&out).trim(), want, "image conc{i}");
        let out = rbuild(
            &root,
            &[
                "run",
                "--rm",
                &format!("conc{i}:latest"),
                "head",
                "-c",
                "20",
                "/payload",
            ],
        );
        assert!(stdout(&out).starts_with("payload of "), "image conc{i}");
    }
    // A prune after everything: named images keep all they need.
    let out = rbuild(&root, &["prune"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_verifies(&root, "after the builds and prunes");
    let out = rbuild(
        &root,
        &["run", "--rm", "conc7:latest", "tail", "-n", "1", "/out"],
    );
    assert_eq!(stdout(&out).trim(), "built-v7");
    assert!(corrupt_blobs(&root).is_empty());
    assert!(mounts_under(&root).is_empty());
}
