//! The build engine of rbuild, the crate other tools embed.
//!
//! It owns everything below the Dockerfile front end: the content store and its OCI image
//! layout, layer writing and applying, filesystem snapshots and the change sets they
//! yield, the sandbox executor that runs build steps, the cache, the solver and the
//! exporters. It knows nothing of the terminal: progress goes to a caller-supplied sink.
#![deny(missing_docs)]

pub use oci_spec;

// --- shared helpers: atomic writes, error chains ---
mod atomic;
mod beneath;
mod error_chain;
pub use crate::error_chain::error_chain;

// --- change sets: the contract between snapshots and layers ---
mod change;
pub use crate::change::{Change, ChangeKind, ChangeSet};

// --- storage: digests, content store, layers, images, exporters ---
mod digest;
mod export;
mod image;
mod layer;
pub mod oci_layout;
mod store;
pub use crate::digest::{Digest, Hasher, InvalidDigest};
pub use crate::export::{
    CONTAINERD_NAME_ANNOTATION, DEST_STDOUT, ExportError, ExportTarget, Exported, Exporter,
    InvalidExportTarget, export, import_rootfs, load_archive, load_archive_from, save_images,
    save_layout_dir, unpack_rootfs, zstd_docker_archive_warning,
};
pub use crate::image::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, Empty, Healthcheck, History, Image, ImageConfig,
    ImageError, ImageFormat, ImageSpec, OCI_INDEX, OCI_MANIFEST, Problem, PruneReport, RootFs,
    RunConfig, assemble, host_architecture, host_platform, load_image, prune, referenced_blobs,
    rfc3339, tag_image, verify, verify_layers, write_manifest,
};
pub use crate::image::{DiskUsage, LayerCheck, Usage, disk_usage};
pub use crate::layer::{
    Applied, ApplyMode, ArchiveLimits, Compression, DEFAULT_MAX_ENTRIES, DEFAULT_MAX_RATIO,
    DEFAULT_RATIO_ABOVE, InvalidLimit, Layer, LayerError, LayerOptions, LimitExceeded,
    MAX_ENTRIES_ENV, MAX_RATIO_ENV, OPAQUE_WHITEOUT, OVERLAY_OPAQUE_USER_XATTR,
    OVERLAY_OPAQUE_XATTR, PAX_XATTR_PREFIX, RATIO_ABOVE_ENV, WHITEOUT_PREFIX, apply_layer,
    apply_layer_limited, chain_ids, decompress, is_overlay_xattr, tree_changes, write_layer,
    write_layer_to,
};
pub use crate::store::{
    Blob, BlobWriter, ContentStore, ExclusiveLock, ImageName, InvalidImageName, LOCK_FILE,
    NamedImage, StoreError, default_root,
};

// --- privilege: root of the host, of a user namespace, or not root ---
mod privilege;
pub mod rootless;
pub use crate::privilege::Privilege;

// --- execution: sandbox executor, snapshotters ---
mod exec;
mod snapshot;
pub use crate::exec::{
    BindMount, CancelToken, Command, Credentials, DEFAULT_PATH, DEFAULT_RUNC, DEFAULT_SHELL,
    ExecError, Executor, ExitStatus, FileMount, IdMapping, Limits, Network, OutputSink, RunSpec,
    RuncExecutor, SandboxExecutor, Security, Terminal, TmpfsMount, TreeMount, WindowSize,
    resolve_user,
};
pub use crate::snapshot::{
    CopySnapshotter, LowerView, OverlaySnapshotter, Snapshot, SnapshotError, Snapshotter, StepRoot,
};

// --- running a stored image: `rbuild run` ---
mod container;
pub use crate::container::{
    ContainerError, ContainerId, ContainerOptions, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND,
    EXIT_RUN_FAILED, container_command, container_env, image_lowers, run_container,
};

// --- the build engine: solver, steps, cache ---
mod solver;
pub use crate::solver::{
    BuildError, BuildRequest, BuildResult, BuildSecret, Builder, CACHE_DIR, CACHE_MOUNTS_DIR,
    CacheKey, DEFAULT_SSH_ID, DockerfileInput, DockerfilePhase, Entitlement, ExecutorKind,
    Location, MissReason, MountError, SecretSource, SnapshotterKind, SshAgent, StepReport,
    UnknownEntitlement, prune_cache_mounts,
};
pub use crate::solver::{
    CACHE_ARTIFACT_TYPE, CACHE_CONFIG_TYPE, CacheExport, CacheImport, CacheLocation, CacheMode,
    CacheShareError, DEFAULT_LOCAL_TAG, InvalidCacheOption,
};
pub use crate::solver::{ReproReport, Squash};

// --- progress events ---
mod progress;
pub use crate::progress::{
    BuildId, Collect, Event, NullProgress, Progress, ProgressFn, StepId, StepOutput, Stream,
    TransferKind, TransferOutcome, display_name,
};

// --- build context ---
mod context;
pub use crate::context::{
    ContextEntry, ContextError, ContextHashes, ContextListing, ContextSource, DOCKERIGNORE,
    EntryType, HashError, HashStats, INDEX_DIR, IgnoreError, IgnoreRules, IndexError,
    MAX_IGNORE_BYTES, MAX_SYMLINK_HOPS, PatternError, ResolveError, UnpackError, WalkError,
    resolve_source,
};

// --- COPY and ADD ---
mod copy;
pub use crate::copy::{
    ChmodError, CopyError, CopyOp, CopySource, CopyStats, ModeChange, SourcesDescription, copy,
    describe_sources, selected_sources, sources_digest,
};

// --- credentials kept out of output ---
mod redact;
pub use crate::redact::{REDACTED, has_url_credentials, is_secret_name, redact_urls};

// --- registry ---
mod http;
mod registry;
pub use crate::registry::{
    ACCEPTED_MANIFEST_TYPES, CONFIG_ENV, Challenge, ConfigError, DEFAULT_HTTP_DEADLINE,
    DOCKER_CONFIG_ENV, DockerConfig, HTTP_TIMEOUT_ENV, Mirror, Pulled, PushOptions, RegistryClient,
    RegistryConfig, RegistryCredentials, RegistryError, RegistryErrorKind, RegistryOptions,
    SYSTEM_CONFIG, UploadMode, http_deadline, pull, pull_with_mirrors, push,
};
