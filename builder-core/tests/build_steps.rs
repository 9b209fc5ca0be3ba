//! Whole builds on the busybox fixture: every kind of step, multi-stage, `--target`,
//! build arguments, base images from archives, ONBUILD, and failures.
//!
//! Over 600 lines on purpose: 22 short, independent whole builds on one fixture store,
//! each read on its own; split by topic they would scatter the step kinds a reader
//! compares.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rbuild_core::{BuildError, Event, ExportTarget, export::export, progress::StepOutput};
use support::build::{build, build_with, busybox_store, context, read, rootfs};

#[test]
fn run_copy_env_workdir_make_the_files_and_config_docker_would() {
    let (dir, store) = busybox_store();
    let ctx = context(
        dir.path(),
        &[("hello.txt", "hello\n"), ("sub/a.txt", "a\n")],
    );
    let dockerfile = "FROM busybox
ENV GREETING=hi
WORKDIR /app
COPY hello.txt .
COPY sub ./sub/
ARG WHO=world
RUN echo \"$GREETING $WHO\" > greeting.txt && cat hello.txt
EXPOSE 80
CMD [\"cat\", \"greeting.txt\"]
";
    let result = build(&store, dockerfile, &ctx);
    let image = &result.image;
    assert_eq!(
        read(&store, image, dir.path(), "/app/greeting.txt"),
        "hi world\n"
    );
    assert_eq!(read(&store, image, dir.path(), "/app/hello.txt"), "hello\n");
    assert_eq!(read(&store, image, dir.path(), "/app/sub/a.txt"), "a\n");
    let config = &image.config.config;
    assert_eq!(config.working_dir.as_deref(), Some("/app"));
    assert_eq!(
        config.cmd.as_deref(),
        Some(&["cat".to_owned(), "greeting.txt".to_owned()][..])
    );
    let env = config.env.clone().unwrap_or_default();
    assert!(env.contains(&"GREETING=hi".to_owned()), "{env:?}");
    assert!(
        !env.iter().any(|e| e.starts_with("WHO=")),
        "ARG values never reach the config: {env:?}"
    );
    assert!(
        config
            .exposed_ports
            .as_ref()
            .unwrap()
            .contains_key("80/tcp")
    );
    // The base layer plus WORKDIR, two COPYs and the RUN.
    assert_eq!(image.manifest.layers().len(), 5);
    // ENV, WORKDIR, COPY, COPY, ARG, RUN, EXPOSE, CMD (the imported base has no history).
    let empty: Vec<bool> = image.config.history.iter().map(|h| h.empty_layer).collect();
    assert_eq!(
        empty,
        [true, false, false, false, true, false, true, true],
        "{:?}",
        image.config.history
    );
}

#[test]
fn output_of_run_steps_streams_as_log_events() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let (result, events) = build_with(
        &store,
        "FROM busybox\nRUN echo one && echo two >&2\n",
        &ctx,
        |_| {},
    );
    result.unwrap();
    // stdout and stderr are two pipes: their lines may arrive in either order.
    let mut logs: Vec<(String, String)> = events
        .events()
        .iter()
        .filter_map(|e| match e {
            Event::StepLog { stream, text, .. } => Some((format!("{stream:?}"), text.clone())),
            _ => None,
        })
        .collect();
    logs.sort();
    assert_eq!(
        logs,
        [
            ("Stderr".to_owned(), "two".to_owned()),
            ("Stdout".to_owned(), "one".to_owned())
        ]
    );
    assert!(matches!(
        events.events().first(),
        Some(Event::BuildStarted { .. })
    ));
    assert!(matches!(
        events.events().last(),
        Some(Event::BuildFinished { .. })
    ));
}

#[test]
fn multi_stage_builds_copy_from_earlier_stages_and_target_picks_one() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let dockerfile = "FROM busybox AS one
RUN echo first > /one.txt
FROM busybox AS two
RUN echo second > /two.txt
FROM busybox
COPY --from=one /one.txt /from-one.txt
COPY --from=two /two.txt /from-two.txt
";
    let result = build(&store, dockerfile, &ctx);
    let root = rootfs(&store, &result.image, dir.path());
    assert_eq!(
        std::fs::read_to_string(root.join("from-one.txt")).unwrap(),
        "first\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("from-two.txt")).unwrap(),
        "second\n"
    );
    assert!(!root.join("one.txt").exists());

    let (target, _) = build_with(&store, dockerfile, &ctx, |r| {
        r.spec.target = Some("two".to_owned());
    });
    let target = target.unwrap();
    let root = rootfs(&store, &target.image, dir.path());
    assert!(root.join("two.txt").is_file());
    assert!(!root.join("from-one.txt").exists());
    // Stage `one` is not needed by `two`: none of its steps ran or was reported.
    assert!(target.steps.iter().all(|s| !s.name.contains("[one ")));
}

#[test]
fn a_stage_built_on_a_stage_keeps_its_files_and_config() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let dockerfile = "FROM busybox AS base
ENV FROM_BASE=1
RUN echo base > /base.txt
FROM base
RUN cat /base.txt > /child.txt
";
    let result = build(&store, dockerfile, &ctx);
    assert_eq!(
        read(&store, &result.image, dir.path(), "/child.txt"),
        "base\n"
    );
    let env = result.image.config.config.env.clone().unwrap_or_default();
    assert!(env.contains(&"FROM_BASE=1".to_owned()), "{env:?}");
}

#[test]
fn build_args_reach_run_steps_but_not_the_config() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let dockerfile = "FROM busybox\nARG VERSION=0.1\nRUN echo $VERSION > /version\n";
    let (result, _) = build_with(&store, dockerfile, &ctx, |r| {
        r.spec.build_args = vec![("VERSION".to_owned(), "2.0".to_owned())];
    });
    let result = result.unwrap();
    assert_eq!(read(&store, &result.image, dir.path(), "/version"), "2.0\n");
    let env = result.image.config.config.env.clone().unwrap_or_default();
    assert!(!env.iter().any(|e| e.starts_with("VERSION=")), "{env:?}");
}

#[test]
fn heredoc_run_steps_run_their_body() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let dockerfile =
        "FROM busybox\nRUN <<EOF\necho from heredoc > /h.txt\nEOF\nRUN cat <<A > /b.txt\nbody\nA\n";
    let result = build(&store, dockerfile, &ctx);
    assert_eq!(
        read(&store, &result.image, dir.path(), "/h.txt"),
        "from heredoc\n"
    );
    assert_eq!(read(&store, &result.image, dir.path(), "/b.txt"), "body\n");
}

#[test]
fn workdir_is_owned_by_the_current_user_and_makes_no_layer_when_it_exists() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let dockerfile = "FROM busybox\nUSER 1234:5678\nWORKDIR /data/work\nWORKDIR /tmp\n";
    let result = build(&store, dockerfile, &ctx);
    let root = rootfs(&store, &result.image, dir.path());
    let meta = std::fs::metadata(root.join("data/work")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
    // /tmp exists in busybox: the second WORKDIR changes nothing.
    let last = result.steps.last().unwrap();
    assert!(last.name.contains("WORKDIR /tmp"));
    assert_eq!(result.image.manifest.layers().len(), 2);
}

#[test]
fn a_failing_run_names_its_line_and_shows_the_tail_of_its_output() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let dockerfile = "FROM busybox\nRUN true\nRUN echo about to fail && exit 3\nRUN echo never\n";
    let (result, events) = build_with(&store, dockerfile, &ctx, |_| {});
    let err = result.unwrap_err();
    let BuildError::StepFailed {
        location,
        message,
        exit_code,
        tail,
        name,
        ..
    } = &err
    else {
        panic!("expected a step failure, got {err:?}");
    };
    assert_eq!(location, "Dockerfile:3");
    assert!(name.contains("RUN echo about to fail"), "{name}");
    assert!(message.contains("exit code: 3"), "{message}");
    assert_eq!(*exit_code, Some(3));
    assert_eq!(tail, &["about to fail"]);
    let text = err.to_string();
    assert!(text.starts_with("Dockerfile:3: "), "{text}");
    assert!(events.events().iter().any(|e| matches!(
        e,
        Event::StepFailed {
            exit_code: Some(3),
            ..
        }
    )));
    assert!(matches!(
        events.events().last(),
        Some(Event::BuildFailed { .. })
    ));
}

#[test]
fn a_missing_base_image_is_named_with_its_from_line() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let (result, _) = build_with(
        &store,
        "FROM busybox AS ok\n\nFROM nosuchimage:1.0\nRUN true\n",
        &ctx,
        |_| {},
    );
    // Rendered as the CLI prints it: the line quoted under the message.
    let text = result.unwrap_err().render();
    assert!(
        text.starts_with("Dockerfile:3:1: failed to resolve image nosuchimage:1.0"),
        "{text}"
    );
    assert!(text.contains("    3 | FROM nosuchimage:1.0"), "{text}");
}

/// Builds and expects success, the Dockerfile allowed to load archives and layouts
/// beneath `allowed` (`--allow fs.read=DIR`): the tests' archives are outside the context.
fn build_allowing(
    store: &rbuild_core::ContentStore,
    dockerfile: &str,
    ctx: &std::path::Path,
    allowed: &std::path::Path,
) -> rbuild_core::BuildResult {
    let (result, _) = build_with(store, dockerfile, ctx, |r| {
        r.options.allow_fs_read = vec![allowed.to_path_buf()];
    });
    result.unwrap_or_else(|e| {
        panic!(
            "build failed: {}",
            rbuild_core::error_chain::error_chain(&e)
        )
    })
}

#[test]
fn scratch_stages_and_docker_archive_bases_build() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[("f.txt", "in scratch\n")]);
    let result = build(&store, "FROM scratch\nCOPY f.txt /f.txt\n", &ctx);
    assert_eq!(result.image.manifest.layers().len(), 1);
    assert_eq!(
        read(&store, &result.image, dir.path(), "/f.txt"),
        "in scratch\n"
    );

    // The busybox image saved as a docker archive, then used through docker-archive://.
    let busybox = rbuild_core::image::load_image(
        &store,
        &store.resolve("busybox:latest").unwrap().descriptor,
    )
    .unwrap();
    let archive = dir.path().join("busybox-docker.tar");
    export(
        &store,
        &ExportTarget::Docker {
            dest: archive.clone(),
        },
        &busybox,
        &["busybox:latest".parse().unwrap()],
        &rbuild_core::progress::NullProgress,
    )
    .unwrap();
    let layout = dir.path().join("busybox-oci");
    export(
        &store,
        &ExportTarget::Oci {
            dest: layout.clone(),
            tar: false,
        },
        &busybox,
        &["busybox:latest".parse().unwrap()],
        &rbuild_core::progress::NullProgress,
    )
    .unwrap();
    for from in [
        format!("docker-archive://{}", archive.display()),
        format!("oci-layout://{}", layout.display()),
    ] {
        let result = build_allowing(
            &store,
            &format!("FROM {from}\nRUN echo ok > /ok\n"),
            &ctx,
            dir.path(),
        );
        assert_eq!(read(&store, &result.image, dir.path(), "/ok"), "ok\n");
        assert_eq!(
            result.image.manifest.layers().len(),
            2,
            "the base layer and the RUN layer of {from}"
        );
    }
}

#[test]
fn a_docker_archive_base_is_loaded_once_until_the_file_changes() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let save = |image: &rbuild_core::image::Image, archive: &std::path::Path| {
        export(
            &store,
            &ExportTarget::Docker {
                dest: archive.to_path_buf(),
            },
            image,
            &[],
            &rbuild_core::progress::NullProgress,
        )
        .unwrap();
    };
    let records = || -> Vec<(std::path::PathBuf, String)> {
        let Ok(dir) = std::fs::read_dir(store.root().join("archive-loads")) else {
            return Vec::new();
        };
        dir.map(|e| e.unwrap().path())
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                (p, text)
            })
            .collect()
    };
    let busybox = rbuild_core::image::load_image(
        &store,
        &store.resolve("busybox:latest").unwrap().descriptor,
    )
    .unwrap();
    let archive = dir.path().join("base.tar");
    save(&busybox, &archive);
    let dockerfile = format!(
        "FROM docker-archive://{}\nRUN echo ok > /ok\n",
        archive.display()
    );

    let first = build_allowing(&store, &dockerfile, &ctx, dir.path());
    let after_first = records();
    assert_eq!(after_first.len(), 1, "one remembered load: {after_first:?}");
    let modified = std::fs::metadata(&after_first[0].0)
        .unwrap()
        .modified()
        .unwrap();

    // The same file: not loaded again (the record is not rewritten), the steps are cached.
    let second = build_allowing(&store, &dockerfile, &ctx, dir.path());
    assert_eq!(second.image_id, first.image_id);
    assert!(second.steps.iter().all(|s| s.cached), "{:?}", second.steps);
    let after_second = records();
    assert_eq!(after_second, after_first);
    assert_eq!(
        std::fs::metadata(&after_second[0].0)
            .unwrap()
            .modified()
            .unwrap(),
        modified
    );

    // Another image saved over the file: loaded, and built on.
    save(&first.image, &archive);
    let third = build_allowing(&store, &dockerfile, &ctx, dir.path());
    assert_eq!(third.image.manifest.layers().len(), 3);
    assert_eq!(read(&store, &third.image, dir.path(), "/ok"), "ok\n");
    assert_eq!(records().len(), 2);
}

#[test]
fn onbuild_triggers_of_the_base_run_at_the_child_from() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[("input.txt", "from the child's context\n")]);
    let base = build_with(
        &store,
        "FROM busybox\nONBUILD COPY input.txt /input.txt\nONBUILD RUN echo triggered > /trigger.txt\n",
        &ctx,
        |r| r.options.tags = vec!["onbuild-base:latest".parse().unwrap()],
    )
    .0
    .unwrap();
    assert_eq!(
        base.image.config.config.on_build.as_ref().map(Vec::len),
        Some(2)
    );
    let child = build(
        &store,
        "FROM onbuild-base\nRUN cat /trigger.txt /input.txt > /both\n",
        &ctx,
    );
    assert_eq!(
        read(&store, &child.image, dir.path(), "/both"),
        "triggered\nfrom the child's context\n"
    );
    assert_eq!(child.image.config.config.on_build, None);
}

#[test]
fn an_empty_run_keeps_history_with_an_empty_layer() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let (result, events) = build_with(&store, "FROM busybox\nRUN true\n", &ctx, |_| {});
    let result = result.unwrap();
    assert_eq!(result.image.manifest.layers().len(), 1);
    let last = result.image.config.history.last().unwrap();
    assert!(last.empty_layer);
    assert!(
        last.created_by
            .as_deref()
            .unwrap()
            .starts_with("RUN /bin/sh -c true"),
        "{last:?}"
    );
    assert!(events.events().iter().any(|e| matches!(
        e,
        Event::StepFinished {
            output: StepOutput::EmptyLayer,
            ..
        }
    )));
}

#[test]
fn copy_from_an_image_no_stage_uses_and_warnings_for_unused_build_args() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let (result, events) = build_with(
        &store,
        "FROM scratch\nCOPY --from=busybox /bin/busybox /busybox\n",
        &ctx,
        |r| r.spec.build_args = vec![("NOBODY_DECLARED".to_owned(), "x".to_owned())],
    );
    let result = result.unwrap();
    let root = rootfs(&store, &result.image, dir.path());
    assert!(root.join("busybox").is_file());
    assert!(events.events().iter().any(|e| matches!(
        e,
        Event::Warning { message, .. } if message.contains("NOBODY_DECLARED")
    )));
}

#[test]
fn dockerignore_rules_and_labels_apply() {
    let (dir, store) = busybox_store();
    let ctx = context(
        dir.path(),
        &[
            ("keep.txt", "keep\n"),
            ("secret.key", "no\n"),
            ("logs/a.log", "no\n"),
            ("logs/important.log", "yes\n"),
            (".dockerignore", "*.key\nlogs/*.log\n!logs/important.log\n"),
        ],
    );
    let (result, _) = build_with(&store, "FROM busybox\nCOPY . /ctx/\n", &ctx, |r| {
        r.spec.labels = vec![("org.example.team".to_owned(), "build".to_owned())];
    });
    let result = result.unwrap();
    let root = rootfs(&store, &result.image, dir.path());
    assert!(root.join("ctx/keep.txt").is_file());
    assert!(!root.join("ctx/secret.key").exists());
    assert!(!root.join("ctx/logs/a.log").exists());
    assert!(root.join("ctx/logs/important.log").is_file());
    let labels = result
        .image
        .config
        .config
        .labels
        .clone()
        .unwrap_or_default();
    assert_eq!(
        labels.get("org.example.team").map(String::as_str),
        Some("build")
    );
    let annotations = result
        .image
        .manifest
        .annotations()
        .clone()
        .unwrap_or_default();
    assert_eq!(
        annotations
            .get("org.opencontainers.image.base.name")
            .map(String::as_str),
        Some("docker.io/library/busybox:latest")
    );
}

/// Regression: the copy module copies directories of 512+ files on rayon's workers; the
/// mounted source root of `COPY --from` must be visible to them too.
#[test]
fn copy_from_a_stage_of_a_large_directory_sees_every_file() {
    // rayon's global pool, started here, lives in the test's own mount namespace.
    rayon::join(|| (), || ());
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let dockerfile = "FROM busybox AS many
RUN mkdir /many && cd /many && i=0; while [ $i -lt 700 ]; do echo $i > f$i; i=$((i+1)); done
FROM busybox
COPY --from=many /many /copied
";
    let result = build(&store, dockerfile, &ctx);
    let root = rootfs(&store, &result.image, dir.path());
    let count = std::fs::read_dir(root.join("copied")).unwrap().count();
    assert_eq!(count, 700);
    assert_eq!(
        std::fs::read_to_string(root.join("copied/f699")).unwrap(),
        "699\n"
    );
}

#[test]
fn the_runc_back_end_runs_steps_and_continued_lines_show_on_one() {
    let runc = std::path::Path::new(rbuild_core::exec::DEFAULT_RUNC);
    assert!(
        runc.is_file(),
        "this test needs runc at {} (Debian package runc), and it is missing",
        runc.display()
    );
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let (result, _) = build_with(
        &store,
        "FROM busybox\nRUN echo one \\\n    && echo two > /x\n",
        &ctx,
        |r| r.options.executor = rbuild_core::solver::ExecutorKind::Runc(runc.to_path_buf()),
    );
    let result = result.unwrap();
    assert_eq!(read(&store, &result.image, dir.path(), "/x"), "two\n");
    assert_eq!(
        result.steps.last().unwrap().name,
        "[2/2] RUN echo one && echo two > /x"
    );
}

#[test]
fn a_heredoc_with_a_shebang_runs_with_its_own_interpreter_and_leaves_no_file() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    // busybox's awk as the interpreter: not the shell.
    let dockerfile = "FROM busybox\nRUN <<EOF\n#!/bin/awk -f\nBEGIN { print \"from awk\" > \"/awk.txt\" }\nEOF\n";
    let result = build(&store, dockerfile, &ctx);
    assert_eq!(
        read(&store, &result.image, dir.path(), "/awk.txt"),
        "from awk\n"
    );
    let root = rootfs(&store, &result.image, dir.path());
    assert!(!root.join("dev").join("pipes-EOF").exists());
    let env = result.image.config.config.env.clone().unwrap_or_default();
    assert!(!env.iter().any(|e| e.starts_with("RBUILD_")), "{env:?}");
}

#[test]
fn a_missing_copy_source_names_the_line() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let (result, _) = build_with(
        &store,
        "FROM busybox\n\nCOPY nothere.txt /x\n",
        &ctx,
        |_| {},
    );
    let text = rbuild_core::error_chain::error_chain(&result.unwrap_err());
    assert!(
        text.starts_with("Dockerfile:3: failed to build [2/2] COPY nothere.txt /x: "),
        "{text}"
    );
    assert!(text.contains("nothere.txt"), "{text}");
}

#[test]
fn copy_heredocs_expand_variables_and_escapes_unless_their_delimiter_is_quoted() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let dockerfile = "FROM busybox
ARG WHO=world
ENV GREETING=hello
COPY <<EOF /expanded
$GREETING ${WHO} \"quoted\" 'single' \\$kept \\\\ \\
next
EOF
ADD <<EOF /added
\\$GREETING $GREETING
EOF
COPY <<'EOF' /literal
$GREETING ${WHO} \\$kept \\\\
EOF
";
    let result = build(&store, dockerfile, &ctx);
    // BuildKit's `ExpandRaw`: quotes stay, a backslash escapes the next character
    // (a newline included, which stays).
    assert_eq!(
        read(&store, &result.image, dir.path(), "/expanded"),
        "hello world \"quoted\" 'single' $kept \\ \nnext\n"
    );
    assert_eq!(
        read(&store, &result.image, dir.path(), "/added"),
        "$GREETING hello\n"
    );
    assert_eq!(
        read(&store, &result.image, dir.path(), "/literal"),
        "$GREETING ${WHO} \\$kept \\\\\n"
    );
}

#[test]
fn onbuild_of_a_stage_runs_in_the_stages_built_on_it() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let dockerfile = "FROM busybox AS base
ONBUILD RUN echo triggered > /trigger.txt
FROM base
RUN cat /trigger.txt > /seen.txt
ONBUILD RUN echo later
";
    let result = build(&store, dockerfile, &ctx);
    assert_eq!(
        read(&store, &result.image, dir.path(), "/seen.txt"),
        "triggered\n"
    );
    assert_eq!(
        result.image.config.config.on_build,
        Some(vec!["RUN echo later".to_owned()])
    );
}

/// An embedding program stops a build from another thread with the request's cancel
/// token: the running step is killed and the build ends `Canceled`; a closure serves as
/// the progress sink.
#[test]
fn the_request_cancel_token_stops_a_running_build() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let mut request = rbuild_core::BuildRequest::new(
        rbuild_core::DockerfileInput::Text {
            name: "Dockerfile".to_owned(),
            text: "FROM busybox\nRUN echo started && sleep 600\n".to_owned(),
        },
        rbuild_core::ContextSource::Directory(ctx),
    );
    request.options.no_cache = true;
    let cancel = request.options.cancel.clone();
    let started = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = started.clone();
    let progress = rbuild_core::progress::ProgressFn(move |event: &Event| {
        if let Event::StepLog { text, .. } = event {
            if text.contains("started") {
                seen.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    let builder = rbuild_core::Builder::new(store);
    let begun = std::time::Instant::now();
    let result = std::thread::scope(|s| {
        let running = s.spawn(|| builder.build(&request, &progress));
        while !started.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(begun.elapsed().as_secs() < 60, "the step never started");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        cancel.cancel();
        running.join().unwrap()
    });
    assert!(matches!(result, Err(BuildError::Canceled)), "{result:?}");
    assert!(begun.elapsed().as_secs() < 120, "the sleep was not killed");
}
