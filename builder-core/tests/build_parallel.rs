//! The solver runs independent stages at once (bounded by `jobs`) and cancels the
//! others when one fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use rbuild_core::{BuildError, Event, progress::StepId};
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
