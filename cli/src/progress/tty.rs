//! `--progress tty`: a live view of the build, redrawn ten times a second.
//!
//! ```text
//!  ✔ #4 [1/6] FROM docker.io/library/python:3.12-slim           0.4s
//!  ✔ #6 [3/6] COPY requirements.txt .                          CACHED
//! [+] Building 6.3s (4/8)
//! ⠙ #5 [2/6] RUN pip install -r requirements.txt                5.1s
//!     │ Collecting flask
//!     │ Downloading flask-3.0.3-py3-none-any.whl (101 kB)
//! ```
//!
//! Finished steps are printed once, above the live area, with their time, `CACHED` or
//! `ERROR`, and stay in the terminal's scroll-back. The live area holds a header with the
//! build's elapsed time and count of finished steps, then each running step with a
//! spinner, its elapsed time and its last [`TAIL_LINES`] lines of output. Every line is
//! cut to the terminal's width (measured at each redraw), so a narrow terminal shows
//! shorter lines rather than wrapped ones that would break the redraw. At the end the
//! live area is cleared and the summary printed.
//!
//! A step that pulls, pushes or exports blobs shows, in place of output lines, one line
//! per blob with its bytes (`sha256:<hex> 12.3MB / 45.6MB`), the last
//! [`TRANSFER_LINES`] of them.
//!
//! Drawing is done by `indicatif`; when standard error is not a terminal it draws
//! nothing, so [`super::renderer`] picks this renderer only for terminals.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use console::style;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use rbuild_core::{Event, progress::StepId};

use super::summary::{BuildLog, secs};
use super::{Renderer, live_term};

/// How many of its last output lines a running step shows.
pub const TAIL_LINES: usize = 3;
/// How many blob lines a step that moves blobs shows.
pub const TRANSFER_LINES: usize = 8;
/// Redraws per second.
const REFRESH_HZ: u8 = 10;
/// The spinner's tick interval: one frame per redraw.
const TICK: Duration = Duration::from_millis(1000 / REFRESH_HZ as u64);

/// A step being run, and the bars that show it.
struct Running {
    bar: ProgressBar,
    lines: Vec<ProgressBar>,
    tail: VecDeque<String>,
    /// The blobs the step moves, in the order they started, with their status.
    transfers: Vec<(String, String)>,
}

/// Renders events as a live view on standard error.
pub struct Tty {
    multi: MultiProgress,
    header: Option<ProgressBar>,
    running: HashMap<StepId, Running>,
    log: BuildLog,
    total: u32,
    ended: u32,
}

impl Default for Tty {
    fn default() -> Self {
        Self::new()
    }
}

impl Tty {
    /// A renderer drawing on standard error.
    pub fn new() -> Self {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::term_like_with_hz(
            Box::new(live_term::LiveTerm::stderr()),
            REFRESH_HZ,
        ));
        // Each frame starts by moving up over the last (LiveTerm does the row arithmetic).
        multi.set_move_cursor(true);
        Self {
            multi,
            header: None,
            running: HashMap::new(),
            log: BuildLog::default(),
            total: 0,
            ended: 0,
        }
    }

    fn width() -> usize {
        live_term::width()
    }

    /// Seconds with one decimal, for the `{secs}` template key.
    fn elapsed_key(state: &ProgressState, w: &mut dyn fmt::Write) {
        let _ = write!(w, "{:.1}s", state.elapsed().as_secs_f64());
    }

    fn style(template: &str) -> ProgressStyle {
        // The templates are constants of this file; a mistake in one shows up in the
        // tmux capture test, and the default style is a readable fallback meanwhile.
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .with_key("secs", Self::elapsed_key)
            .tick_chars("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏ ")
    }

    fn update_header(&self) {
        if let Some(header) = &self.header {
            header.set_message(format!("({}/{})", self.ended, self.total.max(self.ended)));
        }
    }

    fn start_step(&mut self, step: StepId, name: &str) {
        let bar = self.multi.add(ProgressBar::new_spinner());
        bar.set_style(Self::style("{spinner:.cyan} {wide_msg} {secs:>7}"));
        bar.set_message(format!("{step} {}", crate::escape::printable(name)));
        bar.enable_steady_tick(TICK);
        self.running.insert(
            step,
            Running {
                bar,
                lines: Vec::new(),
                tail: VecDeque::new(),
                transfers: Vec::new(),
            },
        );
    }

    /// Shows a blob's status under its step, in place of the step's output lines.
    fn transfer(&mut self, step: StepId, event: &Event) {
        let (Some(running), Some(status)) = (
            self.running.get_mut(&step),
            super::transfer::build_status(event),
        ) else {
            return;
        };
        let digest = match event {
            Event::TransferProgress { digest, .. } | Event::TransferFinished { digest, .. } => {
                digest.clone()
            }
            _ => return,
        };
        // A line is cut at the terminal's width from its end: the digest is shortened so
        // that the bytes stay in view.
        let short = format!("sha256:{}", super::transfer::short_id(&digest));
        let status = status.replace(&digest, &short);
        match running.transfers.iter_mut().find(|(d, _)| *d == digest) {
            Some((_, text)) => *text = status,
            None => running.transfers.push((digest, status)),
        }
        let shown = running.transfers.len().saturating_sub(TRANSFER_LINES);
        running.tail = running.transfers[shown..]
            .iter()
            .map(|(_, text)| text.clone())
            .collect();
        self.draw_tail(step);
    }

    fn log_line(&mut self, step: StepId, text: &str) {
        let Some(running) = self.running.get_mut(&step) else {
            return;
        };
        for line in text.split('\n') {
            if running.tail.len() == TAIL_LINES {
                running.tail.pop_front();
            }
            running.tail.push_back(super::printable(line));
        }
        self.draw_tail(step);
    }

    /// Redraws the lines under a running step from its tail.
    fn draw_tail(&mut self, step: StepId) {
        let Some(running) = self.running.get_mut(&step) else {
            return;
        };
        while running.lines.len() < running.tail.len() {
            let after = running.lines.last().unwrap_or(&running.bar);
            let line = self.multi.insert_after(after, ProgressBar::new_spinner());
            line.set_style(Self::style("    {wide_msg:.dim}"));
            running.lines.push(line);
        }
        for (bar, text) in running.lines.iter().zip(&running.tail) {
            bar.set_message(format!("│ {text}"));
        }
    }

    /// Takes the step out of the live area and prints its final line above it.
    fn end_step(&mut self, step: StepId, outcome: &str) -> io::Result<()> {
        if let Some(running) = self.running.remove(&step) {
            for line in running.lines {
                line.finish_and_clear();
                self.multi.remove(&line);
            }
            running.bar.finish_and_clear();
            self.multi.remove(&running.bar);
        }
        self.ended += 1;
        self.update_header();
        let name = self.log.step(step).map_or("", |s| s.name.as_str());
        self.multi
            .println(final_line(step, name, outcome, Self::width()))
    }

    fn finish(&mut self, end: &Event) -> io::Result<()> {
        let canceled: Vec<StepId> = self.log.canceled().map(|s| s.id).collect();
        for step in canceled {
            self.end_step(step, "CANCELED")?;
        }
        for (_, running) in self.running.drain() {
            for line in running.lines {
                line.finish_and_clear();
            }
            running.bar.finish_and_clear();
        }
        if let Some(header) = self.header.take() {
            header.finish_and_clear();
        }
        self.multi.clear()?;
        let mut summary = Vec::new();
        self.log
            .write_summary(&mut summary, end, Some(Self::width()))?;
        self.multi.suspend(|| {
            let mut stderr = io::stderr().lock();
            stderr.write_all(&summary)?;
            stderr.flush()
        })
    }
}

/// The line a finished step leaves: a mark, the step, its name cut to fit, its outcome
/// at the right margin.
fn final_line(step: StepId, name: &str, outcome: &str, width: usize) -> String {
    let (mark, outcome_styled) = match outcome {
        "CACHED" => (style("✔").green(), style(outcome).blue()),
        "ERROR" => (style("✘").red().bold(), style(outcome).red().bold()),
        "CANCELED" => (style("-").yellow(), style(outcome).yellow()),
        _ => (style("✔").green(), style(outcome).dim()),
    };
    let head = format!("{step} ");
    // " ✔ " + head + name + " " + outcome, kept within the width.
    let fixed = 3 + head.chars().count() + 1 + outcome.chars().count();
    let room = width.saturating_sub(fixed);
    let name = console::truncate_str(name, room, "…");
    let pad = room.saturating_sub(console::measure_text_width(&name));
    format!(
        " {} {head}{name}{:pad$} {}",
        mark.for_stderr(),
        "",
        outcome_styled.for_stderr()
    )
}

impl Renderer for Tty {
    fn render(&mut self, at: SystemTime, event: &Event) -> io::Result<()> {
        self.log.observe(at, event);
        match event {
            Event::BuildStarted { steps, .. } => {
                self.total = *steps;
                let header = self.multi.insert(0, ProgressBar::new_spinner());
                header.set_style(Self::style("[+] Building {secs} {msg}"));
                header.enable_steady_tick(TICK);
                self.header = Some(header);
                self.update_header();
            }
            Event::StepStarted { step, name, .. } => self.start_step(*step, name),
            Event::StepLog { step, text, .. } => self.log_line(*step, text),
            Event::TransferProgress {
                step: Some(step), ..
            }
            | Event::TransferFinished {
                step: Some(step), ..
            } => self.transfer(*step, event),
            Event::StepCached { step, .. } => self.end_step(*step, "CACHED")?,
            Event::StepFinished { step, duration, .. } => self.end_step(*step, &secs(*duration))?,
            Event::StepFailed { step, .. } => self.end_step(*step, "ERROR")?,
            Event::BuildFinished { .. } | Event::BuildFailed { .. } => self.finish(event)?,
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_lines_fit_the_width_and_keep_the_outcome() {
        console::set_colors_enabled_stderr(false);
        let name = "[2/6] RUN pip install --no-cache-dir -r requirements.txt";
        let wide = final_line(StepId(5), name, "2.1s", 80);
        assert_eq!(console::measure_text_width(&wide), 80);
        assert!(wide.starts_with(" ✔ #5 [2/6] RUN pip install"), "{wide}");
        assert!(wide.ends_with(" 2.1s"), "{wide}");
        let narrow = final_line(StepId(5), name, "CACHED", 30);
        assert_eq!(console::measure_text_width(&narrow), 30);
        assert!(
            narrow.contains('…') && narrow.ends_with(" CACHED"),
            "{narrow}"
        );
    }
}
