//! The layer cache: rebuilds with nothing changed run nothing; a changed context file or
//! build argument reruns only the steps that depend on it; `--no-cache` reruns all; and
//! every miss says why.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rbuild_core::solver::MissReason;
use support::build::{build, build_with, busybox_store, cached, context, read};

const DOCKERFILE: &str = "FROM busybox
COPY a.txt /a.txt
RUN cat /a.txt > /a.copy
ARG V=1
RUN echo $V > /v
COPY b.txt /b.txt
RUN cat /b.txt > /b.copy
";

fn steps(result: &rbuild_core::BuildResult) -> Vec<bool> {
    cached(result).into_iter().map(|(_, c)| c).collect()
}

#[test]
fn a_rebuild_with_nothing_changed_runs_no_step_and_gives_the_same_image() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[("a.txt", "a\n"), ("b.txt", "b\n")]);
    let first = build(&store, DOCKERFILE, &ctx);
    assert_eq!(steps(&first), [false; 5]);
    let second = build(&store, DOCKERFILE, &ctx);
    assert_eq!(steps(&second), [true; 5]);
    assert_eq!(second.image_id, first.image_id);
}

#[test]
fn changing_one_context_file_reruns_only_the_steps_after_its_copy() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[("a.txt", "a\n"), ("b.txt", "b\n")]);
    build(&store, DOCKERFILE, &ctx);
    std::fs::write(ctx.join("b.txt"), "b changed\n").unwrap();
    let result = build(&store, DOCKERFILE, &ctx);
    assert_eq!(steps(&result), [true, true, true, false, false]);
    assert_eq!(
        result.steps[3].miss,
        Some(MissReason::FilesChanged {
            paths: vec!["b.txt".to_owned()]
        })
    );
    assert_eq!(
        result.steps[4].miss,
        Some(MissReason::ParentChanged {
            step: "[5/6] COPY b.txt /b.txt".to_owned()
        })
    );
    assert_eq!(
        read(&store, &result.image, dir.path(), "/b.copy"),
        "b changed\n"
    );
    // Touching a file without changing it is no change.
    let stamp = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(ctx.join("a.txt"))
        .unwrap()
        .set_modified(stamp)
        .unwrap();
    let touched = build(&store, DOCKERFILE, &ctx);
    assert_eq!(steps(&touched), [true; 5]);
}

#[test]
fn changing_a_build_arg_reruns_only_the_steps_that_see_it() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[("a.txt", "a\n"), ("b.txt", "b\n")]);
    build(&store, DOCKERFILE, &ctx);
    let (result, _) = build_with(&store, DOCKERFILE, &ctx, |r| {
        r.spec.build_args = vec![("V".to_owned(), "2".to_owned())];
    });
    let result = result.unwrap();
    assert_eq!(steps(&result), [true, true, false, false, false]);
    assert_eq!(
        result.steps[2].miss,
        Some(MissReason::ArgsChanged {
            names: vec!["V".to_owned()]
        })
    );
    assert_eq!(read(&store, &result.image, dir.path(), "/v"), "2\n");
}

#[test]
fn a_step_that_reruns_with_the_same_result_leaves_later_steps_cached() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[("a.txt", "a\n"), ("b.txt", "b\n")]);
    // Stage `gen` sees V, so its RUN reruns when V changes; its result is the same
    // file with the same time, so the final stage's COPY of it and the RUN after hit.
    let dockerfile = "FROM busybox AS gen
ARG V=1
RUN echo fixed > /fixed && touch -d @0 /fixed
FROM busybox
COPY --from=gen /fixed /fixed
RUN cat /fixed > /seen
";
    build(&store, dockerfile, &ctx);
    let (result, _) = build_with(&store, dockerfile, &ctx, |r| {
        r.spec.build_args = vec![("V".to_owned(), "2".to_owned())];
    });
    let result = result.unwrap();
    let by_name = cached(&result);
    let gen_run = by_name.iter().find(|(n, _)| n.contains("[gen ")).unwrap();
    assert!(!gen_run.1, "{by_name:?}");
    let rest: Vec<bool> = by_name
        .iter()
        .filter(|(n, _)| !n.contains("[gen "))
        .map(|(_, c)| *c)
        .collect();
    assert_eq!(rest, [true, true], "{by_name:?}");
}

#[test]
fn no_cache_reruns_every_step_and_no_cache_filter_only_its_stage() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[("a.txt", "a\n"), ("b.txt", "b\n")]);
    build(&store, DOCKERFILE, &ctx);
    let (result, _) = build_with(&store, DOCKERFILE, &ctx, |r| r.options.no_cache = true);
    let result = result.unwrap();
    assert_eq!(steps(&result), [false; 5]);
    assert!(
        result
            .steps
            .iter()
            .all(|s| s.miss == Some(MissReason::NoCache))
    );

    let two = "FROM busybox AS dep\nRUN echo dep > /dep\nFROM busybox\nCOPY --from=dep /dep /dep\nRUN cat /dep\n";
    build(&store, two, &ctx);
    let (result, _) = build_with(&store, two, &ctx, |r| {
        r.options.no_cache_filter = vec!["dep".to_owned()];
    });
    let result = result.unwrap();
    let by_name: Vec<(String, bool)> = cached(&result);
    let dep = by_name.iter().find(|(n, _)| n.contains("[dep ")).unwrap();
    assert!(!dep.1, "the filtered stage reran: {by_name:?}");
}

#[test]
fn the_cache_survives_a_new_builder_and_misses_when_its_layers_are_gone() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[("a.txt", "a\n"), ("b.txt", "b\n")]);
    let first = build(&store, DOCKERFILE, &ctx);
    // A fresh store handle on the same root: the cache is on disk.
    let reopened = rbuild_core::ContentStore::open(store.root()).unwrap();
    let again = build(&reopened, DOCKERFILE, &ctx);
    assert_eq!(steps(&again), [true; 5]);
    // Drop the last step's layer blob: that step must run again.
    let last = first.image.manifest.layers().last().unwrap();
    let digest = rbuild_core::Digest::try_from(last.digest()).unwrap();
    store.remove_blob(&digest).unwrap();
    let third = build(&store, DOCKERFILE, &ctx);
    assert_eq!(steps(&third), [true, true, true, true, false]);
    assert_eq!(third.steps[4].miss, Some(MissReason::NoEntry));
}

#[test]
fn prune_drops_the_cache() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[("a.txt", "a\n"), ("b.txt", "b\n")]);
    build(&store, DOCKERFILE, &ctx);
    let report = rbuild_core::image::prune(&store, false).unwrap();
    assert!(report.cache_entries >= 5, "{report:?}");
    let again = build(&store, DOCKERFILE, &ctx);
    assert_eq!(steps(&again), [false; 5]);
    assert!(
        again
            .steps
            .iter()
            .all(|s| s.miss == Some(MissReason::NoEntry))
    );
}

#[test]
fn misses_name_a_changed_base_or_from_source() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let dockerfile = "FROM busybox AS src
ARG V=1
RUN echo $V > /v
FROM busybox
COPY --from=src /v /v
";
    build(&store, dockerfile, &ctx);
    let (result, _) = build_with(&store, dockerfile, &ctx, |r| {
        r.spec.build_args = vec![("V".to_owned(), "2".to_owned())];
    });
    let result = result.unwrap();
    let copy = result
        .steps
        .iter()
        .find(|s| s.name.contains("COPY --from=src"))
        .unwrap();
    assert_eq!(
        copy.miss,
        Some(MissReason::SourceChanged {
            from: "src".to_owned()
        })
    );

    // `base:1` names one image, then (retagged) another: the first step of a stage on
    // it misses because its base changed.
    let image = support::build::import(&store, &support::build::busybox_tarball(), "base:1");
    let other = build_with(&store, "FROM base:1\nRUN echo changed > /c\n", &ctx, |r| {
        r.options.tags = vec!["base:1".parse().unwrap()];
    })
    .0
    .unwrap();
    assert_ne!(other.image.digest().unwrap(), image.digest().unwrap());
    let on_top = "FROM base:1\nRUN echo on top > /top\n";
    let first = build(&store, on_top, &ctx);
    assert!(!first.steps[0].cached);
    support::build::import(&store, &support::build::busybox_tarball(), "base:1");
    let again = build(&store, on_top, &ctx);
    assert_eq!(again.steps[0].miss, Some(MissReason::BaseChanged));
}

#[test]
fn a_miss_names_only_the_files_the_copy_selects_after_exclude() {
    let (dir, store) = busybox_store();
    let ctx = context(
        dir.path(),
        &[
            ("src/a.txt", "a\n"),
            ("src/b.log", "log\n"),
            ("other.txt", "o\n"),
        ],
    );
    let dockerfile = "FROM busybox\nCOPY --exclude=*.log src /app\n";
    build(&store, dockerfile, &ctx);
    // An excluded file and a file outside the source changed alone: still a hit.
    std::fs::write(ctx.join("src/b.log"), "log changed\n").unwrap();
    std::fs::write(ctx.join("other.txt"), "o changed\n").unwrap();
    assert_eq!(steps(&build(&store, dockerfile, &ctx)), [true]);
    // With a selected file, the miss names that file alone.
    std::fs::write(ctx.join("src/a.txt"), "a changed\n").unwrap();
    std::fs::write(ctx.join("src/b.log"), "log changed again\n").unwrap();
    let result = build(&store, dockerfile, &ctx);
    assert_eq!(steps(&result), [false]);
    assert_eq!(
        result.steps[0].miss,
        Some(MissReason::FilesChanged {
            paths: vec!["src/a.txt".to_owned()]
        })
    );
}
