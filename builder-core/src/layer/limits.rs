//! Tar-bomb limits: how far an archive may expand and how many entries it may hold.
//!
//! A few kilobytes of gzip or zstd can expand to terabytes of zeros, and a small tar can
//! hold millions of empty files; both would fill the disk or exhaust inodes of whoever
//! unpacks them. The limits apply to layers (base images, pulled or loaded) and to the
//! local archives `ADD` extracts. The defaults are generous, far above real images;
//! both can be changed through the environment variables below.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The environment variable setting [`ArchiveLimits::max_ratio`].
pub const MAX_RATIO_ENV: &str = "RBUILD_ARCHIVE_MAX_RATIO";
/// The environment variable setting [`ArchiveLimits::max_entries`].
pub const MAX_ENTRIES_ENV: &str = "RBUILD_ARCHIVE_MAX_ENTRIES";
/// The environment variable setting [`ArchiveLimits::ratio_applies_above`].
pub const RATIO_ABOVE_ENV: &str = "RBUILD_ARCHIVE_RATIO_ABOVE";

/// The default most bytes an archive may expand to per compressed byte.
pub const DEFAULT_MAX_RATIO: u64 = 1000;
/// The default size (uncompressed) below which the ratio is not checked: 1 GiB.
pub const DEFAULT_RATIO_ABOVE: u64 = 1 << 30;
/// The default most entries an archive may hold.
pub const DEFAULT_MAX_ENTRIES: u64 = 1_000_000;

/// How much an archive may expand and how many entries it may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveLimits {
    /// Most uncompressed bytes per compressed byte, once past `ratio_applies_above`.
    pub max_ratio: u64,
    /// Uncompressed bytes an archive may always expand to, whatever its ratio.
    pub ratio_applies_above: u64,
    /// Most entries (files, directories, links, ...) in one archive.
    pub max_entries: u64,
}

impl Default for ArchiveLimits {
    fn default() -> Self {
        ArchiveLimits {
            max_ratio: DEFAULT_MAX_RATIO,
            ratio_applies_above: DEFAULT_RATIO_ABOVE,
            max_entries: DEFAULT_MAX_ENTRIES,
        }
    }
}

/// An environment variable holding something other than a whole number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {var}={value:?}: expected a whole number")]
pub struct InvalidLimit {
    /// The variable.
    pub var: &'static str,
    /// Its value.
    pub value: String,
}

/// An archive past one of its limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LimitExceeded {
    /// It expands too much for its compressed size.
    #[error(
        "it expands to more than {ratio} times its compressed size ({expanded} bytes from {compressed}; the limit is {MAX_RATIO_ENV}={ratio} past {RATIO_ABOVE_ENV}={above} bytes)"
    )]
    Ratio {
        /// Uncompressed bytes read so far.
        expanded: u64,
        /// Compressed bytes read so far.
        compressed: u64,
        /// The limit.
        ratio: u64,
        /// The size past which the ratio counts.
        above: u64,
    },
    /// It holds too many entries.
    #[error("it has more than {limit} entries (the limit is {MAX_ENTRIES_ENV}={limit})")]
    Entries {
        /// The limit.
        limit: u64,
    },
}

impl ArchiveLimits {
    /// The defaults, changed by whichever of [`MAX_RATIO_ENV`], [`RATIO_ABOVE_ENV`] and
    /// [`MAX_ENTRIES_ENV`] are set.
    pub fn from_env() -> Result<Self, InvalidLimit> {
        let read = |var: &'static str, default: u64| match std::env::var(var) {
            Ok(value) => value
                .trim()
                .parse()
                .map_err(|_| InvalidLimit { var, value }),
            Err(_) => Ok(default),
        };
        Ok(ArchiveLimits {
            max_ratio: read(MAX_RATIO_ENV, DEFAULT_MAX_RATIO)?,
            ratio_applies_above: read(RATIO_ABOVE_ENV, DEFAULT_RATIO_ABOVE)?,
            max_entries: read(MAX_ENTRIES_ENV, DEFAULT_MAX_ENTRIES)?,
        })
    }
}

/// Counts one archive's compressed and uncompressed bytes and its entries against
/// [`ArchiveLimits`].
#[derive(Debug, Clone)]
pub(crate) struct Meter {
    limits: ArchiveLimits,
    counts: Arc<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    compressed: AtomicU64,
    expanded: AtomicU64,
    entries: AtomicU64,
    /// The limit a reader hit; its io error may reach the caller wrapped by the tar
    /// reader, so the cause is kept here too.
    exceeded: Mutex<Option<LimitExceeded>>,
}

impl Meter {
    pub(crate) fn new(limits: ArchiveLimits) -> Self {
        Meter {
            limits,
            counts: Arc::default(),
        }
    }

    /// Wraps the compressed stream: counts what is read from it.
    pub(crate) fn compressed<R: Read>(&self, inner: R) -> Metered<R> {
        Metered {
            inner,
            meter: self.clone(),
            expanded: false,
        }
    }

    /// Wraps the uncompressed stream: counts it and fails once past the ratio.
    pub(crate) fn expanded<R: Read>(&self, inner: R) -> Metered<R> {
        Metered {
            inner,
            meter: self.clone(),
            expanded: true,
        }
    }

    /// Counts one entry; fails past the entry limit.
    pub(crate) fn entry(&self) -> Result<(), LimitExceeded> {
        let n = self.counts.entries.fetch_add(1, Ordering::Relaxed) + 1;
        if n > self.limits.max_entries {
            return Err(self.exceed(LimitExceeded::Entries {
                limit: self.limits.max_entries,
            }));
        }
        Ok(())
    }

    /// The limit a reader hit, if any.
    pub(crate) fn exceeded(&self) -> Option<LimitExceeded> {
        self.counts
            .exceeded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn exceed(&self, limit: LimitExceeded) -> LimitExceeded {
        *self
            .counts
            .exceeded
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(limit.clone());
        limit
    }

    fn check_ratio(&self) -> Result<(), LimitExceeded> {
        let expanded = self.counts.expanded.load(Ordering::Relaxed);
        let compressed = self.counts.compressed.load(Ordering::Relaxed);
        if expanded > self.limits.ratio_applies_above
            && expanded / compressed.max(1) >= self.limits.max_ratio
        {
            return Err(self.exceed(LimitExceeded::Ratio {
                expanded,
                compressed,
                ratio: self.limits.max_ratio,
                above: self.limits.ratio_applies_above,
            }));
        }
        Ok(())
    }
}

/// A stream counted by a [`Meter`].
pub(crate) struct Metered<R> {
    inner: R,
    meter: Meter,
    expanded: bool,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let counts = &self.meter.counts;
        if self.expanded {
            counts.expanded.fetch_add(n as u64, Ordering::Relaxed);
            self.meter.check_ratio().map_err(io::Error::other)?;
        } else {
            counts.compressed.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_counts_only_past_its_floor_and_entries_past_their_limit() {
        let limits = ArchiveLimits {
            max_ratio: 10,
            ratio_applies_above: 1000,
            max_entries: 2,
        };
        let meter = Meter::new(limits);
        let mut small = meter.expanded(meter.compressed(&[0u8; 10][..]));
        // 10 bytes in, 10 out: ratio 1.
        io::copy(&mut small, &mut io::sink()).unwrap();
        let mut zeros = meter.expanded(io::repeat(0).take(5000));
        let err = io::copy(&mut zeros, &mut io::sink()).unwrap_err();
        assert!(err.to_string().contains("more than 10 times"), "{err}");
        assert!(matches!(
            meter.exceeded(),
            Some(LimitExceeded::Ratio { .. })
        ));

        let meter = Meter::new(limits);
        meter.entry().unwrap();
        meter.entry().unwrap();
        assert_eq!(
            meter.entry().unwrap_err(),
            LimitExceeded::Entries { limit: 2 }
        );
    }
}
