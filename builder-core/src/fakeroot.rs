//! The owners and modes an unprivileged build cannot give files on disk, kept
//! fakeroot-style.
//!
//! A process with no root of any user namespace ([`Privilege::Unprivileged`]), or root
//! of one that maps a single id (what rbuild enters in a pod under the restricted Pod
//! Security Standard, with no subordinate ids), owns every file it makes and may chown
//! to no one else. As in a rootless user namespace mapping one id, the build
//! user's own uid and gid on disk stand for 0 and 0 in the image; every other owner a
//! file should have (a base layer's, `COPY --chown`'s, an archive's) is kept in an
//! [`Owners`] table, keyed by the path relative to the tree's root, and the layer writer
//! takes the owner from there.
//!
//! Modes: without `CAP_DAC_OVERRIDE` a directory its owner may not write (a base image's
//! 0555 `/usr/bin`, as Fedora's and UBI's, `COPY --chmod=555` of a directory, an
//! archive's 0500 entry) could not be filled, one it may not traverse or list not be
//! read, nor a file it may not read (a 0000 `/etc/gshadow`) be copied or written into a
//! layer. So on disk a directory is always open to its owner (u+rwx) and any other file
//! readable by it (u+r, [`disk_mode`]); the mode the image gives a path is kept in its
//! table entry when it differs from the one on disk. Write permission on files is not
//! added: the builder replaces a file by unlinking it, which needs only its directory's.
//! Whatever writes a tree with a table (the layer applier, COPY and ADD) sets both;
//! whatever reads one (the layer writer, the merged writer of exports and squashes,
//! `COPY --from`, the copy snapshotter, which also records a change of mode alone) takes
//! the image mode from it. An export onto the host (`-o type=local`) has no table: it
//! writes the image's modes, a directory's once its entries are written.
//!
//! Not kept: a base layer's device nodes (mknod needs `CAP_MKNOD`; the applier skips
//! them as in any user namespace) and extended attributes this process may not set
//! (`security.capability` needs `CAP_SETFCAP`, `trusted.*` host root) are dropped from
//! the tree, and so from the layers the build writes over them. Setuid and setgid bits
//! stay: on disk every file is the build user's, in its own group. In a pod a `RUN` runs
//! under proot (the proot isolation); in a one-id namespace on a host it runs as it is,
//! and a `chown` inside it fails as in podman's (it is not intercepted). After a `RUN`
//! ([`Snapshot::follow_run`](crate::snapshot::Snapshot::follow_run)), every path the
//! step made, or removed or replaced by another inode, is its user's (root's but for a
//! `USER` step under proot), but a new name of an inode that had an owner (a rename, a
//! hard link) keeps that owner; a file changed in place keeps its owner; then the `chown`
//! calls of a step under proot ([`OwnerCall`], trapped before the kernel sees them) take
//! effect in order.
//! Every mode the step left on disk is kept as the image's (a directory it made 0555 is
//! opened on disk and 0555 in the table), and one it changed replaces the table's.
//!
//! A step under proot is shown the owners and modes of the image by its `stat` calls
//! (see `exec::stat_calls`); one run in a one-id user namespace sees those on disk
//! (`stat /usr/bin` says 0755 where the image has 0555). Known gaps: a `chmod` back to
//! exactly the mode on disk (`chmod 755 /usr/bin` there) is not seen, the table's mode
//! stays; proot opens a file of mode 0000 its fake root reads to its user (u+r), so a
//! file a step rewrites with mode 0000 (`sed -i` of `/etc/gshadow`) keeps u+r. `rbuild
//! run` of an image in such a store sees the modes on disk too.
//!
//! The table of a tree at `dir` is the file `dir.owners` beside it (see [`table_path`]),
//! so the unpacked layers of the store, a copy snapshot's root and a squashed tree each
//! carry theirs. A layer's table pins (see [`Owners::pin`]) a directory the layer holds
//! itself over one the layers below give another owner or mode, so that a copy of the
//! stack can tell it from a directory a layer holds only as a parent. A process that may
//! chown (root of the host, root of a namespace with subordinate ids) neither reads nor
//! writes tables: [`active`] is false for it.

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

/// What one path of a tree is in the image where that differs from what is on disk:
/// its owner, its mode, or both (see the module documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The owner in the image; `None`: the one on disk, the build user's ids standing
    /// for 0.
    owner: Option<(u32, u32)>,
    /// The permission bits (`0o7777`) in the image; `None`: those on disk.
    mode: Option<u32>,
}

impl Entry {
    fn is_empty(&self) -> bool {
        self.owner.is_none() && self.mode.is_none()
    }

    /// An entry giving `owner` only.
    pub(crate) fn with_owner(owner: (u32, u32)) -> Entry {
        Entry {
            owner: Some(owner),
            mode: None,
        }
    }

    /// The owner in the image, when it is not the one on disk.
    pub(crate) fn owner(&self) -> Option<(u32, u32)> {
        self.owner
    }

    /// The permission bits in the image, when they are not those on disk.
    pub(crate) fn mode(&self) -> Option<u32> {
        self.mode
    }

    /// The entry as a tree's own table keeps it: a pin (see [`Owners::pin`]) is no entry
    /// there.
    pub(crate) fn unpinned(self) -> Entry {
        Entry {
            owner: self.owner.filter(|ids| *ids != (0, 0)),
            mode: self.mode,
        }
    }
}

/// The mode a path whose image mode is `image` is given on disk while owners and modes
/// are kept in tables: a directory open to its owner (u+rwx, to be filled, listed and
/// traversed), any other file readable by it (u+r, to be copied and written into
/// layers); the image mode is then kept in the table when it differs.
pub(crate) fn disk_mode(image: u32, is_dir: bool) -> u32 {
    image | if is_dir { 0o700 } else { 0o400 }
}

/// Owners and modes of the paths of one tree that are not what the disk shows (see the
/// module documentation). A path missing from it is owned by 0:0 in the image, with its
/// mode on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Owners {
    map: BTreeMap<PathBuf, Entry>,
}

impl Owners {
    /// The table of the tree at `dir`; empty when it has none.
    ///
    /// A line is `UID GID HEX-PATH [MODE]`: the ids in decimal (`- -` when the owner is
    /// the one on disk), the path's bytes in hex, the image mode in octal when it differs
    /// from the one on disk. Tables written before modes were kept have no mode field.
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
            let (rel, entry) = parse_line(line).ok_or_else(bad)?;
            if !entry.is_empty() {
                map.insert(rel, entry);
            }
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
        for (rel, entry) in &self.map {
            match entry.owner {
                Some((uid, gid)) => text.extend_from_slice(format!("{uid} {gid} ").as_bytes()),
                None => text.extend_from_slice(b"- - "),
            }
            for b in rel.as_os_str().as_bytes() {
                text.extend_from_slice(format!("{b:02x}").as_bytes());
            }
            if let Some(mode) = entry.mode {
                text.extend_from_slice(format!(" {mode:o}").as_bytes());
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
        self.map.get(rel).and_then(|e| e.owner)
    }

    /// The image mode recorded for `rel` (it differs from the one on disk).
    pub(crate) fn mode(&self, rel: &Path) -> Option<u32> {
        self.map.get(rel).and_then(|e| e.mode)
    }

    /// Everything recorded for `rel`.
    pub(crate) fn entry(&self, rel: &Path) -> Option<Entry> {
        self.map.get(rel).copied()
    }

    /// Records `entry` for `rel`, replacing what was recorded.
    pub(crate) fn set_entry(&mut self, rel: &Path, entry: Entry) {
        if entry.is_empty() {
            self.map.remove(rel);
        } else {
            self.map.insert(rel.to_path_buf(), entry);
        }
    }

    /// The paths that have an entry, in order.
    pub(crate) fn paths(&self) -> impl Iterator<Item = &Path> {
        self.map.keys().map(PathBuf::as_path)
    }

    /// Records that `rel` is owned by `owner` in the image; 0:0 (what the build user's
    /// ids stand for) needs no entry.
    pub(crate) fn set(&mut self, rel: &Path, owner: (u32, u32)) {
        let mut entry = self.entry(rel).unwrap_or_default();
        entry.owner = (owner != (0, 0)).then_some(owner);
        self.set_entry(rel, entry);
    }

    /// Records that `rel`, whose mode on disk is `disk`, has mode `image` in the image;
    /// the same mode needs no entry.
    pub(crate) fn set_mode(&mut self, rel: &Path, image: u32, disk: u32) {
        let mut entry = self.entry(rel).unwrap_or_default();
        entry.mode = (image & 0o7777 != disk & 0o7777).then_some(image & 0o7777);
        self.set_entry(rel, entry);
    }

    /// Records that `rel`, which has no entry, is root's with its mode on disk even
    /// though the layers below give it another owner or mode: in a layer's table, a
    /// directory the layer holds itself, not only as a parent (which keeps what the
    /// layers below give it). It is written `0 0 HEX-PATH`.
    pub(crate) fn pin(&mut self, rel: &Path) {
        if !self.map.contains_key(rel) {
            self.map.insert(
                rel.to_path_buf(),
                Entry {
                    owner: Some((0, 0)),
                    mode: None,
                },
            );
        }
    }

    /// Forgets what is recorded for `rel` itself: it is root's, with its mode on disk.
    pub(crate) fn forget(&mut self, rel: &Path) {
        self.map.remove(rel);
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

    /// The permission bits of `rel` in the image, whose mode on disk is `disk`: the
    /// recorded ones, else those of `disk`.
    pub(crate) fn image_mode(&self, rel: &Path, disk: u32) -> u32 {
        self.mode(rel).unwrap_or(disk & 0o7777)
    }
}

/// One line of a table: `UID GID HEX-PATH [MODE]` (see [`Owners::load`]).
fn parse_line(line: &[u8]) -> Option<(PathBuf, Entry)> {
    let text = std::str::from_utf8(line).ok()?;
    let mut fields = text.split(' ');
    let (uid, gid) = (fields.next()?, fields.next()?);
    let owner = match (uid, gid) {
        ("-", "-") => None,
        _ => Some((uid.parse().ok()?, gid.parse().ok()?)),
    };
    let rel = unhex(fields.next()?.as_bytes())?;
    let mode = match fields.next() {
        None => None,
        Some(mode) => Some(u32::from_str_radix(mode, 8).ok().filter(|m| *m <= 0o7777)?),
    };
    if fields.next().is_some() {
        return None;
    }
    Some((
        PathBuf::from(OsString::from_vec(rel)),
        Entry { owner, mode },
    ))
}

/// A change of owner a step asked for where nothing could change on disk (a `chown`
/// call of a step under proot): the path inside the root, the inode (device, number,
/// birth) it named then, and the ids (`None` leaves one as it is, the `-1` of chown(2)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OwnerCall {
    pub rel: PathBuf,
    pub inode: (u64, u64),
    /// The inode's birth time where the file system keeps one: with the number, tells
    /// the inode from a later one that reuses the number.
    pub born: Option<std::time::SystemTime>,
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
        for damaged in [
            "12 x 61\n",
            "- 5 61\n",
            "- - 61 999\n",
            "- - 61 17777\n",
            "1 2 61 555 x\n",
            "1 2 6\n",
            "1 2\n",
            "- - 61 \n",
            "\u{ff} 2 61\n",
        ] {
            fs::write(table_path(&tree), damaged).unwrap();
            assert!(Owners::load(&tree).is_err(), "{damaged:?} loaded");
        }
    }

    #[test]
    fn a_table_written_before_modes_were_kept_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("root");
        // etc/shadow owned by 0:42 and a file of another owner.
        fs::write(table_path(&tree), "0 42 6574632f736861646f77\n7 8 61\n").unwrap();
        let loaded = Owners::load(&tree).unwrap();
        assert_eq!(loaded.get(Path::new("etc/shadow")), Some((0, 42)));
        assert_eq!(loaded.mode(Path::new("etc/shadow")), None);
        assert_eq!(loaded.image_mode(Path::new("etc/shadow"), 0o100640), 0o640);
        assert_eq!(loaded.get(Path::new("a")), Some((7, 8)));
        assert_eq!(loaded.paths().count(), 2);
    }

    #[test]
    fn modes_that_differ_from_the_disk_survive_saving_and_loading() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("root");
        let mut owners = Owners::default();
        let usr_bin = Path::new("usr/bin");
        owners.set_mode(usr_bin, 0o555, disk_mode(0o555, true));
        owners.set(Path::new("etc/gshadow"), (0, 42));
        owners.set_mode(Path::new("etc/gshadow"), 0o000, disk_mode(0o000, false));
        owners.set_mode(Path::new("same"), 0o4755, disk_mode(0o4755, false));
        owners.pin(Path::new("usr"));
        owners.save(&tree).unwrap();
        let loaded = Owners::load(&tree).unwrap();
        assert_eq!(loaded, owners);
        assert_eq!(loaded.mode(usr_bin), Some(0o555));
        assert_eq!(loaded.get(usr_bin), None);
        assert_eq!(loaded.image_mode(usr_bin, 0o40755), 0o555);
        assert_eq!(loaded.get(Path::new("etc/gshadow")), Some((0, 42)));
        assert_eq!(loaded.mode(Path::new("etc/gshadow")), Some(0));
        assert_eq!(loaded.entry(Path::new("same")), None);
        let pinned = loaded.entry(Path::new("usr")).unwrap();
        assert_eq!(pinned.unpinned(), Entry::default());
        let mut owners = loaded;
        owners.forget(Path::new("usr"));
        owners.set(Path::new("etc/gshadow"), (0, 0));
        assert_eq!(owners.mode(Path::new("etc/gshadow")), Some(0));
        owners.set_mode(usr_bin, 0o755, 0o755);
        owners.forget(Path::new("etc/gshadow"));
        assert_eq!(owners.paths().count(), 0);
    }

    #[test]
    fn on_disk_the_owner_may_fill_every_directory_and_read_every_file() {
        assert_eq!(disk_mode(0o555, true), 0o755);
        assert_eq!(disk_mode(0o1000, true), 0o1700);
        assert_eq!(disk_mode(0o000, false), 0o400);
        assert_eq!(disk_mode(0o4711, false), 0o4711);
    }
}
