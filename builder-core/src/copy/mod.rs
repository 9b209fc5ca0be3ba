//! `COPY` and `ADD`: what a step copies, its cache-key input, and the copy itself.
//!
//! A [`CopyOp`] is built from a parsed instruction ([`CopyOp::from_copy`],
//! [`CopyOp::from_add`]) and applied to a [`CopySource`]: the build context or another
//! root filesystem (`--from`). The semantics follow BuildKit's Dockerfile frontend and
//! its file operation (tonistiigi/fsutil `copy`):
//!
//! - each source is resolved inside its root, wildcards matching one component at a
//!   time; a symlink named by a source is followed (inside the root), a symlink inside a
//!   copied directory is copied as a link;
//! - a directory source copies its *contents*; a file lands inside the destination when
//!   that is a directory (or ends with `/`), else at the destination itself;
//! - destination paths are resolved inside the step's root as in a chroot (`openat2`
//!   with `RESOLVE_IN_ROOT`), so a symlink there never leads out;
//! - files keep mode, modification time, extended attributes and hardlinks; from the
//!   context they belong to 0:0, from a tree they keep their owner, unless `--chown`.
//!
//! Where BuildKit's behaviour was checked against docker 20.10's builder: a wildcard
//! that matches nothing copies nothing and is no error; several sources with a
//! destination that is not a directory are copied in turn (the last file wins); an
//! existing directory inside a copied one takes the copy's owner and mode; hardlinks are
//! kept within one source. Against docker 28.5's: `ADD --chown` of an archive gives
//! every entry that owner (20.10 left the archive's); the directories a copy creates
//! for its destination take an octal `--chmod` less dockerd's umask (an archive's
//! destination stays 0755).
//!
//! The cache key of a copy ([`sources_digest`]) covers the op's own options and, for
//! every selected entry, its relative path, type, mode, owner, content digest and link
//! target; never its modification time.

mod archive;
mod chmod;
mod chown;
mod dest;
pub(crate) mod list;
mod parallel;
mod plan;
mod remote;
mod tree;
mod write;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use rbuild_dockerfile::{AddInstruction, CopyInstruction, InlineFile};

use crate::context::{ContextHashes, ContextListing, HashError, IgnoreError, ResolveError};
use crate::limits::Limits;
use crate::{
    context::WalkError,
    digest::{Digest, Hasher},
};

pub use self::chmod::{ChmodError, ModeChange};
pub(crate) use self::dest::DestRoot;

/// Where the sources of a copy come from.
#[derive(Debug, Clone, Copy)]
pub enum CopySource<'a> {
    /// The build context: its directory (or unpacked tar), listing with .dockerignore
    /// applied ([`ContextListing`]), and content hashes ([`ContextHashes`]).
    Context {
        /// The context directory.
        root: &'a Path,
        /// What the context includes.
        listing: &'a ContextListing,
        /// The content digests of its files.
        hashes: &'a ContextHashes,
    },
    /// A root filesystem as a plain directory (a stage's or image's merged tree) for
    /// `COPY --from`.
    Tree(&'a Path),
}

/// One `COPY` or `ADD` step: what to copy where, and how.
///
/// Every field is as written in the Dockerfile after the engine's variable expansion;
/// the engine may adjust them before copying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOp {
    /// Source paths (wildcards allowed) or, for `ADD`, URLs.
    pub sources: Vec<String>,
    /// Heredoc sources (`COPY <<EOF /dest`), each written as a file named after it.
    pub heredocs: Vec<InlineFile>,
    /// The destination as written; relative to `workdir` unless absolute.
    pub dest: String,
    /// The working directory of the step (absolute).
    pub workdir: String,
    /// `--chown=user[:group]`, names resolved through the destination's passwd/group.
    pub chown: Option<String>,
    /// `--chmod=`: octal or symbolic.
    pub chmod: Option<String>,
    /// `--exclude=` patterns (.dockerignore syntax), relative to each source.
    pub excludes: Vec<String>,
    /// `--parents`: keep each source's path (from the root, or from a `./` pivot).
    pub parents: bool,
    /// `--link`: accepted; the result is the same here.
    pub link: bool,
    /// `ADD`: extract local archives, download URLs.
    pub add: bool,
    /// `ADD --checksum=sha256:...` of a downloaded source.
    pub checksum: Option<String>,
    /// `ADD --keep-git-dir`.
    pub keep_git_dir: bool,
    /// How long an `ADD <url>` download may take and how far a local archive `ADD`
    /// extracts may expand: the caller's, not the Dockerfile's, and no part of the
    /// cache key. [`Limits::default`] from [`from_copy`](Self::from_copy) and
    /// [`from_add`](Self::from_add).
    pub limits: Limits,
}

impl CopyOp {
    /// The op of a `COPY` instruction run in `workdir`.
    pub fn from_copy(instr: &CopyInstruction, workdir: &str) -> CopyOp {
        CopyOp {
            sources: instr.files.sources.clone(),
            heredocs: instr.files.inline_sources.clone(),
            dest: instr.files.dest.clone(),
            workdir: workdir.to_owned(),
            chown: instr.chown.clone(),
            chmod: instr.chmod.clone(),
            excludes: instr.excludes.clone(),
            parents: instr.parents,
            link: instr.link,
            add: false,
            checksum: None,
            keep_git_dir: false,
            limits: Limits::default(),
        }
    }

    /// The op of an `ADD` instruction run in `workdir`.
    pub fn from_add(instr: &AddInstruction, workdir: &str) -> CopyOp {
        CopyOp {
            sources: instr.files.sources.clone(),
            heredocs: instr.files.inline_sources.clone(),
            dest: instr.files.dest.clone(),
            workdir: workdir.to_owned(),
            chown: instr.chown.clone(),
            chmod: instr.chmod.clone(),
            excludes: instr.excludes.clone(),
            parents: false,
            link: instr.link,
            add: true,
            checksum: instr.checksum.clone(),
            keep_git_dir: instr.keep_git_dir,
            limits: Limits::default(),
        }
    }

    /// The destination as an absolute path inside the step's root, `/` kept at the end
    /// when it names a directory (a trailing `/`, `.` or the workdir itself).
    pub fn dest_path(&self) -> String {
        let joined = if self.dest.starts_with('/') {
            self.dest.clone()
        } else {
            let wd = if self.workdir.is_empty() {
                "/"
            } else {
                &self.workdir
            };
            format!("{}/{}", wd.trim_end_matches('/'), self.dest)
        };
        let is_dir = self.dest.is_empty()
            || self.dest.ends_with('/')
            || self.dest == "."
            || self.dest.ends_with("/.");
        let mut clean = plan::clean_abs(&joined);
        if is_dir && !clean.ends_with('/') {
            clean.push('/');
        }
        clean
    }
}

/// What a copy did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Regular files written (hardlinks included).
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Symlinks, devices and fifos created.
    pub other: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Archives extracted (`ADD`).
    pub archives: u64,
}

/// A failure of a copy.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CopyError {
    /// A source could not be resolved in the context.
    #[error("COPY failed")]
    Resolve(#[from] ResolveError),
    /// A source could not be found in a tree (`--from`).
    #[error("COPY failed: {source_path:?} not found")]
    NotFound {
        /// The source as written.
        source_path: String,
    },
    /// A `--from` tree could not be listed.
    #[error(transparent)]
    Walk(#[from] WalkError),
    /// A context file had no digest.
    #[error(transparent)]
    Hash(#[from] HashError),
    /// The sources and options do not go together.
    #[error("invalid COPY/ADD: {reason}")]
    InvalidOption {
        /// What is wrong, in BuildKit's words.
        reason: &'static str,
    },
    /// A directory would be replaced by a file, or a file stands where a directory must.
    #[error("cannot copy {what} to {path}: {reason}")]
    Conflict {
        /// What was being copied.
        what: String,
        /// The destination path.
        path: String,
        /// Why not.
        reason: &'static str,
    },
    /// Writing into the destination failed.
    #[error("failed to {op} {path} in the destination")]
    Dest {
        /// What was being done.
        op: &'static str,
        /// The destination path (inside the root).
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// Reading a source failed.
    #[error("failed to read copy source {path}")]
    Source {
        /// The source file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// `--chown` names an unknown user or group.
    #[error("invalid --chown={spec}")]
    Chown {
        /// The value as written.
        spec: String,
        /// The cause.
        source: crate::exec::ExecError,
    },
    /// `--chmod` is not a mode.
    #[error(transparent)]
    Chmod(#[from] ChmodError),
    /// An `--exclude` pattern is invalid.
    #[error("invalid --exclude pattern")]
    Exclude(#[source] IgnoreError),
    /// An archive could not be extracted.
    #[error("failed to extract archive {path}")]
    Archive {
        /// The archive (relative to its root).
        path: String,
        /// The cause.
        source: io::Error,
    },
    /// An archive entry would land outside the destination.
    #[error("archive {path} has an unsafe entry {entry:?}")]
    UnsafeArchiveEntry {
        /// The archive.
        path: String,
        /// The entry's name.
        entry: String,
    },
    /// A download failed.
    #[error("failed to download {url}")]
    Download {
        /// The URL.
        url: String,
        /// The cause.
        source: Box<ureq::Error>,
    },
    /// A download answered with an error status.
    #[error("failed to download {url}: status {status}")]
    HttpStatus {
        /// The URL.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// A download did not have the expected digest.
    #[error("checksum mismatch for {url}: expected {expected}, got {found}")]
    ChecksumMismatch {
        /// The URL.
        url: String,
        /// `--checksum`.
        expected: String,
        /// The digest of what was downloaded.
        found: Digest,
    },
    /// `--checksum` is not a digest.
    #[error("invalid --checksum={spec}: expected sha256:<64 hex digits>")]
    InvalidChecksum {
        /// The value as written.
        spec: String,
    },
    /// A source kind rbuild does not handle yet.
    #[error("{what} is not supported yet: {source_path}")]
    Unsupported {
        /// What is not supported.
        what: &'static str,
        /// The source as written.
        source_path: String,
    },
}

impl CopyError {
    pub(crate) fn dest(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> CopyError {
        let path = format!("/{}", path.display());
        move |source| CopyError::Dest { op, path, source }
    }
}

/// What goes into the step's cache key: the op's own options, and the relative path,
/// type, mode, uid/gid, content digest and link target of every selected source entry
/// (never mtime). A URL source is downloaded unless `--checksum` pins it.
pub fn sources_digest(op: &CopyOp, from: &CopySource) -> Result<Digest, CopyError> {
    Ok(describe_sources(op, from)?.key)
}

/// What a copy reads, from one plan of its sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcesDescription {
    /// The digest for the step's cache key ([`sources_digest`]).
    pub key: Digest,
    /// Every entry it copies (a selected directory's entries after `--exclude`
    /// included), by relative path: a file's content digest, else its type and mode;
    /// what `--explain-cache` compares between builds. Empty when the list went to a
    /// file instead ([`SourcesDescription::list`]).
    pub files: BTreeMap<String, String>,
    /// With [`describe_sources_in`], for a copy of more than [`MAX_LISTED_SOURCES`]
    /// entries: the file under its directory holding that list (named by
    /// [`SourcesDescription::key`]'s hex), never whole in memory.
    pub list: Option<PathBuf>,
}

/// The most entries a [`SourcesDescription`] keeps in memory; more go to a file.
pub const MAX_LISTED_SOURCES: usize = 4096;

/// [`sources_digest`] and the entries it covers, planned once.
pub fn describe_sources(op: &CopyOp, from: &CopySource) -> Result<SourcesDescription, CopyError> {
    describe_sources_in(op, from, None)
}

/// [`describe_sources`], the list of a copy of more than [`MAX_LISTED_SOURCES`]
/// entries written into `list_dir` (when given) instead of memory: `path NUL value
/// NUL` records in listing order, the file named by the key's hex and
/// written once (it is a function of the key).
pub fn describe_sources_in(
    op: &CopyOp,
    from: &CopySource,
    list_dir: Option<&Path>,
) -> Result<SourcesDescription, CopyError> {
    let (view, planned) = plan::open_and_plan(op, from)?;
    let mut h = Hasher::new();
    let mut field = |bytes: &[u8]| {
        h.update(&(bytes.len() as u64).to_be_bytes());
        h.update(bytes);
    };
    field(if op.add { b"ADD" } else { b"COPY" });
    for s in &op.sources {
        field(s.as_bytes());
    }
    field(op.dest_path().as_bytes());
    field(op.chown.as_deref().unwrap_or("").as_bytes());
    field(op.chmod.as_deref().unwrap_or("").as_bytes());
    for e in &op.excludes {
        field(e.as_bytes());
    }
    field(&[u8::from(op.parents), u8::from(op.keep_git_dir)]);
    field(op.checksum.as_deref().unwrap_or("").as_bytes());
    for (path, digest) in planned.digests(&view, false)? {
        field(path.as_bytes());
        field(digest.as_str().as_bytes());
    }
    let key = h.finish();
    if let Some(dir) = list_dir.filter(|_| planned.entry_count(&view) > MAX_LISTED_SOURCES) {
        let file = dir.join(key.hex());
        if !file.exists() {
            planned
                .write_entry_list(&view, &file)
                .map_err(|source| CopyError::Dest {
                    op: "write the source list",
                    path: file.display().to_string(),
                    source,
                })?;
        }
        return Ok(SourcesDescription {
            key,
            files: BTreeMap::new(),
            list: Some(file),
        });
    }
    Ok(SourcesDescription {
        key,
        files: planned.entry_digests(&view),
        list: None,
    })
}

/// Performs the copy into `dest_root`, the step's whole root filesystem as a directory.
pub fn copy(op: &CopyOp, from: &CopySource, dest_root: &Path) -> Result<CopyStats, CopyError> {
    let (view, planned) = plan::open_and_plan(op, from)?;
    write::run(op, &view, &planned, dest_root)
}

/// The (relative path, content digest) of each selected source, for `--explain-cache`:
/// a file's content digest, a directory's digest over everything copied from it.
pub fn selected_sources(
    op: &CopyOp,
    from: &CopySource,
) -> Result<Vec<(String, Digest)>, CopyError> {
    let (view, planned) = plan::open_and_plan(op, from)?;
    planned.digests(&view, true)
}
