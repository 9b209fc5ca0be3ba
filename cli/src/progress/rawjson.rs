//! `--progress rawjson`: one JSON object per event and line, for CI systems.
//!
//! Each line is the serde form of [`rbuild_core::Event`] (a `type` field naming the
//! event, the event's fields beside it) with a `time` field added: the RFC 3339 UTC time,
//! to the millisecond, at which the event happened:
//!
//! ```text
//! {"time":"2026-11-23T15:00:01.512Z","type":"step_log","step":5,"stream":"stdout","text":"Collecting flask"}
//! ```
//!
//! `docs/progress/rawjson.schema.json` is the JSON Schema of a line. The last line is the
//! `build_finished` or `build_failed` event; there is no separate summary.

use std::io::{self, Write};
use std::time::SystemTime;

use anyhow::Context as _;
use rbuild_core::Event;
use serde::{Deserialize, Serialize};

use super::Renderer;

/// One line of rawjson output: an event and its time.
#[derive(Debug, Serialize)]
struct Line<'a> {
    time: String,
    #[serde(flatten)]
    event: &'a Event,
}

/// One line of rawjson output, read back.
#[derive(Debug, Deserialize)]
struct OwnedLine {
    time: String,
    #[serde(flatten)]
    event: Event,
}

/// Renders events as JSON lines to `W`.
pub struct RawJson<W> {
    out: W,
}

impl<W: Write> RawJson<W> {
    /// A renderer writing to `out`.
    pub fn new(out: W) -> Self {
        Self { out }
    }
}

impl<W: Write + Send> Renderer for RawJson<W> {
    fn render(&mut self, at: SystemTime, event: &Event) -> io::Result<()> {
        let line = Line {
            time: humantime::format_rfc3339_millis(at).to_string(),
            event,
        };
        serde_json::to_writer(&mut self.out, &line)?;
        writeln!(self.out)?;
        // CI systems read the stream as it comes: one event must not wait for the next.
        self.out.flush()
    }
}

/// Reads back one line written by [`RawJson`].
pub fn parse_line(line: &str) -> anyhow::Result<(SystemTime, Event)> {
    let OwnedLine { time, event } = serde_json::from_str(line).context("invalid event")?;
    let at = humantime::parse_rfc3339(&time).with_context(|| format!("invalid time {time:?}"))?;
    Ok((at, event))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rbuild_core::progress::{StepId, Stream};

    use super::*;

    #[test]
    fn a_line_reads_back_as_the_event_and_time_it_was_written_from() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        let event = Event::log(StepId(5), Stream::Stdout, b"Collecting flask\n");
        let mut out = Vec::new();
        RawJson::new(&mut out)
            .render(at, &event)
            .expect("rendering to memory");
        let text = String::from_utf8(out).expect("rawjson is UTF-8");
        assert_eq!(
            text,
            "{\"time\":\"2026-11-18T11:06:40.123Z\",\"type\":\"step_log\",\"step\":5,\
             \"stream\":\"stdout\",\"text\":\"Collecting flask\"}\n"
        );
        let (back_at, back) = parse_line(text.trim_end()).expect("reading the line back");
        assert_eq!((back_at, back), (at, event));
    }

    #[test]
    fn a_bad_time_is_reported_with_its_value() {
        let err = parse_line(r#"{"time":"yesterday","type":"warning","message":"m"}"#)
            .expect_err("the time is not RFC 3339");
        assert_eq!(err.to_string(), "invalid time \"yesterday\"");
    }
}
