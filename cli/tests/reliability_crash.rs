//! Crash consistency (issue 9, item 1): `rbuild build` killed with SIGKILL 50 times at
//! different moments (during RUN steps, while layers are written, while the cache and
//! the index are updated). After each kill the store verifies, every blob hashes to its
//! name, no mount of the store and no process of the build is left, and the scratch
//! files of the dead build are reclaimed by the next process that opens the store. At
//! the end a build succeeds and takes every step a killed build committed from the cache.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::reliability::*;
use support::require::require_root;

/// How many times the build is killed.
const KILLS: usize = 50;

/// Pseudo-random content per COPY source: big enough that writing its layer takes a
/// while, small enough for the suite.
const BLOB_BYTES: usize = 3 << 20;

const DOCKERFILE: &str = "FROM busybox
ARG ROUND
RUN echo \"round $ROUND\" > /round && sleep 0.3
COPY blob1 /data/blob1
RUN head -c 65536 /data/blob1 > /data/part && sleep 0.3
COPY blob2 /data/blob2
RUN sha256sum /data/blob1 /data/blob2 > /data/sum
";

/// Starts a build of round `round`, with raw JSON progress on stderr.
fn start(root: &Path, ctx: &Path, round: u64) -> std::process::Child {
    spawn(
        root,
        &[
            "build",
            "--progress",
            "rawjson",
            "--build-arg",
            &format!("ROUND={round}"),
            "-t",
            "crash:latest",
            ctx.to_str().unwrap(),
        ],
    )
}

/// The names of the RUN and COPY steps that finished (ran or came from the cache), read
/// from a build's raw JSON events, and whether each was cached.
fn finished_steps(events: &str) -> HashMap<String, bool> {
    let mut names = HashMap::new();
    let mut done = HashMap::new();
    for line in events.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue; // the last line of a killed build may be cut short
        };
        let step = event["step"].as_u64();
        match event["type"].as_str() {
            Some("step_started") => {
                names.insert(step, event["name"].as_str().unwrap_or("").to_owned());
            }
            Some(kind @ ("step_finished" | "step_cached")) => {
                let name = names.get(&step).cloned().unwrap_or_default();
                if name.contains("] RUN ") || name.contains("] COPY ") {
                    done.insert(name, kind == "step_cached");
                }
            }
            _ => {}
        }
    }
    done
}

/// Where a killed build was, from its raw JSON events: inside which step, or after them.
fn phase(events: &str, steps_done: usize) -> String {
    let mut running: Option<String> = None;
    let mut names = HashMap::new();
    for line in events.lines() {
        let Ok(event) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let step = event["step"].as_u64();
        match event["type"].as_str() {
            Some("step_started") => {
                let name = event["name"].as_str().unwrap_or("").to_owned();
                names.insert(step, name.clone());
                running = Some(name);
            }
            Some("step_finished" | "step_cached") if names.get(&step) == running.as_ref() => {
                running = None;
            }
            Some("build_finished") => return "finished".to_owned(),
            _ => {}
        }
    }
    match running {
        Some(name) if name.contains("] RUN ") => "in a RUN step".to_owned(),
        Some(name) if name.contains("] COPY ") => "in a COPY step".to_owned(),
        Some(_) | None if steps_done == 0 => "before the first step".to_owned(),
        _ if steps_done == 5 => "writing the image and the index".to_owned(),
        _ => "between steps".to_owned(),
    }
}

#[test]
fn kill_9_at_fifty_moments_leaves_a_consistent_store() {
    require_root("builds mount overlays and run steps in namespaces");
    become_subreaper();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    import_busybox(&root);
    let ctx = dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(ctx.join("blob1"), noise(1, BLOB_BYTES)).unwrap();
    std::fs::write(ctx.join("blob2"), noise(2, BLOB_BYTES)).unwrap();

    // Two whole builds first: the first also unpacks the base image; the second shows
    // how long a build takes, which decides where the kills land.
    let first = start(&root, &ctx, 0).wait_with_output().unwrap();
    assert!(first.status.success(), "first build: {}", stderr(&first));
    let started = Instant::now();
    let second = start(&root, &ctx, 1000).wait_with_output().unwrap();
    assert!(second.status.success(), "second build: {}", stderr(&second));
    let whole = started.elapsed();
    println!("an uncached build takes {whole:?}");

    // Kills spread over the length of a build.
    let span = (whole.as_millis() as u64).max(1);
    let mut phases: HashMap<String, usize> = HashMap::new();
    let mut rng = Lcg(0x5eed_0009);
    let mut committed: Vec<(u64, HashMap<String, bool>)> = Vec::new();
    let mut reclaimed = 0;
    for round in 1..=KILLS as u64 {
        let delay = Duration::from_millis(rng.below(span));
        let mut child = start(&root, &ctx, round);
        let pid = child.id() as i32;
        std::thread::sleep(delay);
        let tree = descendants(pid);
        child.kill().unwrap();
        let status = child.wait().unwrap();
        let mut events = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut events)
            .unwrap();
        let done = finished_steps(&events);
        let at = match (status.success(), phase(&events, done.len())) {
            (true, _) => "finished".to_owned(),
            (false, p) if p == "in a RUN step" && tree.is_empty() => {
                "in a RUN step, its process done (writing its layer)".to_owned()
            }
            (false, p) if p == "in a RUN step" => "in a RUN step, its process running".to_owned(),
            (false, p) => p,
        };
        println!(
            "kill {round:2}: after {delay:?}, {at}, {} step processes, {} steps committed",
            tree.len(),
            done.len(),
        );
        *phases.entry(at).or_default() += 1;

        let left = wait_gone(&tree, Duration::from_secs(10));
        assert!(
            left.is_empty(),
            "kill {round}: processes of the build outlived it: {left:?}"
        );
        let mounts = mounts_under(&root);
        assert!(
            mounts.is_empty(),
            "kill {round}: mounts of the store left: {mounts:#?}"
        );
        let bad = corrupt_blobs(&root);
        assert!(
            bad.is_empty(),
            "kill {round}: blobs whose content is not their name: {bad:?}"
        );
        if !scratch_entries(&root).is_empty() {
            reclaimed += 1;
        }
        // The next process to open the store (verify) reclaims the dead build's scratch.
        assert_verifies(&root, &format!("after kill {round}"));
        let scratch = scratch_entries(&root);
        assert!(
            scratch.is_empty(),
            "kill {round}: scratch of the dead build not reclaimed: {scratch:?}"
        );
        committed.push((round, done));
    }
    println!("{reclaimed} of {KILLS} kills left scratch files, each reclaimed by the next run");
    let mut phases: Vec<_> = phases.into_iter().collect();
    phases.sort();
    println!("where the kills landed: {phases:?}");

    // Rebuild the round that got furthest: every step it committed comes from the cache.
    let (round, done) = committed
        .iter()
        .filter(|(_, done)| done.values().any(|cached| !cached))
        .max_by_key(|(_, done)| done.len())
        .expect("at least one kill landed after a step was committed");
    let rebuilt = start(&root, &ctx, *round).wait_with_output().unwrap();
    assert!(
        rebuilt.status.success(),
        "the build after the kills failed: {}",
        stderr(&rebuilt)
    );
    let again = finished_steps(&String::from_utf8_lossy(&rebuilt.stderr));
    let reused: HashSet<&String> = again
        .iter()
        .filter(|(_, cached)| **cached)
        .map(|(n, _)| n)
        .collect();
    for name in done.keys() {
        assert!(
            reused.contains(name),
            "round {round}: {name} was committed before the kill but ran again"
        );
    }
    println!(
        "rebuilding round {round}: {} committed steps all reused",
        done.len()
    );
    let out = rbuild(
        &root,
        &["run", "--rm", "crash:latest", "cat", "/round", "/data/sum"],
    );
    assert!(out.status.success(), "run: {}", stderr(&out));
    assert!(
        stdout(&out).contains(&format!("round {round}")),
        "{}",
        stdout(&out)
    );
    assert_verifies(&root, "at the end");
    assert!(mounts_under(&root).is_empty());
}
