//! Writing an OCI image layout (and docker's files beside it) to a directory or a tar.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use super::ExportError;

/// Where the files of an exported layout go.
pub(crate) trait LayoutSink {
    /// Adds a file at `path` (relative, `/`-separated) with `size` bytes from `body`.
    fn add(&mut self, path: &str, size: u64, body: &mut dyn Read) -> Result<(), ExportError>;
    /// Completes the output.
    fn finish(self: Box<Self>) -> Result<(), ExportError>;
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ExportError {
    let path = path.to_path_buf();
    move |source| ExportError::Write { path, source }
}

/// A layout written into a directory.
pub(crate) struct DirSink {
    pub(crate) root: PathBuf,
}

impl LayoutSink for DirSink {
    fn add(&mut self, path: &str, _size: u64, body: &mut dyn Read) -> Result<(), ExportError> {
        let full = self.root.join(path);
        if let Some(dir) = full.parent() {
            fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let mut file = File::create(&full).map_err(io_err(&full))?;
        io::copy(body, &mut file).map_err(io_err(&full))?;
        file.sync_all().map_err(io_err(&full))
    }

    fn finish(self: Box<Self>) -> Result<(), ExportError> {
        Ok(())
    }
}

/// A layout written as a tar archive, with fixed metadata so the same image gives the same
/// archive.
pub(crate) struct TarSink {
    path: PathBuf,
    builder: tar::Builder<io::BufWriter<File>>,
    dirs: Vec<String>,
}

impl TarSink {
    pub(crate) fn create(path: &Path) -> Result<Self, ExportError> {
        let file = File::create(path).map_err(io_err(path))?;
        Ok(Self {
            path: path.to_path_buf(),
            builder: tar::Builder::new(io::BufWriter::with_capacity(1 << 20, file)),
            dirs: Vec::new(),
        })
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(size);
        h
    }
}

impl LayoutSink for TarSink {
    fn add(&mut self, path: &str, size: u64, body: &mut dyn Read) -> Result<(), ExportError> {
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            prefix.push_str(part);
            prefix.push('/');
            if !self.dirs.contains(&prefix) {
                let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
                self.builder
                    .append_data(&mut h, &prefix, io::empty())
                    .map_err(io_err(&self.path))?;
                self.dirs.push(prefix.clone());
            }
        }
        let mut h = Self::header(tar::EntryType::Regular, 0o644, size);
        self.builder
            .append_data(&mut h, path, body.take(size))
            .map_err(io_err(&self.path))
    }

    fn finish(self: Box<Self>) -> Result<(), ExportError> {
        let path = self.path.clone();
        let mut out = self.builder.into_inner().map_err(io_err(&path))?;
        out.flush().map_err(io_err(&path))?;
        out.get_ref().sync_all().map_err(io_err(&path))
    }
}
