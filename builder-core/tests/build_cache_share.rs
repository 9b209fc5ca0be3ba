//! The shared build cache: builder A exports its cache (`--cache-to`) to a real
//! docker-registry or an OCI layout directory; builder B, with a store of its own, imports
//! it (`--cache-from`) and runs none of the steps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use rbuild_core::{
    BuildResult, ContentStore, Digest, Event,
    error_chain::error_chain,
    progress::Collect,
    solver::{CACHE_CONFIG_TYPE, CacheExport, CacheImport},
};
use support::build::{build_with, busybox_store, context, read};
use support::registry::Registry;

/// Two stages: `builder` (not the target) and the image, RUN and COPY steps in each, and
/// config-only steps between them.
const DOCKERFILE: &str = "\
FROM busybox AS builder
RUN echo built > /artifact && echo junk > /junk
FROM busybox
RUN echo one > /one
COPY a.txt /a.txt
ENV GREETING=hello
RUN cat /a.txt > /copied && echo two >> /copied
COPY --from=builder /artifact /artifact
WORKDIR /w
RUN echo \"$GREETING\" > three
";

fn files() -> [(&'static str, &'static str); 1] {
    [("a.txt", "first\n")]
}

/// Builds `DOCKERFILE` in `store` with these cache options; panics on failure.
fn build_cached(
    store: &ContentStore,
    ctx: &Path,
    cache_to: &[&str],
    cache_from: &[&str],
) -> (BuildResult, Collect) {
    let (result, events) = build_with(store, DOCKERFILE, ctx, |r| {
        r.options.cache_to = cache_to
            .iter()
            .map(|s| s.parse::<CacheExport>().unwrap())
            .collect();
        r.options.cache_from = cache_from
            .iter()
            .map(|s| s.parse::<CacheImport>().unwrap())
            .collect();
    });
    let result = result.unwrap_or_else(|e| panic!("build failed: {}", error_chain(&e)));
    (result, events)
}

/// Whether the step whose name contains `text` came from the cache.
fn was_cached(result: &BuildResult, text: &str) -> bool {
    result
        .steps
        .iter()
        .find(|s| s.name.contains(text))
        .unwrap_or_else(|| panic!("no step {text:?} in {:?}", result.steps))
        .cached
}

fn warnings(events: &Collect) -> Vec<String> {
    events
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Warning { message, .. } => Some(message),
            _ => None,
        })
        .collect()
}

/// A second builder: a fresh store with the busybox fixture imported the same way, so its
/// base image has the same digest as builder A's.
fn second_store(first: &ContentStore) -> (tempfile::TempDir, ContentStore) {
    let (dir, store) = busybox_store();
    assert_eq!(
        store.resolve("busybox:latest").unwrap().descriptor.digest(),
        first.resolve("busybox:latest").unwrap().descriptor.digest(),
        "both builders must start from the same base image"
    );
    (dir, store)
}

/// The layer blob digest of the step whose name contains `text`, built into `store`.
fn layer_of(store: &ContentStore, result: &BuildResult, events: &Collect, text: &str) -> Digest {
    let step = result.steps.iter().find(|s| s.name.contains(text)).unwrap();
    let reported: Digest = events
        .events()
        .into_iter()
        .find_map(|e| match e {
            Event::StepFinished {
                step: s,
                output: rbuild_core::progress::StepOutput::Layer { digest, .. },
                ..
            }
            | Event::StepCached {
                step: s,
                output: rbuild_core::progress::StepOutput::Layer { digest, .. },
                ..
            } if s == step.step => Some(digest.parse().unwrap()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no layer for {text:?}"));
    // A layer kept as a directory is reported by its diff_id; its blob, once an output
    // made one, is in the step's cache entry.
    let hex = step.cache_key.to_string();
    let hex = hex.trim_start_matches("sha256:");
    let entry: serde_json::Value = serde_json::from_slice(
        &std::fs::read(store.root().join("cache").join(format!("{hex}.json"))).unwrap(),
    )
    .unwrap();
    entry["layer"]["digest"]
        .as_str()
        .map_or(reported, |d| d.parse().unwrap())
}

#[test]
fn a_fresh_builder_runs_no_step_with_the_registry_cache_of_another() {
    let reg = Registry::start(None);
    let (dir_a, store_a) = busybox_store();
    let ctx = context(dir_a.path(), &files());
    let to = format!("type=registry,ref={}/cache/app:max,mode=max", reg.addr);
    let (a, events_a) = build_cached(&store_a, &ctx, &[&to], &[]);
    assert!(a.steps.iter().all(|s| !s.cached), "{:?}", a.steps);

    // Other tools read the export as an ordinary OCI manifest.
    let raw = support::images::skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/cache/app:max", reg.addr),
    ]);
    assert!(raw.contains(CACHE_CONFIG_TYPE), "{raw}");

    let (dir_b, store_b) = second_store(&store_a);
    let from = format!("type=registry,ref={}/cache/app:max", reg.addr);
    let (b, events) = build_cached(&store_b, &ctx, &[], &[&from]);
    let ran: Vec<&str> = b
        .steps
        .iter()
        .filter(|s| !s.cached)
        .map(|s| s.name.as_str())
        .collect();
    assert!(ran.is_empty(), "steps ran despite the cache: {ran:?}");
    assert!(warnings(&events).is_empty(), "{:?}", warnings(&events));
    assert_eq!(b.image_id, a.image_id);
    assert_eq!(b.image.digest().unwrap(), a.image.digest().unwrap());
    assert_eq!(
        read(&store_b, &b.image, dir_b.path(), "/w/three"),
        "hello\n"
    );
    assert_eq!(
        read(&store_b, &b.image, dir_b.path(), "/copied"),
        "first\ntwo\n"
    );

    // The builder stage's layer was never needed by B: it was not fetched.
    let junk = layer_of(&store_a, &a, &events_a, "echo built");
    assert!(store_a.contains(&junk));
    assert!(
        !store_b.contains(&junk),
        "the unused builder layer {junk} was fetched"
    );
    // The image's own layers were, and verify.
    for (blob, _) in b.image.layers().unwrap() {
        store_b.verify_blob(&blob).unwrap();
    }
}

#[test]
fn mode_min_leaves_out_the_steps_of_other_stages() {
    let reg = Registry::start(None);
    let (dir_a, store_a) = busybox_store();
    let ctx = context(dir_a.path(), &files());
    let min = format!("type=registry,ref={}/cache/app:min", reg.addr);
    let max = format!("type=registry,ref={}/cache/app:max,mode=max", reg.addr);
    build_cached(&store_a, &ctx, &[&min, &max], &[]);

    let (_dir_b, store_b) = second_store(&store_a);
    let (b, _) = build_cached(&store_b, &ctx, &[], &[&min]);
    assert!(
        !was_cached(&b, "echo built"),
        "mode=min exported the builder stage"
    );
    assert!(was_cached(&b, "echo one"), "{:?}", b.steps);
    assert!(was_cached(&b, "COPY a.txt"), "{:?}", b.steps);

    let (_dir_c, store_c) = second_store(&store_a);
    let max_from = format!("type=registry,ref={}/cache/app:max", reg.addr);
    let (c, _) = build_cached(&store_c, &ctx, &[], &[&max_from]);
    assert!(
        was_cached(&c, "echo built"),
        "mode=max left out the builder stage"
    );
    assert!(c.steps.iter().all(|s| s.cached), "{:?}", c.steps);
}

#[test]
fn a_local_cache_directory_round_trips() {
    let (dir_a, store_a) = busybox_store();
    let ctx = context(dir_a.path(), &files());
    let cache_dir = dir_a.path().join("cache-dir");
    let to = format!("type=local,dest={},mode=max", cache_dir.display());
    let (a, _) = build_cached(&store_a, &ctx, &[&to], &[]);
    let index = std::fs::read_to_string(cache_dir.join("index.json")).unwrap();
    assert!(
        index.contains("\"org.opencontainers.image.ref.name\":\"latest\""),
        "{index}"
    );
    assert!(cache_dir.join("oci-layout").is_file());
    // The config blob of the manifest is the cache config.
    let manifests = std::fs::read_dir(cache_dir.join("blobs/sha256")).unwrap();
    let has_config = manifests
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
        .any(|text| text.contains(CACHE_CONFIG_TYPE));
    assert!(has_config, "no manifest names the cache config type");

    let (_dir_b, store_b) = second_store(&store_a);
    let from = format!("type=local,src={}", cache_dir.display());
    let (b, events) = build_cached(&store_b, &ctx, &[], &[&from]);
    assert!(warnings(&events).is_empty(), "{:?}", warnings(&events));
    assert!(b.steps.iter().all(|s| s.cached), "{:?}", b.steps);
    assert_eq!(b.image.digest().unwrap(), a.image.digest().unwrap());
}

#[test]
fn a_changed_context_file_misses_only_from_its_copy_on() {
    let reg = Registry::start(None);
    let (dir_a, store_a) = busybox_store();
    let ctx = context(dir_a.path(), &files());
    let to = format!("type=registry,ref={}/cache/app:max,mode=max", reg.addr);
    build_cached(&store_a, &ctx, &[&to], &[]);

    let (dir_b, store_b) = second_store(&store_a);
    let ctx_b = context(dir_b.path(), &[("a.txt", "changed\n")]);
    let from = format!("type=registry,ref={}/cache/app:max", reg.addr);
    let (b, _) = build_cached(&store_b, &ctx_b, &[], &[&from]);
    assert!(was_cached(&b, "echo built"), "{:?}", b.steps);
    assert!(was_cached(&b, "echo one"), "{:?}", b.steps);
    assert!(!was_cached(&b, "COPY a.txt"), "{:?}", b.steps);
    assert!(!was_cached(&b, "cat /a.txt"), "{:?}", b.steps);
    assert!(!was_cached(&b, "echo \"$GREETING\""), "{:?}", b.steps);
    assert_eq!(
        read(&store_b, &b.image, dir_b.path(), "/copied"),
        "changed\ntwo\n"
    );
}

#[test]
fn a_missing_cache_is_a_warning_and_the_build_goes_on() {
    let reg = Registry::start(None);
    let (dir_a, store_a) = busybox_store();
    let ctx = context(dir_a.path(), &files());
    let from = format!("type=registry,ref={}/cache/none:nothing", reg.addr);
    let missing_dir = dir_a.path().join("no-such-dir");
    let local = format!("type=local,src={}", missing_dir.display());
    let (a, events) = build_cached(&store_a, &ctx, &[], &[&from, &local]);
    assert!(a.steps.iter().all(|s| !s.cached), "{:?}", a.steps);
    let warnings = warnings(&events);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].contains("cache/none:nothing") && warnings[0].contains("not imported"),
        "{warnings:?}"
    );
    assert!(warnings[1].contains("no-such-dir"), "{warnings:?}");
}

#[test]
fn a_failed_export_fails_the_build_unless_errors_are_ignored() {
    // Nothing listens on port 1: the export cannot connect.
    let (dir_a, store_a) = busybox_store();
    let ctx = context(dir_a.path(), &files());
    let (result, _) = build_with(&store_a, DOCKERFILE, &ctx, |r| {
        r.options.cache_to = vec!["type=registry,ref=127.0.0.1:1/cache/app:x".parse().unwrap()];
    });
    let err = error_chain(&result.unwrap_err());
    assert!(
        err.contains("failed to export cache 127.0.0.1:1/cache/app:x"),
        "{err}"
    );

    let ignore = "type=registry,ref=127.0.0.1:1/cache/app:x,ignore-error=true";
    let (_, events) = build_cached(&store_a, &ctx, &[ignore], &[]);
    let warnings = warnings(&events);
    assert!(
        warnings.iter().any(|w| w.contains("not exported")),
        "{warnings:?}"
    );
}
