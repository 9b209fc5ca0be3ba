//! Opening and reading files beneath a directory (a build context, an OCI layout)
//! without leaving it, blocking on a named pipe, or reading a device.
//!
//! A context is input the build does not control: its directory may be edited while
//! the build runs, and a tar context may hold any symlink. So a file the listing named
//! is opened relative to the context's root descriptor with `openat2`
//! (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`): a component swapped for a symlink since the
//! listing fails instead of leading out. Every open is non-blocking (a regular file
//! swapped for a FIFO would otherwise hang the open) and what was opened must be a
//! regular file (a device is never read). Files the build reads whole (`.dockerignore`,
//! a Dockerfile) are read up to a limit, so `/dev/zero` or an endless pipe is refused
//! instead of filling memory.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};

/// How a listed context file is resolved: beneath the root, no symlink on the way.
const LISTED: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// How a context file named by the build (not listed) is resolved: its symlinks are
/// followed with `/` and `..` meaning the context root, as BuildKit resolves paths in
/// the context it received.
const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// Flags of every read-only open here: never a controlling terminal, never blocking.
fn read_flags() -> OFlags {
    OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK
}

/// Opens the directory `root` for resolving context paths beneath it.
pub(crate) fn open_root(root: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(
        root,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

/// `openat2`, again while the kernel answers EAGAIN: with `RESOLVE_IN_ROOT` or
/// `RESOLVE_BENEATH` it does when a rename or mount elsewhere on the system raced the
/// lookup of `..` (openat2(2)); the next try sees a settled tree.
pub(crate) fn openat2_settled<P: rustix::path::Arg + Copy>(
    dir: impl AsFd,
    path: P,
    flags: OFlags,
    mode: Mode,
    resolve: rustix::fs::ResolveFlags,
) -> rustix::io::Result<std::os::fd::OwnedFd> {
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(&dir, path, flags, mode, resolve) {
            Err(rustix::io::Errno::AGAIN) if tries < 100 => {
                tries += 1;
                std::thread::yield_now();
            }
            other => return other,
        }
    }
}

/// Opens the listed regular file `rel` beneath the directory `root` for reading, without
/// following any symlink. Fails (not hangs) when it is no longer a regular file.
pub(crate) fn open_listed_file(root: impl AsFd, rel: &Path) -> io::Result<File> {
    let fd = openat2_settled(
        root,
        rel,
        read_flags() | OFlags::NOFOLLOW,
        Mode::empty(),
        LISTED,
    )?;
    regular(File::from(fd))
}

/// `file` if it is a regular file, made blocking again; an error saying what it is
/// otherwise.
fn regular(file: File) -> io::Result<File> {
    let kind = FileType::from_raw_mode(rustix::fs::fstat(&file)?.st_mode);
    if kind != FileType::RegularFile {
        return Err(not_regular(kind));
    }
    Ok(file)
}

fn not_regular(kind: FileType) -> io::Error {
    let what = match kind {
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a named pipe",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        _ => "not a file",
    };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("is {what}, not a regular file"),
    )
}

/// Reads the regular file `rel` of the context at `root`, resolving its symlinks inside
/// the context (an absolute or `..` target never leaves it), up to `limit` bytes.
/// `None` when it does not exist.
pub(crate) fn read_in_context(root: &Path, rel: &Path, limit: u64) -> io::Result<Option<Vec<u8>>> {
    let dir = open_root(root)?;
    let fd = match openat2_settled(&dir, rel, read_flags(), Mode::empty(), IN_ROOT) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    read_limited(regular(File::from(fd))?, limit).map(Some)
}

/// Whether `rel` names something in the context at `root`, its symlinks resolved
/// inside the context.
pub(crate) fn exists_in_context(root: &Path, rel: &Path) -> bool {
    open_root(root).is_ok_and(|dir| {
        openat2_settled(
            &dir,
            rel,
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
            IN_ROOT,
        )
        .is_ok()
    })
}

/// Reads the file at `path` (a path the user named: symlinks followed) up to `limit`
/// bytes. A regular file or a pipe (`-f <(...)`) is read; a device, socket or directory
/// is refused, and opening a FIFO with no writer does not hang.
pub(crate) fn read_named_file(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let fd = rustix::fs::open(path, read_flags(), Mode::empty())?;
    let kind = FileType::from_raw_mode(rustix::fs::fstat(&fd)?.st_mode);
    match kind {
        FileType::RegularFile => {}
        FileType::Fifo => {
            // Opened without blocking; a pipe with a writer is then read as it comes.
            let flags = rustix::fs::fcntl_getfl(&fd)?;
            rustix::fs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK)?;
        }
        other => return Err(not_regular(other)),
    }
    read_limited(File::from(fd), limit)
}

/// Reads `file` to its end, failing when it holds more than `limit` bytes.
fn read_limited(file: File, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("is larger than the {limit} bytes rbuild reads"),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn context_reads_stay_inside_and_refuse_what_is_not_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/passwd"), "inside\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../etc/passwd", root.join("up")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", root.join("zero")).unwrap();
        std::os::unix::fs::symlink("/no/such/file", root.join("gone")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        for link in ["abs", "up"] {
            let got = read_in_context(root, Path::new(link), 100).unwrap();
            assert_eq!(got.as_deref(), Some(&b"inside\n"[..]), "{link}");
        }
        assert!(
            read_in_context(root, Path::new("gone"), 100)
                .unwrap()
                .is_none()
        );
        assert!(
            read_in_context(root, Path::new("zero"), 100)
                .unwrap()
                .is_none()
        );
        let err = read_in_context(root, Path::new("fifo"), 100).unwrap_err();
        assert!(err.to_string().contains("named pipe"), "{err}");
        let err = read_named_file(Path::new("/dev/zero"), 100).unwrap_err();
        assert!(err.to_string().contains("character device"), "{err}");
        std::fs::write(root.join("big"), vec![b'x'; 101]).unwrap();
        let err = read_named_file(&root.join("big"), 100).unwrap_err();
        assert!(
            err.to_string().contains("larger than the 100 bytes"),
            "{err}"
        );
        // A FIFO nobody writes reads as empty instead of hanging.
        assert!(read_named_file(&root.join("fifo"), 100).unwrap().is_empty());
        let fd = open_root(root).unwrap();
        assert!(open_listed_file(&fd, Path::new("etc/passwd")).is_ok());
        assert!(open_listed_file(&fd, Path::new("abs")).is_err());
        assert!(open_listed_file(&fd, Path::new("fifo")).is_err());
    }
}
