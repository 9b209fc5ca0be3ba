//! Writing an OCI image layout (and docker's files beside it) to a directory or a tar.
//!
//! Nothing is written in place: a file goes to a temporary name beside its destination
//! and is renamed over it once complete and synced, so a killed export or a full disk
//! leaves the old file (or none), never a partial one under the final name.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::fd::AsFd as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use oci_spec::image::ImageIndex;

use super::ExportError;
use crate::digest::Digest;
use crate::oci_layout::{INDEX_FILE, LAYOUT_FILE, LayoutError, OciLayout, blob_rel, layout_marker};

/// Where the files of an exported layout go.
pub(crate) trait LayoutSink {
    /// Adds the `oci-layout` file.
    fn add_marker(&mut self) -> Result<(), ExportError>;
    /// Adds blob `digest` of `size` bytes read from `body`, which fails at its end when
    /// the content does not hash to `digest`; the blob must not appear otherwise.
    fn add_blob(
        &mut self,
        digest: &Digest,
        size: u64,
        body: &mut dyn Read,
    ) -> Result<(), ExportError>;
    /// Adds `index.json`, last of the layout's files.
    fn add_index(&mut self, index: &ImageIndex) -> Result<(), ExportError>;
    /// Adds a file beside the layout (docker's `manifest.json`, `repositories`).
    fn add_file(&mut self, name: &str, bytes: &[u8]) -> Result<(), ExportError>;
    /// Completes the output.
    fn finish(self: Box<Self>) -> Result<(), ExportError>;
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ExportError {
    let path = path.to_path_buf();
    move |source| ExportError::Write { path, source }
}

/// The destination that means standard output, as docker has it (`-o -`, `save -o -`).
pub const DEST_STDOUT: &str = "-";

/// An output file written under a temporary name in its destination's directory and
/// renamed into place by [`AtomicFile::commit`]; dropped uncommitted, it is removed.
/// A destination that exists and is no regular file (`/dev/stdout`, a fifo) cannot be
/// replaced by a rename: it is written directly.
pub(crate) struct AtomicFile {
    out: Output,
    dest: PathBuf,
}

enum Output {
    Temp(tempfile::NamedTempFile),
    Direct(File),
}

impl AtomicFile {
    pub(crate) fn create(dest: &Path) -> Result<Self, ExportError> {
        if dest == Path::new(DEST_STDOUT) {
            let fd = io::stdout()
                .as_fd()
                .try_clone_to_owned()
                .map_err(io_err(dest))?;
            return Ok(Self {
                out: Output::Direct(File::from(fd)),
                dest: dest.to_path_buf(),
            });
        }
        // `/dev/stdout`, `/dev/fd/N`, `/proc/self/fd/N` name an open descriptor, whatever
        // it points to (a file the shell redirected to is a regular file, which a rename
        // would replace behind the shell's back): written in place.
        let names_descriptor = dest.starts_with("/dev/") || dest.starts_with("/proc/");
        if names_descriptor || fs::metadata(dest).is_ok_and(|m| !m.is_file() && !m.is_dir()) {
            let file = fs::OpenOptions::new()
                .write(true)
                .open(dest)
                .map_err(io_err(dest))?;
            return Ok(Self {
                out: Output::Direct(file),
                dest: dest.to_path_buf(),
            });
        }
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let base = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{base}."))
            .suffix(".tmp")
            .tempfile_in(parent)
            .map_err(io_err(dest))?;
        // The temp file is created 0600; an export reads as an ordinary file.
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o644)).map_err(io_err(dest))?;
        Ok(Self {
            out: Output::Temp(tmp),
            dest: dest.to_path_buf(),
        })
    }

    pub(crate) fn file(&mut self) -> &mut File {
        match &mut self.out {
            Output::Temp(tmp) => tmp.as_file_mut(),
            Output::Direct(file) => file,
        }
    }

    /// Syncs the file and renames it over the destination.
    pub(crate) fn commit(self) -> Result<(), ExportError> {
        let dest = self.dest;
        let tmp = match self.out {
            Output::Temp(tmp) => tmp,
            Output::Direct(file) => {
                // A pipe or terminal cannot be synced; what was written is all there is.
                let _ = file.sync_all();
                return Ok(());
            }
        };
        crate::atomic::commit(tmp, &dest, true).map_err(|e| ExportError::Write {
            path: dest.clone(),
            source: e.source,
        })?;
        // Make the rename itself durable; failing here loses nothing already written.
        if let Some(dir) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

/// A writer into an [`AtomicFile`].
pub(crate) struct AtomicWriter(pub(crate) AtomicFile);

impl Write for AtomicWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.file().write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.file().flush()
    }
}

/// A layout written into a directory, an [`OciLayout`]: each blob appears under its
/// name only once it is complete and what its name says, and `index.json` is written
/// last: a layout with an index is a whole one.
pub(crate) struct DirSink {
    layout: OciLayout,
}

impl DirSink {
    /// Makes (or completes) the layout directory `root`.
    pub(crate) fn create(root: &Path) -> Result<Self, ExportError> {
        Ok(Self {
            layout: OciLayout::create(root)?,
        })
    }
}

impl LayoutSink for DirSink {
    fn add_marker(&mut self) -> Result<(), ExportError> {
        // `OciLayout::create` wrote it.
        Ok(())
    }

    fn add_blob(
        &mut self,
        digest: &Digest,
        size: u64,
        body: &mut dyn Read,
    ) -> Result<(), ExportError> {
        let path = self.layout.blob_path(digest);
        let mut writer = self.layout.writer()?;
        io::copy(body, &mut writer).map_err(io_err(&path))?;
        match writer.finish_matching(digest, size) {
            Ok(_) => Ok(()),
            Err(LayoutError::DigestMismatch { found, .. }) => Err(ExportError::CorruptBlob {
                digest: digest.clone(),
                found: format!("its content hashes to {found}"),
            }),
            Err(LayoutError::SizeMismatch { found, .. }) => Err(ExportError::CorruptBlob {
                digest: digest.clone(),
                found: format!("{found} bytes were read of its {size}"),
            }),
            Err(e) => Err(e.into()),
        }
    }

    fn add_index(&mut self, index: &ImageIndex) -> Result<(), ExportError> {
        Ok(self.layout.write_index(index)?)
    }

    fn add_file(&mut self, name: &str, bytes: &[u8]) -> Result<(), ExportError> {
        Ok(self.layout.write_file(name, bytes)?)
    }

    fn finish(self: Box<Self>) -> Result<(), ExportError> {
        // Make the renames durable; failing here loses nothing already written.
        self.layout.sync_dirs();
        Ok(())
    }
}

/// A layout written as a tar archive, with fixed metadata so the same image gives the same
/// archive.
pub(crate) struct TarSink {
    path: PathBuf,
    builder: tar::Builder<io::BufWriter<AtomicWriter>>,
    dirs: Vec<String>,
}

impl TarSink {
    pub(crate) fn create(path: &Path) -> Result<Self, ExportError> {
        let file = AtomicWriter(AtomicFile::create(path)?);
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

impl TarSink {
    /// Adds a file at `path` (relative, `/`-separated) with `size` bytes from `body`.
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
}

impl LayoutSink for TarSink {
    fn add_marker(&mut self) -> Result<(), ExportError> {
        let marker = layout_marker();
        self.add(LAYOUT_FILE, marker.len() as u64, &mut marker.as_bytes())
    }

    fn add_blob(
        &mut self,
        digest: &Digest,
        size: u64,
        body: &mut dyn Read,
    ) -> Result<(), ExportError> {
        self.add(&blob_rel(digest), size, body)
    }

    fn add_index(&mut self, index: &ImageIndex) -> Result<(), ExportError> {
        let bytes = super::json(INDEX_FILE, index)?;
        self.add(INDEX_FILE, bytes.len() as u64, &mut &bytes[..])
    }

    fn add_file(&mut self, name: &str, bytes: &[u8]) -> Result<(), ExportError> {
        self.add(name, bytes.len() as u64, &mut &bytes[..])
    }

    fn finish(self: Box<Self>) -> Result<(), ExportError> {
        let path = self.path.clone();
        let out = self.builder.into_inner().map_err(io_err(&path))?;
        let out = out.into_inner().map_err(|e| ExportError::Write {
            path: path.clone(),
            source: e.into_error(),
        })?;
        out.0.commit()
    }
}
