//! Helpers shared by the copy tests: a context on disk, ops from Dockerfile text, and a
//! listing of what a destination root holds.

#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use rbuild_core::{
    context::{ContextHashes, ContextListing, IgnoreRules},
    copy::{CopyOp, CopySource},
};
use rbuild_dockerfile::Instruction;

/// Writes `files` (path -> content; a path ending in `/` is a directory, content
/// starting with `->` a symlink) under `root`.
pub fn populate(root: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let full = root.join(path.trim_end_matches('/'));
        fs::create_dir_all(full.parent().unwrap()).unwrap();
        if path.ends_with('/') {
            fs::create_dir_all(&full).unwrap();
        } else if let Some(target) = content.strip_prefix("->") {
            symlink(target, &full).unwrap();
        } else {
            fs::write(&full, content).unwrap();
            fs::set_permissions(&full, fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}

/// A build context on disk, listed and hashed.
pub struct Context {
    pub dir: tempfile::TempDir,
    pub listing: ContextListing,
    pub hashes: ContextHashes,
}

impl Context {
    pub fn new(files: &[(&str, &str)]) -> Context {
        Self::with_ignore(files, "")
    }

    pub fn with_ignore(files: &[(&str, &str)], dockerignore: &str) -> Context {
        let dir = tempfile::tempdir().unwrap();
        populate(dir.path(), files);
        Self::from_dir(dir, dockerignore)
    }

    pub fn from_dir(dir: tempfile::TempDir, dockerignore: &str) -> Context {
        let rules = IgnoreRules::parse(dockerignore).unwrap();
        let listing = ContextListing::walk(dir.path(), &rules).unwrap();
        let hashes = ContextHashes::compute(&listing, None).unwrap();
        Context {
            dir,
            listing,
            hashes,
        }
    }

    pub fn source(&self) -> CopySource<'_> {
        CopySource::Context {
            root: self.dir.path(),
            listing: &self.listing,
            hashes: &self.hashes,
        }
    }
}

/// The op of the one COPY or ADD instruction in `line`, run in `workdir`.
pub fn op(line: &str, workdir: &str) -> CopyOp {
    let text = format!("FROM scratch\n{line}\n");
    let dockerfile = rbuild_dockerfile::parse(&text).unwrap();
    match &dockerfile.stages[0].instructions[0] {
        Instruction::Copy(c) => CopyOp::from_copy(c, workdir),
        Instruction::Add(a) => CopyOp::from_add(a, workdir),
        other => panic!("not a COPY or ADD: {other:?}"),
    }
}

/// What one entry of a root looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub kind: char,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// File content or link target.
    pub data: String,
}

/// Every entry under `root` (relative path -> what it is), the root itself left out.
pub fn tree(root: &Path) -> BTreeMap<String, Seen> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).min_depth(1) {
        let e = e.unwrap();
        let meta = e.path().symlink_metadata().unwrap();
        let rel = e
            .path()
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let ft = meta.file_type();
        let (kind, data) = if ft.is_dir() {
            ('d', String::new())
        } else if ft.is_symlink() {
            (
                'l',
                fs::read_link(e.path())
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            )
        } else if ft.is_file() {
            (
                'f',
                String::from_utf8_lossy(&fs::read(e.path()).unwrap()).into_owned(),
            )
        } else {
            ('o', String::new())
        };
        out.insert(
            rel,
            Seen {
                kind,
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
                data,
            },
        );
    }
    out
}

/// The paths under `root`, sorted.
pub fn paths(root: &Path) -> Vec<String> {
    tree(root).into_keys().collect()
}

/// Content of a file under `root`.
pub fn read(root: &Path, rel: &str) -> String {
    fs::read_to_string(root.join(rel)).unwrap()
}

/// A fresh destination root.
pub fn dest() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

pub fn path(p: &str) -> PathBuf {
    PathBuf::from(p)
}
