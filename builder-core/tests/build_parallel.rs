//! The solver runs independent stages at once (bounded by `jobs`), starts each step when
//! the stages it reads have ended (not when a whole level has), and cancels the others
//! when one fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rbuild_core::{BuildError, Event, progress::StepId};
use support::build::{build_with, busybox_store, context, read};

const TWO_STAGES: &str = "FROM busybox AS left
RUN sleep 1 && echo left > /left
FROM busybox AS right
RUN sleep 1 && echo right > /right
FROM busybox
COPY --from=left /left /left
COPY --from=right /right /right
";

/// The step ids of `events` named like `needle`.
fn step_of(events: &[Event], needle: &str) -> StepId {
    events
        .iter()
        .find_map(|e| match e {
            Event::StepStarted { step, name, .. } if name.contains(needle) => Some(*step),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no step named like {needle}: {events:?}"))
}

fn position(events: &[Event], wanted: impl Fn(&Event) -> bool) -> usize {
    events
        .iter()
        .position(wanted)
        .unwrap_or_else(|| panic!("event not found in {events:?}"))
}

#[test]
fn independent_stages_run_at_the_same_time_with_two_jobs_and_one_after_another_with_one() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    for (jobs, overlap) in [(2, true), (1, false)] {
        let (result, events) = build_with(&store, TWO_STAGES, &ctx, |r| {
            r.options.jobs = jobs;
            r.options.no_cache = true;
        });
        result.unwrap();
        let events = events.events();
        let left = step_of(&events, "[left 2/2] RUN");
        let right = step_of(&events, "[right 2/2] RUN");
        let first_done = position(
            &events,
            |e| matches!(e, Event::StepFinished { step, .. } if *step == left || *step == right),
        );
        let both_started = [left, right].iter().all(|id| {
            events[..first_done]
                .iter()
                .any(|e| matches!(e, Event::StepStarted { step, .. } if step == id))
        });
        assert_eq!(both_started, overlap, "jobs={jobs}: {events:#?}");
    }
}

#[test]
fn the_first_failure_cancels_the_other_stages_and_is_the_error() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let dockerfile = "FROM busybox AS slow
RUN sleep 600
FROM busybox AS broken
RUN echo broken && exit 7
FROM busybox
COPY --from=slow /etc/hostname /a
COPY --from=broken /etc/hostname /b
";
    let (result, events) = build_with(&store, dockerfile, &ctx, |r| r.options.jobs = 2);
    let err = result.unwrap_err();
    assert!(
        matches!(&err, BuildError::StepFailed { location, .. } if location == "Dockerfile:4"),
        "{err}"
    );
    let events = events.events();
    let slow = step_of(&events, "[slow 2/2] RUN sleep 600");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::StepFinished { step, .. } if *step == slow)),
        "the slow step was not cut short: {events:#?}"
    );
    assert!(matches!(events.last(), Some(Event::BuildFailed { .. })));
}

/// The position of the first event that `wanted` matches, if any.
fn find(events: &[Event], wanted: impl Fn(&Event) -> bool) -> Option<usize> {
    events.iter().position(wanted)
}

fn started(events: &[Event], id: StepId) -> usize {
    position(
        events,
        |e| matches!(e, Event::StepStarted { step, .. } if *step == id),
    )
}

fn finished(events: &[Event], id: StepId) -> usize {
    position(
        events,
        |e| matches!(e, Event::StepFinished { step, .. } if *step == id),
    )
}

#[test]
fn a_stage_runs_its_first_steps_while_the_stage_it_copies_from_builds() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let dockerfile = "FROM busybox AS build
RUN sleep 1 && echo built > /out
FROM busybox AS runtime
RUN echo prefix > /prefix
COPY --from=build /out /out
";
    for jobs in [2, 1] {
        let (result, events) = build_with(&store, dockerfile, &ctx, |r| {
            r.options.jobs = jobs;
            r.options.no_cache = true;
        });
        result.unwrap();
        let events = events.events();
        let built = finished(&events, step_of(&events, "[build 2/2] RUN"));
        let prefix = started(&events, step_of(&events, "[runtime 2/3] RUN"));
        let copy = started(&events, step_of(&events, "[runtime 3/3] COPY --from=build"));
        assert!(
            copy > built,
            "jobs={jobs}: the copy began before its source ended: {events:#?}"
        );
        // With two jobs the runtime stage does not wait for the build stage to begin;
        // with one, the stages run one after another as their levels say.
        assert_eq!(prefix < built, jobs == 2, "jobs={jobs}: {events:#?}");
    }
}

#[test]
fn a_stage_from_another_stage_starts_when_it_ends() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    // `child` is a level below `slow`, but waits only for `build`.
    let dockerfile = "FROM busybox AS slow
RUN sleep 2 && echo slow > /slow
FROM busybox AS build
RUN echo built > /built
FROM build AS child
RUN echo child > /child
FROM busybox
COPY --from=slow /slow /slow
COPY --from=child /child /child
";
    let (result, events) = build_with(&store, dockerfile, &ctx, |r| {
        r.options.jobs = 2;
        r.options.no_cache = true;
    });
    result.unwrap();
    let events = events.events();
    let child = started(&events, step_of(&events, "[child 1/1] RUN"));
    let built = finished(&events, step_of(&events, "[build 2/2] RUN"));
    let slow = finished(&events, step_of(&events, "[slow 2/2] RUN"));
    assert!(
        child > built,
        "the child began before its base ended: {events:#?}"
    );
    assert!(
        child < slow,
        "the child waited for an unrelated stage: {events:#?}"
    );
}

#[test]
fn a_stage_waiting_for_a_failed_stage_never_starts_its_copy() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let dockerfile = "FROM busybox AS broken
RUN sleep 1 && exit 3
FROM busybox AS waiting
RUN echo first > /first
COPY --from=broken /etc/hostname /copied
RUN echo never
";
    let (result, events) = build_with(&store, dockerfile, &ctx, |r| {
        r.options.jobs = 2;
        r.options.no_cache = true;
    });
    let err = result.unwrap_err();
    assert!(
        matches!(&err, BuildError::StepFailed { location, exit_code: Some(3), .. } if location == "Dockerfile:2"),
        "{err:?}"
    );
    let events = events.events();
    // The waiting stage ran what it could while the broken one built.
    step_of(&events, "[waiting 2/4] RUN echo first");
    assert_eq!(
        find(
            &events,
            |e| matches!(e, Event::StepStarted { name, .. } if name.contains("COPY --from=broken") || name.contains("echo never"))
        ),
        None,
        "a step after the failed input started: {events:#?}"
    );
    assert!(matches!(events.last(), Some(Event::BuildFailed { .. })));
}

#[test]
fn many_stages_in_a_chain_and_a_fan_in_finish_with_two_jobs() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    // Ten stages each built on the one before, nine copying from the chain (the last
    // links first, so that they wait long), and one copying from all of them.
    let mut dockerfile = "FROM busybox AS s0\nRUN echo 0 > /s0\n".to_owned();
    for i in 1..10 {
        dockerfile.push_str(&format!("FROM s{} AS s{i}\nRUN echo {i} > /s{i}\n", i - 1));
    }
    for k in 0..9 {
        dockerfile.push_str(&format!(
            "FROM busybox AS c{k}\nRUN echo c{k} > /c{k}\nCOPY --from=s{} /s{} /c{k}-from\n",
            9 - k,
            9 - k
        ));
    }
    dockerfile.push_str("FROM busybox\nCOPY --from=s9 /s9 /s9\n");
    for k in 0..9 {
        dockerfile.push_str(&format!("COPY --from=c{k} /c{k}-from /c{k}\n"));
    }
    // Cold, then with every step cached (stages end at once, in quick succession).
    for no_cache in [true, false] {
        let (result, events) = build_with(&store, &dockerfile, &ctx, |r| {
            r.options.jobs = 2;
            r.options.no_cache = no_cache;
        });
        let result = result.unwrap();
        assert_eq!(result.steps.len(), 10 + 9 * 2 + 10, "{:#?}", result.steps);
        let events = events.events();
        for e in &events {
            if let Event::StepStarted { step, name, .. } = e {
                let ends = events
                    .iter()
                    .filter(|e| {
                        matches!(e, Event::StepFinished { step: s, .. } | Event::StepCached { step: s, .. } if s == step)
                    })
                    .count();
                assert_eq!(ends, 1, "{name} ({step}) ended {ends} times");
            }
        }
    }
}

/// Five stages: two at the first level, two built on one of them (one also copying from
/// the other), and a join that copies from both and mounts one.
const FIVE_STAGES: &str = r#"FROM busybox AS tools
RUN echo tools > /tools
FROM busybox AS base
WORKDIR /work
RUN echo base > base.txt && echo made base
FROM base AS left
RUN echo left > left.txt
FROM base AS right
COPY --from=tools /tools /tools
RUN echo right > right.txt && echo made right
FROM busybox AS final
ENV LAYER=final
COPY --from=left /work/left.txt /left.txt
RUN --mount=from=right,target=/r cat /r/work/right.txt > /right.txt
COPY hello.txt /hello.txt
CMD ["cat", "/left.txt"]
"#;

/// The events of a build as lines: what happened and to which step, without times,
/// keys or digests.
fn sequence(events: &[Event]) -> String {
    let mut lines = String::new();
    for event in events {
        let line = match event {
            Event::BuildStarted { stages, steps, .. } => {
                format!("build_started stages={stages} steps={steps}")
            }
            Event::StepStarted { step, name, .. } => format!("step_started {step} {name}"),
            Event::StepLog { step, text, .. } => format!("step_log {step} {text}"),
            Event::StepCached { step, .. } => format!("step_cached {step}"),
            Event::StepFinished { step, .. } => format!("step_finished {step}"),
            Event::StepFailed { step, .. } => format!("step_failed {step}"),
            Event::Warning { message, .. } => format!("warning {message}"),
            Event::BuildFinished { .. } => "build_finished".to_owned(),
            Event::BuildFailed { message, .. } => format!("build_failed {message}"),
            other => format!("{other:?}"),
        };
        lines.push_str(&line);
        lines.push('\n');
    }
    lines
}

/// With one job, the stages run one after another in the order of their levels, and
/// the events (step numbers included) are those recorded in
/// `golden/parallel_jobs1_events.txt` before the solver scheduled by step dependencies.
/// Regenerate (only for an intended change of the order):
/// `RBUILD_BLESS_GOLDEN=1 cargo test -p rbuild-core --test build_parallel with_one_job`.
#[test]
fn with_one_job_the_events_are_those_of_the_level_order() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[("hello.txt", "hello\n")]);
    let (result, events) = build_with(&store, FIVE_STAGES, &ctx, |r| {
        r.options.jobs = 1;
        r.options.no_cache = true;
    });
    result.unwrap();
    let computed = sequence(&events.events());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/parallel_jobs1_events.txt");
    if std::env::var_os("RBUILD_BLESS_GOLDEN").is_some() {
        std::fs::write(&path, &computed).unwrap();
        return;
    }
    let golden = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert_eq!(computed, golden, "the jobs=1 event sequence changed");
}

/// An ONBUILD trigger of the base image may read a stage of the Dockerfile that nothing
/// else reaches (BuildKit >= 0.17 allows `COPY --from` and `RUN --mount=from` in
/// triggers): that stage is built, its base image resolved like any other, and the
/// trigger's steps wait for it.
#[test]
fn a_stage_only_an_onbuild_trigger_reads_is_resolved_built_and_waited_for() {
    let (dir, store) = busybox_store();
    let ctx = context(dir.path(), &[]);
    let (base, _) = build_with(
        &store,
        "FROM busybox\nONBUILD COPY --from=data /data /copied\n\
         ONBUILD RUN --mount=from=data,target=/m cat /m/data > /mounted\n",
        &ctx,
        |r| r.options.tags = vec!["onbuild-from:latest".parse().unwrap()],
    );
    base.unwrap();
    let dockerfile = "FROM busybox AS data
RUN sleep 0.5 && echo data > /data
FROM onbuild-from
RUN cat /copied /mounted > /both
";
    for jobs in [1, 2] {
        let (result, _) = build_with(&store, dockerfile, &ctx, |r| {
            r.options.jobs = jobs;
            r.options.no_cache = true;
        });
        let result = result.unwrap_or_else(|e| panic!("jobs={jobs}: {e}"));
        assert_eq!(
            read(&store, &result.image, dir.path(), "/both"),
            "data\ndata\n",
            "jobs={jobs}"
        );
    }
}
