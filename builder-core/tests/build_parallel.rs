//! The solver runs independent stages at once (bounded by `jobs`) and cancels the
//! others when one fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rbuild_core::{BuildError, Event, StepId};
use support::build::{build_with, busybox_store, context};

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
            r.jobs = jobs;
            r.no_cache = true;
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
    let (result, events) = build_with(&store, dockerfile, &ctx, |r| r.jobs = 2);
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
        r.jobs = 1;
        r.no_cache = true;
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
