//! `.dockerignore`: which paths of a context are left out.
//!
//! The rules follow moby/patternmatcher and its `ignorefile` reader, which both the
//! docker CLI and BuildKit use:
//! - a line whose first character is `#` is a comment (only at column one; `" #x"` is a
//!   pattern); blank lines are skipped; surrounding whitespace is trimmed;
//! - `!` starts an exception; lines are applied in order and the last one that matches a
//!   path decides;
//! - each pattern is cleaned like Go's `filepath.Clean`, and a leading `/` is dropped, so
//!   patterns are relative to the context root (`./a` and `/a` both mean `a`);
//! - a path is excluded when it, or any directory above it, matches (a pattern naming a
//!   directory excludes everything beneath it).
//!
//! The ignore file is looked up as BuildKit's Dockerfile front end does: the file
//! `<Dockerfile>.dockerignore` beside a named Dockerfile wins over `.dockerignore` at the
//! context root.
//!
//! Unlike the legacy (non-BuildKit) docker builder, which re-added the Dockerfile and
//! `.dockerignore` to the context so the daemon could read them, BuildKit transfers the
//! Dockerfile separately and applies the patterns to the context as written: an
//! excluded Dockerfile or `.dockerignore` is *not* visible to `COPY`. rbuild does the
//! same; the caller reads the Dockerfile itself.

use std::io;
use std::path::{Path, PathBuf};

use crate::beneath::{exists_in_context, read_in_context, read_named_file};
use crate::context::pattern::{Pattern, PatternError};

/// The largest ignore file rbuild reads (as large as the largest Dockerfile).
pub const MAX_IGNORE_BYTES: u64 = 4 << 20;

/// The name of the ignore file at the root of a context.
pub const DOCKERIGNORE: &str = ".dockerignore";

/// A failure to read or parse an ignore file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IgnoreError {
    /// The file exists but could not be read.
    #[error("failed to read ignore file {path}")]
    Read {
        /// The ignore file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A line is a lone `!`.
    #[error("illegal exclusion pattern \"!\" on line {line}")]
    LoneBang {
        /// The 1-based line number.
        line: usize,
    },
    /// A line is not a valid pattern.
    #[error("bad pattern on line {line}")]
    Pattern {
        /// The 1-based line number.
        line: usize,
        /// The cause.
        source: PatternError,
    },
}

#[derive(Debug, Clone)]
struct Rule {
    pattern: Pattern,
    /// A `!` line: matching paths are put back.
    exception: bool,
}

/// The parsed rules of one ignore file, in file order.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    rules: Vec<Rule>,
}

/// Per-rule results for a directory, handed to its children (a path matches a rule when
/// it or any ancestor does).
#[derive(Debug, Clone, Default)]
pub(crate) struct ParentMatches(Vec<bool>);

impl IgnoreRules {
    /// Rules that exclude nothing.
    pub fn none() -> Self {
        Self::default()
    }

    /// Parses the text of an ignore file.
    pub fn parse(text: &str) -> Result<Self, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut rules = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            if raw.starts_with('#') {
                continue;
            }
            let mut pattern = raw.trim();
            if pattern.is_empty() {
                continue;
            }
            let exception = pattern.starts_with('!');
            if exception {
                pattern = pattern[1..].trim();
                if pattern.is_empty() {
                    return Err(IgnoreError::LoneBang { line });
                }
            }
            let mut cleaned = rbuild_dockerfile::clean_path(pattern);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            let pattern = Pattern::new(&cleaned, true)
                .map_err(|source| IgnoreError::Pattern { line, source })?;
            rules.push(Rule { pattern, exception });
        }
        Ok(Self { rules })
    }

    /// Reads and parses the ignore file at `path`, a path the caller chose (symlinks
    /// followed); a missing file means no rules. It must be a regular file (or a pipe)
    /// of at most [`MAX_IGNORE_BYTES`].
    pub fn read(path: &Path) -> Result<Self, IgnoreError> {
        match read_named_file(path, MAX_IGNORE_BYTES) {
            Ok(bytes) => Self::parse(&String::from_utf8_lossy(&bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Self::none()),
            Err(source) => Err(IgnoreError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// Reads and parses the ignore file `rel` of the context at `context_dir`, its
    /// symlinks resolved inside the context as BuildKit reads it from the context it
    /// received (a link to `/etc/shadow` means `<context>/etc/shadow`); a missing file
    /// means no rules. It must be a regular file of at most [`MAX_IGNORE_BYTES`].
    pub fn read_in_context(context_dir: &Path, rel: &Path) -> Result<Self, IgnoreError> {
        match read_in_context(context_dir, rel, MAX_IGNORE_BYTES) {
            Ok(Some(bytes)) => Self::parse(&String::from_utf8_lossy(&bytes)),
            Ok(None) => Ok(Self::none()),
            Err(source) => Err(IgnoreError::Read {
                path: context_dir.join(rel),
                source,
            }),
        }
    }

    /// Finds and reads the ignore file for a build: `<dockerfile>.dockerignore` beside
    /// `dockerfile` when that exists, else `.dockerignore` in `context_dir`. A file
    /// inside the context is read with its symlinks resolved inside the context; one
    /// beside a Dockerfile elsewhere is read where the user's path leads.
    pub fn for_build(context_dir: &Path, dockerfile: Option<&Path>) -> Result<Self, IgnoreError> {
        if let Some((dockerfile, name)) = dockerfile.and_then(|d| Some((d, d.file_name()?))) {
            let mut beside = name.to_os_string();
            beside.push(DOCKERIGNORE);
            let beside = dockerfile.with_file_name(beside);
            if let Ok(rel) = beside.strip_prefix(context_dir) {
                if exists_in_context(context_dir, rel) {
                    return Self::read_in_context(context_dir, rel);
                }
            } else if beside.symlink_metadata().is_ok() {
                return Self::read(&beside);
            }
        }
        Self::read_in_context(context_dir, Path::new(DOCKERIGNORE))
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `path` (relative, slash-separated) is excluded, given the results of its
    /// parent directory (pass `None` to compute the ancestors from scratch). Returns the
    /// results to hand to `path`'s children.
    pub(crate) fn excluded(
        &self,
        path: &str,
        parent: Option<&ParentMatches>,
    ) -> (bool, ParentMatches) {
        let mut excluded = false;
        let mut here = Vec::with_capacity(self.rules.len());
        for (i, rule) in self.rules.iter().enumerate() {
            let matched = match parent {
                Some(ParentMatches(p)) if p.get(i) == Some(&true) => true,
                Some(_) => rule.pattern.matches(path),
                None => {
                    rule.pattern.matches(path)
                        || ancestors(path).any(|dir| rule.pattern.matches(dir))
                }
            };
            here.push(matched);
            if matched {
                excluded = !rule.exception;
            }
        }
        (excluded, ParentMatches(here))
    }

    /// Whether `path` is excluded (its ancestors are checked too).
    pub fn is_excluded(&self, path: &str) -> bool {
        self.excluded(path, None).0
    }

    /// Whether an excluded directory must still be walked because an exception could
    /// put back something beneath it. Like BuildKit's fsutil: an exception with a
    /// wildcard might match anywhere, so any one of them forces the walk; a literal one
    /// does when it names a path under `dir`.
    pub fn may_include_beneath(&self, dir: &str) -> bool {
        let prefix = format!("{dir}/");
        self.rules.iter().filter(|r| r.exception).any(|r| {
            r.pattern.has_wildcard() || format!("{}/", r.pattern.as_str()).starts_with(&prefix)
        })
    }
}

/// The proper ancestors of a slash-separated relative path, shortest first.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    path.match_indices('/').map(move |(i, _)| &path[..i])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> IgnoreRules {
        IgnoreRules::parse(text).expect("valid rules")
    }

    #[test]
    fn comments_blank_lines_and_whitespace() {
        let r = rules("# comment\n\n   a  \n #b\n");
        assert!(r.is_excluded("a"));
        assert!(!r.is_excluded("# comment"));
        assert!(r.is_excluded("#b"));
    }

    #[test]
    fn later_exception_wins_and_parents_exclude_children() {
        let r = rules("docs\n!docs/keep.md\n");
        assert!(r.is_excluded("docs"));
        assert!(r.is_excluded("docs/a.md"));
        assert!(!r.is_excluded("docs/keep.md"));
        assert!(r.may_include_beneath("docs"));
        assert!(!r.may_include_beneath("other"));
    }

    #[test]
    fn leading_slash_and_dot_are_relative_to_the_root() {
        let r = rules("/a\n./b/../c\n");
        assert!(r.is_excluded("a"));
        assert!(r.is_excluded("c"));
        assert!(!r.is_excluded("b"));
    }

    #[test]
    fn lone_bang_is_an_error() {
        assert!(matches!(
            IgnoreRules::parse("a\n!\n"),
            Err(IgnoreError::LoneBang { line: 2 })
        ));
    }
}
