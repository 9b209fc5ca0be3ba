//! The store lock: every process using a store holds a shared lock on `<root>/store.lock`
//! for as long as it has the store open; prune holds it exclusively.
//!
//! A build keeps blobs, unpacked layers, cache entries and scratch files that no named
//! image references yet; prune cannot tell those from garbage, so it waits until it is
//! the only user of the store. The kernel drops the lock of a process that dies (even by
//! `kill -9`), so a crashed build never blocks prune. Whoever opens the store while
//! nobody else uses it reclaims what dead processes left behind: everything in `tmp/`,
//! half-unpacked layers (`layers/.unpack-*`) and half-written cache entries
//! (`cache/.entry-*`). Every scratch file of the store is created under one of those
//! names, so these are exactly the leftovers.
//!
//! Within one process, every [`ContentStore`](super::ContentStore) of a root shares one
//! lock (flock locks belong to an open file, so two opens in one process would otherwise
//! make prune wait for itself). Builds and prune of one process must not overlap.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use rustix::fs::{FlockOperation, Mode, OFlags, flock};
use rustix::io::Errno;

use super::{StoreError, io_err};

/// The lock file, beside `index.json`.
pub(crate) const LOCK_FILE: &str = "store.lock";

/// Prefixes of scratch entries outside `tmp/`, by directory (relative to the root).
const SCRATCH_PREFIXES: &[(&str, &str)] = &[
    ("layers", ".unpack-"),
    ("cache", ".entry-"),
    ("layerdb", ".rbuild-"),
];

/// The open lock file of one store root in this process.
#[derive(Debug)]
pub(super) struct StoreLock {
    file: File,
    path: PathBuf,
    /// The store root, opened without following links (see `guard.rs`).
    root: OwnedFd,
    /// How many [`ExclusiveLock`] guards are alive in this process.
    exclusive: Mutex<usize>,
}

/// Every store lock this process holds, by root, so that opening a root twice shares one.
static LOCKS: Mutex<Option<HashMap<PathBuf, Weak<StoreLock>>>> = Mutex::new(None);

impl StoreLock {
    /// Takes the shared lock of `root`, reclaiming scratch files of dead processes first
    /// if nobody else holds it.
    pub(super) fn acquire(root: &Path) -> Result<Arc<StoreLock>, StoreError> {
        // Checks the store belongs to the caller (another user's store is refused, so
        // the lock file is always the caller's own; a read-only store is locked through
        // a read-only open: flock needs no write access).
        let (key, root_fd) = super::guard::open_root(root)?;
        let mut locks = LOCKS.lock().unwrap_or_else(PoisonError::into_inner);
        let locks = locks.get_or_insert_with(HashMap::new);
        if let Some(lock) = locks.get(&key).and_then(Weak::upgrade) {
            return Ok(lock);
        }
        let path = key.join(LOCK_FILE);
        let flags = OFlags::CLOEXEC | OFlags::NOFOLLOW;
        let file = rustix::fs::openat(
            &root_fd,
            LOCK_FILE,
            flags | OFlags::CREATE | OFlags::RDWR,
            Mode::from_raw_mode(0o600),
        )
        .or_else(|e| match e {
            Errno::ROFS | Errno::ACCESS | Errno::PERM => {
                rustix::fs::openat(&root_fd, LOCK_FILE, flags | OFlags::RDONLY, Mode::empty())
            }
            _ => Err(e),
        })
        .map(File::from)
        .map_err(|e| io_err("open lock", &path)(e.into()))?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => reclaim_scratch(root_fd.as_fd(), &key)?,
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {}
            Err(e) => return Err(io_err("lock", &path)(e.into())),
        }
        // Converts the exclusive lock, or waits for a running prune to finish.
        flock(&file, FlockOperation::LockShared).map_err(|e| io_err("lock", &path)(e.into()))?;
        let lock = Arc::new(StoreLock {
            file,
            path,
            root: root_fd,
            exclusive: Mutex::new(0),
        });
        locks.retain(|_, weak| weak.strong_count() > 0);
        locks.insert(key, Arc::downgrade(&lock));
        Ok(lock)
    }

    pub(super) fn root_fd(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    fn exclusive(self: &Arc<Self>, wait: bool) -> Result<Option<ExclusiveLock>, StoreError> {
        let mut count = self
            .exclusive
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if *count == 0 {
            let op = if wait {
                FlockOperation::LockExclusive
            } else {
                FlockOperation::NonBlockingLockExclusive
            };
            match flock(&self.file, op) {
                Ok(()) => {}
                Err(e) if !wait && e == rustix::io::Errno::WOULDBLOCK => return Ok(None),
                Err(e) => return Err(io_err("lock", &self.path)(e.into())),
            }
        }
        *count += 1;
        Ok(Some(ExclusiveLock {
            lock: Arc::clone(self),
        }))
    }
}

/// The store held exclusively by this process (see [`ContentStore::lock_exclusive`]);
/// dropping it makes the lock shared again.
///
/// [`ContentStore::lock_exclusive`]: super::ContentStore::lock_exclusive
#[derive(Debug)]
pub struct ExclusiveLock {
    lock: Arc<StoreLock>,
}

impl Drop for ExclusiveLock {
    fn drop(&mut self) {
        let mut count = self
            .lock
            .exclusive
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *count = count.saturating_sub(1);
        if *count == 0 {
            // Back to shared; should that fail the lock is still held, only stronger.
            let _ = flock(&self.lock.file, FlockOperation::LockShared);
        }
    }
}

impl super::ContentStore {
    /// Waits until no other process uses the store, then holds it exclusively until the
    /// guard is dropped. Reentrant within a process.
    pub fn lock_exclusive(&self) -> Result<ExclusiveLock, StoreError> {
        loop {
            // A blocking lock always returns a guard; the loop only satisfies the types.
            if let Some(guard) = self.lock.exclusive(true)? {
                return Ok(guard);
            }
        }
    }

    /// Holds the store exclusively if no other process uses it now; `None` if one does.
    pub fn try_lock_exclusive(&self) -> Result<Option<ExclusiveLock>, StoreError> {
        self.lock.exclusive(false)
    }

    /// Removes the scratch files of processes that died while using the store; only
    /// safe while this process holds the store exclusively (prune does).
    pub(crate) fn reclaim_scratch(&self, _exclusive: &ExclusiveLock) -> Result<(), StoreError> {
        reclaim_scratch(self.root_fd(), self.root())
    }
}

/// Removes everything in `<root>/tmp` and the scratch entries of other directories,
/// walking from the root's descriptor without following links (see `guard.rs`).
fn reclaim_scratch(root: BorrowedFd<'_>, shown: &Path) -> Result<(), StoreError> {
    super::guard::remove_entries(root, shown, Path::new("tmp"), |_| true)?;
    for (dir, prefix) in SCRATCH_PREFIXES {
        super::guard::remove_entries(root, shown, Path::new(dir), |name| name.starts_with(prefix))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::ContentStore;

    #[test]
    fn scratch_of_a_dead_user_goes_at_the_next_open_but_not_while_held() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let store = ContentStore::open(&root).unwrap();
        std::fs::write(store.tmp_dir().join("blob-dead"), b"half").unwrap();
        std::fs::create_dir_all(root.join("layers/.unpack-dead/x")).unwrap();
        std::fs::create_dir_all(root.join("layers/kept")).unwrap();
        // A second open in the same process shares the lock: nothing is reclaimed.
        let again = ContentStore::open(&root).unwrap();
        assert!(again.tmp_dir().join("blob-dead").exists());
        drop((store, again));
        // Nobody holds the store now: the next open reclaims.
        let store = ContentStore::open(&root).unwrap();
        assert!(!store.tmp_dir().join("blob-dead").exists());
        assert!(!root.join("layers/.unpack-dead").exists());
        assert!(root.join("layers/kept").exists(), "only scratch names go");
    }

    #[test]
    fn the_exclusive_lock_is_reentrant_and_goes_back_to_shared() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let outer = store.try_lock_exclusive().unwrap().expect("no other user");
        let inner = store.lock_exclusive().unwrap();
        drop(inner);
        assert_eq!(*outer.lock.exclusive.lock().unwrap(), 1);
        drop(outer);
        assert_eq!(*store.lock.exclusive.lock().unwrap(), 0);
        // Shared again: another open file description can take a shared lock at once.
        let other = std::fs::File::open(dir.path().join(super::LOCK_FILE)).unwrap();
        rustix::fs::flock(&other, rustix::fs::FlockOperation::NonBlockingLockShared).unwrap();
        assert!(
            rustix::fs::flock(&other, rustix::fs::FlockOperation::NonBlockingLockExclusive)
                .is_err(),
            "this process still holds its shared lock"
        );
    }
}
