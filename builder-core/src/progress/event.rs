//! The events a build sends and the identifiers they carry, with their serde form (the
//! `rawjson` progress of the CLI is this form, one object a line).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Identifies one build in progress events, so that a consumer can tell builds apart
/// when several report to it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BuildId(pub String);

impl fmt::Display for BuildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Identifies one step of a build in progress events. Numbers are chosen by the engine,
/// unique within a build; renderers show them as `#n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StepId(pub u32);

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// Which output stream of a step's process a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    /// The process's standard output.
    Stdout,
    /// The process's standard error.
    Stderr,
}

/// What a finished step added to the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepOutput {
    /// The step changed the filesystem: this layer was written.
    Layer {
        /// The layer blob's digest, `sha256:<hex>`; for a layer kept as a directory
        /// until an output needs its blob (the overlay snapshotter's), its diff_id.
        digest: String,
        /// The layer blob's size in bytes; for a layer kept as a directory, its tar's.
        size: u64,
    },
    /// The step changed only the image configuration (ENV, CMD, ...) or nothing: the
    /// image history gets an `empty_layer` entry.
    EmptyLayer,
}

/// What a transfer moves a blob for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    /// From a registry into the store.
    Pull,
    /// From the store to a registry.
    Push,
    /// From the store into an export (`-o type=oci|docker|tar|local`, `save`).
    Export,
}

/// How a transfer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferOutcome {
    /// The bytes were moved.
    Done,
    /// The registry has the blob already: nothing was uploaded (docker's "Layer already
    /// exists").
    AlreadyExists,
    /// The registry linked the blob from another of its repositories (docker's "Mounted
    /// from").
    Mounted,
    /// The store has the blob already: nothing was downloaded (docker's "Already exists").
    Cached,
    /// The transfer failed; the operation reports why.
    Failed,
}

/// One thing that happened during a build. See the module documentation for the order in
/// which they come.
///
/// The serde form is an object with a `type` field naming the variant in snake case
/// (`"step_started"`) and the variant's fields beside it; durations are whole
/// milliseconds in fields ending in `_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// The build began.
    BuildStarted {
        /// This build's identifier.
        build_id: BuildId,
        /// How many stages the build runs (after pruning unused stages).
        stages: u32,
        /// How many steps the build runs, counting steps that may turn out cached.
        steps: u32,
    },
    /// A step began (or began to be looked up in the cache).
    StepStarted {
        /// The step.
        step: StepId,
        /// The name of the stage the step belongs to, if the stage is named.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stage: Option<String>,
        /// The name shown for the step, `[2/6] RUN pip install -r requirements.txt`; see
        /// [`display_name`](super::display_name).
        name: String,
        /// The step's 1-based line in the Dockerfile, if it comes from one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        line: Option<u32>,
        /// For a `RUN` step whose stage is of another platform than the build machine's:
        /// that platform (`linux/arm64`), whose programs the kernel runs through
        /// emulation (QEMU's `binfmt_misc` handlers) if the step runs.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        emulated: Option<String>,
    },
    /// A step's process wrote a line of output.
    StepLog {
        /// The step.
        step: StepId,
        /// The stream the line came from.
        stream: Stream,
        /// The line, without its line ending; bytes that are not UTF-8 are replaced
        /// (see [`Event::log`]).
        text: String,
    },
    /// A step's result was found in the cache; the step did not run.
    StepCached {
        /// The step.
        step: StepId,
        /// The cache key that matched, `sha256:<hex>`.
        cache_key: String,
        /// What the cached result added to the image.
        output: StepOutput,
    },
    /// A step ran and succeeded.
    StepFinished {
        /// The step.
        step: StepId,
        /// How long the step ran.
        #[serde(rename = "duration_ms", with = "millis")]
        duration: Duration,
        /// What the step added to the image.
        output: StepOutput,
    },
    /// A step ran and failed; the build fails with it.
    StepFailed {
        /// The step.
        step: StepId,
        /// How long the step ran.
        #[serde(rename = "duration_ms", with = "millis")]
        duration: Duration,
        /// The exit code of the step's process, if a process ran and exited.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        exit_code: Option<i32>,
        /// What went wrong, lower case: `process "/bin/sh -c false" did not complete
        /// successfully: exit code: 1`.
        message: String,
    },
    /// Something in the build definition deserves attention but does not stop the build.
    Warning {
        /// The short name of the check that warns, `JSONArgsRecommended`, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rule: Option<String>,
        /// The warning.
        message: String,
        /// The 1-based Dockerfile line the warning is about, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        line: Option<u32>,
    },
    /// The build succeeded.
    BuildFinished {
        /// The built image's ID: the digest of its configuration, `sha256:<hex>`.
        image_id: String,
        /// The names the image was stored or pushed under (`-t`), possibly none.
        names: Vec<String>,
        /// How long the build took.
        #[serde(rename = "duration_ms", with = "millis")]
        duration: Duration,
    },
    /// The build failed.
    BuildFailed {
        /// Why, lower case: `failed to solve: ...`.
        message: String,
        /// How long the build ran before failing.
        #[serde(rename = "duration_ms", with = "millis")]
        duration: Duration,
    },
    /// A blob began to move (see "Transfers" in the module documentation).
    TransferStarted {
        /// The build step the transfer belongs to, within a build.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<StepId>,
        /// What the blob moves for.
        kind: TransferKind,
        /// The image reference pulled or pushed, or the export's destination.
        target: String,
        /// The blob's digest, `sha256:<hex>`.
        digest: String,
        /// The blob's size in bytes, if known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total: Option<u64>,
    },
    /// Bytes of a blob moved: `current` of `total` so far, never fewer than the last
    /// event of this transfer said.
    TransferProgress {
        /// The build step the transfer belongs to, within a build.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<StepId>,
        /// What the blob moves for.
        kind: TransferKind,
        /// The image reference pulled or pushed, or the export's destination.
        target: String,
        /// The blob's digest, `sha256:<hex>`.
        digest: String,
        /// Bytes moved so far.
        current: u64,
        /// The blob's size in bytes, if known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total: Option<u64>,
    },
    /// A transfer ended.
    TransferFinished {
        /// The build step the transfer belongs to, within a build.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        step: Option<StepId>,
        /// What the blob moved for.
        kind: TransferKind,
        /// The image reference pulled or pushed, or the export's destination.
        target: String,
        /// The blob's digest, `sha256:<hex>`.
        digest: String,
        /// The blob's size in bytes (for a failed transfer: the bytes moved).
        size: u64,
        /// How it ended.
        outcome: TransferOutcome,
        /// How long it took.
        #[serde(rename = "duration_ms", with = "millis")]
        duration: Duration,
    },
}

impl Event {
    /// A [`Event::StepLog`] for one line of raw process output: bytes that are not
    /// UTF-8 are replaced with U+FFFD, and a trailing `\n` or `\r\n` is dropped.
    pub fn log(step: StepId, stream: Stream, line: &[u8]) -> Self {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        Event::StepLog {
            step,
            stream,
            text: String::from_utf8_lossy(line).into_owned(),
        }
    }

    /// The step this event is about, if it is about one.
    pub fn step(&self) -> Option<StepId> {
        match self {
            Event::StepStarted { step, .. }
            | Event::StepLog { step, .. }
            | Event::StepCached { step, .. }
            | Event::StepFinished { step, .. }
            | Event::StepFailed { step, .. } => Some(*step),
            Event::TransferStarted { step, .. }
            | Event::TransferProgress { step, .. }
            | Event::TransferFinished { step, .. } => *step,
            Event::BuildStarted { .. }
            | Event::Warning { .. }
            | Event::BuildFinished { .. }
            | Event::BuildFailed { .. } => None,
        }
    }
}

/// Serde for durations as whole milliseconds.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn events_serialize_with_a_type_tag_and_millisecond_durations() {
        let event = Event::StepFinished {
            step: StepId(5),
            duration: Duration::from_millis(2104),
            output: StepOutput::Layer {
                digest: "sha256:ab".into(),
                size: 42,
            },
        };
        let json = serde_json::to_string(&event).expect("serializing an event");
        assert_eq!(
            json,
            r#"{"type":"step_finished","step":5,"duration_ms":2104,"output":{"kind":"layer","digest":"sha256:ab","size":42}}"#
        );
        let back: Event = serde_json::from_str(&json).expect("parsing an event");
        assert_eq!(back, event);
    }

    #[test]
    fn optional_fields_are_left_out_when_absent() {
        let event = Event::StepStarted {
            step: StepId(1),
            stage: None,
            name: "[internal] load build definition from Dockerfile".into(),
            line: None,
            emulated: None,
        };
        let json = serde_json::to_string(&event).expect("serializing an event");
        assert_eq!(
            json,
            r#"{"type":"step_started","step":1,"name":"[internal] load build definition from Dockerfile"}"#
        );
    }

    #[test]
    fn log_lines_are_lossy_text_without_line_endings() {
        let event = Event::log(StepId(2), Stream::Stderr, b"caf\xe9 ok\r\n");
        assert_eq!(
            event,
            Event::StepLog {
                step: StepId(2),
                stream: Stream::Stderr,
                text: "caf\u{fffd} ok".into(),
            }
        );
    }
}
