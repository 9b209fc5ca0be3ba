//! The owners an unprivileged build cannot give files on disk, kept fakeroot-style.
//!
//! A process with no root of any user namespace ([`Privilege::Unprivileged`]), or root
//! of one that maps a single id (what rbuild enters in a pod under the restricted Pod
//! Security Standard, with no subordinate ids), owns every file it makes and may chown
//! to no one else. As in a rootless user namespace mapping one id, the build
//! user's own uid and gid on disk stand for 0 and 0 in the image; every other owner a
//! file should have (a base layer's, `COPY --chown`'s, an archive entry's) is kept in an
//! [`Owners`] table, keyed by the path relative to the tree's root, and the layer writer
//! takes the owner from there.
//!
//! Not kept: a base layer's device nodes (mknod needs `CAP_MKNOD`; the applier skips
//! them as in any user namespace) and extended attributes this process may not set
//! (`security.capability` needs `CAP_SETFCAP`, `trusted.*` host root) are dropped from
//! the tree, and so from the layers the build writes over them. Setuid and setgid bits
//! stay: on disk every file is the build user's, in its own group. In a pod a `RUN` runs
//! under proot (the proot isolation); in a one-id namespace on a host it runs as it is,
//! and a `chown` inside it fails as in podman's (it is not intercepted). After a `RUN`
//! ([`Snapshot::settle_owners`](crate::snapshot::Snapshot::settle_owners)), every path the
//! step made, or removed or replaced by another inode, is its user's (root's but for a
//! `USER` step under proot), but a new name of an inode that had an owner (a rename, a
//! hard link) keeps that owner; a file changed in place keeps its owner; then the `chown`
//! calls of a step under proot ([`OwnerCall`], trapped before the kernel sees them) take
//! effect in order.
//!
//! Known gaps: directories without write permission for their owner (a base image's
//! 0555 `/usr/bin`, as Fedora's and UBI's, `COPY --chmod=555` of a directory, such an
//! archive entry) cannot be filled without `CAP_DAC_OVERRIDE`, so such builds fail
//! ("Permission denied" on the entry); the table keeps no modes. Hard links of an archive
//! whose entries give one inode different owners keep the first, where root's chown of
//! the shared inode makes the last win.
//!
//! The table of a tree at `dir` is the file `dir.owners` beside it (see [`table_path`]),
//! so the unpacked layers of the store, a copy snapshot's root and a squashed tree each
//! carry theirs. A process that may chown (root of the host, root of a namespace
//! with subordinate ids) neither reads nor writes tables: [`active`] is false for it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::privilege::Privilege;

/// Whether owners are kept in tables: when this process can give files no owner but
/// its own, unprivileged or root of a user namespace that maps that one id (what rbuild
/// enters when the caller has no subordinate ids, as in a restricted pod).
pub(crate) fn active() -> bool {
    match Privilege::current() {
        Privilege::Unprivileged => true,
        Privilege::NamespaceRoot => crate::privilege::maps_one_id(),
        _ => false,
    }
}

/// The build user's effective (uid, gid): the ids that stand for 0 and 0 in the image.
pub(crate) fn build_ids() -> (u32, u32) {
    (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    )
}

/// Where the table of the tree rooted at `dir` is kept: `dir.owners`, beside it.
pub(crate) fn table_path(dir: &Path) -> PathBuf {
    let mut name = dir.as_os_str().to_os_string();
    name.push(".owners");
    PathBuf::from(name)
}

/// Owners of the paths of one tree that are not the build user's (see the module
/// documentation). A path missing from it is owned by 0:0 in the image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Owners {
    map: BTreeMap<PathBuf, (u32, u32)>,
}

impl Owners {
    /// The table of the tree at `dir`; empty when it has none.
    pub(crate) fn load(dir: &Path) -> io::Result<Owners> {
        let path = table_path(dir);
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Owners::default()),
            Err(e) => return Err(e),
        };
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not an owner table", path.display()),
            )
        };
        let mut map = BTreeMap::new();
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let mut fields = line.splitn(3, |&b| b == b' ');
            let mut id =
                || -> Option<u32> { std::str::from_utf8(fields.next()?).ok()?.parse().ok() };
            let (Some(uid), Some(gid)) = (id(), id()) else {
                return Err(bad());
            };
            let rel = fields.next().and_then(unhex).ok_or_else(bad)?;
            map.insert(PathBuf::from(OsString::from_vec(rel)), (uid, gid));
        }
        Ok(Owners { map })
    }

    /// Writes the table beside the tree at `dir` (replacing it at once); an empty table
    /// removes the file.
    pub(crate) fn save(&self, dir: &Path) -> io::Result<()> {
        let path = table_path(dir);
        if self.map.is_empty() {
            return match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let mut text = Vec::new();
        for (rel, (uid, gid)) in &self.map {
            text.extend_from_slice(format!("{uid} {gid} ").as_bytes());
            for b in rel.as_os_str().as_bytes() {
                text.extend_from_slice(format!("{b:02x}").as_bytes());
            }
            text.push(b'\n');
        }
        let mut tmp = path.as_os_str().to_os_string();
        tmp.push(".tmp");
        fs::write(&tmp, text)?;
        fs::rename(&tmp, &path)
    }

    /// The owner recorded for `rel`.
    pub(crate) fn get(&self, rel: &Path) -> Option<(u32, u32)> {
        self.map.get(rel).copied()
    }

    /// The paths that have an entry, in order.
    pub(crate) fn paths(&self) -> impl Iterator<Item = &Path> {
        self.map.keys().map(PathBuf::as_path)
    }

    /// Records that `rel` is owned by `owner` in the image; 0:0 (what the build user's
    /// ids stand for) needs no entry.
    pub(crate) fn set(&mut self, rel: &Path, owner: (u32, u32)) {
        if owner == (0, 0) {
            self.map.remove(rel);
        } else {
            self.map.insert(rel.to_path_buf(), owner);
        }
    }

    /// Forgets `rel` and everything below it (the path was removed or replaced).
    pub(crate) fn remove_tree(&mut self, rel: &Path) {
        self.map.remove(rel);
        let below: Vec<PathBuf> = self
            .map
            .range::<Path, _>((std::ops::Bound::Excluded(rel), std::ops::Bound::Unbounded))
            .map(|(p, _)| p)
            .take_while(|p| p.starts_with(rel))
            .cloned()
            .collect();
        for p in below {
            self.map.remove(&p);
        }
    }

    /// Forgets the paths strictly below `dir` that `keep` refuses (an opaque directory's
    /// contents the layer did not write).
    pub(crate) fn retain_below(&mut self, dir: &Path, keep: impl Fn(&Path) -> bool) {
        self.map
            .retain(|p, _| p == dir || !p.starts_with(dir) || keep(p));
    }

    /// The owner of `rel` in the image, whose owner on disk is `disk`: the recorded one,
    /// else `disk` with the build user's ids standing for 0.
    pub(crate) fn image_owner(
        &self,
        rel: &Path,
        disk: (u32, u32),
        build: (u32, u32),
    ) -> (u32, u32) {
        self.get(rel).unwrap_or((
            if disk.0 == build.0 { 0 } else { disk.0 },
            if disk.1 == build.1 { 0 } else { disk.1 },
        ))
    }
}

/// A change of owner a step asked for where nothing could change on disk (a `chown`
/// call of a step under proot): the path inside the root, the inode (device, number) it
/// named then, and the ids (`None` leaves one as it is, the `-1` of chown(2)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnerCall {
    pub rel: PathBuf,
    pub inode: (u64, u64),
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

fn unhex(hex: &[u8]) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    hex.chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn a_table_survives_saving_and_loading_with_any_path_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("root");
        let mut owners = Owners::default();
        owners.set(Path::new("etc/shadow"), (0, 42));
        owners.set(
            Path::new(OsStr::from_bytes(b"odd name\nwith newline")),
            (1234, 5678),
        );
        owners.set(Path::new("root-owned"), (0, 0));
        owners.save(&tree).unwrap();
        let loaded = Owners::load(&tree).unwrap();
        assert_eq!(loaded, owners);
        assert_eq!(loaded.get(Path::new("root-owned")), None);
        assert_eq!(loaded.get(Path::new("etc/shadow")), Some((0, 42)));
        Owners::default().save(&tree).unwrap();
        assert!(!table_path(&tree).exists());
    }

    #[test]
    fn the_build_users_ids_stand_for_root_unless_recorded() {
        let mut owners = Owners::default();
        owners.set(Path::new("a/b"), (7, 8));
        owners.set(Path::new("a/b/c"), (9, 9));
        owners.set(Path::new("ab"), (5, 5));
        let build = (1000, 1000);
        assert_eq!(owners.image_owner(Path::new("a/b"), build, build), (7, 8));
        assert_eq!(owners.image_owner(Path::new("x"), build, build), (0, 0));
        assert_eq!(
            owners.image_owner(Path::new("x"), (1000, 33), build),
            (0, 33)
        );
        owners.remove_tree(Path::new("a"));
        owners.remove_tree(Path::new("a/b"));
        assert_eq!(owners.get(Path::new("a/b/c")), None);
        assert_eq!(owners.get(Path::new("ab")), Some((5, 5)));
    }

    #[test]
    fn a_damaged_table_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("root");
        fs::write(table_path(&tree), "12 x 61\n").unwrap();
        assert!(Owners::load(&tree).is_err());
    }
}
