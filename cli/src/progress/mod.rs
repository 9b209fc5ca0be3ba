//! Rendering build progress on the terminal: `--progress auto|tty|plain|rawjson`.
//!
//! The engine reports a build as a stream of [`rbuild_core::Event`]s to a
//! [`rbuild_core::Progress`] sink; [`Reporter`] is that sink for the command line. It
//! stamps each event with the time it arrived and hands it to one [`Renderer`]:
//!
//! - `plain` ([`plain::Plain`]): BuildKit-style numbered lines (`#5 [2/6] RUN ...`,
//!   `#5 0.512 <output>`, `#5 DONE 2.1s`), for logs and pipes;
//! - `tty` ([`tty::Tty`]): a live view redrawn ten times a second, one spinner per running
//!   step with its last lines of output, finished steps scrolling above;
//! - `rawjson` ([`rawjson::RawJson`]): one JSON object per event, for CI systems; the
//!   format is described by `docs/progress/rawjson.schema.json`.
//!
//! Within a build, the blobs a base image's pull, an export or a push moves are shown
//! under the step they belong to. `pull`, `push` and `save` show them with
//! [`transfer`]'s renderers instead: one line per blob, as docker does.
//!
//! Progress goes to standard error, as docker's does, so that standard output stays free
//! for what a command prints (an image ID with `-q`, say). `plain` and `tty` end the build
//! with a summary (see [`summary`]); `rawjson` ends with the final event.

mod live_term;
pub mod plain;
pub mod rawjson;
pub mod replay;
pub mod summary;
pub mod transfer;
pub mod tty;

use std::io::IsTerminal as _;
use std::sync::{Mutex, PoisonError};
use std::time::SystemTime;

use rbuild_core::{Event, Progress};

/// How to show build progress: the value of `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ProgressMode {
    /// `tty` when standard error is a terminal, `plain` otherwise.
    #[default]
    Auto,
    /// A live view that redraws itself.
    Tty,
    /// Numbered lines, one per event, never redrawn.
    Plain,
    /// One JSON event per line.
    Rawjson,
    /// No progress; the image ID on standard output at the end (the same as `-q`).
    Quiet,
    /// No progress and no image ID: only errors.
    None,
}

impl ProgressMode {
    /// Resolves `auto`: `tty` when standard error is a terminal that can redraw (not
    /// `TERM=dumb`), `plain` otherwise. Other modes are returned unchanged.
    pub fn resolve(self) -> ProgressMode {
        match self {
            ProgressMode::Auto => {
                let dumb = std::env::var_os("TERM").is_some_and(|term| term == "dumb");
                if std::io::stderr().is_terminal() && !dumb {
                    ProgressMode::Tty
                } else {
                    ProgressMode::Plain
                }
            }
            mode => mode,
        }
    }
}

/// Turns events into output. A renderer sees every event of one build, in order, with
/// the time it happened.
pub trait Renderer: Send {
    /// Renders one event that happened at `at`.
    fn render(&mut self, at: SystemTime, event: &Event) -> std::io::Result<()>;

    /// The operation is over (a build ends with its last event; a pull or push does not
    /// say so): leaves the output in its final state.
    fn end(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Where the time of an event comes from: the wall clock for a live build, the recorded
/// times when a build is replayed.
type Clock = Box<dyn Fn() -> SystemTime + Send + Sync>;

/// The [`Progress`] sink of the command line: stamps events with the time and renders
/// them to standard error in the chosen mode.
pub struct Reporter {
    renderer: Mutex<Box<dyn Renderer>>,
    clock: Clock,
}

impl Reporter {
    /// A reporter rendering to standard error in `mode` (resolving `auto`), stamping
    /// events with the wall clock.
    pub fn new(mode: ProgressMode) -> Self {
        Self::with_clock(renderer(mode), Box::new(SystemTime::now))
    }

    /// A reporter for `pull`, `push` and `save` in `mode`: one line per blob
    /// ([`transfer`]).
    pub fn for_transfers(mode: ProgressMode) -> Self {
        Self::with_clock(transfer::renderer(mode), Box::new(SystemTime::now))
    }

    /// Tells the renderer the operation is over.
    pub fn end(&self) {
        let mut renderer = self.renderer.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = renderer.end();
    }

    /// A reporter that renders with `renderer` and takes event times from `clock`.
    pub fn with_clock(renderer: Box<dyn Renderer>, clock: Clock) -> Self {
        Self {
            renderer: Mutex::new(renderer),
            clock,
        }
    }
}

impl Progress for Reporter {
    fn event(&self, event: &Event) {
        let at = (self.clock)();
        // A renderer that panicked mid-event still holds a usable state: at worst one
        // line is missing.
        let mut renderer = self.renderer.lock().unwrap_or_else(PoisonError::into_inner);
        // Progress cannot fail the build: if standard error is gone, there is nobody to
        // tell, and the build's own result still decides the exit code.
        let _ = renderer.render(at, event);
    }
}

/// The renderer for `mode` (resolving `auto`), writing to standard error.
pub fn renderer(mode: ProgressMode) -> Box<dyn Renderer> {
    match mode.resolve() {
        // indicatif draws nothing on what is not a terminal: a forced `tty` there would
        // show no progress at all, so it gets the plain lines instead.
        ProgressMode::Tty if std::io::stderr().is_terminal() => Box::new(tty::Tty::new()),
        ProgressMode::Rawjson => Box::new(rawjson::RawJson::new(std::io::stderr())),
        ProgressMode::Tty | ProgressMode::Plain | ProgressMode::Auto => {
            Box::new(plain::Plain::new(std::io::stderr()))
        }
        ProgressMode::Quiet | ProgressMode::None => Box::new(Silent),
    }
}

/// The renderer of `--progress quiet|none`: nothing.
struct Silent;

impl Renderer for Silent {
    fn render(&mut self, _at: SystemTime, _event: &Event) -> std::io::Result<()> {
        Ok(())
    }
}

/// Makes one line of process output printable on one terminal line: keeps what a
/// carriage return would leave visible (the text after the last non-final `\r`), drops
/// escape sequences and turns other control characters into spaces.
pub(crate) fn printable(text: &str) -> String {
    let text = text.trim_end_matches('\r');
    let visible = text.rsplit('\r').next().unwrap_or(text);
    console::strip_ansi_codes(visible)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_keeps_what_a_terminal_would_show() {
        assert_eq!(printable("50%\r100%"), "100%");
        assert_eq!(printable("done\r"), "done");
        assert_eq!(printable("\u{1b}[31mred\u{1b}[0m\tok"), "red ok");
    }

    #[test]
    fn explicit_modes_resolve_to_themselves() {
        for mode in [
            ProgressMode::Tty,
            ProgressMode::Plain,
            ProgressMode::Rawjson,
        ] {
            assert_eq!(mode.resolve(), mode);
        }
        assert_ne!(ProgressMode::Auto.resolve(), ProgressMode::Auto);
    }
}
