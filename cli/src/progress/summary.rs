//! What a renderer remembers about a build, and the summary printed at its end.
//!
//! [`BuildLog`] follows the events of one build: each step's name, start time, end and
//! last lines of output, and the warnings. From it [`BuildLog::write_summary`] writes the
//! closing summary of the `plain` and `tty` modes:
//!
//! ```text
//! ------
//!  > [4/6] RUN make:
//! 0.104 make: *** No rule to make target 'all'.  Stop.
//! ------
//! ERROR: failed to solve: process "/bin/sh -c make" did not complete successfully: exit code: 2
//! Build failed after 3.2s: 4 steps, 1 cached
//! ```
//!
//! or, for a build that succeeded, the image ID, its names, the total time and the three
//! slowest steps.

use std::collections::{HashMap, VecDeque};
use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use rbuild_core::{Event, progress::StepId};

/// How many lines of a step's output are kept to show when it fails, as BuildKit does.
const FAILURE_TAIL_LINES: usize = 10;
/// How many of the slowest steps the summary lists.
const SLOWEST_STEPS: usize = 3;

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepEnd {
    /// The result came from the cache.
    Cached,
    /// The step ran for this long and succeeded.
    Done(Duration),
    /// The step ran for this long and failed.
    Failed(Duration),
    /// The build ended while the step was still running (another step failed).
    Canceled,
}

/// What is known of one step.
#[derive(Debug, Clone)]
pub struct StepRecord {
    /// The step.
    pub id: StepId,
    /// Its display name, `[2/6] RUN ...`.
    pub name: String,
    /// When its [`Event::StepStarted`] arrived.
    pub started: SystemTime,
    /// How it ended, once it has.
    pub end: Option<StepEnd>,
    /// Its last lines of output, each with its time since the step started.
    pub tail: VecDeque<(Duration, String)>,
    /// The platform it runs emulated as, for a `RUN` of a foreign platform.
    pub emulated: Option<String>,
}

/// A warning, as the summary lists it.
#[derive(Debug, Clone)]
struct WarningRecord {
    rule: Option<String>,
    message: String,
    line: Option<u32>,
}

/// Everything a renderer remembers of a build in progress.
#[derive(Debug, Default)]
pub struct BuildLog {
    steps: Vec<StepRecord>,
    index: HashMap<StepId, usize>,
    warnings: Vec<WarningRecord>,
}

impl BuildLog {
    /// Takes note of `event`, which happened at `at`.
    pub fn observe(&mut self, at: SystemTime, event: &Event) {
        match event {
            Event::StepStarted {
                step,
                name,
                emulated,
                ..
            } => {
                self.index.insert(*step, self.steps.len());
                self.steps.push(StepRecord {
                    id: *step,
                    // The name quotes the Dockerfile: escaped once here for every view.
                    name: crate::escape::printable(name).into_owned(),
                    started: at,
                    end: None,
                    tail: VecDeque::new(),
                    emulated: emulated.clone(),
                });
            }
            Event::StepLog { step, text, .. } => {
                if let Some(record) = self.step_mut(*step) {
                    let since = at.duration_since(record.started).unwrap_or_default();
                    if record.tail.len() == FAILURE_TAIL_LINES {
                        record.tail.pop_front();
                    }
                    record.tail.push_back((since, text.clone()));
                }
            }
            Event::StepCached { step, .. } => self.end(*step, StepEnd::Cached),
            Event::StepFinished { step, duration, .. } => self.end(*step, StepEnd::Done(*duration)),
            Event::StepFailed { step, duration, .. } => self.end(*step, StepEnd::Failed(*duration)),
            Event::BuildFinished { .. } | Event::BuildFailed { .. } => {
                for step in &mut self.steps {
                    step.end.get_or_insert(StepEnd::Canceled);
                }
            }
            Event::Warning {
                rule,
                message,
                line,
            } => self.warnings.push(WarningRecord {
                rule: rule.clone(),
                message: message.clone(),
                line: *line,
            }),
            _ => {}
        }
    }

    /// The step `id`, if it has started.
    pub fn step(&self, id: StepId) -> Option<&StepRecord> {
        self.index.get(&id).and_then(|&i| self.steps.get(i))
    }

    /// The steps the end of the build canceled, in the order they started.
    pub fn canceled(&self) -> impl Iterator<Item = &StepRecord> {
        self.steps
            .iter()
            .filter(|s| s.end == Some(StepEnd::Canceled))
    }

    fn step_mut(&mut self, id: StepId) -> Option<&mut StepRecord> {
        self.index.get(&id).and_then(|&i| self.steps.get_mut(i))
    }

    fn end(&mut self, id: StepId, end: StepEnd) {
        if let Some(record) = self.step_mut(id) {
            record.end = Some(end);
        }
    }

    /// Writes the closing summary for `end`, a [`Event::BuildFinished`] or
    /// [`Event::BuildFailed`]; other events write nothing. With a `width`, the lines
    /// listing the slowest steps are cut to it (the other lines say too much to cut).
    pub fn write_summary(
        &self,
        out: &mut dyn Write,
        end: &Event,
        width: Option<usize>,
    ) -> io::Result<()> {
        match end {
            Event::BuildFinished {
                image_id,
                names,
                duration,
            } => {
                writeln!(
                    out,
                    "Build finished in {}: {}",
                    secs(*duration),
                    self.counts()
                )?;
                self.write_emulated(out)?;
                writeln!(out, "Image ID: {image_id}")?;
                if !names.is_empty() {
                    writeln!(out, "Names: {}", names.join(", "))?;
                }
            }
            Event::BuildFailed { message, duration } => {
                self.write_failures(out)?;
                writeln!(out, "ERROR: {}", crate::escape::printable(message))?;
                writeln!(
                    out,
                    "Build failed after {}: {}",
                    secs(*duration),
                    self.counts()
                )?;
                self.write_emulated(out)?;
            }
            _ => return Ok(()),
        }
        self.write_slowest(out, width)?;
        self.write_warnings(out)
    }

    /// `7 steps, 1 cached`: the steps that ran or were cached, and those canceled.
    fn counts(&self) -> String {
        let count = |end: fn(&StepEnd) -> bool| {
            self.steps
                .iter()
                .filter(|s| s.end.as_ref().is_some_and(end))
                .count()
        };
        let ended = count(|e| *e != StepEnd::Canceled);
        let cached = count(|e| *e == StepEnd::Cached);
        let canceled = count(|e| *e == StepEnd::Canceled);
        let plural = if ended == 1 { "" } else { "s" };
        let mut counts = format!("{ended} step{plural}, {cached} cached");
        if canceled > 0 {
            counts.push_str(&format!(", {canceled} canceled"));
        }
        counts
    }

    /// `Ran emulated: 2 steps for linux/arm64, 1 for linux/riscv64`: the `RUN` steps of a
    /// foreign platform that ran (not those found in the cache), by platform in the
    /// order first seen; nothing when there are none.
    fn write_emulated(&self, out: &mut dyn Write) -> io::Result<()> {
        let mut counts: Vec<(&str, usize)> = Vec::new();
        let ran = self
            .steps
            .iter()
            .filter(|s| matches!(s.end, Some(StepEnd::Done(_) | StepEnd::Failed(_))));
        for platform in ran.filter_map(|s| s.emulated.as_deref()) {
            match counts.iter_mut().find(|(p, _)| *p == platform) {
                Some((_, n)) => *n += 1,
                None => counts.push((platform, 1)),
            }
        }
        if counts.is_empty() {
            return Ok(());
        }
        let listed: Vec<String> = counts
            .iter()
            .enumerate()
            .map(|(i, (platform, n))| {
                let steps = match (i, n) {
                    (0, 1) => " step",
                    (0, _) => " steps",
                    _ => "",
                };
                format!("{n}{steps} for {platform}")
            })
            .collect();
        writeln!(out, "Ran emulated: {}", listed.join(", "))
    }

    /// Each failed step with its last lines of output, framed as BuildKit frames them.
    fn write_failures(&self, out: &mut dyn Write) -> io::Result<()> {
        for step in &self.steps {
            if !matches!(step.end, Some(StepEnd::Failed(_))) {
                continue;
            }
            writeln!(out, "------")?;
            writeln!(out, " > {}:", step.name)?;
            for (since, text) in &step.tail {
                writeln!(out, "{:.3} {}", since.as_secs_f64(), super::printable(text))?;
            }
            writeln!(out, "------")?;
        }
        Ok(())
    }

    fn write_slowest(&self, out: &mut dyn Write, width: Option<usize>) -> io::Result<()> {
        let mut ran: Vec<(Duration, &StepRecord)> = self
            .steps
            .iter()
            .filter_map(|s| match s.end {
                Some(StepEnd::Done(d) | StepEnd::Failed(d)) => Some((d, s)),
                _ => None,
            })
            .collect();
        if ran.is_empty() {
            return Ok(());
        }
        // Slowest first; equal times in step order, so that the summary is stable.
        ran.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.id.cmp(&b.1.id)));
        writeln!(out, "Slowest steps:")?;
        for (duration, step) in ran.into_iter().take(SLOWEST_STEPS) {
            let line = format!("{:>8}  {} {}", secs(duration), step.id, step.name);
            match width {
                Some(width) => writeln!(out, "{}", console::truncate_str(&line, width, "…"))?,
                None => writeln!(out, "{line}")?,
            }
        }
        Ok(())
    }

    fn write_warnings(&self, out: &mut dyn Write) -> io::Result<()> {
        if self.warnings.is_empty() {
            return Ok(());
        }
        let plural = if self.warnings.len() == 1 { "" } else { "s" };
        writeln!(out, "{} warning{plural} found:", self.warnings.len())?;
        for warning in &self.warnings {
            write!(out, " - ")?;
            if let Some(rule) = &warning.rule {
                write!(out, "{rule}: ")?;
            }
            write!(out, "{}", crate::escape::printable(&warning.message))?;
            if let Some(line) = warning.line {
                write!(out, " (line {line})")?;
            }
            writeln!(out)?;
        }
        Ok(())
    }
}

/// A duration as BuildKit shows step times: seconds with one decimal, `2.1s`.
pub fn secs(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use rbuild_core::progress::{StepOutput, Stream};

    use super::*;

    fn at(ms: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
    }

    fn started(log: &mut BuildLog, n: u32) {
        let event = Event::StepStarted {
            step: StepId(n),
            stage: None,
            name: format!("step {n}"),
            line: None,
            emulated: None,
        };
        log.observe(at(0), &event);
    }

    fn finished(log: &mut BuildLog, n: u32, ms: u64) {
        let event = Event::StepFinished {
            step: StepId(n),
            duration: Duration::from_millis(ms),
            output: StepOutput::EmptyLayer,
        };
        log.observe(at(ms), &event);
    }

    #[test]
    fn only_the_last_lines_of_a_step_are_kept() {
        let mut log = BuildLog::default();
        started(&mut log, 1);
        for n in 0..25u64 {
            let line = format!("line {n}");
            log.observe(
                at(n),
                &Event::log(StepId(1), Stream::Stdout, line.as_bytes()),
            );
        }
        let tail = &log.step(StepId(1)).expect("step 1 started").tail;
        assert_eq!(tail.len(), FAILURE_TAIL_LINES);
        assert_eq!(
            tail.front(),
            Some(&(Duration::from_millis(15), "line 15".to_owned()))
        );
    }

    #[test]
    fn the_summary_lists_the_three_slowest_steps_in_step_order_on_ties() {
        let mut log = BuildLog::default();
        for (n, ms) in [(1, 100), (2, 900), (3, 100), (4, 100), (5, 50)] {
            started(&mut log, n);
            finished(&mut log, n, ms);
        }
        let end = Event::BuildFinished {
            image_id: "sha256:ab".into(),
            names: Vec::new(),
            duration: Duration::from_millis(1300),
        };
        let mut out = Vec::new();
        log.write_summary(&mut out, &end, None)
            .expect("writing to memory");
        assert_eq!(
            String::from_utf8(out).expect("the summary is UTF-8"),
            "Build finished in 1.3s: 5 steps, 0 cached\n\
             Image ID: sha256:ab\n\
             Slowest steps:\n    \
             0.9s  #2 step 2\n    \
             0.1s  #1 step 1\n    \
             0.1s  #3 step 3\n"
        );
    }

    #[test]
    fn the_summary_counts_the_emulated_steps_that_ran_by_platform() {
        let mut log = BuildLog::default();
        let steps = [
            (1, Some("linux/arm64"), false),
            (2, Some("linux/arm64"), true),
            (3, Some("linux/arm64"), false),
            (4, Some("linux/riscv64"), false),
            (5, None, false),
        ];
        for (n, emulated, cached) in steps {
            let event = Event::StepStarted {
                step: StepId(n),
                stage: None,
                name: format!("step {n}"),
                line: None,
                emulated: emulated.map(str::to_owned),
            };
            log.observe(at(0), &event);
            if cached {
                let event = Event::StepCached {
                    step: StepId(n),
                    cache_key: "sha256:ab".into(),
                    output: StepOutput::EmptyLayer,
                };
                log.observe(at(0), &event);
            } else {
                finished(&mut log, n, 10);
            }
        }
        let end = Event::BuildFinished {
            image_id: "sha256:ab".into(),
            names: Vec::new(),
            duration: Duration::from_millis(100),
        };
        let mut out = Vec::new();
        log.write_summary(&mut out, &end, None)
            .expect("writing to memory");
        let out = String::from_utf8(out).expect("the summary is UTF-8");
        assert!(
            out.contains("\nRan emulated: 2 steps for linux/arm64, 1 for linux/riscv64\n"),
            "{out}"
        );
    }
}
