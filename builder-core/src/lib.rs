//! The build engine of rbuild, the crate other tools embed.
//!
//! It owns everything below the Dockerfile front end: the content store and its OCI image
//! layout, layer writing and applying, filesystem snapshots and the change sets they
//! yield, the sandbox executor that runs build steps, the cache, the solver and the
//! exporters. It knows nothing of the terminal: progress goes to a caller-supplied sink.
#![deny(missing_docs)]

pub use oci_spec;

// --- change sets: the contract between snapshots and layers ---
mod change;
pub use crate::change::{Change, ChangeKind, ChangeSet};

// --- storage: digests, content store, layers, images, exporters ---

// --- execution: sandbox executor, snapshotters ---
mod exec;
mod snapshot;
pub use crate::exec::{
    CancelToken, Command, Credentials, DEFAULT_PATH, DEFAULT_RUNC, DEFAULT_SHELL, ExecError,
    Executor, ExitStatus, IdMapping, Limits, Network, OutputSink, RunSpec, RuncExecutor,
    SandboxExecutor, Stream, resolve_user,
};
pub use crate::snapshot::{
    CopySnapshotter, LowerView, OPAQUE_XATTR, OPAQUE_XATTR_USER, OVERLAY_XATTR_PREFIXES,
    OverlaySnapshotter, RootFs, Snapshot, SnapshotError, Snapshotter,
};
