//! Writing a plan into the destination root.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use xattr::FileExt as _;

use super::chmod::{DEFAULT_DIR_MODE, ModeChange};
use super::dest::{self, DestRoot, lstat_at, make_dir, set_mtime, split};
use super::plan::{Item, Plan, Selected, SourceView};
use super::{CopyError, CopyOp, CopyStats, archive, chown, parallel, remote};
use crate::context::{ContextEntry, EntryType};
use crate::fakeroot::{self, Owners};
use crate::layer::is_overlay_xattr;

/// Mode of a heredoc source, as BuildKit writes it.
const HEREDOC_MODE: u32 = 0o644;

/// Runs `plan` for `op` into the root at `dest_root`.
pub(crate) fn run(
    op: &CopyOp,
    view: &SourceView,
    plan: &Plan,
    dest_root: &Path,
) -> Result<CopyStats, CopyError> {
    let root = DestRoot::open(dest_root)?;
    let chown = match &op.chown {
        Some(spec) => Some(chown::resolve(&root, spec)?),
        None => None,
    };
    let chmod = op.chmod.as_deref().map(ModeChange::parse).transpose()?;
    let dest = op.dest_path();
    let written = PathBuf::from(dest.trim_start_matches('/').trim_end_matches('/'));
    // Symlinks in the destination resolve inside the root, the last one included.
    let dest_rel = root
        .resolve(&written)
        .map_err(CopyError::dest("resolve", &written))?;
    let dir_syntax = dest.ends_with('/');
    if plan.items.is_empty() {
        // Only wildcards that matched nothing: BuildKit changes nothing, not even the
        // destination's parents.
        return Ok(CopyStats::default());
    }
    let mut w = Writer {
        root: &root,
        view,
        chown,
        created_dir_mode: ModeChange::created_dir_mode(chmod.as_ref()),
        chmod,
        links: HashMap::new(),
        archive_links: HashMap::new(),
        link_group: HashMap::new(),
        dir_times: Vec::new(),
        fresh: HashSet::new(),
        parent: None,
        stats: CopyStats::default(),
        archive_limits: op.limits.archive,
        source_owners: if view.keep_owner && fakeroot::active() {
            let table = Owners::load(&view.root).map_err(|source| CopyError::Source {
                path: fakeroot::table_path(&view.root),
                source,
            })?;
            Some((table, fakeroot::build_ids()))
        } else {
            None
        },
    };
    // Several sources with a destination that is not a directory are not refused:
    // BuildKit copies them in turn, a later file replacing an earlier one, and fails
    // only when a directory's contents must go where a file is.
    for item in &plan.items {
        let archive = match item {
            Item::Entries(sel) => w.archive_format(op, sel)?,
            _ => None,
        };
        if archive.is_none() {
            // BuildKit's fsutil `Copy`, once per source: the destination (when it names
            // a directory) or its parent is created first, with the --chmod mode and
            // owned by the --chown user. An archive's unpack makes its own.
            let created = if dir_syntax {
                Some(dest_rel.as_path())
            } else {
                split(&dest_rel).map(|(parent, _)| parent)
            };
            if let Some(dir) = created {
                w.mkdir_all(dir)?;
            }
        }
        let into_dir = dir_syntax
            || root
                .is_dir(&dest_rel)
                .map_err(CopyError::dest("stat", &dest_rel))?;
        match item {
            Item::Entries(sel) => match archive {
                Some(format) => w.archive(sel, format, &dest_rel)?,
                None => w.selected(sel, &dest_rel, into_dir)?,
            },
            Item::Inline(file) => {
                let target = if into_dir {
                    dest_rel.join(&file.name)
                } else {
                    dest_rel.clone()
                };
                let mode = w.mode_of(HEREDOC_MODE, false);
                let owner = chown.unwrap_or((0, 0));
                let now = now_ns();
                w.write_file(&target, &mut file.content.as_bytes(), mode, owner, now)?;
            }
            Item::Url { url, checksum } => {
                let mut download =
                    remote::download(url, checksum.as_deref(), plan.limits.http_deadline)?;
                let target = if into_dir {
                    dest_rel.join(&download.name)
                } else {
                    dest_rel.clone()
                };
                let mode = w.mode_of(remote::DOWNLOAD_MODE, false);
                let owner = chown.unwrap_or((0, 0));
                let mtime = download.mtime_ns.unwrap_or_else(now_ns);
                let mut body = download.body().map_err(CopyError::dest("read", &target))?;
                w.write_file(&target, &mut body, mode, owner, mtime)?;
            }
        }
    }
    let stats = w.finish()?;
    root.save_owners()?;
    Ok(stats)
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

pub(crate) struct Writer<'a> {
    pub root: &'a DestRoot,
    view: &'a SourceView<'a>,
    pub chown: Option<(u32, u32)>,
    chmod: Option<ModeChange>,
    /// The mode of the directories the copy creates for its destination.
    created_dir_mode: u32,
    /// Inode of a copied file -> where its first copy went, to keep hardlinks.
    links: HashMap<u64, PathBuf>,
    /// The names an extracted archive gave each inode it hard-linked, under the first
    /// name: kept in a table (crate::fakeroot), every name takes the owner and mode the
    /// last link entry gives the shared inode.
    archive_links: HashMap<PathBuf, Vec<PathBuf>>,
    /// For each name of `archive_links`, its first name.
    link_group: HashMap<PathBuf, PathBuf>,
    /// Directories whose mtime is set once everything inside is written.
    dir_times: Vec<(PathBuf, i64)>,
    /// Directories this copy created (so they hold nothing it did not put there).
    fresh: HashSet<PathBuf>,
    /// The parent directory last opened, reused for its siblings.
    parent: Option<(PathBuf, OwnedFd)>,
    pub stats: CopyStats,
    /// The limits of the local archives `ADD` extracts.
    pub archive_limits: crate::limits::ArchiveLimits,
    /// Unprivileged, for a source tree whose owners are kept: its owner table and the
    /// build user's ids (see [`crate::fakeroot`]).
    source_owners: Option<(Owners, (u32, u32))>,
}

impl Writer<'_> {
    /// Creates `rel` and its missing parents for the destination of a copy.
    fn mkdir_all(&self, rel: &Path) -> Result<(), CopyError> {
        let owner = self.chown.unwrap_or((0, 0));
        self.root.mkdir_all(rel, owner, self.created_dir_mode)
    }

    /// For `ADD`, the format of a selected file that is a local archive.
    fn archive_format(
        &self,
        op: &CopyOp,
        sel: &Selected,
    ) -> Result<Option<archive::Format>, CopyError> {
        if !op.add || sel.parents_rel.is_some() || sel.top.kind != EntryType::File {
            return Ok(None);
        }
        let open = || self.view.open_file(&sel.top);
        archive::detect(&self.view.path_of(&sel.top), &open)
    }

    /// Extracts a selected archive into `dest_rel`, created as BuildKit's unpack does:
    /// 0755 whatever --chmod says (the entries keep their own modes too), owned by the
    /// --chown user.
    fn archive(
        &mut self,
        sel: &Selected,
        format: archive::Format,
        dest_rel: &Path,
    ) -> Result<(), CopyError> {
        let src_path = self.view.path_of(&sel.top);
        let owner = self.chown.unwrap_or((0, 0));
        self.root.mkdir_all(dest_rel, owner, DEFAULT_DIR_MODE)?;
        self.parent = None;
        let file = self
            .view
            .open_file(&sel.top)
            .map_err(|source| CopyError::Source {
                path: src_path.clone(),
                source,
            })?;
        self.archive_links.clear();
        self.link_group.clear();
        archive::extract(self, file, &src_path, format, dest_rel)?;
        self.stats.archives += 1;
        Ok(())
    }

    fn selected(
        &mut self,
        sel: &Selected,
        dest_rel: &Path,
        into_dir: bool,
    ) -> Result<(), CopyError> {
        // BuildKit copies each source with its own copier: hardlinks are kept within
        // one source, not across sources (checked against docker 20.10's BuildKit).
        self.links.clear();
        // Another source may write into what this one created.
        self.fresh.clear();
        if let Some(rel) = &sel.parents_rel {
            // --parents: the destination is a directory; the source keeps its path.
            self.mkdir_all(dest_rel)?;
            let pivot_depth = sel.top.path.components().count() - rel.components().count();
            for anc in &sel.ancestors {
                let anc_rel: PathBuf = anc.path.components().skip(pivot_depth).collect();
                self.entry(anc, &dest_rel.join(anc_rel), false)?;
            }
            let target = dest_rel.join(rel);
            self.entry(&sel.top, &target, false)?;
            return self.below(sel, &target);
        }
        if sel.top.kind == EntryType::Dir {
            // A directory's contents, into the destination (created if missing, its
            // own metadata left alone if it exists).
            match self
                .root
                .stat(dest_rel)
                .map_err(CopyError::dest("stat", dest_rel))?
            {
                None => self.mkdir_all(dest_rel)?,
                Some(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
                Some(_) => {
                    return Err(CopyError::Conflict {
                        what: format!("directory {}", sel.top.path.display()),
                        path: format!("/{}", dest_rel.display()),
                        reason: "the destination is not a directory",
                    });
                }
            }
            return self.below(sel, dest_rel);
        }
        let target = if into_dir {
            dest_rel.join(&sel.name)
        } else {
            dest_rel.to_path_buf()
        };
        self.entry(&sel.top, &target, true)
    }

    fn below(&mut self, sel: &Selected, target: &Path) -> Result<(), CopyError> {
        let view = self.view;
        let files = view
            .below(sel)
            .filter(|e| e.kind == EntryType::File)
            .count();
        if files < parallel::PARALLEL_MIN_FILES {
            for e in view.below(sel) {
                self.entry(e, &target.join(sel.rel(e)), true)?;
            }
            return Ok(());
        }
        // Directories (and links, devices) first, in order; then the files in parallel.
        let mut jobs = Vec::with_capacity(files);
        for e in view.below(sel) {
            let place = target.join(sel.rel(e));
            if e.kind == EntryType::File {
                jobs.push((e, place));
            } else {
                self.entry(e, &place, true)?;
            }
        }
        let (stats, linked) = parallel::copy_files(self, &jobs)?;
        self.stats.files += stats.files;
        self.stats.bytes += stats.bytes;
        for (e, place) in linked {
            self.entry(e, &place, true)?;
        }
        Ok(())
    }

    /// The absolute path of a source entry.
    pub(super) fn source_path(&self, e: &ContextEntry) -> PathBuf {
        self.view.path_of(e)
    }

    /// Opens the regular file of a source entry, beneath its root.
    pub(super) fn open_source(&self, e: &ContextEntry) -> io::Result<File> {
        self.view.open_file(e)
    }

    /// Whether the copy created directory `rel` (so it holds only what the copy put).
    pub(super) fn is_fresh(&self, rel: &Path) -> bool {
        self.fresh.contains(rel)
    }

    pub fn mode_of(&self, mode: u32, is_dir: bool) -> u32 {
        match &self.chmod {
            Some(change) => change.apply(mode, is_dir),
            None => mode,
        }
    }

    pub(super) fn owner_of(&self, e: &ContextEntry) -> (u32, u32) {
        self.chown.unwrap_or(if self.view.keep_owner {
            match &self.source_owners {
                Some((table, build)) => table.image_owner(&e.path, (e.uid, e.gid), *build),
                None => (e.uid, e.gid),
            }
        } else {
            (0, 0)
        })
    }

    /// The mode of a source entry in its image: from the source tree's table when it
    /// has one (a stage's or image's tree kept with owners, crate::fakeroot).
    pub(super) fn source_mode(&self, e: &ContextEntry) -> u32 {
        match &self.source_owners {
            Some((table, _)) => table.image_mode(&e.path, e.mode),
            None => e.mode,
        }
    }

    /// Opens the parent of `target`, reusing the last one opened.
    pub fn parent_of(&mut self, target: &Path) -> Result<OwnedFd, CopyError> {
        let Some((parent, _)) = split(target) else {
            return Err(CopyError::Conflict {
                what: "an entry".to_owned(),
                path: "/".to_owned(),
                reason: "the root cannot be replaced",
            });
        };
        if let Some((cached, fd)) = &self.parent {
            if cached == parent {
                return fd.try_clone().map_err(CopyError::dest("open", parent));
            }
        }
        let fd = self
            .root
            .open_dir(parent)
            .map_err(CopyError::dest("open", parent))?;
        let dup = fd.try_clone().map_err(CopyError::dest("open", parent))?;
        self.parent = Some((parent.to_path_buf(), fd));
        Ok(dup)
    }

    /// Copies one source entry to `target` (relative to the root). An existing
    /// directory there is kept (its mode set to the source's when `overwrite`); an
    /// existing file or link is replaced.
    fn entry(&mut self, e: &ContextEntry, target: &Path, overwrite: bool) -> Result<(), CopyError> {
        let src = self.view.path_of(e);
        let owner = self.owner_of(e);
        let is_dir = e.kind == EntryType::Dir;
        let mode = self.mode_of(self.source_mode(e), is_dir);
        let name = target.file_name().unwrap_or_default().to_os_string();
        let dir = self.parent_of(target)?;
        // A directory this copy created holds only what it put there, and each source
        // path comes once: nothing to look up.
        let fresh = target.parent().is_some_and(|p| self.fresh.contains(p));
        let existing = if fresh {
            None
        } else {
            lstat_at(&dir, &name).map_err(CopyError::dest("stat", target))?
        };
        let fail = CopyError::dest;
        if is_dir {
            match existing {
                Some(FileType::Directory) => {
                    // An existing directory inside the copy takes the copied one's
                    // owner, mode and times (checked against docker 20.10's BuildKit:
                    // `COPY --chown=5:5 d /e/` over an earlier copy makes /e/s 5:5);
                    // the destination itself keeps its own.
                    if overwrite {
                        self.root
                            .give(&dir, &name, target, owner, Some((mode, true)))
                            .map_err(fail("chown", target))?;
                        self.dir_times.push((target.to_path_buf(), e.mtime_ns));
                    }
                    return Ok(());
                }
                Some(_) => {
                    return Err(CopyError::Conflict {
                        what: format!("directory {}", e.path.display()),
                        path: format!("/{}", target.display()),
                        reason: "a non-directory stands there",
                    });
                }
                None => {
                    let disk_mode = self.root.disk_mode(target, mode, true);
                    make_dir(&dir, &name, disk_mode, self.root.disk_owner(target, owner))
                        .map_err(fail("create", target))?;
                    copy_xattrs(&src, &dir, &name).map_err(fail("set xattrs on", target))?;
                    self.fresh.insert(target.to_path_buf());
                    self.dir_times.push((target.to_path_buf(), e.mtime_ns));
                    self.stats.dirs += 1;
                    return Ok(());
                }
            }
        }
        match existing {
            Some(FileType::Directory) => {
                return Err(CopyError::Conflict {
                    what: e.path.display().to_string(),
                    path: format!("/{}", target.display()),
                    reason: "cannot replace a directory with a file",
                });
            }
            Some(_) => rustix::fs::unlinkat(&dir, &name, AtFlags::empty())
                .map_err(|err| fail("remove", target)(err.into()))?,
            None => {}
        }
        match e.kind {
            EntryType::File => {
                if let Some(first) = self.links.get(&e.inode).cloned() {
                    if let Some((fparent, fname)) = split(&first) {
                        let fdir = self.root.open_dir(fparent).map_err(fail("open", fparent))?;
                        rustix::fs::linkat(&fdir, fname, &dir, &name, AtFlags::empty())
                            .map_err(|err| fail("link", target)(err.into()))?;
                        // The link shares its first copy's inode, and so its owner and
                        // mode.
                        self.root.share_entry(target, &first);
                        self.stats.files += 1;
                        return Ok(());
                    }
                }
                let input = self.view.open_file(e).map_err(|source| CopyError::Source {
                    path: src.clone(),
                    source,
                })?;
                let mut out = create_file(&dir, &name).map_err(fail("create", target))?;
                // No more than the listing saw (a file growing while it is copied).
                let n = io::copy(&mut (&input).take(e.size), &mut out).map_err(|source| {
                    CopyError::Source {
                        path: src.clone(),
                        source,
                    }
                })?;
                let nlink = input.metadata().map(|m| m.nlink()).unwrap_or(1);
                if nlink > 1 {
                    self.links.insert(e.inode, target.to_path_buf());
                }
                self.stats.files += 1;
                self.stats.bytes += n;
                // Through the open descriptors: no path lookups for the most common entry.
                finish_file(
                    &input,
                    &out,
                    self.root.disk_owner(target, owner),
                    self.root.disk_mode(target, mode, false),
                    e.mtime_ns,
                )
                .map_err(fail("set attributes on", target))?;
                return Ok(());
            }
            EntryType::Symlink => {
                let link = e.link_target.clone().unwrap_or_default();
                rustix::fs::symlinkat(&link, &dir, &name)
                    .map_err(|err| fail("create symlink", target)(err.into()))?;
                self.root
                    .give(&dir, &name, target, owner, None)
                    .map_err(fail("chown", target))?;
                set_mtime(&dir, &name, e.mtime_ns).map_err(fail("set times on", target))?;
                self.stats.other += 1;
                return Ok(());
            }
            EntryType::Fifo | EntryType::CharDevice | EntryType::BlockDevice => {
                let meta = std::fs::symlink_metadata(&src).map_err(|source| CopyError::Source {
                    path: src.clone(),
                    source,
                })?;
                let ft = match e.kind {
                    EntryType::Fifo => FileType::Fifo,
                    EntryType::CharDevice => FileType::CharacterDevice,
                    _ => FileType::BlockDevice,
                };
                rustix::fs::mknodat(&dir, &name, ft, Mode::from_raw_mode(0o600), meta.rdev())
                    .map_err(|err| fail("create node", target)(err.into()))?;
                self.stats.other += 1;
            }
            EntryType::Dir => {}
        }
        self.root
            .give(&dir, &name, target, owner, Some((mode, false)))
            .map_err(fail("chown", target))?;
        copy_xattrs(&src, &dir, &name).map_err(fail("set xattrs on", target))?;
        set_mtime(&dir, &name, e.mtime_ns).map_err(fail("set times on", target))?;
        Ok(())
    }

    /// Writes a file of `content` at `target`, replacing a file or link there.
    pub fn write_file(
        &mut self,
        target: &Path,
        content: &mut dyn Read,
        mode: u32,
        owner: (u32, u32),
        mtime_ns: i64,
    ) -> Result<(), CopyError> {
        let fail = CopyError::dest;
        let name = target.file_name().unwrap_or_default().to_os_string();
        let dir = self.parent_of(target)?;
        match lstat_at(&dir, &name).map_err(fail("stat", target))? {
            Some(FileType::Directory) => {
                return Err(CopyError::Conflict {
                    what: name.to_string_lossy().into_owned(),
                    path: format!("/{}", target.display()),
                    reason: "cannot replace a directory with a file",
                });
            }
            Some(_) => rustix::fs::unlinkat(&dir, &name, AtFlags::empty())
                .map_err(|err| fail("remove", target)(err.into()))?,
            None => {}
        }
        let mut out = create_file(&dir, &name).map_err(fail("create", target))?;
        let written = io::copy(content, &mut out).map_err(fail("write", target))?;
        self.root
            .give(&dir, &name, target, owner, Some((mode, false)))
            .map_err(fail("chown", target))?;
        set_mtime(&dir, &name, mtime_ns).map_err(fail("set times on", target))?;
        self.stats.files += 1;
        self.stats.bytes += written;
        Ok(())
    }

    /// Records that an archive's entry `name` is a hard link of `first`, which now has
    /// the owner and mode the entry gave it in the table (when there is one): every
    /// other name of the inode takes them too, as root's chown of the shared inode
    /// gives them.
    pub(super) fn archive_link(&mut self, first: &Path, name: &Path) {
        let key = self
            .link_group
            .get(first)
            .cloned()
            .unwrap_or_else(|| first.to_path_buf());
        self.link_group.insert(name.to_path_buf(), key.clone());
        let names = self.archive_links.entry(key.clone()).or_default();
        names.push(name.to_path_buf());
        for other in std::iter::once(&key).chain(names.iter()) {
            if other != name {
                self.root.share_entry(other, name);
            }
        }
    }

    /// Remembers a directory's mtime, set when the copy is done.
    pub fn dir_time(&mut self, target: PathBuf, mtime_ns: i64) {
        self.dir_times.push((target, mtime_ns));
    }

    fn finish(mut self) -> Result<CopyStats, CopyError> {
        self.parent = None;
        // Deepest first, so setting a child's time does not disturb its parent's.
        for (target, mtime) in std::mem::take(&mut self.dir_times).into_iter().rev() {
            let Some((parent, name)) = split(&target) else {
                continue;
            };
            let dir = self
                .root
                .open_dir(parent)
                .map_err(CopyError::dest("open", parent))?;
            set_mtime(&dir, name, mtime).map_err(CopyError::dest("set times on", &target))?;
        }
        Ok(self.stats)
    }
}

/// Creates a new file `name` in `dir` (never through a link), for writing.
pub(crate) fn create_file(dir: &OwnedFd, name: &OsStr) -> io::Result<File> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    Ok(File::from(fd))
}

/// Sets owner, then mode (a chown clears setuid and setgid), xattrs and times of a
/// copied file through its descriptor.
pub(super) fn finish_file(
    input: &File,
    out: &File,
    owner: (u32, u32),
    mode: u32,
    mtime_ns: i64,
) -> io::Result<()> {
    rustix::fs::fchown(
        out,
        Some(rustix::fs::Uid::from_raw(owner.0)),
        Some(rustix::fs::Gid::from_raw(owner.1)),
    )?;
    rustix::fs::fchmod(out, Mode::from_raw_mode(mode))?;
    let names = match input.list_xattr() {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return set_times(out, mtime_ns),
        Err(e) => return Err(e),
    };
    for key in names {
        if is_overlay_xattr(key.as_encoded_bytes()) {
            continue;
        }
        if let Some(value) = input.get_xattr(&key)? {
            out.set_xattr(&key, &value)?;
        }
    }
    set_times(out, mtime_ns)
}

fn set_times(out: &File, mtime_ns: i64) -> io::Result<()> {
    rustix::fs::futimens(out, &dest::times(mtime_ns))?;
    Ok(())
}

/// Copies the extended attributes of `src` (not following it) to `name` in `dir`,
/// leaving out overlayfs' private ones. A filesystem without xattrs has none to copy.
fn copy_xattrs(src: &Path, dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
    let names = match xattr::list(src) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut target: Option<OwnedFd> = None;
    for key in names {
        if is_overlay_xattr(key.as_encoded_bytes()) {
            continue;
        }
        let Some(value) = xattr::get(src, &key)? else {
            continue;
        };
        let fd = match &target {
            Some(fd) => fd,
            None => target.insert(rustix::fs::openat(
                dir,
                name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?),
        };
        rustix::fs::fsetxattr(fd, &key, &value, rustix::fs::XattrFlags::empty())?;
    }
    Ok(())
}
