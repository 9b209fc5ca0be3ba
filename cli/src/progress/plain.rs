//! `--progress plain`: numbered lines in the shape of BuildKit's plain output.
//!
//! ```text
//! #5 [2/6] RUN pip install -r requirements.txt
//! #5 0.512 Collecting flask
//! #5 DONE 2.1s
//!
//! #6 [3/6] COPY . .
//! #6 CACHED
//! ```
//!
//! Each step opens with its number and name after a blank line. When steps run at the
//! same time and their lines interleave, the step's header is repeated whenever the
//! output switches to it, so that every block of lines says which step it belongs to.
//! Output lines carry the seconds since their step started. Nothing is ever redrawn,
//! which makes this mode the one for logs and pipes.
//!
//! A blob pulled, pushed or exported within a step gets one line when it is done, as
//! BuildKit prints it (`#2 sha256:<hex> 6.00MB / 6.00MB 0.1s done`); its progress
//! between is not printed, so a large pull adds one line per blob, never a flood.

use std::io::{self, Write};
use std::time::SystemTime;

use rbuild_core::{Event, progress::StepId};

use super::Renderer;
use super::summary::{BuildLog, secs};

/// Renders events as plain numbered lines to `W`.
pub struct Plain<W> {
    out: W,
    log: BuildLog,
    /// The step whose header was printed last.
    current: Option<StepId>,
    /// Whether anything was printed yet (the first header needs no blank line).
    printed: bool,
}

impl<W: Write> Plain<W> {
    /// A renderer writing to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            log: BuildLog::default(),
            current: None,
            printed: false,
        }
    }

    /// Prints the header of `step` unless its lines are the ones being printed.
    fn switch_to(&mut self, step: StepId) -> io::Result<()> {
        if self.current == Some(step) {
            return Ok(());
        }
        if self.printed {
            writeln!(self.out)?;
        }
        let name = self.log.step(step).map_or("", |s| s.name.as_str());
        writeln!(self.out, "{step} {name}")?;
        self.current = Some(step);
        self.printed = true;
        Ok(())
    }
}

impl<W: Write + Send> Renderer for Plain<W> {
    fn render(&mut self, at: SystemTime, event: &Event) -> io::Result<()> {
        self.log.observe(at, event);
        match event {
            Event::StepStarted { step, .. } => {
                // A new step always opens a new block, even after its own number.
                self.current = None;
                self.switch_to(*step)?;
            }
            Event::StepLog { step, text, .. } => {
                self.switch_to(*step)?;
                let since = self
                    .log
                    .step(*step)
                    .and_then(|s| at.duration_since(s.started).ok())
                    .unwrap_or_default();
                for line in text.split('\n') {
                    let line = super::printable(line);
                    writeln!(self.out, "{step} {:.3} {line}", since.as_secs_f64())?;
                }
            }
            Event::TransferFinished {
                step: Some(step), ..
            } => {
                if let Some(status) = super::transfer::build_status(event) {
                    self.switch_to(*step)?;
                    writeln!(self.out, "{step} {status}")?;
                }
            }
            Event::StepCached { step, .. } => {
                self.switch_to(*step)?;
                writeln!(self.out, "{step} CACHED")?;
            }
            Event::StepFinished { step, duration, .. } => {
                self.switch_to(*step)?;
                writeln!(self.out, "{step} DONE {}", secs(*duration))?;
            }
            Event::StepFailed { step, message, .. } => {
                self.switch_to(*step)?;
                writeln!(
                    self.out,
                    "{step} ERROR: {}",
                    crate::escape::printable(message)
                )?;
            }
            Event::BuildFinished { .. } | Event::BuildFailed { .. } => {
                let canceled: Vec<StepId> = self.log.canceled().map(|s| s.id).collect();
                for step in canceled {
                    self.switch_to(step)?;
                    writeln!(self.out, "{step} CANCELED")?;
                }
                if self.printed {
                    writeln!(self.out)?;
                }
                self.log.write_summary(&mut self.out, event, None)?;
                self.printed = true;
            }
            // The build's start needs no line; warnings are listed in the summary.
            _ => {}
        }
        self.out.flush()
    }
}
