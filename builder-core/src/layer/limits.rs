//! Tar-bomb limits: how far an archive may expand and how many entries it may hold.
//!
//! A few kilobytes of gzip or zstd can expand to terabytes of zeros, and a small tar can
//! hold millions of empty files; both would fill the disk or exhaust inodes of whoever
//! unpacks them. The limits apply to layers (base images, pulled or loaded) and to the
//! local archives `ADD` extracts. The limits themselves are the caller's
//! ([`ArchiveLimits`]); here they are counted.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::limits::{ArchiveLimits, MAX_ENTRIES_ENV, MAX_RATIO_ENV, RATIO_ABOVE_ENV};

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
        let limits = ArchiveLimits::default()
            .with_max_ratio(10)
            .with_ratio_applies_above(1000)
            .with_max_entries(2);
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
