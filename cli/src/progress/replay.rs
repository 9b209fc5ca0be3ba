//! Replaying a recorded build: `rbuild debug progress-replay EVENTS.jsonl`.
//!
//! The input is what `--progress rawjson` writes. Replayed as fast as possible, the
//! events keep their recorded times, so the output is the same on every run: the
//! renderers' golden tests are replays. Replayed in real time (`--speed`), the events
//! are spaced as they were recorded, divided by the speed, and stamped with the wall
//! clock, as in a live build: this is how the `tty` view is shown and captured.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use anyhow::Context as _;
use rbuild_core::{Event, Progress as _};

use super::{ProgressMode, Reporter, rawjson};

/// Reads a rawjson event stream from `path` (`-` for standard input).
pub fn read_events(path: &Path) -> anyhow::Result<Vec<(SystemTime, Event)>> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading events from standard input")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            rawjson::parse_line(line)
                .with_context(|| format!("reading event at {}:{}", path.display(), n + 1))
        })
        .collect()
}

/// Renders `events` in `mode`; with a `speed` above zero, in real time divided by
/// `speed`, else at once with the recorded times.
pub fn replay(
    events: &[(SystemTime, Event)],
    mode: ProgressMode,
    speed: f64,
) -> anyhow::Result<()> {
    if speed > 0.0 {
        let reporter = Reporter::new(mode);
        let mut previous = None;
        for (at, event) in events {
            if let Some(previous) = previous {
                let gap = at.duration_since(previous).unwrap_or_default();
                std::thread::sleep(gap.div_f64(speed));
            }
            previous = Some(*at);
            reporter.event(event);
        }
    } else {
        let now = Arc::new(Mutex::new(SystemTime::UNIX_EPOCH));
        let clock = Arc::clone(&now);
        let reporter = Reporter::with_clock(
            super::renderer(mode),
            Box::new(move || *clock.lock().unwrap_or_else(PoisonError::into_inner)),
        );
        for (at, event) in events {
            *now.lock().unwrap_or_else(PoisonError::into_inner) = *at;
            reporter.event(event);
        }
    }
    Ok(())
}

/// Arguments of `rbuild debug progress-replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The recorded events, one JSON object per line; `-` reads standard input.
    events: std::path::PathBuf,
    /// How to show the progress.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    progress: ProgressMode,
    /// Replay in real time divided by this factor (2 = twice as fast); 0 replays at once
    /// with the recorded times.
    #[arg(long, default_value_t = 0.0)]
    speed: f64,
}

/// Runs `rbuild debug progress-replay`.
pub fn run(args: ReplayArgs) -> anyhow::Result<std::process::ExitCode> {
    let events = read_events(&args.events)?;
    replay(&events, args.progress, args.speed)?;
    Ok(std::process::ExitCode::SUCCESS)
}
