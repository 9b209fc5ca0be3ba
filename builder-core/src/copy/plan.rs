//! Selecting what a copy takes: sources resolved, top-level symlinks followed,
//! `--exclude` applied. The same selection feeds the cache key and the copy.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rbuild_dockerfile::InlineFile;

use super::{CopyError, CopyOp, CopySource, remote, tree};
use sha2::{Digest as _, Sha256};

use crate::context::{
    self, ContentDigest, ContentEncoding, ContextEntry, ContextHashes, ContextListing, EntryType,
    IgnoreRules, MAX_SYMLINK_HOPS, ResolveError, open_listed_file, resolve_source,
};
use crate::digest::{Digest, Hasher};

/// A source root seen through a listing: the context's own, or a walk of a tree.
pub(crate) struct SourceView<'a> {
    /// The directory the listing's paths are relative to.
    pub root: PathBuf,
    listing: Cow<'a, ContextListing>,
    hashes: Option<&'a ContextHashes>,
    /// Whether copied entries keep their owner (a tree) or become 0:0 (the context,
    /// whose files BuildKit receives with their owner reset).
    pub keep_owner: bool,
    /// Sources rewritten to their resolved paths when only part of a tree is listed.
    rewrites: HashMap<String, String>,
    /// The root, open: files are opened beneath it, never through a symlink.
    root_fd: OwnedFd,
}

/// Opens a source root directory.
fn open_root(root: &Path) -> Result<OwnedFd, CopyError> {
    crate::context::open_root(root).map_err(|source| CopyError::Source {
        path: root.to_path_buf(),
        source,
    })
}

/// Opens `from` for `op` and selects what it copies. A `--from` tree is listed only
/// where the sources lead, unless that selection fails, when the whole tree is.
pub(crate) fn open_and_plan<'a>(
    op: &CopyOp,
    from: &CopySource<'a>,
) -> Result<(SourceView<'a>, Plan), CopyError> {
    if let CopySource::Tree(root) = *from {
        if let Some(narrow) = tree::narrowing(root, op)? {
            let view = SourceView {
                root: root.to_path_buf(),
                listing: Cow::Owned(ContextListing::walk(root, &narrow.rules)?),
                hashes: None,
                keep_owner: true,
                rewrites: narrow.rewrites,
                root_fd: open_root(root)?,
            };
            match plan(op, &view) {
                Ok(planned) => return Ok((view, planned)),
                Err(CopyError::NotFound { .. } | CopyError::Resolve(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let view = SourceView::open(from)?;
    let planned = plan(op, &view)?;
    Ok((view, planned))
}

impl<'a> SourceView<'a> {
    pub fn open(from: &CopySource<'a>) -> Result<Self, CopyError> {
        Ok(match *from {
            CopySource::Context {
                root,
                listing,
                hashes,
            } => SourceView {
                root: root.to_path_buf(),
                listing: Cow::Borrowed(listing),
                hashes: Some(hashes),
                keep_owner: false,
                rewrites: HashMap::new(),
                root_fd: open_root(root)?,
            },
            CopySource::Tree(root) => SourceView {
                root: root.to_path_buf(),
                listing: Cow::Owned(ContextListing::walk(root, &IgnoreRules::none())?),
                hashes: None,
                keep_owner: true,
                rewrites: HashMap::new(),
                root_fd: open_root(root)?,
            },
        })
    }

    fn is_context(&self) -> bool {
        self.hashes.is_some()
    }

    /// The absolute path of a listing entry.
    pub fn path_of(&self, entry: &ContextEntry) -> PathBuf {
        self.root.join(&entry.path)
    }

    /// Opens the regular file of a listing entry for reading. Its path was listed
    /// without symlinks, so none is followed now: a component swapped for a link since
    /// the listing (a context edited during the build) fails instead of leading out.
    /// It is opened without blocking and must still be a regular file: one swapped for
    /// a FIFO or a device fails instead of hanging the copy or reading the device.
    pub fn open_file(&self, entry: &ContextEntry) -> io::Result<File> {
        open_listed_file(&self.root_fd, &entry.path)
    }

    /// The entries `sel` copies beneath its top, in listing order.
    pub fn below<'s>(&'s self, sel: &'s Selected) -> impl Iterator<Item = &'s ContextEntry> + 's {
        let entries = self.listing.entries();
        sel.below.iter().map(move |&i| &entries[i])
    }

    /// The top of `sel` and the entries beneath it, in listing order.
    pub fn selected<'s>(
        &'s self,
        sel: &'s Selected,
    ) -> impl Iterator<Item = &'s ContextEntry> + 's {
        std::iter::once(&sel.top).chain(self.below(sel))
    }
}

/// One selected source.
#[derive(Debug)]
pub(crate) enum Item {
    /// Entries of the source root.
    Entries(Selected),
    /// A heredoc, written as a file.
    Inline(InlineFile),
    /// An `ADD` of an http(s) URL, with `--checksum`.
    Url {
        /// The URL.
        url: String,
        /// `--checksum`, which pins the content without a download.
        checksum: Option<String>,
    },
}

/// A source path and what it selects.
#[derive(Debug)]
pub(crate) struct Selected {
    /// The object copied: the match of a source, its symlinks followed.
    pub top: ContextEntry,
    /// The name it takes inside a destination directory (the match's own name, before
    /// following a symlink).
    pub name: OsString,
    /// With `--parents`: where it goes below the destination.
    pub parents_rel: Option<PathBuf>,
    /// With `--parents`: the directories between the destination and it.
    pub ancestors: Vec<ContextEntry>,
    /// For a directory, everything beneath it that is copied, in listing order: places
    /// in the view's listing ([`SourceView::below`]), not copies of its entries.
    pub below: Vec<usize>,
}

impl Selected {
    /// The place of `entry` (one of `below`) relative to the top.
    pub fn rel<'e>(&self, entry: &'e ContextEntry) -> &'e Path {
        entry
            .path
            .strip_prefix(&self.top.path)
            .unwrap_or(&entry.path)
    }
}

/// Everything a copy takes, in order.
#[derive(Debug)]
pub(crate) struct Plan {
    pub items: Vec<Item>,
    /// The op's limits: URL sources are fetched within its deadline.
    pub limits: crate::limits::Limits,
}

/// Resolves the sources of `op` in `view`.
pub(crate) fn plan(op: &CopyOp, view: &SourceView) -> Result<Plan, CopyError> {
    let excludes = if op.excludes.is_empty() {
        None
    } else {
        Some(IgnoreRules::parse(&op.excludes.join("\n")).map_err(CopyError::Exclude)?)
    };
    check_options(op)?;
    let mut items = Vec::new();
    for source in &op.sources {
        if op.add && remote::is_url(source) {
            remote::check_supported(source)?;
            items.push(Item::Url {
                url: source.clone(),
                checksum: op.checksum.clone(),
            });
            continue;
        }
        if !has_wildcard(source) && clean_rel(Path::new(source)).as_os_str().is_empty() {
            // The root itself (`.`, `/`): its contents, like any directory.
            items.push(Item::Entries(root_selection(view, excludes.as_ref())));
            continue;
        }
        let pattern = view
            .rewrites
            .get(source)
            .map_or(source.as_str(), String::as_str);
        let matches = match resolve_source(&view.listing, pattern) {
            Ok(m) => m,
            // BuildKit's frontend sets AllowEmptyWildcard: a wildcard matching nothing
            // copies nothing, even when it is the only source (checked against
            // docker 20.10's BuildKit: the step succeeds and changes nothing).
            Err(ResolveError::NotFound { .. }) if has_wildcard(source) => continue,
            Err(ResolveError::NotFound { .. }) if !view.is_context() => {
                return Err(CopyError::NotFound {
                    source_path: source.clone(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let pivot = op.parents.then(|| pivot_of(source));
        for found in matches {
            if excludes
                .as_ref()
                .is_some_and(|x| is_excluded_top(x, found, pivot.as_deref()))
            {
                continue;
            }
            // BuildKit follows the symlink a source names, except with --parents, where
            // the source becomes an include pattern and a matched link is copied as is.
            let top = if op.parents {
                Some(found)
            } else {
                follow(view, source, found)?
            };
            let Some(top) = top else {
                // A link to the root: its contents, as for `.`.
                items.push(Item::Entries(root_selection(view, excludes.as_ref())));
                continue;
            };
            let name = found
                .path
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_default();
            let (parents_rel, ancestors) = match &pivot {
                Some(pivot) => {
                    let rel = found.path.strip_prefix(pivot).unwrap_or(&found.path);
                    let mut ancestors = Vec::new();
                    let mut sofar = pivot.clone();
                    for comp in rel.parent().into_iter().flat_map(Path::components) {
                        sofar.push(comp);
                        if let Some(e) = view.listing.get(&sofar) {
                            ancestors.push(e.clone());
                        }
                    }
                    (Some(rel.to_path_buf()), ancestors)
                }
                None => (None, Vec::new()),
            };
            let below = match view.listing.position(&top.path) {
                Some(start) if top.kind == EntryType::Dir => {
                    let subtree = view.listing.subtree_at(start);
                    (start + 1..start + subtree.len())
                        .filter(|&i| {
                            let e = &view.listing.entries()[i];
                            let rel = e.path.strip_prefix(&top.path).unwrap_or(&e.path);
                            !excludes
                                .as_ref()
                                .is_some_and(|x| x.is_excluded(&rel.to_string_lossy()))
                        })
                        .collect()
                }
                _ => Vec::new(),
            };
            items.push(Item::Entries(Selected {
                top: top.clone(),
                name,
                parents_rel,
                ancestors,
                below,
            }));
        }
    }
    items.extend(op.heredocs.iter().cloned().map(Item::Inline));
    Ok(Plan {
        items,
        limits: op.limits,
    })
}

/// The checks BuildKit's frontend makes on the sources and `--checksum`.
fn check_options(op: &CopyOp) -> Result<(), CopyError> {
    let invalid = |reason| Err(CopyError::InvalidOption { reason });
    if !op.add && op.sources.iter().any(|s| remote::is_url(s)) {
        return invalid("source can't be a URL for COPY");
    }
    if op.checksum.is_some() {
        if !op.add {
            return invalid("checksum can't be specified for COPY");
        }
        if op.sources.len() != 1 {
            return invalid("checksum can't be specified for multiple sources");
        }
        if !op.sources.iter().all(|s| remote::is_url(s)) {
            return invalid("checksum requires HTTP(S) or Git sources");
        }
    }
    Ok(())
}

/// The whole source root as one directory selection.
fn root_selection(view: &SourceView, excludes: Option<&IgnoreRules>) -> Selected {
    let top = ContextEntry {
        path: PathBuf::new(),
        kind: EntryType::Dir,
        mode: 0o755,
        uid: 0,
        gid: 0,
        size: 0,
        mtime_ns: 0,
        ctime_ns: 0,
        inode: 0,
        link_target: None,
    };
    let entries = view.listing.entries();
    let below = (0..entries.len())
        .filter(|&i| !excludes.is_some_and(|x| x.is_excluded(&entries[i].path.to_string_lossy())))
        .collect();
    Selected {
        top,
        name: OsString::new(),
        parents_rel: None,
        ancestors: Vec::new(),
        below,
    }
}

/// Whether an `--exclude` pattern leaves out a matched source itself: its path from the
/// root (or the `--parents` pivot), or its name alone.
fn is_excluded_top(rules: &IgnoreRules, found: &ContextEntry, pivot: Option<&Path>) -> bool {
    let rel = pivot
        .and_then(|p| found.path.strip_prefix(p).ok())
        .unwrap_or(&found.path);
    let name = found.path.file_name().unwrap_or_default();
    rules.is_excluded(&rel.to_string_lossy()) || rules.is_excluded(&name.to_string_lossy())
}

/// Follows `found` while it is a symlink, inside the source root (BuildKit's COPY
/// follows the symlink a source names; those inside a copied directory stay links).
/// `None` is the root itself.
fn follow<'v>(
    view: &'v SourceView,
    source: &str,
    found: &'v ContextEntry,
) -> Result<Option<&'v ContextEntry>, CopyError> {
    let mut current = found;
    let mut hops = 0;
    while current.kind == EntryType::Symlink {
        hops += 1;
        if hops > MAX_SYMLINK_HOPS {
            return Err(ResolveError::SymlinkLoop {
                source_path: source.to_owned(),
            }
            .into());
        }
        let target = current.link_target.clone().unwrap_or_default();
        let joined = if target.is_absolute() {
            target
        } else {
            current.path.parent().unwrap_or(Path::new("")).join(target)
        };
        let not_found = || {
            if view.is_context() {
                CopyError::from(ResolveError::NotFound {
                    source_path: source.to_owned(),
                })
            } else {
                CopyError::NotFound {
                    source_path: source.to_owned(),
                }
            }
        };
        if clean_rel(&joined).as_os_str().is_empty() {
            return Ok(None);
        }
        let escaped = escape_pattern(&joined.to_string_lossy());
        let next = match resolve_source(&view.listing, &escaped) {
            Ok(next) => next,
            Err(ResolveError::NotFound { .. }) => return Err(not_found()),
            Err(e) => return Err(e.into()),
        };
        match next.as_slice() {
            [one] => current = one,
            _ => return Err(not_found()),
        }
    }
    Ok(Some(current))
}

/// The `--parents` pivot of a source: the part before a `/./`, or the root.
fn pivot_of(source: &str) -> PathBuf {
    match source.find("/./") {
        Some(i) => clean_rel(Path::new(&source[..i])),
        None if source.starts_with("./") => PathBuf::new(),
        None => PathBuf::new(),
    }
}

fn has_wildcard(source: &str) -> bool {
    let mut chars = source.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

fn escape_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `path` relative to a root, `.` dropped and `..` clamped at the root.
pub(crate) fn clean_rel(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for comp in path.components() {
        match comp {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// An absolute, clean path (Go's `path.Clean` of `/` + `path`).
pub(crate) fn clean_abs(path: &str) -> String {
    let rel = clean_rel(Path::new(path));
    format!("/{}", rel.display())
}

impl Plan {
    /// The (relative path, digest) of each item, as the cache key and
    /// `--explain-cache` see it.
    ///
    /// For the key (`content_only` false) every item's digest covers the metadata of
    /// what it selects, a lone file's mode and owner included; for `--explain-cache` a
    /// file is named by its content digest alone.
    pub fn digests(
        &self,
        view: &SourceView,
        content_only: bool,
    ) -> Result<Vec<(String, Digest)>, CopyError> {
        let mut out = Vec::with_capacity(self.items.len());
        for item in &self.items {
            out.push(match item {
                Item::Entries(sel) => {
                    let path = sel.top.path.to_string_lossy().into_owned();
                    let digest = match (sel.top.kind, view.hashes) {
                        _ if !content_only => selection_digest(view, sel)?,
                        (EntryType::File, Some(h)) => h.get(&sel.top.path).ok_or_else(|| {
                            crate::context::HashError::Missing {
                                path: sel.top.path.clone(),
                            }
                        })?,
                        (EntryType::File, None) => file_digest(view, &sel.top)?,
                        _ => selection_digest(view, sel)?,
                    };
                    (path, digest)
                }
                Item::Inline(file) => {
                    let mut h = Hasher::new();
                    h.update(file.name.as_bytes());
                    h.update(&[0, u8::from(file.expand)]);
                    h.update(file.content.as_bytes());
                    (format!("<<{}", file.name), h.finish())
                }
                Item::Url { url, checksum } => {
                    let digest = match checksum {
                        Some(c) => remote::parse_checksum(c)?,
                        None => remote::content_digest(url, self.limits.http_deadline)?,
                    };
                    (url.clone(), digest)
                }
            });
        }
        Ok(out)
    }

    /// Every context entry the plan copies (tops and what is beneath them), by relative
    /// path: a file's content digest when the view has hashes, else its type and mode.
    pub fn entry_digests(&self, view: &SourceView) -> BTreeMap<String, String> {
        self.entries(view)
            .map(|e| (e.path.to_string_lossy().into_owned(), entry_value(view, e)))
            .collect()
    }

    /// How many entries (with repeats) [`Plan::entry_digests`] would hold.
    pub fn entry_count(&self, view: &SourceView) -> usize {
        self.items
            .iter()
            .map(|item| match item {
                Item::Entries(sel) => 1 + sel.below.len(),
                _ => 0,
            })
            .sum::<usize>()
            .min(view.listing.entries().len() + self.items.len())
    }

    /// [`Plan::entry_digests`] as a file of `path NUL value NUL` records in listing
    /// order, without the map: only references to the entries are sorted.
    pub fn write_entry_list(&self, view: &SourceView, file: &Path) -> io::Result<()> {
        let mut entries: Vec<&ContextEntry> = self.entries(view).collect();
        if self.items.len() > 1 {
            entries.sort_by(|a, b| a.path.cmp(&b.path));
            entries.dedup_by(|a, b| a.path == b.path);
        }
        crate::atomic::AtomicWrite::new(file)
            .write_with(|f| {
                let mut out = io::BufWriter::new(f);
                for e in entries {
                    super::list::write_record(
                        &mut out,
                        e.path.to_string_lossy().as_bytes(),
                        entry_value(view, e).as_bytes(),
                    )?;
                }
                io::Write::flush(&mut out)
            })
            .map_err(|e| e.source)
    }

    fn entries<'s>(&'s self, view: &'s SourceView) -> impl Iterator<Item = &'s ContextEntry> + 's {
        self.items
            .iter()
            .flat_map(move |item| match item {
                Item::Entries(sel) => Some(view.selected(sel)),
                _ => None,
            })
            .flatten()
    }
}

/// What `--explain-cache` remembers of an entry: a file's content digest when the view
/// has hashes, else its type and mode.
fn entry_value(view: &SourceView, e: &ContextEntry) -> String {
    view.hashes
        .and_then(|h| h.get(&e.path))
        .map_or_else(|| format!("{:?} {:o}", e.kind, e.mode), |d| d.to_string())
}

/// The digest of a selected directory (or symlink, device...): every entry's relative
/// path, type, mode, owner, content and link target; never its mtime.
fn selection_digest(view: &SourceView, sel: &Selected) -> Result<Digest, CopyError> {
    let entries = view.selected(sel);
    match view.hashes {
        Some(hashes) => Ok(hashes.selection_digest(entries)?),
        None => context::selection_digest(entries, ContentEncoding::Text, |entry| {
            file_content(view, entry)
        }),
    }
}

/// The sha256 of a file's content, never following a symlink put in its place.
fn file_digest(view: &SourceView, entry: &ContextEntry) -> Result<Digest, CopyError> {
    Ok(Digest::from_sha256(*file_content(view, entry)?.as_bytes()))
}

fn file_content(view: &SourceView, entry: &ContextEntry) -> Result<ContentDigest, CopyError> {
    let failed = |source| CopyError::Source {
        path: view.path_of(entry),
        source,
    };
    let mut file = view.open_file(entry).map_err(failed)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(failed)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(ContentDigest::from_bytes(h.finalize().into()))
}
