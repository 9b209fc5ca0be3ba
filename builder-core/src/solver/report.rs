//! What a build tells its [`Progress`] sink about itself: its start and end, the numbers
//! of its steps, and the steps it runs outside any stage (pulls, exports, pushes).
//!
//! A leaf of the solver: every phase reports through one [`Reporter`], and it imports
//! nothing from them.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::progress::{BuildId, Event, InStep, Progress, StepId, StepOutput};

/// The progress side of one build: the caller's sink, the step counter and the clock.
pub(crate) struct Reporter<'p> {
    progress: &'p dyn Progress,
    next_step: AtomicU32,
    started: Instant,
    /// Whether `BuildStarted` was sent.
    announced: AtomicBool,
}

impl<'p> Reporter<'p> {
    /// A reporter to `progress`, its clock started now.
    pub(crate) fn new(progress: &'p dyn Progress) -> Self {
        Reporter {
            progress,
            next_step: AtomicU32::new(1),
            started: Instant::now(),
            announced: AtomicBool::new(false),
        }
    }

    /// The caller's sink.
    pub(crate) fn progress(&self) -> &'p dyn Progress {
        self.progress
    }

    /// Sends `event` to the caller's sink.
    pub(crate) fn event(&self, event: &Event) {
        self.progress.event(event);
    }

    /// How long the build has run.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The number of the next step that starts.
    pub(crate) fn next_id(&self) -> StepId {
        StepId(self.next_step.fetch_add(1, Ordering::SeqCst))
    }

    /// `BuildStarted` with the counts progress shows.
    pub(crate) fn build_started(&self, stages: usize, steps: usize) {
        self.progress.event(&Event::BuildStarted {
            build_id: build_id(),
            stages: u32::try_from(stages).unwrap_or(u32::MAX),
            steps: u32::try_from(steps).unwrap_or(u32::MAX),
        });
        self.announced.store(true, Ordering::SeqCst);
    }

    /// `BuildFailed` with `message` (after a `BuildStarted` with no stages if the build
    /// failed before it started, so that the ordering contract holds).
    pub(crate) fn build_failed(&self, message: String) {
        if !self.announced.load(Ordering::SeqCst) {
            self.build_started(0, 0);
        }
        self.progress.event(&Event::BuildFailed {
            message,
            duration: self.elapsed(),
        });
    }

    /// `BuildFinished`; returns the build's duration.
    pub(crate) fn build_finished(&self, image_id: String, names: Vec<String>) -> Duration {
        let duration = self.elapsed();
        self.progress.event(&Event::BuildFinished {
            image_id,
            names,
            duration,
        });
        duration
    }

    /// Runs `work` as a build step of its own named `name` (an `[internal]` or exporting
    /// step, outside any stage): started, then finished or failed with `work`'s result.
    /// The transfer events `work` sends to the sink it is given are filed under the step.
    pub(crate) fn in_step<T, E: std::error::Error>(
        &self,
        name: &str,
        work: impl FnOnce(&dyn Progress) -> Result<T, E>,
    ) -> Result<T, E> {
        let progress = self.progress;
        let step = self.next_id();
        progress.event(&Event::StepStarted {
            step,
            stage: None,
            name: name.to_owned(),
            line: None,
        });
        let started = Instant::now();
        let sink = InStep {
            step,
            inner: progress,
        };
        let result = work(&sink);
        match &result {
            Ok(_) => progress.event(&Event::StepFinished {
                step,
                duration: started.elapsed(),
                output: StepOutput::EmptyLayer,
            }),
            Err(e) => progress.event(&Event::StepFailed {
                step,
                duration: started.elapsed(),
                exit_code: None,
                message: crate::error_chain::error_chain(e),
            }),
        }
        result
    }
}

fn build_id() -> BuildId {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    BuildId(
        crate::digest::Digest::of(format!("{now}-{}", std::process::id()).as_bytes()).hex()[..12]
            .to_owned(),
    )
}
