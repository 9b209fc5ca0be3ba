//! The OCI distribution client: pull images into the content store and push them out.
//!
//! [`RegistryClient`] speaks distribution-spec `spec.md` over a blocking HTTP client:
//! manifests (OCI and Docker v2 schema 2, indexes and manifest lists resolved to the host
//! platform), blobs streamed into the store and verified before they are named, pushes
//! with existence checks, cross-repository mounts and chunked uploads. Authentication
//! (anonymous, Basic, Bearer tokens) and docker's `config.json` credentials live in
//! [`RegistryCredentials`] and [`DockerConfig`].

mod auth;
mod client;
mod mirror;
mod options;
mod pull;
mod push;
mod response;

use std::io;
use std::path::PathBuf;

pub use self::auth::{Challenge, DOCKER_CONFIG_ENV, DockerConfig, RegistryCredentials};
pub use self::client::RegistryClient;
pub use self::mirror::{
    CONFIG_ENV, ConfigError, Mirror, Pulled, RegistryConfig, SYSTEM_CONFIG, pull_with_mirrors,
};
pub use self::options::{RegistryOptions, UploadMode};
pub use self::pull::{PullPlatform, pull};
pub(crate) use self::pull::{Report as BlobReport, fetch_blob, fetch_manifest, for_each_parallel};
pub(crate) use self::push::push_manifest;
pub use self::push::{PushOptions, push};
use crate::digest::Digest;
pub(crate) use crate::http::is_timeout_io;
use crate::image::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, ImageError, OCI_INDEX, OCI_MANIFEST};
use crate::limits::HTTP_TIMEOUT_ENV;
use crate::store::StoreError;

/// distribution-spec: the manifest media types rbuild accepts, most wanted first.
pub const ACCEPTED_MANIFEST_TYPES: &[&str] = &[
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];
/// A failure talking to a registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The connection failed or broke (after retries).
    #[error("failed to {method} {}", crate::redact::redact_urls(url))]
    Http {
        /// The HTTP method.
        method: String,
        /// The URL.
        url: String,
        /// Why.
        source: Box<ureq::Error>,
    },
    /// A request did not finish within its deadline ([`RegistryOptions::deadline`]).
    #[error(
        "{method} {} did not finish within {} s, the deadline of one request (set {} to change it)",
        crate::redact::redact_urls(url),
        deadline.as_secs(),
        HTTP_TIMEOUT_ENV
    )]
    Deadline {
        /// The HTTP method.
        method: String,
        /// The URL.
        url: String,
        /// The deadline.
        deadline: std::time::Duration,
    },
    /// The registry answered with an unexpected status.
    #[error(
        "{method} {} answered {status}: {}",
        crate::redact::redact_urls(url),
        crate::redact::redact_urls(body)
    )]
    Status {
        /// The HTTP method.
        method: String,
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the response body (the registry's error JSON).
        body: String,
    },
    /// The registry refused the credentials, or wants some and none were found.
    #[error(
        "authentication to {registry} failed: {}",
        crate::redact::redact_urls(reason)
    )]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// What the registry or rbuild said.
        reason: String,
    },
    /// Content from the registry does not hash to the digest it was asked for.
    #[error("content {expected} from the registry is corrupt: it hashes to {found}")]
    DigestMismatch {
        /// The digest asked for.
        expected: Digest,
        /// What the content hashes to.
        found: Digest,
    },
    /// Content from the registry has another size than its descriptor says.
    #[error("content {digest} from the registry has {found} bytes, expected {expected}")]
    SizeMismatch {
        /// The content.
        digest: Digest,
        /// The promised size.
        expected: u64,
        /// The size received.
        found: u64,
    },
    /// A manifest or other JSON document does not parse.
    #[error("failed to parse {what}")]
    Json {
        /// Which document.
        what: String,
        /// Why.
        source: serde_json::Error,
    },
    /// A manifest has a media type rbuild does not know.
    #[error("unsupported manifest media type {0:?}")]
    MediaType(String),
    /// A descriptor does not match the blob it names (in the store already, or just
    /// downloaded): another size, or content of another media type.
    #[error("{what}: blob {digest} {why}")]
    Descriptor {
        /// The manifest.
        what: String,
        /// The blob.
        digest: Digest,
        /// What does not match.
        why: String,
    },
    /// An index holds no manifest for the wanted platform.
    #[error("image {name} has no manifest for platform {platform}")]
    NoPlatform {
        /// The image.
        name: String,
        /// The platform wanted, e.g. `linux/amd64`.
        platform: String,
    },
    /// The image is one manifest (no index) of another platform than the one asked for.
    #[error(
        "image {name} is for {found}, not {wanted} (it is one image, not an index of platforms)"
    )]
    OtherPlatform {
        /// The image.
        name: String,
        /// The platform asked for, e.g. `linux/arm64`.
        wanted: String,
        /// The platform its config says.
        found: String,
    },
    /// A local file (config.json, a blob being uploaded) could not be read or written.
    #[error("failed to {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A docker credential helper failed.
    #[error("credential helper docker-credential-{helper} failed: {message}")]
    CredentialHelper {
        /// The helper's name (after `docker-credential-`).
        helper: String,
        /// What it said.
        message: String,
    },
    /// A content store operation failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An image in the store could not be read.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A digest does not parse.
    #[error(transparent)]
    Digest(#[from] crate::digest::InvalidDigest),
    /// Every mirror and then the origin failed; the origin's error is the source.
    #[error("every registry mirror failed ({mirrors}), and so did the origin")]
    Mirrors {
        /// Each mirror and why it failed, `; `-separated.
        mirrors: String,
        /// The origin's failure.
        source: Box<RegistryError>,
    },
    /// The config file or a mirror URL is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// What kind of failure a [`RegistryError`] is, for callers that act on it (ask for
/// credentials, try another name, retry later).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryErrorKind {
    /// The registry refused the credentials, or wants some (401, 403).
    Unauthorized,
    /// The registry has no such repository, tag or blob (404).
    NotFound,
    /// The image has no manifest for the wanted platform.
    NoPlatform,
    /// The registry could not be reached, or a request broke or timed out.
    Network,
    /// The registry answered something rbuild cannot use: another status, a document
    /// that does not parse, content that does not match its digest or size.
    Protocol,
    /// A docker credential helper failed.
    CredentialHelper,
    /// The registry configuration (mirrors, config file) is invalid.
    Config,
    /// Something local failed: the content store, a file, a digest.
    Local,
}

impl RegistryError {
    /// What kind of failure this is; behind [`RegistryError::Mirrors`], the origin's.
    pub fn kind(&self) -> RegistryErrorKind {
        match self {
            RegistryError::Http { .. } | RegistryError::Deadline { .. } => {
                RegistryErrorKind::Network
            }
            RegistryError::Status {
                status: 401 | 403, ..
            }
            | RegistryError::Unauthorized { .. } => RegistryErrorKind::Unauthorized,
            RegistryError::Status { status: 404, .. } => RegistryErrorKind::NotFound,
            RegistryError::NoPlatform { .. } | RegistryError::OtherPlatform { .. } => {
                RegistryErrorKind::NoPlatform
            }
            RegistryError::Status { .. }
            | RegistryError::DigestMismatch { .. }
            | RegistryError::SizeMismatch { .. }
            | RegistryError::Json { .. }
            | RegistryError::MediaType(_)
            | RegistryError::Descriptor { .. } => RegistryErrorKind::Protocol,
            RegistryError::CredentialHelper { .. } => RegistryErrorKind::CredentialHelper,
            RegistryError::Config(_) => RegistryErrorKind::Config,
            RegistryError::Mirrors { source, .. } => source.kind(),
            RegistryError::Io { .. }
            | RegistryError::Store(_)
            | RegistryError::Image(_)
            | RegistryError::Digest(_) => RegistryErrorKind::Local,
        }
    }
}

pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> RegistryError {
    let path = path.into();
    move |source| RegistryError::Io {
        action,
        path,
        source,
    }
}
