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

use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

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

/// Identifies one build in progress events, so that a consumer can tell builds apart
/// when several report to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BuildId(pub String);

impl fmt::Display for BuildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifies one step of a build in progress events. Numbers are chosen by the engine,
/// unique within a build; renderers show them as `#n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StepId(pub u32);

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Which output stream of a step's process a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// The process's standard output.
    Stdout,
    /// The process's standard error.
    Stderr,
}

/// What a finished step added to the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepOutput {
    /// The step changed the filesystem: this layer was written.
    Layer {
        /// The layer blob's digest, `sha256:<hex>`.
        digest: String,
        /// The layer blob's size in bytes.
        size: u64,
    },
    /// The step changed only the image configuration (ENV, CMD, ...) or nothing: the
    /// image history gets an `empty_layer` entry.
    EmptyLayer,
}

/// What a transfer moves a blob for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    /// From a registry into the store.
    Pull,
    /// From the store to a registry.
    Push,
    /// From the store into an export (`-o type=oci|docker|tar|local`, `save`).
    Export,
}

/// How a transfer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferOutcome {
    /// The bytes were moved.
    Done,
    /// The registry has the blob already: nothing was uploaded (docker's "Layer already
    /// exists").
    AlreadyExists,
    /// The registry linked the blob from another of its repositories (docker's "Mounted
    /// from").
    Mounted,
    /// The store has the blob already: nothing was downloaded (docker's "Already exists").
    Cached,
    /// The transfer failed; the operation reports why.
    Failed,
}

/// One thing that happened during a build. See the module documentation for the order in
/// which they come.
///
/// The serde form is an object with a `type` field naming the variant in snake case
/// (`"step_started"`) and the variant's fields beside it; durations are whole
/// milliseconds in fields ending in `_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The build began.
    BuildStarted {
        /// This build's identifier.
        build_id: BuildId,
        /// How many stages the build runs (after pruning unused stages).
        stages: u32,
        /// How many steps the build runs, counting steps that may turn out cached.
        steps: u32,
    },
    /// A step began (or began to be looked up in the cache).
    StepStarted {
        /// The step.
        step: StepId,
        /// The name of the stage the step belongs to, if the stage is named.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stage: Option<String>,
        /// The name shown for the step, `[2/6] RUN pip install -r requirements.txt`; see
        /// [`display_name`].
        name: String,
        /// The step's 1-based line in the Dockerfile, if it comes from one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        line: Option<u32>,
    },
    /// A step's process wrote a line of output.
    StepLog {
        /// The step.
        step: StepId,
        /// The stream the line came from.
        stream: Stream,
        /// The line, without its line ending; bytes that are not UTF-8 are replaced
        /// (see [`Event::log`]).
        text: String,
    },
    /// A step's result was found in the cache; the step did not run.
    StepCached {
        /// The step.
        step: StepId,
        /// The cache key that matched, `sha256:<hex>`.
        cache_key: String,
        /// What the cached result added to the image.
        output: StepOutput,
    },
    /// A step ran and succeeded.
    StepFinished {
        /// The step.
        step: StepId,
        /// How long the step ran.
        #[serde(rename = "duration_ms", with = "millis")]
        duration: Duration,
        /// What the step added to the image.
        output: StepOutput,
    },
    /// A step ran and failed; the build fails with it.
    StepFailed {
        /// The step.
        step: StepId,
        /// How long the step ran.
        #[serde(rename = "duration_ms", with = "millis")]
        duration: Duration,
        /// The exit code of the step's process, if a process ran and exited.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// What went wrong, lower case: `process "/bin/sh -c false" did not complete
        /// successfully: exit code: 1`.
        message: String,
    },
    /// Something in the build definition deserves attention but does not stop the build.
    Warning {
        /// The short name of the check that warns, `JSONArgsRecommended`, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
        /// The warning.
        message: String,
        /// The 1-based Dockerfile line the warning is about, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        line: Option<u32>,
    },
    /// The build succeeded.
    BuildFinished {
        /// The built image's ID: the digest of its configuration, `sha256:<hex>`.
        image_id: String,
        /// The names the image was stored or pushed under (`-t`), possibly none.
        names: Vec<String>,
        /// How long the build took.
        #[serde(rename = "duration_ms", with = "millis")]
        duration: Duration,
    },
    /// The build failed.
    BuildFailed {
        /// Why, lower case: `failed to solve: ...`.
        message: String,
        /// How long the build ran before failing.
        #[serde(rename = "duration_ms", with = "millis")]
        duration: Duration,
    },
    /// A blob began to move (see "Transfers" in the module documentation).
    TransferStarted {
        /// The build step the transfer belongs to, within a build.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<StepId>,
        /// What the blob moves for.
        kind: TransferKind,
        /// The image reference pulled or pushed, or the export's destination.
        target: String,
        /// The blob's digest, `sha256:<hex>`.
        digest: String,
        /// The blob's size in bytes, if known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total: Option<u64>,
    },
    /// Bytes of a blob moved: `current` of `total` so far, never fewer than the last
    /// event of this transfer said.
    TransferProgress {
        /// The build step the transfer belongs to, within a build.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<StepId>,
        /// What the blob moves for.
        kind: TransferKind,
        /// The image reference pulled or pushed, or the export's destination.
        target: String,
        /// The blob's digest, `sha256:<hex>`.
        digest: String,
        /// Bytes moved so far.
        current: u64,
        /// The blob's size in bytes, if known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total: Option<u64>,
    },
    /// A transfer ended.
    TransferFinished {
        /// The build step the transfer belongs to, within a build.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<StepId>,
        /// What the blob moved for.
        kind: TransferKind,
        /// The image reference pulled or pushed, or the export's destination.
        target: String,
        /// The blob's digest, `sha256:<hex>`.
        digest: String,
        /// The blob's size in bytes (for a failed transfer: the bytes moved).
        size: u64,
        /// How it ended.
        outcome: TransferOutcome,
        /// How long it took.
        #[serde(rename = "duration_ms", with = "millis")]
        duration: Duration,
    },
}

impl Event {
    /// A [`Event::StepLog`] for one line of raw process output: bytes that are not
    /// UTF-8 are replaced with U+FFFD, and a trailing `\n` or `\r\n` is dropped.
    pub fn log(step: StepId, stream: Stream, line: &[u8]) -> Self {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        Event::StepLog {
            step,
            stream,
            text: String::from_utf8_lossy(line).into_owned(),
        }
    }

    /// The step this event is about, if it is about one.
    pub fn step(&self) -> Option<StepId> {
        match self {
            Event::StepStarted { step, .. }
            | Event::StepLog { step, .. }
            | Event::StepCached { step, .. }
            | Event::StepFinished { step, .. }
            | Event::StepFailed { step, .. } => Some(*step),
            Event::TransferStarted { step, .. }
            | Event::TransferProgress { step, .. }
            | Event::TransferFinished { step, .. } => *step,
            Event::BuildStarted { .. }
            | Event::Warning { .. }
            | Event::BuildFinished { .. }
            | Event::BuildFailed { .. } => None,
        }
    }
}

/// A sink that files the transfer events it receives under a build step, and passes every
/// event on to `inner`.
pub(crate) struct InStep<'a> {
    pub step: StepId,
    pub inner: &'a dyn Progress,
}

impl Progress for InStep<'_> {
    fn event(&self, event: &Event) {
        let mut event = event.clone();
        if let Event::TransferStarted { step, .. }
        | Event::TransferProgress { step, .. }
        | Event::TransferFinished { step, .. } = &mut event
        {
            *step = Some(self.step);
        }
        self.inner.event(&event);
    }
}

/// The shortest time between two [`Event::TransferProgress`] events of one transfer.
pub(crate) const TRANSFER_INTERVAL: Duration = Duration::from_millis(250);

/// One blob being moved: sends its transfer events to a sink, progress throttled to one
/// event per [`TRANSFER_INTERVAL`]. A transfer dropped before [`Transfer::finish`]
/// finishes as [`TransferOutcome::Failed`], so every error path ends it.
pub(crate) struct Transfer<'a> {
    progress: &'a dyn Progress,
    kind: TransferKind,
    target: String,
    digest: String,
    total: Option<u64>,
    started: Instant,
    state: Mutex<TransferState>,
}

#[derive(Default)]
struct TransferState {
    /// Bytes moved by the current attempt.
    current: u64,
    /// The most bytes ever reported (a retry starts again from zero; reports never go back).
    reported: u64,
    /// When progress was last reported.
    last: Option<Instant>,
    finished: bool,
}

impl<'a> Transfer<'a> {
    /// Starts a transfer of blob `digest` (of `total` bytes if known) for `target`.
    pub(crate) fn start(
        progress: &'a dyn Progress,
        kind: TransferKind,
        target: &str,
        digest: &str,
        total: Option<u64>,
    ) -> Self {
        progress.event(&Event::TransferStarted {
            step: None,
            kind,
            target: target.to_owned(),
            digest: digest.to_owned(),
            total,
        });
        Transfer {
            progress,
            kind,
            target: target.to_owned(),
            digest: digest.to_owned(),
            total,
            started: Instant::now(),
            state: Mutex::new(TransferState::default()),
        }
    }

    /// A blob that needed no moving: started and finished as `outcome` at once.
    pub(crate) fn skip(
        progress: &'a dyn Progress,
        kind: TransferKind,
        target: &str,
        digest: &str,
        size: u64,
        outcome: TransferOutcome,
    ) {
        Transfer::start(progress, kind, target, digest, Some(size)).end(outcome, size);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TransferState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn report(&self, current: u64) {
        self.progress.event(&Event::TransferProgress {
            step: None,
            kind: self.kind,
            target: self.target.clone(),
            digest: self.digest.clone(),
            current,
            total: self.total,
        });
    }

    /// `n` more bytes moved. Reports never pass the blob's known size: a server that
    /// sends more than the descriptor says fails the transfer, and its extra bytes are
    /// not progress.
    pub(crate) fn advance(&self, n: u64) {
        let due = {
            let mut state = self.lock();
            state.current = state.current.saturating_add(n);
            let shown = self.total.map_or(state.current, |t| state.current.min(t));
            let now = Instant::now();
            let due = shown > state.reported
                && state
                    .last
                    .is_none_or(|last| now.duration_since(last) >= TRANSFER_INTERVAL);
            if due {
                state.reported = shown;
                state.last = Some(now);
            }
            due.then_some(shown)
        };
        if let Some(current) = due {
            self.report(current);
        }
    }

    /// `current` bytes moved by the current attempt so far (for a caller that counts
    /// them itself); reported as [`Transfer::advance`] reports.
    pub(crate) fn set_current(&self, current: u64) {
        let moved = {
            let mut state = self.lock();
            let moved = current.saturating_sub(state.current);
            state.current = current.min(state.current);
            moved
        };
        self.advance(moved);
    }

    /// A new attempt begins: bytes count from zero again (reports wait until they pass
    /// what was reported before).
    pub(crate) fn restart(&self) {
        self.lock().current = 0;
    }

    /// The blob moved whole: a last progress event with its size, then the end.
    pub(crate) fn finish(self, size: u64) {
        let unreported = {
            let mut state = self.lock();
            let unreported = state.reported < size;
            state.reported = state.reported.max(size);
            unreported
        };
        if unreported {
            self.report(size);
        }
        self.end(TransferOutcome::Done, size);
    }

    /// Sends the transfer's one [`Event::TransferFinished`] (later calls, and the drop
    /// after it, send nothing).
    fn end(&self, outcome: TransferOutcome, size: u64) {
        {
            let mut state = self.lock();
            if state.finished {
                return;
            }
            state.finished = true;
        }
        self.progress.event(&Event::TransferFinished {
            step: None,
            kind: self.kind,
            target: self.target.clone(),
            digest: self.digest.clone(),
            size,
            outcome,
            duration: self.started.elapsed(),
        });
    }
}

impl Drop for Transfer<'_> {
    fn drop(&mut self) {
        let moved = self.lock().reported;
        self.end(TransferOutcome::Failed, moved);
    }
}

/// A reader that reports the bytes read through it to a [`Transfer`].
pub(crate) struct Counted<'t, 'a, R> {
    pub inner: R,
    pub transfer: &'t Transfer<'a>,
}

impl<R: std::io::Read> std::io::Read for Counted<'_, '_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.transfer.advance(n as u64);
        Ok(n)
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

/// Serde for durations as whole milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialize_with_a_type_tag_and_millisecond_durations() {
        let event = Event::StepFinished {
            step: StepId(5),
            duration: Duration::from_millis(2104),
            output: StepOutput::Layer {
                digest: "sha256:ab".into(),
                size: 42,
            },
        };
        let json = serde_json::to_string(&event).expect("serializing an event");
        assert_eq!(
            json,
            r#"{"type":"step_finished","step":5,"duration_ms":2104,"output":{"kind":"layer","digest":"sha256:ab","size":42}}"#
        );
        let back: Event = serde_json::from_str(&json).expect("parsing an event");
        assert_eq!(back, event);
    }

    #[test]
    fn optional_fields_are_left_out_when_absent() {
        let event = Event::StepStarted {
            step: StepId(1),
            stage: None,
            name: "[internal] load build definition from Dockerfile".into(),
            line: None,
        };
        let json = serde_json::to_string(&event).expect("serializing an event");
        assert_eq!(
            json,
            r#"{"type":"step_started","step":1,"name":"[internal] load build definition from Dockerfile"}"#
        );
    }

    #[test]
    fn log_lines_are_lossy_text_without_line_endings() {
        let event = Event::log(StepId(2), Stream::Stderr, b"caf\xe9 ok\r\n");
        assert_eq!(
            event,
            Event::StepLog {
                step: StepId(2),
                stream: Stream::Stderr,
                text: "caf\u{fffd} ok".into(),
            }
        );
    }

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
    fn transfers_report_throttled_growing_bytes_and_always_the_last() {
        let sink = Collect::new();
        let transfer = Transfer::start(&sink, TransferKind::Pull, "r/a:1", "sha256:ab", Some(300));
        for _ in 0..100 {
            transfer.advance(2);
        }
        // A retry counts from zero again; reports never go back.
        transfer.restart();
        transfer.advance(50);
        transfer.finish(300);
        let events = sink.take();
        let bytes: Vec<u64> = events
            .iter()
            .filter_map(|e| match e {
                Event::TransferProgress { current, .. } => Some(*current),
                _ => None,
            })
            .collect();
        // The first read is reported at once, the next ones wait for the interval: a
        // loop this fast gets no other, and the end brings the size.
        assert_eq!(bytes, [2, 300], "{events:?}");
        assert!(matches!(
            events.first(),
            Some(Event::TransferStarted { .. })
        ));
        assert!(matches!(
            events.last(),
            Some(Event::TransferFinished {
                size: 300,
                outcome: TransferOutcome::Done,
                ..
            })
        ));
    }

    #[test]
    fn a_transfer_dropped_on_an_error_path_finishes_as_failed_once() {
        let sink = Collect::new();
        {
            let transfer = Transfer::start(&sink, TransferKind::Push, "r/a:1", "sha256:ab", None);
            transfer.advance(7);
        }
        let events = sink.take();
        assert_eq!(events.len(), 3, "{events:?}");
        assert!(matches!(
            events[2],
            Event::TransferFinished {
                size: 7,
                outcome: TransferOutcome::Failed,
                ..
            }
        ));
    }

    #[test]
    fn transfers_within_a_step_name_it_and_other_events_pass_unchanged() {
        let sink = Collect::new();
        let step = InStep {
            step: StepId(4),
            inner: &sink,
        };
        Transfer::skip(
            &step,
            TransferKind::Pull,
            "r/a:1",
            "sha256:ab",
            9,
            TransferOutcome::Cached,
        );
        step.event(&Event::log(StepId(2), Stream::Stdout, b"x"));
        let steps: Vec<_> = sink.events().iter().filter_map(Event::step).collect();
        assert_eq!(steps, [StepId(4), StepId(4), StepId(2)]);
        let mut json = serde_json::to_value(&sink.events()[1]).expect("serializing an event");
        assert!(json["duration_ms"].is_u64(), "{json}");
        json["duration_ms"] = 0.into();
        assert_eq!(
            json.to_string(),
            r#"{"digest":"sha256:ab","duration_ms":0,"kind":"pull","outcome":"cached","size":9,"step":4,"target":"r/a:1","type":"transfer_finished"}"#
        );
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
}
