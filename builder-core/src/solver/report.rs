//! What a build tells its [`Progress`] sink about itself: its start and end, the numbers
//! of its steps, and the steps it runs outside any stage (pulls, exports, pushes).
//!
//! A leaf of the solver: every phase reports through one [`Reporter`], and it imports
//! nothing from them.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rbuild_dockerfile::Platform;

use crate::progress::{BuildId, Event, InStep, Progress, StepId, StepOutput};

/// The progress side of one build: the caller's sink, the step counter and the clock.
///
/// A build for several platforms is one build to the sink: one `BuildStarted`, one
/// step counter across the platforms' builds, one end; its steps' names say which
/// platform they run as, as BuildKit prefixes them (`[linux/arm64 2/3] RUN ...`).
pub(crate) struct Reporter<'p> {
    progress: &'p dyn Progress,
    next_step: AtomicU32,
    started: Instant,
    /// Whether `BuildStarted` was sent.
    announced: AtomicBool,
    /// How many platforms the build is for (1 when it names none or one).
    platforms: u32,
    /// The platform being built, when the build is for several.
    target: Mutex<Option<Platform>>,
    /// The warnings sent, when the build is for several platforms.
    warned: Mutex<Vec<Event>>,
}

impl<'p> Reporter<'p> {
    /// A reporter to `progress` for a build of `platforms` platforms (0 and 1 are one
    /// build), its clock started now.
    pub(crate) fn for_platforms(progress: &'p dyn Progress, platforms: usize) -> Self {
        Reporter {
            progress,
            next_step: AtomicU32::new(1),
            started: Instant::now(),
            announced: AtomicBool::new(false),
            platforms: u32::try_from(platforms.max(1)).unwrap_or(u32::MAX),
            target: Mutex::new(None),
            warned: Mutex::new(Vec::new()),
        }
    }

    /// Sends `warning`; in a build of several platforms, only once: each platform's build
    /// finds the same Dockerfile warnings.
    pub(crate) fn warn(&self, warning: &Event) {
        if self.platforms > 1 {
            let mut warned = self.warned.lock().unwrap_or_else(PoisonError::into_inner);
            if warned.contains(warning) {
                return;
            }
            warned.push(warning.clone());
        }
        self.progress.event(warning);
    }

    /// The steps that follow are of the build for `target`, one of several platforms.
    pub(crate) fn set_target(&self, target: Option<Platform>) {
        *self.target.lock().unwrap_or_else(PoisonError::into_inner) = target;
    }

    /// What a step's name starts with in a build of several platforms: the platform the
    /// step runs as (`platform`), and the target's architecture after an arrow when that
    /// is another (`linux/amd64->arm64`, BuildKit's `prefixCommand`). `None` in a build
    /// of one platform. BuildKit shows the arrow only in a stage that declares a
    /// `TARGET*` argument, as a stage that does not is one vertex shared by every
    /// target; here each target's build shows the step, so the arrow says whose it is.
    pub(crate) fn platform_prefix(&self, platform: &Platform) -> Option<String> {
        let target = self.target.lock().unwrap_or_else(PoisonError::into_inner);
        let target = target.as_ref()?;
        let arrow = if target == platform {
            String::new()
        } else if target.os == platform.os {
            let mut arch = target.architecture.clone();
            if !target.variant.is_empty() {
                arch = format!("{arch}/{}", target.variant);
            }
            format!("->{arch}")
        } else {
            format!("->{target}")
        };
        Some(format!("{platform}{arrow}"))
    }

    /// The name of an `[internal]` step about `platform` (`[internal] load metadata
    /// for ...`): `[linux/arm64 internal] ...` in a build of several platforms, as
    /// BuildKit names it.
    pub(crate) fn internal_name(&self, platform: Option<&Platform>, what: &str) -> String {
        let several = self
            .target
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        match platform {
            Some(platform) if several => format!("[{platform} internal] {what}"),
            _ => format!("[internal] {what}"),
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

    /// `BuildStarted` with the counts progress shows, once: in a build of several
    /// platforms, the first platform's counts for each platform.
    pub(crate) fn build_started(&self, stages: usize, steps: usize) {
        if self.announced.swap(true, Ordering::SeqCst) {
            return;
        }
        let count = |n: usize| {
            u32::try_from(n)
                .unwrap_or(u32::MAX)
                .saturating_mul(self.platforms)
        };
        self.progress.event(&Event::BuildStarted {
            build_id: build_id(),
            stages: count(stages),
            steps: count(steps),
        });
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
            emulated: None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NullProgress;

    fn platform(text: &str) -> Platform {
        Platform::parse(text).unwrap_or_else(|| panic!("{text} is a platform"))
    }

    #[test]
    fn step_names_carry_the_platform_only_in_a_build_of_several() {
        let reporter = Reporter::for_platforms(&NullProgress, 2);
        let amd64 = platform("linux/amd64");
        assert_eq!(reporter.platform_prefix(&amd64), None);
        assert_eq!(
            reporter.internal_name(Some(&amd64), "load"),
            "[internal] load"
        );

        reporter.set_target(Some(platform("linux/arm64")));
        assert_eq!(
            reporter
                .platform_prefix(&platform("linux/arm64"))
                .as_deref(),
            Some("linux/arm64")
        );
        // A native stage of the arm64 build, as BuildKit's formatTargetPlatform has it.
        assert_eq!(
            reporter.platform_prefix(&amd64).as_deref(),
            Some("linux/amd64->arm64")
        );
        assert_eq!(
            reporter.internal_name(Some(&platform("linux/arm64")), "load"),
            "[linux/arm64 internal] load"
        );
        reporter.set_target(Some(platform("linux/arm/v7")));
        assert_eq!(
            reporter.platform_prefix(&amd64).as_deref(),
            Some("linux/amd64->arm/v7")
        );
    }

    #[test]
    fn a_warning_of_every_platforms_build_is_sent_once() {
        let collect = crate::progress::Collect::new();
        let warning = |message: &str| Event::Warning {
            rule: None,
            message: message.to_owned(),
            line: Some(2),
        };
        let reporter = Reporter::for_platforms(&collect, 2);
        for message in ["unused", "other", "unused"] {
            reporter.warn(&warning(message));
        }
        assert_eq!(collect.take(), [warning("unused"), warning("other")]);
        // A build of one platform sends what it is given.
        let reporter = Reporter::for_platforms(&collect, 1);
        reporter.warn(&warning("unused"));
        reporter.warn(&warning("unused"));
        assert_eq!(collect.take().len(), 2);
    }
}
