//! Transfers: one blob moved, its events throttled, and the sink that files them under a
//! build step.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{Event, Progress, StepId, TransferKind, TransferOutcome};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::{Collect, Stream};

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
}
