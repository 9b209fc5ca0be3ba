//! Build progress: the events a build emits and the sink that receives them.
//!
//! The engine knows nothing of terminals. While it builds, it calls
//! [`Progress::event`] on a caller-supplied sink with an [`Event`] for each thing that
//! happens: the build starts, a step starts, a step writes a line of output, a step is
//! found in the cache, finishes or fails, the front end warns, the build ends. The `rbuild`
//! binary renders these events (plain lines, a live terminal view, or JSON lines); an
//! embedding program may collect them ([`Collect`]), forward them, or drop them
//! ([`NullProgress`]).
//!
//! # Ordering contract
//!
//! A build sends exactly one [`Event::BuildStarted`] first and exactly one
//! [`Event::BuildFinished`] or [`Event::BuildFailed`] last. Every step is announced by
//! one [`Event::StepStarted`] before any other event names it, may then send any number of
//! [`Event::StepLog`] lines, and ends with exactly one of [`Event::StepCached`],
//! [`Event::StepFinished`] or [`Event::StepFailed`], unless the build ends first: a step
//! still running when the build ends (because another step failed) was canceled. Steps
//! may run concurrently, so the events of different steps interleave. [`Event::Warning`]
//! may come at any time.
//!
//! # Transfers
//!
//! Pulls, pushes and exports move blobs; each blob moved is a *transfer*, named by what
//! it is for ([`TransferKind`]), its target (the image reference pulled or pushed, or the
//! export's destination) and the blob's digest. A transfer sends one
//! [`Event::TransferStarted`], then [`Event::TransferProgress`] events as bytes move (at
//! most a few a second, always one with the final count), then exactly one
//! [`Event::TransferFinished`] saying how it ended ([`TransferOutcome`]): a transfer that
//! failed finishes too. A blob that needed no moving (already in the store, already in the
//! registry, mounted from another repository) starts and finishes with no progress between.
//! Transfers of one operation run in parallel, so their events interleave.
//!
//! [`pull`](crate::registry::pull), [`push`](crate::registry::push), [`export`](crate::export::export) and
//! [`save_images`](crate::export::save_images) send transfer events to the sink they are given
//! and nothing else. Within a build they belong to a step (their `step` field names it):
//! the base image's pull to `[internal] load metadata for NAME`, exports and pushes to
//! `exporting to ...`, so a build's transfers come between its `BuildStarted` and its last
//! event like any step's.
//!
//! Events carry no timestamps: the sink knows the time it receives them, and durations
//! measured by the engine (a step's run time, the build's total) travel in the events.
//!
//! ```
//! use std::time::Duration;
//! use rbuild_core::{Event, Progress, progress::{Collect, StepId, StepOutput, Stream, display_name}};
//!
//! let sink = Collect::new();
//! let step = StepId(1);
//! sink.event(&Event::StepStarted {
//!     step,
//!     stage: None,
//!     name: display_name(None, 2, 2, "RUN echo hello"),
//!     line: Some(2),
//!     emulated: None,
//! });
//! sink.event(&Event::log(step, Stream::Stdout, b"hello\n"));
//! sink.event(&Event::StepFinished {
//!     step,
//!     duration: Duration::from_millis(12),
//!     output: StepOutput::EmptyLayer,
//! });
//! let json = serde_json::to_string(&sink.events()[1])?;
//! assert_eq!(json, r#"{"type":"step_log","step":1,"stream":"stdout","text":"hello"}"#);
//! # Ok::<(), serde_json::Error>(())
//! ```

mod event;
mod transfer;

use std::sync::{Mutex, PoisonError};

pub use self::event::{BuildId, Event, StepId, StepOutput, Stream, TransferKind, TransferOutcome};
pub(crate) use self::transfer::{Counted, InStep, TRANSFER_INTERVAL, Transfer};

/// A receiver of build progress events.
///
/// Implementations must be cheap and must not block for long: the engine calls
/// [`Progress::event`] from the threads that run steps.
pub trait Progress: Send + Sync {
    /// Receives one event. A sink cannot fail the build: a sink that cannot deliver an
    /// event (a closed terminal, say) drops it.
    fn event(&self, event: &Event);
}

/// A closure is a sink: `builder.build(&request, &|e: &Event| eprintln!("{e:?}"))`.
///
/// References to sinks (`&dyn Progress`) are passed as they are, so this is the one
/// blanket implementation: a `Box<dyn Progress>` or `Arc<dyn Progress>` is passed as
/// `&*sink`.
impl<F: Fn(&Event) + Send + Sync> Progress for F {
    fn event(&self, event: &Event) {
        self(event);
    }
}

/// A closure wrapped as a sink, for code written before closures were sinks
/// themselves: `ProgressFn(f)` and `f` behave alike.
#[derive(Debug, Clone, Copy)]
pub struct ProgressFn<F>(pub F);

impl<F: Fn(&Event) + Send + Sync> Progress for ProgressFn<F> {
    fn event(&self, event: &Event) {
        (self.0)(event);
    }
}

/// A sink that drops every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NullProgress;

impl Progress for NullProgress {
    fn event(&self, _event: &Event) {}
}

/// A sink that records every event in order, for tests and for embedding programs that
/// inspect a build after the fact.
#[derive(Debug, Default)]
pub struct Collect {
    events: Mutex<Vec<Event>>,
}

impl Collect {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy of the events received so far, in the order received.
    pub fn events(&self) -> Vec<Event> {
        self.lock().clone()
    }

    /// Removes and returns the events received so far.
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Event>> {
        // A panic while pushing cannot leave the vector half-written, so a poisoned
        // lock still guards a valid list.
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Progress for Collect {
    fn event(&self, event: &Event) {
        self.lock().push(event.clone());
    }
}

/// The name BuildKit shows for a Dockerfile step: `[2/6] RUN ...` for a step of an unnamed
/// stage, `[builder 2/6] RUN ...` for a step of the stage named `builder`. `position` is
/// the step's 1-based position among `count` steps of its stage, the `FROM` included.
pub fn display_name(stage: Option<&str>, position: u32, count: u32, instruction: &str) -> String {
    // A URL's user name and password are never shown (issue 13).
    let instruction = crate::redact::redact_urls(instruction);
    match stage {
        Some(stage) => format!("[{stage} {position}/{count}] {instruction}"),
        None => format!("[{position}/{count}] {instruction}"),
    }
}

/// The name BuildKit shows for a Dockerfile step in a build of several platforms: the
/// [`display_name`] with `platform` first in its brackets, `[linux/arm64 2/6] RUN ...`,
/// `[linux/amd64->arm64 builder 2/6] RUN ...`.
pub fn platform_display_name(
    platform: &str,
    stage: Option<&str>,
    position: u32,
    count: u32,
    instruction: &str,
) -> String {
    let name = display_name(stage, position, count, instruction);
    match name.strip_prefix('[') {
        Some(rest) => format!("[{platform} {rest}"),
        None => name,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn collect_records_in_order_and_take_empties_it() {
        let collect = Collect::new();
        let sink: &dyn Progress = &collect;
        for n in 1..=3 {
            sink.event(&Event::log(StepId(n), Stream::Stdout, b"x"));
        }
        let steps: Vec<_> = collect.events().iter().filter_map(Event::step).collect();
        assert_eq!(steps, [StepId(1), StepId(2), StepId(3)]);
        assert_eq!(collect.take().len(), 3);
        assert!(collect.events().is_empty());
    }

    #[test]
    fn collect_is_shareable_across_threads() {
        let collect = Arc::new(Collect::new());
        std::thread::scope(|s| {
            for n in 0..4 {
                let sink = Arc::clone(&collect);
                s.spawn(move || sink.event(&Event::log(StepId(n), Stream::Stdout, b"x")));
            }
        });
        assert_eq!(collect.events().len(), 4);
    }

    #[test]
    fn display_names_follow_buildkit() {
        assert_eq!(
            display_name(None, 2, 6, "RUN pip install"),
            "[2/6] RUN pip install"
        );
        assert_eq!(
            display_name(Some("builder"), 1, 3, "FROM golang"),
            "[builder 1/3] FROM golang"
        );
        assert_eq!(StepId(7).to_string(), "#7");
    }

    #[test]
    fn platform_display_names_put_the_platform_first_in_the_brackets() {
        assert_eq!(
            platform_display_name("linux/arm64", None, 2, 3, "RUN uname -m"),
            "[linux/arm64 2/3] RUN uname -m"
        );
        assert_eq!(
            platform_display_name("linux/amd64->arm64", Some("build"), 1, 2, "FROM busybox"),
            "[linux/amd64->arm64 build 1/2] FROM busybox"
        );
    }
}
