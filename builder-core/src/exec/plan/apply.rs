//! How the init carries out a [`Plan`]: each [`Op`] as system calls on the data the
//! parent prepared. Everything here runs between `fork` and `exec`, so it is
//! async-signal-safe: no allocation, no lock, no unwinding.

use std::ffi::{CStr, CString};

use rustix::fs::CWD;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, fsconfig_create, fsconfig_set_flag,
    fsconfig_set_string, fsmount, fsopen, move_mount,
};

use super::{Failure, Op, Plan};
use crate::exec::errno::{check, errno};

impl Plan {
    /// Runs every operation. Async-signal-safe: system calls on prepared data only.
    pub fn apply(&self) -> Result<(), Failure> {
        for (i, op) in self.ops.iter().enumerate() {
            apply_op(op).map_err(|e| (i, e))?;
        }
        Ok(())
    }
}

/// Writes all of `data` to `fd` (async-signal-safe: `write` only).
fn write_all_fd(fd: libc::c_int, mut data: &[u8]) -> Result<(), i32> {
    while !data.is_empty() {
        // SAFETY: `data` is a live slice of `data.len()` bytes; `fd` is open.
        let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
        if n < 0 {
            let e = errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        data = data.get(n as usize..).unwrap_or_default();
    }
    Ok(())
}

fn opt_ptr(s: &Option<CString>) -> *const libc::c_void {
    s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr().cast())
}

fn apply_op(op: &Op) -> Result<(), i32> {
    match op {
        // SAFETY: the source, target and flags are static C strings and constants; fstype
        // and data may be null for a propagation change.
        Op::MakeRootPrivate => check(unsafe {
            libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        }),
        Op::Overlay {
            lowers,
            upper,
            work,
            target,
            userxattr,
        } => mount_overlay(lowers, upper, work, target, *userxattr).map_err(|e| e.raw_os_error()),
        Op::Bind {
            source,
            target,
            recursive,
            readonly,
            nodev,
        } => {
            let rec = if *recursive { libc::MS_REC } else { 0 };
            bind(source, target, rec)?;
            if *readonly {
                // Read-only but executable: BuildKit binds are `rbind,ro`, and
                // `RUN --mount=type=bind,target=/src /src/build.sh` is common.
                set_mount_attrs(target, MOUNT_ATTR_RO_NOSUID_NODEV, *recursive)?;
            } else if *nodev {
                set_mount_attrs(target, MOUNT_ATTR_NODEV, *recursive)?;
            }
            Ok(())
        }
        Op::Mount {
            source,
            target,
            fstype,
            flags,
            data,
        } => {
            // SAFETY: every pointer comes from a C string the plan owns, live across the
            // call; `opt_ptr` gives null for absent data, which mount(2) accepts.
            check(unsafe {
                libc::mount(
                    source.as_ptr(),
                    target.as_ptr(),
                    fstype.as_ptr(),
                    *flags,
                    opt_ptr(data),
                )
            })
        }
        Op::Mkdir { path, mode } => mkdir(path, *mode),
        Op::Touch { path } => {
            // SAFETY: `path` is a C string the plan owns; the descriptor is closed below.
            let fd = unsafe {
                libc::open(
                    path.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
                    0o644,
                )
            };
            if fd < 0 {
                return Err(errno());
            }
            // SAFETY: `fd` was opened above and is closed once.
            unsafe { libc::close(fd) };
            Ok(())
        }
        Op::WriteFile {
            path,
            data,
            mode,
            uid,
            gid,
        } => {
            // SAFETY: `path` is a valid C string; the descriptor is closed below.
            let fd = unsafe {
                libc::open(
                    path.as_ptr(),
                    libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_WRONLY
                        | libc::O_CLOEXEC
                        | libc::O_NOFOLLOW,
                    0o600,
                )
            };
            if fd < 0 {
                return Err(errno());
            }
            let written = write_all_fd(fd, data).and_then(|()| {
                // SAFETY: `fd` is the open descriptor of the file just created.
                check(unsafe { libc::fchown(fd, *uid, *gid) })?;
                // SAFETY: as above.
                check(unsafe { libc::fchmod(fd, *mode) })
            });
            // SAFETY: `fd` is open and closed once.
            unsafe { libc::close(fd) };
            written
        }
        Op::Symlink { target, link } => {
            // SAFETY: both are C strings the plan owns.
            match check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) }) {
                Err(libc::EEXIST) => Ok(()),
                other => other,
            }
        }
        Op::Hostname(name) => {
            // SAFETY: the pointer and length describe the bytes of a C string the plan
            // owns.
            check(unsafe { libc::sethostname(name.as_ptr(), name.as_bytes().len()) })
        }
        Op::PivotRoot { new_root } => {
            // SAFETY: `new_root` is a C string the plan owns.
            check(unsafe { libc::chdir(new_root.as_ptr()) })?;
            let dot = c".".as_ptr();
            // SAFETY: pivot_root takes two path pointers; both point at a static C string.
            let r = unsafe { libc::syscall(libc::SYS_pivot_root, dot, dot) };
            if r != 0 {
                return Err(errno());
            }
            // The old root is stacked under the new one at "."; detach it.
            // SAFETY: `dot` points at a static C string.
            check(unsafe { libc::umount2(dot, libc::MNT_DETACH) })?;
            // SAFETY: a static C string.
            check(unsafe { libc::chdir(c"/".as_ptr()) })
        }
        Op::LoopbackUp => loopback_up(),
        Op::ReadOnlyPath { path } => {
            match bind(path, path, libc::MS_REC) {
                Err(libc::ENOENT) => return Ok(()),
                other => other?,
            }
            set_mount_attrs(path, MOUNT_ATTR_RO_NOSUID_NODEV_NOEXEC, true)
        }
        Op::MaskPath { path, null } => {
            // SAFETY: `stat` is plain old data, filled by the kernel.
            let mut st: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: `path` is a C string the plan owns; `st` is a live, writable `stat`.
            match check(unsafe { libc::stat(path.as_ptr(), &mut st) }) {
                Err(libc::ENOENT) => return Ok(()),
                other => other?,
            }
            if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                // SAFETY: static C strings and the plan's own `path`.
                check(unsafe {
                    libc::mount(
                        c"tmpfs".as_ptr(),
                        path.as_ptr(),
                        c"tmpfs".as_ptr(),
                        libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                        c"size=0".as_ptr().cast(),
                    )
                })
            } else {
                // SAFETY: C strings the plan owns; fstype and data may be null for a bind.
                check(unsafe {
                    libc::mount(
                        null.as_ptr(),
                        path.as_ptr(),
                        std::ptr::null(),
                        libc::MS_BIND,
                        std::ptr::null(),
                    )
                })
            }
        }
        Op::DropBounding { capabilities } => {
            for cap in 0..64u32 {
                if capabilities & (1u64 << cap) != 0 {
                    // SAFETY: prctl(PR_CAPBSET_DROP) takes integers only.
                    check(unsafe {
                        libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0)
                    })?;
                }
            }
            Ok(())
        }
        Op::ScopeAbstractUnixSockets => crate::exec::landlock::scope_abstract_unix_sockets(),
        Op::Seccomp { programs } => {
            for program in programs {
                let Ok(len) = libc::c_ushort::try_from(program.len()) else {
                    return Err(libc::E2BIG);
                };
                // seccompiler's `sock_filter` has the kernel's layout (linux/filter.h).
                let fprog = libc::sock_fprog {
                    len,
                    filter: program.as_ptr().cast_mut().cast::<libc::sock_filter>(),
                };
                // SAFETY: the pointer is to `fprog`, a live local whose `filter` points at
                // `program`: `len` instructions in the kernel's `sock_filter` layout, live
                // across the call.
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_seccomp,
                        libc::SECCOMP_SET_MODE_FILTER,
                        0,
                        &raw const fprog,
                    )
                };
                if r != 0 {
                    return Err(errno());
                }
            }
            Ok(())
        }
        Op::Capabilities {
            permitted,
            inheritable,
        } => {
            use rustix::thread::{CapabilitySet, CapabilitySets, set_capabilities};
            set_capabilities(
                None,
                CapabilitySets {
                    effective: CapabilitySet::from_bits_retain(*permitted),
                    permitted: CapabilitySet::from_bits_retain(*permitted),
                    inheritable: CapabilitySet::from_bits_retain(*inheritable),
                },
            )
            .map_err(|e| e.raw_os_error())
        }
        Op::WaitForIdMap { read_fd, write_fd } => {
            // SAFETY: `write_fd` is this process's copy of the pipe's write end, closed
            // once here.
            unsafe { libc::close(*write_fd) };
            let mut byte = [0u8; 1];
            // SAFETY: reads at most one byte into a live one-byte buffer.
            let n = unsafe { libc::read(*read_fd, byte.as_mut_ptr().cast(), 1) };
            // SAFETY: `read_fd` is this process's read end of the pipe, closed once here.
            unsafe { libc::close(*read_fd) };
            if n == 1 { Ok(()) } else { Err(libc::EPERM) }
        }
        Op::MapSelf { uid_map, gid_map } => {
            write_file(c"/proc/self/setgroups", b"deny")?;
            write_file(c"/proc/self/uid_map", uid_map)?;
            write_file(c"/proc/self/gid_map", gid_map)
        }
        Op::Chroot { new_root } => {
            // SAFETY: `new_root` is a C string the plan owns.
            check(unsafe { libc::chdir(new_root.as_ptr()) })?;
            // SAFETY: a static C string.
            check(unsafe { libc::chroot(c".".as_ptr()) })?;
            // SAFETY: a static C string.
            check(unsafe { libc::chdir(c"/".as_ptr()) })
        }
        Op::WorkDir { path } => crate::exec::workdir::enter(path),
        Op::ChownCalls { socket_fd, program } => {
            crate::exec::chown_calls::install_in_init(*socket_fd, program)
        }
        Op::Terminal {
            socket_fd,
            size,
            uid,
            gid,
        } => crate::exec::terminal::open_in_init(*socket_fd, *size, *uid, *gid),
        Op::Credentials { uid, gid, groups } => {
            if let Some(groups) = groups {
                // SAFETY: the pointer and length describe the plan's own vector of gids.
                match check(unsafe { libc::setgroups(groups.len(), groups.as_ptr()) }) {
                    // newgidmap denies setgroups when it maps only the caller's own gid.
                    Err(libc::EPERM) if setgroups_denied() => {}
                    other => other?,
                }
            }
            // Changing the effective ids clears the parent-death signal (prctl(2)): the
            // container's process would outlive its monitor (a USER nobody image kept
            // running after Ctrl-C). The signal it had is set again afterwards.
            let mut death_signal: libc::c_int = 0;
            // SAFETY: PR_GET_PDEATHSIG writes one int through the pointer, which points at
            // a live local.
            unsafe {
                libc::prctl(
                    libc::PR_GET_PDEATHSIG,
                    &mut death_signal as *mut libc::c_int,
                )
            };
            // SAFETY: setresgid takes integers only.
            check(unsafe { libc::setresgid(*gid, *gid, *gid) })?;
            // SAFETY: setresuid takes integers only.
            check(unsafe { libc::setresuid(*uid, *uid, *uid) })?;
            if death_signal != 0 {
                // SAFETY: prctl(PR_SET_PDEATHSIG) takes integers only.
                check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, death_signal) })?;
            }
            Ok(())
        }
    }
}

/// Whether /proc/self/setgroups says "deny" (async-signal-safe).
fn setgroups_denied() -> bool {
    // SAFETY: a static C string; the descriptor is closed below.
    let fd = unsafe {
        libc::open(
            c"/proc/self/setgroups".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return false;
    }
    let mut buf = [0u8; 8];
    // SAFETY: reads at most `buf.len()` bytes into the live stack buffer.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: `fd` was opened above and is closed once.
    unsafe { libc::close(fd) };
    n >= 4 && &buf[..4] == b"deny"
}

/// Binds `source` on `target` (`flags`: 0 or `MS_REC`).
fn bind(source: &CStr, target: &CStr, flags: libc::c_ulong) -> Result<(), i32> {
    // SAFETY: both pointers come from live C strings; the others may be null.
    check(unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | flags,
            std::ptr::null(),
        )
    })
}

/// `struct mount_attr` of `mount_setattr(2)` (`linux/mount.h`).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC`.
const MOUNT_ATTR_RO_NOSUID_NODEV_NOEXEC: u64 = 0x1 | 0x2 | 0x4 | 0x8;
/// `MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV`.
const MOUNT_ATTR_RO_NOSUID_NODEV: u64 = 0x1 | 0x2 | 0x4;

/// `MOUNT_ATTR_NODEV`.
const MOUNT_ATTR_NODEV: u64 = 0x4;

/// `AT_RECURSIVE` (`linux/fcntl.h`): apply to the whole mount tree.
const AT_RECURSIVE: libc::c_int = 0x8000;

/// Sets the `MOUNT_ATTR_*` bits `attrs` on the bind mount at `target` (others are
/// left as they are, so flags locked by a user namespace never get in the way); with
/// `recursive`, on every mount beneath it too. `mount(MS_REMOUNT | MS_BIND | MS_REC)`
/// ignores `MS_REC` and would leave the sub-mounts of a recursive bind writable, so this
/// is `mount_setattr(AT_RECURSIVE)`; only a kernel without it (before 5.12) gets the
/// remount of the top mount.
fn set_mount_attrs(target: &CStr, attrs: u64, recursive: bool) -> Result<(), i32> {
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    let flags = libc::AT_SYMLINK_NOFOLLOW | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: the target comes from a live C string; `attr` is a live `mount_attr` of
    // the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            target.as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    match check(if r < 0 { -1 } else { 0 }) {
        Err(libc::ENOSYS) => {}
        other => return other,
    }
    let mut legacy = libc::MS_BIND | libc::MS_REMOUNT;
    for (bit, flag) in [
        (0x1, libc::MS_RDONLY),
        (0x2, libc::MS_NOSUID),
        (0x4, libc::MS_NODEV),
        (0x8, libc::MS_NOEXEC),
    ] {
        if attrs & bit != 0 {
            legacy |= flag;
        }
    }
    // SAFETY: the target comes from a live C string; the others may be null.
    check(unsafe {
        libc::mount(
            std::ptr::null(),
            target.as_ptr(),
            std::ptr::null(),
            legacy,
            std::ptr::null(),
        )
    })
}

fn write_file(path: &CStr, data: &[u8]) -> Result<(), i32> {
    // SAFETY: `path` is a live C string; the descriptor is closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: the pointer and length describe `data`, which outlives the call.
    let n = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
    let result = if n == data.len() as isize {
        Ok(())
    } else {
        Err(errno())
    };
    // SAFETY: `fd` was opened above and is closed once.
    unsafe { libc::close(fd) };
    result
}

fn mkdir(path: &CStr, mode: u32) -> Result<(), i32> {
    // SAFETY: `path` is a live C string.
    match check(unsafe { libc::mkdir(path.as_ptr(), mode) }) {
        Err(libc::EEXIST) => Ok(()),
        other => other,
    }
}

fn mount_overlay(
    lowers: &[CString],
    upper: &CStr,
    work: &CStr,
    target: &CStr,
    userxattr: bool,
) -> rustix::io::Result<()> {
    let fs = fsopen(c"overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    for lower in lowers {
        fsconfig_set_string(&fs, c"lowerdir+", lower.as_c_str())?;
    }
    fsconfig_set_string(&fs, c"upperdir", upper)?;
    fsconfig_set_string(&fs, c"workdir", work)?;
    // Renames of lower directories must copy them up whole (EXDEV for mv) rather than
    // leave redirect or metacopy xattrs a layer cannot express.
    fsconfig_set_string(&fs, c"redirect_dir", c"nofollow")?;
    fsconfig_set_string(&fs, c"metacopy", c"off")?;
    fsconfig_set_string(&fs, c"index", c"off")?;
    // A step's upper directory is diffed and turned into a layer right after the step,
    // or thrown away after a crash: syncing it on unmount only costs time.
    fsconfig_set_flag(&fs, c"volatile")?;
    if userxattr {
        fsconfig_set_flag(&fs, c"userxattr")?;
    }
    fsconfig_create(&fs)?;
    // nodev: a device node in an image layer, or one the step makes with mknod, does
    // not open in the step (docker refuses them with its devices cgroup); the step's
    // /dev is a mount of its own.
    let mnt = fsmount(
        &fs,
        FsMountFlags::FSMOUNT_CLOEXEC,
        MountAttrFlags::MOUNT_ATTR_NODEV,
    )?;
    move_mount(
        &mnt,
        c"",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
}

/// `struct ifreq` restricted to the flags member (linux/if.h).
#[repr(C)]
struct IfreqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

fn loopback_up() -> Result<(), i32> {
    // SAFETY: socket takes integers only; the descriptor is closed below.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(errno());
    }
    let mut req = IfreqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    let result = (|| {
        // SAFETY: SIOCGIFFLAGS fills the flags of `req`, a live `struct ifreq` prefix
        // (IfreqFlags) large enough for what the kernel copies.
        check(unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) })?;
        req.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        // SAFETY: SIOCSIFFLAGS reads the live `req`, as above.
        check(unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) })
    })();
    // SAFETY: `sock` was opened above and is closed once.
    unsafe { libc::close(sock) };
    result
}
