//! Resolving a `COPY`/`ADD` source inside a context, without ever leaving it.
//!
//! This follows BuildKit's copy (tonistiigi/fsutil `copy` with its root-bound
//! symlink resolution): the source is cleaned with `..` clamped at the context root;
//! symlinks met on the way to the *parent* components are followed, but only through
//! the context listing and with an absolute target meaning the context root, so no
//! path can reach outside; the last component is never followed (copying a symlink
//! copies the link itself, whatever it points at). Components with wildcards use Go
//! `filepath.Match` semantics, one component at a time.

use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use crate::context::pattern::{Pattern, PatternError};
use crate::context::walk::{ContextEntry, ContextListing, EntryType};

/// How many symlinks one resolution may follow, as Linux's `MAXSYMLINKS` (40).
pub const MAX_SYMLINK_HOPS: usize = 40;

/// A failure to resolve a source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// A component is not a valid pattern.
    #[error("invalid copy source {source_path:?}")]
    Pattern {
        /// The source as written.
        source_path: String,
        /// The cause.
        source: PatternError,
    },
    /// Nothing matched the source.
    #[error("copy source {source_path:?} not found in the build context")]
    NotFound {
        /// The source as written.
        source_path: String,
    },
    /// Resolution went round a symlink loop.
    #[error("too many levels of symbolic links resolving copy source {source_path:?}")]
    SymlinkLoop {
        /// The source as written.
        source_path: String,
    },
}

/// Resolves `source` (a COPY source as written, wildcards allowed) to the matching
/// entries, in listing order. The root itself (`.` or `/`) resolves to every top-level
/// entry. A pattern that matches nothing is an error, as in BuildKit.
pub fn resolve_source<'a>(
    listing: &'a ContextListing,
    source: &str,
) -> Result<Vec<&'a ContextEntry>, ResolveError> {
    let mut queue = components(Path::new(source), false);
    let mut resolver = Resolver {
        listing,
        source,
        hops: 0,
        found: Vec::new(),
    };
    queue.reverse();
    resolver.descend(PathBuf::new(), queue)?;
    let mut found = resolver.found;
    if found.is_empty() {
        return Err(ResolveError::NotFound {
            source_path: source.to_owned(),
        });
    }
    found.sort_unstable();
    found.dedup();
    Ok(found.into_iter().map(|i| &listing.entries()[i]).collect())
}

struct Resolver<'a> {
    listing: &'a ContextListing,
    source: &'a str,
    hops: usize,
    /// Indexes into the listing.
    found: Vec<usize>,
}

impl Resolver<'_> {
    /// Resolves the components in `rest` (a stack: the next one last) below `dir`, a
    /// path already resolved to a directory of the listing (or the root).
    fn descend(&mut self, mut dir: PathBuf, mut rest: Vec<Part>) -> Result<(), ResolveError> {
        while let Some(part) = rest.pop() {
            let name = match part {
                Part::Parent => {
                    dir.pop();
                    continue;
                }
                Part::Literal(name) => {
                    let last = rest.is_empty();
                    return self.step(dir.join(name), rest, last);
                }
                Part::Pattern(name) => name,
            };
            let text = name.to_string_lossy();
            let pattern = Pattern::new(&text, false).map_err(|source| ResolveError::Pattern {
                source_path: self.source.to_owned(),
                source,
            })?;
            let last = rest.is_empty();
            if pattern.has_wildcard() {
                let names: Vec<PathBuf> = self
                    .listing
                    .children(&dir)
                    .filter(|e| {
                        e.path
                            .file_name()
                            .is_some_and(|n| pattern.matches(&n.to_string_lossy()))
                    })
                    .map(|e| e.path.clone())
                    .collect();
                for path in names {
                    self.step(path, rest.clone(), last)?;
                }
                return Ok(());
            }
            let Some(unescaped) = literal_text(&pattern) else {
                return Ok(());
            };
            return self.step(dir.join(unescaped), rest, last);
        }
        // The whole source named a directory (or the root): take what it holds.
        if dir.as_os_str().is_empty() {
            let top: Vec<usize> = (0..self.listing.entries().len())
                .filter(|&i| self.listing.entries()[i].path.parent() == Some(Path::new("")))
                .collect();
            self.found.extend(top);
        } else if let Some(i) = self.index_of(&dir) {
            self.found.push(i);
        }
        Ok(())
    }

    /// Continues from `path`, the match of one component.
    fn step(&mut self, path: PathBuf, rest: Vec<Part>, last: bool) -> Result<(), ResolveError> {
        let Some(entry) = self.listing.get(&path) else {
            return Ok(());
        };
        if last {
            if let Some(i) = self.index_of(&path) {
                self.found.push(i);
            }
            return Ok(());
        }
        match entry.kind {
            EntryType::Dir => self.descend(path, rest),
            EntryType::Symlink => {
                self.hops += 1;
                if self.hops > MAX_SYMLINK_HOPS {
                    return Err(ResolveError::SymlinkLoop {
                        source_path: self.source.to_owned(),
                    });
                }
                let target = entry.link_target.clone().unwrap_or_default();
                let base = if target.is_absolute() {
                    PathBuf::new()
                } else {
                    path.parent().map(Path::to_path_buf).unwrap_or_default()
                };
                let mut rest = rest;
                // A link target is a plain path: its `*` or `[` are not wildcards.
                rest.extend(components(&target, true).into_iter().rev());
                // `descend` clamps `..` at the root, so the target cannot escape.
                self.descend(base, rest)
            }
            _ => Ok(()),
        }
    }

    fn index_of(&self, path: &Path) -> Option<usize> {
        self.listing.position(path)
    }
}

/// One component still to resolve.
#[derive(Debug, Clone)]
enum Part {
    /// `..`: up one level, but never above the root.
    Parent,
    /// A component of the source as written: may hold wildcards and `\` escapes.
    Pattern(OsString),
    /// A component of a symlink target: taken as it is.
    Literal(OsString),
}

/// The components of `path`, in order; `/` and `.` drop out (an absolute path is taken
/// from the context root).
fn components(path: &Path, literal: bool) -> Vec<Part> {
    path.components()
        .filter_map(|comp| match comp {
            Component::Normal(name) if literal => Some(Part::Literal(name.to_os_string())),
            Component::Normal(name) => Some(Part::Pattern(name.to_os_string())),
            Component::ParentDir => Some(Part::Parent),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// The name a wildcard-free pattern stands for, with its `\` escapes removed.
fn literal_text(pattern: &Pattern) -> Option<String> {
    let mut out = String::new();
    let mut chars = pattern.as_str().chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.push(chars.next()?);
        } else {
            out.push(c);
        }
    }
    Some(out)
}
