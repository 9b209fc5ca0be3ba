//! Progress of `rbuild pull`, `push` and `save`: one line per blob, as docker shows a
//! pull or a push.
//!
//! ```text
//! 3f2a1b9c2d01: Downloading  12.3MB/45.6MB
//! 9d4e0a7b1c22: Pull complete
//! 5b1c0e9f8a33: Already exists
//! ```
//!
//! On a terminal ([`TransferTty`]) each blob has one line, updated in place with the bytes
//! moved, that ends with the blob's final state. Elsewhere ([`TransferPlain`]) a blob
//! gets a line when its bytes start to move and one when it is done, with its size; a blob
//! that needed no moving gets only the second. A blob is shown by the first 12 hex digits
//! of its digest, as docker shows a layer. `rawjson` and `quiet` are the build's
//! renderers ([`super::renderer`]): the events as JSON lines, or nothing.

use std::collections::HashMap;
use std::io::{self, IsTerminal as _, Write};
use std::time::SystemTime;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rbuild_core::{
    Event,
    progress::{TransferKind, TransferOutcome},
};

use super::{ProgressMode, Renderer};

/// The renderer of `pull`, `push` and `save` for `mode` (resolving `auto`), writing to
/// standard error.
pub fn renderer(mode: ProgressMode) -> Box<dyn Renderer> {
    match mode.resolve() {
        ProgressMode::Tty if io::stderr().is_terminal() => Box::new(TransferTty::new()),
        ProgressMode::Tty | ProgressMode::Plain | ProgressMode::Auto => {
            Box::new(TransferPlain::new(io::stderr()))
        }
        mode => super::renderer(mode),
    }
}

/// A blob as docker names it in a pull or push: the first 12 hex digits of its digest.
pub fn short_id(digest: &str) -> &str {
    let hex = digest.split_once(':').map_or(digest, |(_, hex)| hex);
    hex.get(..12).unwrap_or(hex)
}

/// Bytes as docker shows them: decimal units, three significant digits (`12.3MB`).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes}B"),
        _ if value >= 100.0 => format!("{value:.0}{}", UNITS[unit]),
        _ if value >= 10.0 => format!("{value:.1}{}", UNITS[unit]),
        _ => format!("{value:.2}{}", UNITS[unit]),
    }
}

/// Bytes as BuildKit shows them in a build's progress: decimal units, two decimals
/// (`6.00MB`).
pub fn buildkit_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes}B"),
        _ => format!("{value:.2}{}", UNITS[unit]),
    }
}

/// A transfer's status as BuildKit shows it under a build step, without the step:
/// `sha256:<hex> 6.00MB / 9.00MB 0.4s` while it moves, `... done` at the end; a push or
/// an export says so first (`pushing sha256:...`). `None` for a blob the store had
/// already (BuildKit does not show those).
pub fn build_status(event: &Event) -> Option<String> {
    let (kind, digest, current, total, took, outcome) = match event {
        Event::TransferProgress {
            kind,
            digest,
            current,
            total,
            ..
        } => (*kind, digest, *current, *total, None, None),
        Event::TransferFinished {
            kind,
            digest,
            size,
            outcome,
            duration,
            ..
        } => (
            *kind,
            digest,
            *size,
            Some(*size),
            Some(*duration),
            Some(*outcome),
        ),
        _ => return None,
    };
    let verb = match kind {
        TransferKind::Pull => "",
        TransferKind::Push => "pushing ",
        TransferKind::Export => "exporting ",
    };
    let bytes = match total {
        Some(total) if outcome != Some(TransferOutcome::Failed) || total == current => {
            format!("{} / {}", buildkit_size(current), buildkit_size(total))
        }
        _ => buildkit_size(current),
    };
    let took = took
        .map(|d| format!(" {}", super::summary::secs(d)))
        .unwrap_or_default();
    Some(match outcome {
        Some(TransferOutcome::Cached) => return None,
        Some(TransferOutcome::AlreadyExists) => format!("{verb}{digest} already exists"),
        Some(TransferOutcome::Mounted) => format!("{verb}{digest} mounted"),
        Some(TransferOutcome::Failed) => format!("{verb}{digest} {bytes}{took} error"),
        Some(TransferOutcome::Done) => format!("{verb}{digest} {bytes}{took} done"),
        None => format!("{verb}{digest} {bytes}"),
    })
}

/// What a blob's line says while its bytes move.
fn moving(kind: TransferKind) -> &'static str {
    match kind {
        TransferKind::Pull => "Downloading",
        TransferKind::Push => "Pushing",
        TransferKind::Export => "Exporting",
    }
}

/// What a blob's line says at the end.
fn final_state(kind: TransferKind, outcome: TransferOutcome) -> &'static str {
    match (kind, outcome) {
        (TransferKind::Pull, TransferOutcome::Done) => "Pull complete",
        (TransferKind::Push, TransferOutcome::Done) => "Pushed",
        (TransferKind::Export, TransferOutcome::Done) => "Exported",
        (TransferKind::Push, TransferOutcome::AlreadyExists) => "Layer already exists",
        (_, TransferOutcome::AlreadyExists | TransferOutcome::Cached) => "Already exists",
        (_, TransferOutcome::Mounted) => "Mounted",
        (_, TransferOutcome::Failed) => "Failed",
    }
}

/// Lines per blob, never redrawn: when its bytes start to move and when it ends.
pub struct TransferPlain<W> {
    out: W,
    /// Transfers whose "moving" line was printed.
    moving: std::collections::HashSet<(String, String)>,
}

impl<W: Write> TransferPlain<W> {
    /// A renderer writing to `out`.
    pub fn new(out: W) -> Self {
        Self {
            out,
            moving: std::collections::HashSet::new(),
        }
    }
}

impl<W: Write + Send> Renderer for TransferPlain<W> {
    fn render(&mut self, _at: SystemTime, event: &Event) -> io::Result<()> {
        match event {
            Event::TransferProgress {
                kind,
                target,
                digest,
                total,
                ..
            } => {
                if self.moving.insert((target.clone(), digest.clone())) {
                    let total = total.map(|t| format!(" {}", size(t))).unwrap_or_default();
                    writeln!(self.out, "{}: {}{total}", short_id(digest), moving(*kind))?;
                }
            }
            Event::TransferFinished {
                kind,
                target,
                digest,
                size: bytes,
                outcome,
                ..
            } => {
                self.moving.remove(&(target.clone(), digest.clone()));
                let state = final_state(*kind, *outcome);
                match outcome {
                    TransferOutcome::Done | TransferOutcome::Failed => {
                        writeln!(self.out, "{}: {state} {}", short_id(digest), size(*bytes))?;
                    }
                    _ => writeln!(self.out, "{}: {state}", short_id(digest))?,
                }
            }
            _ => return Ok(()),
        }
        self.out.flush()
    }
}

/// One live line per blob on a terminal, as `docker pull` draws them.
pub struct TransferTty {
    multi: MultiProgress,
    bars: HashMap<(String, String), ProgressBar>,
    /// The blobs in the order their lines were added, to print them all at the end.
    order: Vec<(String, String)>,
}

impl Default for TransferTty {
    fn default() -> Self {
        Self::new()
    }
}

impl TransferTty {
    /// A renderer drawing on standard error.
    pub fn new() -> Self {
        Self {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10)),
            bars: HashMap::new(),
            order: Vec::new(),
        }
    }

    fn bar(&mut self, target: &str, digest: &str) -> &ProgressBar {
        let multi = &self.multi;
        let order = &mut self.order;
        self.bars
            .entry((target.to_owned(), digest.to_owned()))
            .or_insert_with_key(|key| {
                order.push(key.clone());
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{wide_msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar
            })
    }
}

impl Renderer for TransferTty {
    fn render(&mut self, _at: SystemTime, event: &Event) -> io::Result<()> {
        match event {
            Event::TransferStarted {
                kind,
                target,
                digest,
                ..
            } => {
                let waiting = match kind {
                    TransferKind::Pull => "Pulling fs layer",
                    TransferKind::Push => "Preparing",
                    TransferKind::Export => "Waiting",
                };
                let id = short_id(digest).to_owned();
                self.bar(target, digest)
                    .set_message(format!("{id}: {waiting}"));
            }
            Event::TransferProgress {
                kind,
                target,
                digest,
                current,
                total,
                ..
            } => {
                let total = total.map(|t| format!("/{}", size(t))).unwrap_or_default();
                let line = format!(
                    "{}: {:<12} {}{total}",
                    short_id(digest),
                    moving(*kind),
                    size(*current)
                );
                self.bar(target, digest).set_message(line);
            }
            Event::TransferFinished {
                kind,
                target,
                digest,
                outcome,
                ..
            } => {
                let line = format!("{}: {}", short_id(digest), final_state(*kind, *outcome));
                self.bar(target, digest).finish_with_message(line);
            }
            _ => {}
        }
        Ok(())
    }

    fn end(&mut self) -> io::Result<()> {
        // The live view draws only the lines that fit on the screen; what scrolled off
        // above it was never printed. So the live lines are cleared and every blob's last
        // line printed once, in order, as docker leaves a pull of many layers (lines of
        // transfers that never finished, the operation failed, stay as they were).
        for bar in self.bars.values() {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
        let cleared = self.multi.clear();
        self.multi.set_draw_target(ProgressDrawTarget::hidden());
        let mut err = io::stderr().lock();
        for key in self.order.drain(..) {
            if let Some(bar) = self.bars.remove(&key) {
                writeln!(err, "{}", bar.message())?;
            }
        }
        self.bars.clear();
        cleared.and(err.flush())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn sizes_read_as_docker_shows_them() {
        assert_eq!(size(0), "0B");
        assert_eq!(size(999), "999B");
        assert_eq!(size(1_070_000), "1.07MB");
        assert_eq!(size(12_345_678), "12.3MB");
        assert_eq!(size(456_000_000), "456MB");
        assert_eq!(short_id("sha256:3f2a1b9c2d01ffee"), "3f2a1b9c2d01");
    }

    #[test]
    fn plain_prints_a_line_when_bytes_move_and_one_at_the_end() {
        let digest = "sha256:3f2a1b9c2d01aaaaaaaa".to_owned();
        let common = |e: fn(String, String) -> Event| e("r/a:1".to_owned(), digest.clone());
        let events = [
            common(|target, digest| Event::TransferStarted {
                step: None,
                kind: TransferKind::Pull,
                target,
                digest,
                total: Some(2_000_000),
            }),
            common(|target, digest| Event::TransferProgress {
                step: None,
                kind: TransferKind::Pull,
                target,
                digest,
                current: 1_000_000,
                total: Some(2_000_000),
            }),
            common(|target, digest| Event::TransferProgress {
                step: None,
                kind: TransferKind::Pull,
                target,
                digest,
                current: 2_000_000,
                total: Some(2_000_000),
            }),
            common(|target, digest| Event::TransferFinished {
                step: None,
                kind: TransferKind::Pull,
                target,
                digest,
                size: 2_000_000,
                outcome: TransferOutcome::Done,
                duration: Duration::from_millis(5),
            }),
        ];
        let mut out = Vec::new();
        let mut plain = TransferPlain::new(&mut out);
        for event in &events {
            plain
                .render(SystemTime::UNIX_EPOCH, event)
                .expect("rendering to memory");
        }
        assert_eq!(
            String::from_utf8_lossy(&out),
            "3f2a1b9c2d01: Downloading 2.00MB\n3f2a1b9c2d01: Pull complete 2.00MB\n"
        );
    }
}
