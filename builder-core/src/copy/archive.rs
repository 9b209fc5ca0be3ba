//! `ADD` of a local archive: detected by content (as docker's `IsArchivePath`: the
//! bytes, once decompressed, must start with a tar header), then extracted into the
//! destination directory, every entry kept inside it.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode};

use super::CopyError;
use super::chmod::DEFAULT_DIR_MODE;
use super::dest::{lstat_at, make_dir, set_mtime, split};
use super::write::{Writer, create_file};
use crate::layer::{PAX_XATTR_PREFIX, is_overlay_xattr};

/// gzip member header magic (RFC 1952, section 2.3.1: ID1 ID2).
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
/// bzip2 stream header: "BZh" (the bzip2 file format, as bzip2 1.0 writes it).
const BZIP2_MAGIC: &[u8] = b"BZh";
/// xz stream header magic (The .xz File Format 1.2.0, section 2.1.1.1).
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
/// zstd frame magic number 0xFD2FB528, little endian (RFC 8878, section 3.1.1).
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
/// Size of a tar header block (POSIX.1-2017 pax, "ustar Interchange Format").
const TAR_BLOCK: usize = 512;

/// How an archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Tar,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

fn reader(file: impl Read + 'static, format: Format) -> io::Result<Box<dyn Read>> {
    Ok(match format {
        Format::Tar => Box::new(file),
        Format::Gzip => Box::new(flate2::read::MultiGzDecoder::new(file)),
        Format::Bzip2 => Box::new(bzip2::read::MultiBzDecoder::new(file)),
        Format::Xz => Box::new(liblzma::read::XzDecoder::new_multi_decoder(file)),
        Format::Zstd => Box::new(zstd::stream::read::Decoder::new(file)?),
    })
}

/// Whether the file at `path` (opened by `open`) is a (possibly compressed) tar
/// archive, and which.
pub(crate) fn detect(
    path: &Path,
    open: &dyn Fn() -> io::Result<File>,
) -> Result<Option<Format>, CopyError> {
    let failed = |source| CopyError::Source {
        path: path.to_path_buf(),
        source,
    };
    let mut file = open().map_err(failed)?;
    let mut magic = [0u8; 6];
    let n = read_full(&mut file, &mut magic).map_err(failed)?;
    let magic = &magic[..n];
    let format = if magic.starts_with(GZIP_MAGIC) {
        Format::Gzip
    } else if magic.starts_with(BZIP2_MAGIC) {
        Format::Bzip2
    } else if magic.starts_with(XZ_MAGIC) {
        Format::Xz
    } else if magic.starts_with(ZSTD_MAGIC) {
        Format::Zstd
    } else {
        Format::Tar
    };
    let file = open().map_err(failed)?;
    let mut header = [0u8; TAR_BLOCK];
    // A file that does not decompress is not an archive: it is copied as it is.
    let Ok(mut r) = reader(file, format) else {
        return Ok(None);
    };
    match read_full(&mut r, &mut header) {
        Ok(TAR_BLOCK) if is_tar_header(&header) => Ok(Some(format)),
        _ => Ok(None),
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Whether a block is a tar header: its checksum field (octal, at bytes 148..156)
/// equals the sum of its bytes with that field counted as spaces.
fn is_tar_header(block: &[u8; TAR_BLOCK]) -> bool {
    let field = &block[148..156];
    let text: String = field
        .iter()
        .take_while(|&&b| b != 0)
        .map(|&b| b as char)
        .collect();
    let Ok(stored) = u32::from_str_radix(text.trim(), 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(b)
            }
        })
        .sum();
    sum == stored
}

/// Extracts the archive at `src` (of `format`) into `dest_rel`, an existing directory.
/// Entries keep their mode, mtime and owner (unless `--chown`); a `..` that would leave
/// the destination is refused.
pub(crate) fn extract(
    w: &mut Writer,
    file: File,
    src: &Path,
    format: Format,
    dest_rel: &Path,
) -> Result<(), CopyError> {
    let archive_name = src.display().to_string();
    let failed = |source| CopyError::Archive {
        path: archive_name.clone(),
        source,
    };
    // Tar-bomb limits (the op's): past one, the error says which.
    let meter = crate::layer::Meter::new(w.archive_limits);
    let refused = |e| match meter.exceeded() {
        Some(limit) => failed(io::Error::other(limit)),
        None => e,
    };
    let plain = reader(meter.compressed(file), format).map_err(failed)?;
    let mut archive = tar::Archive::new(meter.expanded(plain));
    for entry in archive.entries().map_err(|e| refused(failed(e)))? {
        let entry = entry.map_err(|e| refused(failed(e)))?;
        meter
            .entry()
            .map_err(|limit| failed(io::Error::other(limit)))?;
        extract_entry(w, entry, dest_rel, &archive_name).map_err(refused)?;
    }
    Ok(())
}

/// `name` (an archive entry's path) relative to the extraction directory, `None` when
/// a `..` would climb above it.
fn entry_rel(name: &[u8]) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for comp in Path::new(OsStr::from_bytes(name)).components() {
        match comp {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                let climbed_out = !out.pop();
                if climbed_out {
                    return None;
                }
            }
            _ => {}
        }
    }
    Some(out)
}

fn extract_entry<R: Read>(
    w: &mut Writer,
    mut entry: tar::Entry<'_, R>,
    dest_rel: &Path,
    archive_name: &str,
) -> Result<(), CopyError> {
    let raw = entry.path_bytes().into_owned();
    let unsafe_entry = || CopyError::UnsafeArchiveEntry {
        path: archive_name.to_owned(),
        entry: String::from_utf8_lossy(&raw).into_owned(),
    };
    let rel = entry_rel(&raw).ok_or_else(unsafe_entry)?;
    if let Some(format) = crate::layer::sparse_format(&mut entry) {
        return Err(CopyError::Archive {
            path: archive_name.to_owned(),
            source: io::Error::other(format!(
                "entry {:?}: {}",
                String::from_utf8_lossy(&raw),
                crate::layer::sparse_reason(format)
            )),
        });
    }
    if rel.as_os_str().is_empty() {
        return Ok(()); // the archive's root: the destination keeps its own metadata
    }
    let target = dest_rel.join(&rel);
    let header = entry.header().clone();
    let kind = header.entry_type();
    let fail = CopyError::dest;
    let io_fail = |source| CopyError::Archive {
        path: archive_name.to_owned(),
        source,
    };
    // Entries keep the archive's owners unless --chown, which BuildKit passes to
    // docker's untar as its ChownOpts: every entry, hardlinks and symlinks included,
    // gets that owner (issue 14, bug 5, checked against docker 28.5; docker 20.10's
    // BuildKit left the archive's owners). Go's archive/tar reads an empty numeric
    // field as 0; so do we. Hostile headers can hold base-256 numbers of any size:
    // clamp, never overflow.
    let owner = w.chown.unwrap_or((
        u32::try_from(header.uid().unwrap_or(0)).unwrap_or(u32::MAX),
        u32::try_from(header.gid().unwrap_or(0)).unwrap_or(u32::MAX),
    ));
    let mode = header.mode().unwrap_or(0) & 0o7777;
    let mtime_ns = i64::try_from(header.mtime().unwrap_or(0))
        .unwrap_or(i64::MAX)
        .saturating_mul(1_000_000_000);
    if let Some((parent, _)) = split(&target) {
        // Parents the archive implies without an entry: 0755 and root's, even with
        // --chown (docker's untar makes them with the daemon's own ids).
        w.root.mkdir_all(parent, (0, 0), DEFAULT_DIR_MODE)?;
    }
    let dir = w.parent_of(&target)?;
    let name = target.file_name().unwrap_or_default().to_os_string();
    let existing = lstat_at(&dir, &name).map_err(fail("stat", &target))?;
    let is_dir = kind == tar::EntryType::Directory;
    match existing {
        Some(FileType::Directory) if is_dir => {}
        Some(FileType::Directory) => {
            return Err(CopyError::Conflict {
                what: String::from_utf8_lossy(&raw).into_owned(),
                path: format!("/{}", target.display()),
                reason: "cannot replace a directory with a file",
            });
        }
        Some(_) => rustix::fs::unlinkat(&dir, &name, AtFlags::empty())
            .map_err(|e| fail("remove", &target)(e.into()))?,
        None => {}
    }
    match kind {
        tar::EntryType::Directory => {
            if existing != Some(FileType::Directory) {
                let disk_mode = w.root.disk_mode(&target, mode, true);
                make_dir(&dir, &name, disk_mode, w.root.disk_owner(&target, owner))
                    .map_err(fail("create", &target))?;
                w.stats.dirs += 1;
            }
        }
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            let mut out = create_file(&dir, &name).map_err(fail("create", &target))?;
            let n = io::copy(&mut entry, &mut out).map_err(io_fail)?;
            w.stats.files += 1;
            w.stats.bytes += n;
        }
        tar::EntryType::Symlink => {
            let link = entry
                .link_name_bytes()
                .ok_or_else(unsafe_entry)?
                .into_owned();
            rustix::fs::symlinkat(OsStr::from_bytes(&link), &dir, &name)
                .map_err(|e| fail("create symlink", &target)(e.into()))?;
            w.root
                .give(&dir, &name, &target, owner, None)
                .map_err(fail("chown", &target))?;
            set_mtime(&dir, &name, mtime_ns).map_err(fail("set times on", &target))?;
            w.stats.other += 1;
            return Ok(());
        }
        tar::EntryType::Link => {
            let link = entry
                .link_name_bytes()
                .ok_or_else(unsafe_entry)?
                .into_owned();
            let link_rel = entry_rel(&link).ok_or_else(unsafe_entry)?;
            let link_target = dest_rel.join(link_rel);
            let Some((lparent, lname)) = split(&link_target) else {
                return Err(unsafe_entry());
            };
            let ldir = w.root.open_dir(lparent).map_err(fail("open", lparent))?;
            rustix::fs::linkat(&ldir, lname, &dir, &name, AtFlags::empty())
                .map_err(|e| fail("link", &target)(e.into()))?;
            w.stats.files += 1;
            // Docker's untar gives the linked inode the link entry's owner, and its mode
            // and times unless it is a symlink: the last header naming a file wins.
            let linked_symlink =
                lstat_at(&dir, &name).map_err(fail("stat", &target))? == Some(FileType::Symlink);
            if linked_symlink {
                w.root
                    .give(&dir, &name, &target, owner, None)
                    .map_err(fail("chown", &target))?;
            } else {
                w.root
                    .give(&dir, &name, &target, owner, Some((mode, false)))
                    .map_err(fail("chown", &target))?;
                set_mtime(&dir, &name, mtime_ns).map_err(fail("set times on", &target))?;
            }
            // In a table (crate::fakeroot) each name has its entry: the others take the
            // last header's owner and mode too, as the shared inode does.
            w.archive_link(&link_target, &target);
            return Ok(());
        }
        tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
            let (ft, dev) = match kind {
                tar::EntryType::Fifo => (FileType::Fifo, 0),
                _ => {
                    let major = header.device_major().map_err(io_fail)?.unwrap_or(0);
                    let minor = header.device_minor().map_err(io_fail)?.unwrap_or(0);
                    let ft = if kind == tar::EntryType::Char {
                        FileType::CharacterDevice
                    } else {
                        FileType::BlockDevice
                    };
                    (ft, rustix::fs::makedev(major, minor))
                }
            };
            rustix::fs::mknodat(&dir, &name, ft, Mode::from_raw_mode(0o600), dev)
                .map_err(|e| fail("create node", &target)(e.into()))?;
            w.stats.other += 1;
        }
        // Long names and pax headers are consumed by the reader; sparse files, volume
        // labels and the like are left out, as docker's untar skips unknown types.
        _ => return Ok(()),
    }
    w.root
        .give(&dir, &name, &target, owner, Some((mode, is_dir)))
        .map_err(fail("chown", &target))?;
    if let Some(exts) = entry.pax_extensions().map_err(io_fail)? {
        for ext in exts {
            let ext = ext.map_err(io_fail)?;
            let Some(key) = ext.key_bytes().strip_prefix(PAX_XATTR_PREFIX.as_bytes()) else {
                continue;
            };
            if is_overlay_xattr(key) {
                continue;
            }
            let fd = rustix::fs::openat(
                &dir,
                &name,
                rustix::fs::OFlags::RDONLY
                    | rustix::fs::OFlags::NOFOLLOW
                    | rustix::fs::OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| fail("open", &target)(e.into()))?;
            rustix::fs::fsetxattr(
                &fd,
                OsStr::from_bytes(key),
                ext.value_bytes(),
                rustix::fs::XattrFlags::empty(),
            )
            .map_err(|e| fail("set xattrs on", &target)(e.into()))?;
        }
    }
    if is_dir {
        w.dir_time(target, mtime_ns);
    } else {
        set_mtime(&dir, &name, mtime_ns).map_err(fail("set times on", &target))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_stay_inside() {
        assert_eq!(entry_rel(b"./a/b"), Some(PathBuf::from("a/b")));
        assert_eq!(entry_rel(b"/etc/passwd"), Some(PathBuf::from("etc/passwd")));
        assert_eq!(entry_rel(b"a/../b"), Some(PathBuf::from("b")));
        assert_eq!(entry_rel(b"../x"), None);
        assert_eq!(entry_rel(b"a/../../x"), None);
    }
}
