//! The limits an embedder sets on what rbuild reads from outside: how far an archive may
//! expand and how many entries it may hold (tar bombs), and how long one HTTP request
//! may take.
//!
//! The library reads no environment variable for them: a [`ContentStore`] holds the
//! [`ArchiveLimits`] of the archives it unpacks ([`ContentStore::with_archive_limits`]),
//! a [`Builder`] takes all of them ([`Builder::with_limits`]), and a registry client its
//! deadline ([`RegistryOptions::deadline`]). The defaults are generous, far above real
//! images. The `rbuild` command reads its environment variables ([`MAX_RATIO_ENV`],
//! [`RATIO_ABOVE_ENV`], [`MAX_ENTRIES_ENV`], [`HTTP_TIMEOUT_ENV`]) into these values;
//! errors past a limit name the variable, as its user sets the limit there.
//!
//! [`ContentStore`]: crate::ContentStore
//! [`ContentStore::with_archive_limits`]: crate::ContentStore::with_archive_limits
//! [`Builder`]: crate::Builder
//! [`Builder::with_limits`]: crate::Builder::with_limits
//! [`RegistryOptions::deadline`]: crate::registry::RegistryOptions::deadline

use std::time::Duration;

/// The `rbuild` command's environment variable setting [`ArchiveLimits::max_ratio`].
pub const MAX_RATIO_ENV: &str = "RBUILD_ARCHIVE_MAX_RATIO";
/// The `rbuild` command's environment variable setting [`ArchiveLimits::max_entries`].
pub const MAX_ENTRIES_ENV: &str = "RBUILD_ARCHIVE_MAX_ENTRIES";
/// The `rbuild` command's environment variable setting
/// [`ArchiveLimits::ratio_applies_above`].
pub const RATIO_ABOVE_ENV: &str = "RBUILD_ARCHIVE_RATIO_ABOVE";
/// The `rbuild` command's environment variable setting [`Limits::http_deadline`], in
/// whole seconds.
pub const HTTP_TIMEOUT_ENV: &str = "RBUILD_HTTP_TIMEOUT";

/// The default most bytes an archive may expand to per compressed byte.
pub const DEFAULT_MAX_RATIO: u64 = 1000;
/// The default size (uncompressed) below which the ratio is not checked: 1 GiB.
pub const DEFAULT_RATIO_ABOVE: u64 = 1 << 30;
/// The default most entries an archive may hold.
pub const DEFAULT_MAX_ENTRIES: u64 = 1_000_000;
/// The default overall deadline of one HTTP request (a registry request, an `ADD <url>`
/// download): 30 minutes.
pub const DEFAULT_HTTP_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// How much an archive may expand and how many entries it may have: the limits of
/// layers (base images, pulled or loaded), loaded and imported archives, context tars
/// and the local archives `ADD` extracts.
///
/// A few kilobytes of gzip or zstd can expand to terabytes of zeros, and a small tar can
/// hold millions of empty files; both would fill the disk or exhaust inodes of whoever
/// unpacks them.
///
/// ```
/// use rbuild_core::limits::ArchiveLimits;
///
/// let strict = ArchiveLimits::default().with_max_entries(10_000).with_max_ratio(100);
/// assert_eq!(strict.max_entries, 10_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ArchiveLimits {
    /// Most uncompressed bytes per compressed byte, once past `ratio_applies_above`.
    pub max_ratio: u64,
    /// Uncompressed bytes an archive may always expand to, whatever its ratio.
    pub ratio_applies_above: u64,
    /// Most entries (files, directories, links, ...) in one archive.
    pub max_entries: u64,
}

impl Default for ArchiveLimits {
    /// [`DEFAULT_MAX_RATIO`], [`DEFAULT_RATIO_ABOVE`], [`DEFAULT_MAX_ENTRIES`].
    fn default() -> Self {
        ArchiveLimits {
            max_ratio: DEFAULT_MAX_RATIO,
            ratio_applies_above: DEFAULT_RATIO_ABOVE,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

impl ArchiveLimits {
    /// With [`max_ratio`](Self::max_ratio) set.
    pub fn with_max_ratio(mut self, ratio: u64) -> Self {
        self.max_ratio = ratio;
        self
    }

    /// With [`ratio_applies_above`](Self::ratio_applies_above) set.
    pub fn with_ratio_applies_above(mut self, bytes: u64) -> Self {
        self.ratio_applies_above = bytes;
        self
    }

    /// With [`max_entries`](Self::max_entries) set.
    pub fn with_max_entries(mut self, entries: u64) -> Self {
        self.max_entries = entries;
        self
    }
}

/// Every limit of a build: those of its archives and the deadline of its HTTP requests.
///
/// ```
/// use std::time::Duration;
/// use rbuild_core::limits::{ArchiveLimits, Limits};
///
/// let limits = Limits::default()
///     .with_archive(ArchiveLimits::default().with_max_entries(10_000))
///     .with_http_deadline(Duration::from_secs(60));
/// assert_eq!(limits.http_deadline, Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The limits of every archive the build unpacks.
    pub archive: ArchiveLimits,
    /// The longest one HTTP request may take, from connecting to the last byte of its
    /// body: registry requests (pulls, pushes, caches) and `ADD <url>` downloads.
    pub http_deadline: Duration,
}

impl Default for Limits {
    /// [`ArchiveLimits::default`] and [`DEFAULT_HTTP_DEADLINE`].
    fn default() -> Self {
        Limits {
            archive: ArchiveLimits::default(),
            http_deadline: DEFAULT_HTTP_DEADLINE,
        }
    }
}

impl Limits {
    /// With [`archive`](Self::archive) set.
    pub fn with_archive(mut self, archive: ArchiveLimits) -> Self {
        self.archive = archive;
        self
    }

    /// With [`http_deadline`](Self::http_deadline) set.
    pub fn with_http_deadline(mut self, deadline: Duration) -> Self {
        self.http_deadline = deadline;
        self
    }
}
