//! How a registry client behaves: retries, timeouts, insecure registries, uploads.

use std::time::Duration;

/// How a [`RegistryClient`](super::RegistryClient) behaves.
///
/// ```
/// use std::time::Duration;
/// use rbuild_core::registry::RegistryOptions;
///
/// let options = RegistryOptions::default()
///     .with_insecure_registries(vec!["registry.local:5000".to_owned()])
///     .with_deadline(Duration::from_secs(60));
/// assert_eq!(options.retries, RegistryOptions::default().retries);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RegistryOptions {
    /// Registries (`host[:port]`) spoken to over plain HTTP, besides `localhost` and
    /// `127.0.0.1`, which always are.
    pub insecure_registries: Vec<String>,
    /// How many blobs move at once.
    pub parallel: usize,
    /// How blobs larger than [`chunk_size`](Self::chunk_size) go up.
    pub upload: UploadMode,
    /// Blobs up to this size are uploaded from memory in one `PUT`; larger ones as
    /// [`upload`](Self::upload) says (in chunks of this size when chunked).
    pub chunk_size: u64,
    /// How many times a request is retried after a 5xx answer or a broken connection.
    pub retries: u32,
    /// The first pause before a retry; it doubles each time.
    pub backoff: Duration,
    /// The longest one request may take, from connecting to the last byte of its body
    /// (redirects included): a silent or dripping registry cannot hold a build longer.
    /// A request that ran out of it is not retried.
    /// [`DEFAULT_HTTP_DEADLINE`](crate::limits::DEFAULT_HTTP_DEADLINE) by default.
    pub deadline: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            insecure_registries: Vec::new(),
            parallel: 3,
            upload: UploadMode::Monolithic,
            chunk_size: 16 << 20,
            retries: 3,
            backoff: Duration::from_millis(200),
            deadline: crate::limits::DEFAULT_HTTP_DEADLINE,
        }
    }
}

impl RegistryOptions {
    /// With [`insecure_registries`](Self::insecure_registries) set.
    pub fn with_insecure_registries(mut self, registries: Vec<String>) -> Self {
        self.insecure_registries = registries;
        self
    }

    /// With [`parallel`](Self::parallel) set.
    pub fn with_parallel(mut self, parallel: usize) -> Self {
        self.parallel = parallel;
        self
    }

    /// With [`upload`](Self::upload) set.
    pub fn with_upload(mut self, upload: UploadMode) -> Self {
        self.upload = upload;
        self
    }

    /// With [`chunk_size`](Self::chunk_size) set.
    pub fn with_chunk_size(mut self, bytes: u64) -> Self {
        self.chunk_size = bytes;
        self
    }

    /// With [`retries`](Self::retries) set.
    pub fn with_retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// With [`backoff`](Self::backoff) set.
    pub fn with_backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// With [`deadline`](Self::deadline) set.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }
}

/// How a large blob is uploaded (distribution-spec "Pushing blobs").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UploadMode {
    /// One `PUT` whose body streams the whole blob from its file (the size is known), as
    /// skopeo does: one request, no per-chunk round trips.
    #[default]
    Monolithic,
    /// `PATCH` requests of [`RegistryOptions::chunk_size`] bytes each, then a closing
    /// `PUT`: for registries or proxies that limit the size of one request.
    Chunked,
}

/// Whether `registry` is reached over plain HTTP.
pub(crate) fn is_plain_http(registry: &str, insecure: &[String]) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        registry.rsplit_once(':').map_or(registry, |(h, _)| h)
    };
    matches!(host, "localhost" | "127.0.0.1" | "::1") || insecure.iter().any(|r| r == registry)
}
