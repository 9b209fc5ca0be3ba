//! The `stat` calls of a step under proot, answered with the owners and modes of the
//! image.
//!
//! On disk every file of a step's root under proot is the build user's, with a mode its
//! owner can work with; the image's owners and modes are in the root's table (see
//! [`crate::fakeroot`]) and in the step's own `chown` calls, which the recorder keeps
//! ([`super::chown_calls`]). proot's fake root shows every file of the build user's as
//! the step's user's, so without more a step sees root's `/etc/shadow` where the image
//! has group `shadow`, and the tools that copy an owner or a mode they read (`useradd`
//! and `passwd` rewriting `/etc/shadow`, `sed -i`, `cp -a`, `rsync -a`, `install`) write
//! root's. So `stat`, `lstat`, `fstat` and `newfstatat` go to the recorder as well: it
//! makes the same call on the same file (the path proot has put in terms of the host,
//! from the process's working directory or directory descriptor), and where the image
//! says another owner or mode than proot would show, it writes the `struct stat` into
//! the process itself and answers success; otherwise the call goes on to the kernel
//! unchanged (`SECCOMP_USER_NOTIF_FLAG_CONTINUE`), as do proot's own calls and every
//! call it cannot make the same way (a bad address, a file gone: the kernel answers
//! those itself).
//!
//! What a step is shown: the table's entry of the inode (by number and birth time, so a
//! renamed or linked path shows it too), then the step's `chown` calls on it in order;
//! an inode without either is root's if the root had it before the step, else its
//! user's (a `USER` step's files are that user's). The table's mode, unless the step
//! changed the mode on disk. Files of other file systems (proot's `/dev`, `/proc`) are
//! not touched. proot turns a build user's id it reads back into the step's; where the
//! image gives a file that very uid (a pod's `runAsUser`), `super::proot_ids` keeps
//! proot from rewriting the struct.

use std::os::fd::{AsFd, OwnedFd};

use super::chown_calls::Ids;
use crate::fakeroot::disk_mode;
use crate::snapshot::{Inode, OwnerView};

/// `stat(2)`, `fstat(2)`, `lstat(2)` and `newfstatat(2)` on x86_64.
pub(super) const SYS_STAT: u32 = 4;
pub(super) const SYS_FSTAT: u32 = 5;
pub(super) const SYS_LSTAT: u32 = 6;
pub(super) const SYS_NEWFSTATAT: u32 = 262;

/// The owners the step's `chown` calls gave so far, by inode (device, number, birth
/// time): the last uid and the last gid given (`None`: not given).
pub(super) type Given = std::collections::HashMap<
    (u64, u64, Option<std::time::SystemTime>),
    (Option<u32>, Option<u32>),
>;

/// The step's root as the recorder knows it: the view of owners, and the device it is
/// on.
pub(super) struct StatView {
    pub view: OwnerView,
    pub device: u64,
}

/// How a `stat` call of the step is answered.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum StatAnswer {
    /// The kernel makes the call: what it shows is what the image has (or what proot
    /// makes of it), or the recorder could not make it the same way.
    Continue,
    /// The struct was written into the process at `buffer`, with `owner`: the call
    /// succeeded.
    Written { buffer: u64, owner: (u32, u32) },
}

/// Where a path of a call starts.
enum Base {
    Cwd,
    Fd(i32),
}

/// Answers one `stat` call of the step (see the module documentation). `given` is what
/// the step's `chown` calls gave so far; `valid` tells whether the notification is still pending
/// (checked before the process's memory is written).
pub(super) fn answer(
    notif: &libc::seccomp_notif,
    root: &StatView,
    given: &Given,
    ids: Ids,
    valid: impl Fn() -> bool,
) -> StatAnswer {
    let pid = notif.pid;
    let args = notif.data.args;
    let (base, path, flags, buffer) = match notif.data.nr as u32 {
        SYS_STAT => (Base::Cwd, Some(args[0]), 0, args[1]),
        SYS_LSTAT => (Base::Cwd, Some(args[0]), libc::AT_SYMLINK_NOFOLLOW, args[1]),
        SYS_FSTAT => (Base::Fd(args[0] as i32), None, libc::AT_EMPTY_PATH, args[1]),
        SYS_NEWFSTATAT => {
            let dir = if args[0] as i32 == libc::AT_FDCWD {
                Base::Cwd
            } else {
                Base::Fd(args[0] as i32)
            };
            (dir, Some(args[1]), args[3] as i32, args[2])
        }
        _ => return StatAnswer::Continue,
    };
    let allowed = libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH | libc::AT_NO_AUTOMOUNT;
    if flags & !allowed != 0 {
        return StatAnswer::Continue;
    }
    let name = match path {
        Some(address) => match super::chown_calls::read_path(pid, address) {
            Ok(name) => name,
            Err(_) => return StatAnswer::Continue,
        },
        None => Vec::new(),
    };
    if name.is_empty() && flags & libc::AT_EMPTY_PATH == 0 {
        return StatAnswer::Continue;
    }
    let Some(stat) = stat_as(pid, &base, &name, flags) else {
        return StatAnswer::Continue;
    };
    let Some(shown) = shown(&stat, root, given, ids) else {
        return StatAnswer::Continue;
    };
    if !valid() || write_stat(pid, buffer, &shown).is_err() {
        return StatAnswer::Continue;
    }
    StatAnswer::Written {
        buffer,
        owner: (shown.st_uid, shown.st_gid),
    }
}

/// Makes the call as process `pid` would: `name` from its working directory or
/// directory descriptor (an absolute name, as proot gives them, from `/`).
fn stat_as(pid: u32, base: &Base, name: &[u8], flags: i32) -> Option<rustix::fs::Statx> {
    use rustix::fs::{AtFlags, Mode, OFlags, StatxFlags};
    let link = match base {
        Base::Cwd => format!("/proc/{pid}/cwd"),
        Base::Fd(fd) => format!("/proc/{pid}/fd/{fd}"),
    };
    let mask = StatxFlags::BASIC_STATS | StatxFlags::BTIME;
    // stat and lstat never trigger an automount (the kernel implies AT_NO_AUTOMOUNT
    // for them since 4.14), nor does this.
    let at = AtFlags::from_bits_truncate(flags as u32) | AtFlags::NO_AUTOMOUNT;
    if name.first() == Some(&b'/') {
        return rustix::fs::statx(rustix::fs::CWD, name, at, mask).ok();
    }
    // The process's directory (or, for fstat, its file), opened through its magic link.
    let dir: OwnedFd =
        rustix::fs::open(&link, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).ok()?;
    rustix::fs::statx(dir.as_fd(), name, at | AtFlags::EMPTY_PATH, mask).ok()
}

/// The `struct stat` the step is to see for `stat`, when it is not what proot makes of
/// the kernel's.
fn shown(stat: &rustix::fs::Statx, root: &StatView, given: &Given, ids: Ids) -> Option<libc::stat> {
    let device = makedev(stat.stx_dev_major, stat.stx_dev_minor);
    if device != root.device {
        return None;
    }
    let inode: Inode = (stat.stx_ino, birth(stat));
    let entry = root.view.owned.get(&inode);
    let made_by_step = !root.view.before.contains(&inode);
    let mut owner =
        entry
            .and_then(|e| e.owner())
            .unwrap_or(if made_by_step { ids.step } else { (0, 0) });
    if let Some((uid, gid)) = given.get(&(device, inode.0, inode.1)) {
        owner = (uid.unwrap_or(owner.0), gid.unwrap_or(owner.1));
    }
    let disk_perm = u32::from(stat.stx_mode) & 0o7777;
    let is_dir = u32::from(stat.stx_mode) & libc::S_IFMT == libc::S_IFDIR;
    // The table's mode, unless the step changed the mode on disk since.
    let perm = match entry.and_then(|e| e.mode()) {
        Some(image) if disk_mode(image, is_dir) & 0o7777 == disk_perm => image,
        _ => disk_perm,
    };
    // What proot shows of the kernel's answer: the build user's ids as the step's.
    let proot_shows = (
        if stat.stx_uid == ids.build.0 {
            ids.step.0
        } else {
            stat.stx_uid
        },
        if stat.stx_gid == ids.build.1 {
            ids.step.1
        } else {
            stat.stx_gid
        },
    );
    if owner == proot_shows && perm == disk_perm {
        return None;
    }
    Some(to_stat(stat, owner, perm))
}

/// `dev_t` as the kernel encodes it in `struct stat` (`new_encode_dev`).
fn makedev(major: u32, minor: u32) -> u64 {
    u64::from((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12))
}

/// The birth time as `std::fs::Metadata::created` gives it (what the recorder and the
/// copy snapshotter key inodes by).
fn birth(stat: &rustix::fs::Statx) -> Option<std::time::SystemTime> {
    if stat.stx_mask & libc::STATX_BTIME == 0 {
        return None;
    }
    let at = stat.stx_btime;
    let since = std::time::Duration::new(at.tv_sec.unsigned_abs(), at.tv_nsec);
    if at.tv_sec >= 0 {
        std::time::SystemTime::UNIX_EPOCH.checked_add(since)
    } else {
        std::time::SystemTime::UNIX_EPOCH.checked_sub(since)
    }
}

/// The `struct stat` of `stat` with `owner` and the permission bits `perm`.
fn to_stat(stat: &rustix::fs::Statx, owner: (u32, u32), perm: u32) -> libc::stat {
    // SAFETY: all-zero is a valid `struct stat` (integers only).
    let mut out: libc::stat = unsafe { std::mem::zeroed() };
    out.st_dev = makedev(stat.stx_dev_major, stat.stx_dev_minor);
    out.st_ino = stat.stx_ino;
    out.st_nlink = u64::from(stat.stx_nlink);
    out.st_mode = (u32::from(stat.stx_mode) & libc::S_IFMT) | perm;
    out.st_uid = owner.0;
    out.st_gid = owner.1;
    out.st_rdev = makedev(stat.stx_rdev_major, stat.stx_rdev_minor);
    out.st_size = stat.stx_size as i64;
    out.st_blksize = i64::from(stat.stx_blksize);
    out.st_blocks = stat.stx_blocks as i64;
    out.st_atime = stat.stx_atime.tv_sec;
    out.st_atime_nsec = i64::from(stat.stx_atime.tv_nsec);
    out.st_mtime = stat.stx_mtime.tv_sec;
    out.st_mtime_nsec = i64::from(stat.stx_mtime.tv_nsec);
    out.st_ctime = stat.stx_ctime.tv_sec;
    out.st_ctime_nsec = i64::from(stat.stx_ctime.tv_nsec);
    out
}

/// Writes `stat` at `address` in process `pid`'s memory (see [`write_memory`]).
fn write_stat(pid: u32, address: u64, stat: &libc::stat) -> std::io::Result<()> {
    // SAFETY: `stat` is plain data of `size_of::<libc::stat>()` bytes, read only.
    let bytes = unsafe {
        std::slice::from_raw_parts(
            (stat as *const libc::stat).cast::<u8>(),
            std::mem::size_of::<libc::stat>(),
        )
    };
    write_memory(pid, address, bytes)
}

/// Writes `bytes` at `address` in process `pid`'s memory, as the kernel would: memory
/// the process may not write fails (`process_vm_writev`, unlike `/proc/PID/mem`, keeps
/// page protections), and the kernel then gives the process its own `EFAULT`.
pub(super) fn write_memory(pid: u32, address: u64, bytes: &[u8]) -> std::io::Result<()> {
    let local = libc::iovec {
        iov_base: bytes.as_ptr().cast_mut().cast(),
        iov_len: bytes.len(),
    };
    let remote = libc::iovec {
        iov_base: address as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: `local` describes `bytes`, which lives across the call and is only read;
    // `remote` is an address in the other process, which the kernel checks.
    let written = unsafe { libc::process_vm_writev(pid as libc::pid_t, &local, 1, &remote, 1, 0) };
    match usize::try_from(written) {
        Ok(n) if n == bytes.len() => Ok(()),
        Ok(_) => Err(std::io::Error::from_raw_os_error(libc::EFAULT)),
        Err(_) => Err(std::io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernels_device_encoding_is_kept() {
        // 8:1 (/dev/sda1), 253:17 (a device-mapper minor above 255).
        assert_eq!(makedev(8, 1), 0x801);
        assert_eq!(
            makedev(253, 300),
            (300 & 0xff) | (253 << 8) | ((300 & !0xff) << 12)
        );
        let here = std::fs::metadata("/").unwrap();
        let statx = rustix::fs::statx(
            rustix::fs::CWD,
            "/",
            rustix::fs::AtFlags::empty(),
            rustix::fs::StatxFlags::BASIC_STATS,
        )
        .unwrap();
        assert_eq!(
            makedev(statx.stx_dev_major, statx.stx_dev_minor),
            std::os::unix::fs::MetadataExt::dev(&here)
        );
    }
}
