//! The build engine of rbuild, the crate other tools embed.
//!
//! It owns everything below the Dockerfile front end: the content store and its OCI image
//! layout, layer writing and applying, filesystem snapshots and the change sets they
//! yield, the sandbox executor that runs build steps, the cache, the solver and the
//! exporters. It knows nothing of the terminal: progress goes to a caller-supplied sink.
//!
//! # Where to start
//!
//! The crate root holds the names a tool building images starts from; everything else
//! lives in the public modules below, by area.
//!
//! - A [`Builder`] on a [`ContentStore`] runs a [`BuildRequest`] (a [`DockerfileInput`]
//!   and a [`ContextSource`], tags as [`ImageName`]s, outputs as [`ExportTarget`]s) and
//!   returns a [`BuildResult`] whose image ID is a [`Digest`].
//! - While it builds it sends each [`Event`] to a [`Progress`] sink (a closure will do);
//!   the request's [`CancelToken`] stops it from any thread.
//! - A failed build is a [`BuildError`] to match on: `Dockerfile` (the parser's error with
//!   its line and column), `BaseImage`, `StepFailed` (with the exit code), `Canceled`,
//!   ...; [`BuildError::registry_error`] gives the registry's error behind a failed pull
//!   or push, whose [`RegistryErrorKind`] tells "unauthorized" from "not found".
//!
//! `examples/embed.rs` in the repository is a complete tool on these names alone (run it
//! with `RBUILD_ROOT=STORE cargo run -p rbuild-core --example embed -- CONTEXT NAME`).
//!
//! # The modules
//!
//! | module | what |
//! |---|---|
//! | [`solver`] | the build: request parts, cache import and export, secrets, the executor and snapshotter a build uses |
//! | [`progress`] | events, sinks ([`progress::Collect`], [`progress::NullProgress`]) |
//! | [`store`] | the content store: blobs, named images, the store lock |
//! | [`digest`] | content digests and the hasher |
//! | [`change`] | [`change::ChangeSet`], what a step changed: the contract between snapshots and layers |
//! | [`layer`] | writing a change set as a layer, applying layers |
//! | [`limits`] | what the caller limits: tar bombs ([`limits::ArchiveLimits`]), the HTTP deadline |
//! | [`image`] | image configs, manifests, assembling, verifying, pruning |
//! | [`export`] | where an image goes: archives, layouts, `docker load`; importing a rootfs |
//! | [`registry`] | pull and push, credentials, mirrors, registry options |
//! | [`context`] | the build context: sources, `.dockerignore`, hashing |
//! | [`copy`] | `COPY` and `ADD` |
//! | [`snapshot`] | snapshotters: overlay and copy |
//! | [`exec`] | executors: the sandbox and runc |
//! | [`container`] | running a stored image (`rbuild run`) |
//! | [`privilege`], [`rootless`] | what the process may do; user namespaces |
//! | [`redact`], [`error_chain`] | credentials kept out of output; errors on one line |
//!
//! # Example: a layer and an image without a build
//!
//! The layer half of the engine needs no root: record what changed in a tree, write it as
//! a layer into a store, and make an image of it.
//!
//! ```
//! use rbuild_core::change::{ChangeKind, ChangeSet};
//! use rbuild_core::image::{ImageConfig, ImageSpec, assemble, load_image};
//! use rbuild_core::layer::{LayerOptions, write_layer};
//! use rbuild_core::{ContentStore, ImageName};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = ContentStore::open(dir.path().join("store"))?;
//!
//! // The tree a step left behind, and what it changed.
//! let tree = dir.path().join("tree");
//! std::fs::create_dir_all(tree.join("etc"))?;
//! std::fs::write(tree.join("etc/greeting"), "hello\n")?;
//! let mut changes = ChangeSet::new();
//! changes.record("etc", ChangeKind::Added)?;
//! changes.record("etc/greeting", ChangeKind::Added)?;
//!
//! let layer = write_layer(&store, &tree, &changes, &LayerOptions::default())?;
//! let spec = ImageSpec::new(ImageConfig::for_host());
//! let image = assemble(&store, &spec, &[layer])?;
//! let name: ImageName = "example/greeting:1".parse()?;
//! store.tag(&name, &image.descriptor)?;
//!
//! let named = store.resolve("example/greeting:1")?;
//! let loaded = load_image(&store, &named.descriptor)?;
//! assert_eq!(loaded.config.rootfs.diff_ids.len(), 1);
//! assert_eq!(loaded.config_digest, image.config_digest);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

pub use oci_spec;

// The names an embedder starts from (see the crate docs), shown at the root in the docs
// though their modules are public too.
#[doc(inline)]
pub use crate::context::ContextSource;
#[doc(inline)]
pub use crate::digest::Digest;
#[doc(inline)]
pub use crate::exec::CancelToken;
#[doc(inline)]
pub use crate::export::ExportTarget;
#[doc(inline)]
pub use crate::progress::{Event, Progress};
#[doc(inline)]
pub use crate::registry::RegistryErrorKind;
#[doc(inline)]
pub use crate::solver::{
    BuildError, BuildOptions, BuildRequest, BuildResult, BuildSpec, Builder, DockerfileInput,
};
#[doc(inline)]
pub use crate::store::{ContentStore, ImageName};

mod atomic;
mod beneath;
pub mod change;
pub mod container;
pub mod context;
pub mod copy;
pub mod digest;
pub mod error_chain;
pub mod exec;
pub mod export;
pub(crate) mod fakeroot;
mod http;
pub mod image;
pub mod layer;
pub mod limits;
pub mod oci_layout;
pub mod privilege;
pub mod progress;
pub mod redact;
pub mod registry;
pub mod rootless;
pub mod snapshot;
pub mod solver;
pub mod store;
