//! Root filesystem snapshots and their comparison: what one exported rootfs holds, path by
//! path, and how two of them differ.
//!
//! Compared for every entry: type, permission bits (with setuid, setgid, sticky), owner,
//! group; for regular files size, content sha256 and hardlink grouping; for symlinks the
//! target; for devices the device number; for non-directories the mtime, but only where it
//! cannot depend on when the build ran (see [`Mtime`]). Directory mtimes are never compared,
//! and the stub files and directories BuildKit leaks ([`STUB_FILES`], [`STUB_DIRS`]) may be
//! present on one side only.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

/// Files made empty in a rootfs as mount points, by BuildKit for RUN steps and by docker
/// for a container (the export goes through one): `/etc/hosts`, `/etc/hostname`,
/// `/etc/resolv.conf` (bind mounts), `/dev/console`, and docker's `/.dockerenv` marker.
pub const STUB_FILES: &[&str] = &[
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/dev/console",
    "/.dockerenv",
];

/// Symlinks docker makes in a container's rootfs (its init layer), with their targets.
pub const STUB_LINKS: &[(&str, &str)] = &[("/etc/mtab", "/proc/mounts")];

/// Mount points made empty the same way: the kernel filesystems, and docker's `/dev/pts`
/// and `/dev/shm`.
pub const STUB_DIRS: &[&str] = &["/dev", "/proc", "/sys", "/dev/pts", "/dev/shm"];

/// The type of a filesystem entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::File => "file",
            Kind::Dir => "directory",
            Kind::Symlink => "symlink",
            Kind::CharDevice => "char-device",
            Kind::BlockDevice => "block-device",
            Kind::Fifo => "fifo",
            Kind::Socket => "socket",
        })
    }
}

/// A non-directory's modification time, as far as it can be compared between two builds
/// run at different moments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mtime {
    /// Older than the case's start: it came from the base image, the context or an
    /// archive, so both builders must keep it, to the second (image layers are tar
    /// archives, and docker's archive code writes whole seconds).
    Kept { secs: i64 },
    /// Set while the case ran (a RUN step wrote it): only that fact is comparable.
    DuringBuild,
}

impl fmt::Display for Mtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mtime::Kept { secs } => write!(f, "{secs}"),
            Mtime::DuringBuild => f.write_str("(set during the build)"),
        }
    }
}

/// One entry of a rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// Permission bits with setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Regular files only; 0 otherwise.
    pub size: u64,
    /// sha256 of a regular file's content.
    pub digest: Option<String>,
    /// A symlink's target.
    pub link: Option<String>,
    /// A device's `st_rdev`.
    pub device: Option<u64>,
    /// The smallest path of the hardlink group a regular file belongs to, when the group has
    /// more than one member inside the tree.
    pub hardlink: Option<String>,
    /// None for directories (never compared).
    pub mtime: Option<Mtime>,
}

/// A rootfs: entries by absolute path (`/etc/passwd`), the root itself left out (exporters
/// write into a directory whose own mode and owner are the caller's, not the image's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    pub entries: BTreeMap<String, Entry>,
}

/// What is compared about an entry; the names are those `allow:` lines use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Field {
    Presence,
    Type,
    Mode,
    Uid,
    Gid,
    Size,
    Content,
    Link,
    Device,
    Hardlink,
    Mtime,
}

impl Field {
    pub const ALL: &[Field] = &[
        Field::Presence,
        Field::Type,
        Field::Mode,
        Field::Uid,
        Field::Gid,
        Field::Size,
        Field::Content,
        Field::Link,
        Field::Device,
        Field::Hardlink,
        Field::Mtime,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Field::Presence => "presence",
            Field::Type => "type",
            Field::Mode => "mode",
            Field::Uid => "uid",
            Field::Gid => "gid",
            Field::Size => "size",
            Field::Content => "content",
            Field::Link => "link",
            Field::Device => "device",
            Field::Hardlink => "hardlink",
            Field::Mtime => "mtime",
        }
    }

    pub fn parse(name: &str) -> Option<Field> {
        Field::ALL.iter().copied().find(|f| f.name() == name)
    }
}

/// One difference between the reference tree (BuildKit's) and the tree under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub path: String,
    pub field: Field,
    pub reference: String,
    pub tested: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: reference {} | tested {}",
            self.path,
            self.field.name(),
            self.reference,
            self.tested
        )
    }
}

fn kind_of(ft: fs::FileType) -> Kind {
    if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink
    } else if ft.is_char_device() {
        Kind::CharDevice
    } else if ft.is_block_device() {
        Kind::BlockDevice
    } else if ft.is_fifo() {
        Kind::Fifo
    } else if ft.is_socket() {
        Kind::Socket
    } else {
        Kind::File
    }
}

fn sha256_file(path: &Path) -> io::Result<String> {
    let mut hasher = Sha256::new();
    io::copy(&mut File::open(path)?, &mut hasher)?;
    Ok(format!("{:x}", hasher.finalize()))
}

/// Reads the tree under `root`. Non-directory mtimes at or after `started` count as
/// [`Mtime::DuringBuild`].
pub fn snapshot(root: &Path, started: SystemTime) -> io::Result<Tree> {
    let started = started
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_err(io::Error::other)?;
    // Whole seconds: a file written during the build in the second the case started may
    // come out of an archive with its fraction cut off.
    let started = started.as_secs() as i64;
    let mut tree = Tree::default();
    // (dev, ino) -> paths, for regular files with more than one link.
    let mut inodes: HashMap<(u64, u64), Vec<String>> = HashMap::new();
    for item in walkdir::WalkDir::new(root).follow_links(false).min_depth(1) {
        let item = item.map_err(io::Error::other)?;
        let rel = item
            .path()
            .strip_prefix(root)
            .map_err(io::Error::other)?
            .to_str()
            .ok_or_else(|| io::Error::other(format!("non-UTF-8 path {:?}", item.path())))?;
        let path = format!("/{rel}");
        let meta = fs::symlink_metadata(item.path())?;
        let kind = kind_of(meta.file_type());
        let mtime = (kind != Kind::Dir).then(|| {
            if meta.mtime() >= started {
                Mtime::DuringBuild
            } else {
                Mtime::Kept { secs: meta.mtime() }
            }
        });
        let mut entry = Entry {
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            size: 0,
            digest: None,
            link: None,
            device: None,
            hardlink: None,
            mtime,
        };
        match kind {
            Kind::File => {
                entry.size = meta.len();
                entry.digest = Some(sha256_file(item.path())?);
                if meta.nlink() > 1 {
                    inodes
                        .entry((meta.dev(), meta.ino()))
                        .or_default()
                        .push(path.clone());
                }
            }
            Kind::Symlink => {
                let target = fs::read_link(item.path())?;
                entry.link = Some(target.to_string_lossy().into_owned());
            }
            Kind::CharDevice | Kind::BlockDevice => entry.device = Some(meta.rdev()),
            _ => {}
        }
        tree.entries.insert(path, entry);
    }
    for paths in inodes.values().filter(|p| p.len() > 1) {
        let leader = paths.iter().min().cloned();
        for p in paths {
            if let Some(e) = tree.entries.get_mut(p) {
                e.hardlink = leader.clone();
            }
        }
    }
    Ok(tree)
}

fn describe(e: &Entry) -> String {
    format!("{} {:04o} {}:{}", e.kind, e.mode, e.uid, e.gid)
}

/// A stub file or link: something that is nothing but a mount point or docker's marker.
fn stub_leaf(path: &str, entry: &Entry) -> bool {
    (STUB_FILES.contains(&path) && entry.kind == Kind::File && entry.size == 0)
        || STUB_LINKS
            .iter()
            .any(|(p, target)| *p == path && entry.link.as_deref() == Some(*target))
}

/// True when `path`, present in `tree` and absent from the other side, is something
/// BuildKit or docker leaves: a stub file or link, or a stub directory (or `/etc`) that
/// holds nothing but stubs.
fn leaked_stub(tree: &Tree, path: &str, entry: &Entry) -> bool {
    if stub_leaf(path, entry) {
        return true;
    }
    if (STUB_DIRS.contains(&path) || path == "/etc") && entry.kind == Kind::Dir {
        let prefix = format!("{path}/");
        return tree
            .entries
            .iter()
            .filter(|(p, _)| p.starts_with(&prefix))
            .all(|(p, e)| {
                stub_leaf(p, e)
                    || (STUB_DIRS.contains(&p.as_str())
                        && e.kind == Kind::Dir
                        && leaked_stub(tree, p, e))
            });
    }
    false
}

/// Every difference between `reference` and `tested`, in path order.
pub fn compare(reference: &Tree, tested: &Tree) -> Vec<Difference> {
    let mut out = Vec::new();
    let mut push = |path: &str, field, r: String, t: String| {
        out.push(Difference {
            path: path.to_owned(),
            field,
            reference: r,
            tested: t,
        })
    };
    let mut paths: Vec<&String> = reference
        .entries
        .keys()
        .chain(tested.entries.keys())
        .collect();
    paths.sort();
    paths.dedup();
    for path in paths {
        let (r, t) = match (reference.entries.get(path), tested.entries.get(path)) {
            (Some(r), Some(t)) => (r, t),
            (Some(r), None) => {
                if !leaked_stub(reference, path, r) {
                    push(path, Field::Presence, describe(r), "absent".into());
                }
                continue;
            }
            (None, Some(t)) => {
                if !leaked_stub(tested, path, t) {
                    push(path, Field::Presence, "absent".into(), describe(t));
                }
                continue;
            }
            (None, None) => continue,
        };
        if r.kind != t.kind {
            push(path, Field::Type, r.kind.to_string(), t.kind.to_string());
            continue;
        }
        if r.mode != t.mode {
            push(
                path,
                Field::Mode,
                format!("{:04o}", r.mode),
                format!("{:04o}", t.mode),
            );
        }
        if r.uid != t.uid {
            push(path, Field::Uid, r.uid.to_string(), t.uid.to_string());
        }
        if r.gid != t.gid {
            push(path, Field::Gid, r.gid.to_string(), t.gid.to_string());
        }
        if r.size != t.size {
            push(path, Field::Size, r.size.to_string(), t.size.to_string());
        }
        if r.digest != t.digest {
            let show = |d: &Option<String>| d.clone().unwrap_or_default();
            push(path, Field::Content, show(&r.digest), show(&t.digest));
        }
        if r.link != t.link {
            let show = |l: &Option<String>| l.clone().unwrap_or_default();
            push(path, Field::Link, show(&r.link), show(&t.link));
        }
        if r.device != t.device {
            let show = |d: &Option<u64>| d.map(|d| format!("{d:#x}")).unwrap_or_default();
            push(path, Field::Device, show(&r.device), show(&t.device));
        }
        if r.hardlink != t.hardlink {
            let show = |h: &Option<String>| {
                h.as_ref()
                    .map(|h| format!("linked with {h}"))
                    .unwrap_or_else(|| "not hardlinked".into())
            };
            push(path, Field::Hardlink, show(&r.hardlink), show(&t.hardlink));
        }
        if r.mtime != t.mtime {
            let show = |m: &Option<Mtime>| m.map(|m| m.to_string()).unwrap_or_default();
            push(path, Field::Mtime, show(&r.mtime), show(&t.mtime));
        }
    }
    out
}
