//! Entering a step's working directory in the sandbox, after `pivot_root`.
//!
//! BuildKit's executor resolves the working directory inside the root with continuity's
//! `RootPath` (every symlink followed, dangling ones too, none leading out) and creates
//! what is missing, 0755 and owned by root, before runc enters it; runc then creates
//! the path as written (`MkdirAll` of `/a/../b` makes `/a` too). [`enter`] does both
//! in one walk from `/`: each component is created if missing and entered; one that
//! cannot be entered but is a symlink (its target missing) is replaced by its target,
//! which is walked in turn, from `/` when absolute. `..` is the kernel's, which stops
//! at the new root.
//!
//! One thing the kernel does not stop: `/proc/self/fd/N` (and `/proc/self/cwd`) are
//! magic links to whatever the descriptor refers to, and every descriptor rbuild holds
//! is still open here (close-on-exec closes them only at `exec`). A `WORKDIR
//! /proc/self/fd/7` naming an inherited host directory would leave the step, at exec,
//! in a working directory outside its root, from which `..` climbs to the host's `/`
//! (runc's CVE-2024-21626). So after every directory entered, the walk checks that the
//! kernel still places it under the root (`getcwd` names it from `/`, not
//! `(unreachable)`), before creating anything there; otherwise it fails with `EXDEV`.
//!
//! It runs between `fork` and `exec`: fixed buffers, no allocation.

use std::ffi::CStr;

use super::errno::{check, errno};

/// Mode of the directories the walk creates (BuildKit's, before the umask).
const WORKDIR_MODE: libc::mode_t = 0o755;
/// Longest path the walk holds, link targets spliced in (Linux's `PATH_MAX`).
const PATH_MAX: usize = libc::PATH_MAX as usize;
/// Longest component (Linux's `NAME_MAX`).
const NAME_MAX: usize = 255;
/// Symlinks followed at most in one walk (Linux's `MAXSYMLINKS`).
const MAX_LINKS: usize = 40;

/// Walks to `path` from `/`, creating missing directories and following dangling
/// symlinks to where their targets would be; the process ends in that directory.
/// Errors are errno values.
pub(super) fn enter(path: &CStr) -> Result<(), i32> {
    let mut pending = [0u8; PATH_MAX];
    let bytes = path.to_bytes();
    if bytes.len() > PATH_MAX {
        return Err(libc::ENAMETOOLONG);
    }
    pending[..bytes.len()].copy_from_slice(bytes);
    let (mut start, mut len) = (0, bytes.len());
    let mut name = [0u8; NAME_MAX + 1];
    let mut target = [0u8; PATH_MAX];
    let mut links = 0;
    // SAFETY: a static C string.
    check(unsafe { libc::chdir(c"/".as_ptr()) })?;
    loop {
        while start < len && pending[start] == b'/' {
            start += 1;
        }
        if start == len {
            return Ok(());
        }
        let end = pending[start..len]
            .iter()
            .position(|&b| b == b'/')
            .map_or(len, |i| start + i);
        let component = &pending[start..end];
        if component.len() > NAME_MAX {
            return Err(libc::ENAMETOOLONG);
        }
        name[..component.len()].copy_from_slice(component);
        name[component.len()] = 0;
        let is_dot = component == b".";
        start = end;
        if is_dot {
            continue;
        }
        let c_name = name.as_ptr().cast::<libc::c_char>();
        // SAFETY: `c_name` points at `name`, NUL-terminated just above.
        if unsafe { libc::mkdir(c_name, WORKDIR_MODE) } != 0 && errno() != libc::EEXIST {
            return Err(errno());
        }
        // SAFETY: as above.
        let Err(not_entered) = check(unsafe { libc::chdir(c_name) }) else {
            inside_root()?;
            continue;
        };
        // SAFETY: `c_name` is NUL-terminated; readlink writes at most PATH_MAX bytes into
        // `target`, which holds PATH_MAX.
        let n = unsafe { libc::readlink(c_name, target.as_mut_ptr().cast(), PATH_MAX) };
        let Ok(n) = usize::try_from(n) else {
            // Not a symlink: why it could not be entered stands.
            return Err(not_entered);
        };
        links += 1;
        if links > MAX_LINKS {
            return Err(libc::ELOOP);
        }
        let rest = len - start;
        if n == 0 || n >= PATH_MAX || n + 1 + rest > PATH_MAX {
            return Err(libc::ENAMETOOLONG);
        }
        // pending = target + "/" + what was left after the link.
        pending.copy_within(start..len, n + 1);
        pending[..n].copy_from_slice(&target[..n]);
        pending[n] = b'/';
        (start, len) = (0, n + 1 + rest);
        if target[0] == b'/' {
            // SAFETY: a static C string.
            check(unsafe { libc::chdir(c"/".as_ptr()) })?;
        }
    }
}

/// Fails with `EXDEV` when the working directory is not under the process's root: the
/// kernel's `getcwd` then names it `(unreachable)/...` instead of from `/` (the system
/// call itself, on a stack buffer: glibc's wrapper may allocate).
fn inside_root() -> Result<(), i32> {
    let mut cwd = [0u8; PATH_MAX];
    // SAFETY: getcwd writes at most `cwd.len()` bytes into the live stack buffer.
    let n = unsafe { libc::syscall(libc::SYS_getcwd, cwd.as_mut_ptr(), cwd.len()) };
    if n < 0 {
        return Err(errno());
    }
    if n == 0 || cwd[0] != b'/' {
        return Err(libc::EXDEV);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    use super::*;

    /// Runs [`enter`] in a child chrooted into `root`, which then creates `here` in the
    /// directory it ended in; the child's errno, 0 on success.
    fn enter_in(root: &Path, path: &str) -> i32 {
        let root = CString::new(root.as_os_str().as_bytes()).unwrap();
        let path = CString::new(path).unwrap();
        // SAFETY: the child makes system calls on prepared data and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            // SAFETY: in the forked child: chroot and open take live C strings, `enter`
            // makes system calls on its stack only, and _exit ends the child without
            // running the parent's destructors.
            let code = unsafe {
                if libc::chroot(root.as_ptr()) != 0 {
                    libc::_exit(200);
                }
                match enter(&path) {
                    Ok(()) => {
                        let fd =
                            libc::open(c"here".as_ptr(), libc::O_CREAT | libc::O_WRONLY, 0o644);
                        if fd < 0 { 201 } else { 0 }
                    }
                    Err(e) => e,
                }
            };
            // SAFETY: _exit ends the forked child; it takes an integer.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: `pid` is our forked child; `status` is a live local.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        libc::WEXITSTATUS(status)
    }

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    /// Issue 14, bug 4: `RUN ln -s /var/lib/tempest /tempest` then a step in `/tempest`
    /// failed with ENOENT; BuildKit creates `/var/lib/tempest` and runs there.
    #[test]
    fn dangling_links_lead_to_their_targets_inside_the_root() {
        if !is_root() {
            eprintln!("skipped: chroot needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("var")).unwrap();
        symlink("/var/lib/tempest", root.join("tempest")).unwrap();
        assert_eq!(enter_in(root, "/tempest"), 0);
        assert!(root.join("var/lib/tempest/here").is_file());

        // A chain: relative link to an absolute one, both dangling, then a component.
        symlink("c2", root.join("c1")).unwrap();
        symlink("/c3/x", root.join("c2")).unwrap();
        assert_eq!(enter_in(root, "/c1/sub"), 0);
        assert!(root.join("c3/x/sub/here").is_file());

        // A link climbing above the root stops at it.
        symlink("../../outside", root.join("esc")).unwrap();
        assert_eq!(enter_in(root, "/esc/in"), 0);
        assert!(root.join("outside/in/here").is_file());

        // The path as written: `/a/../b/` makes `/a` too, as runc's MkdirAll does.
        assert_eq!(enter_in(root, "/a/../b/./"), 0);
        assert!(root.join("a").is_dir() && root.join("b/here").is_file());
    }

    #[test]
    fn loops_and_files_fail() {
        if !is_root() {
            eprintln!("skipped: chroot needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        symlink("/l2", root.join("l1")).unwrap();
        symlink("/l1", root.join("l2")).unwrap();
        assert_eq!(enter_in(root, "/l1"), libc::ELOOP);
        std::fs::write(root.join("f"), b"").unwrap();
        assert_eq!(enter_in(root, "/f/sub"), libc::ENOTDIR);
        symlink("/f", root.join("lf")).unwrap();
        assert_eq!(enter_in(root, "/lf"), libc::ENOTDIR);
    }

    /// A directory descriptor open outside the root is a way out through
    /// `/proc/self/fd/N` (runc's CVE-2024-21626): the walk refuses to stay there, and
    /// creates nothing in it, even behind a dangling link.
    #[test]
    fn inherited_descriptors_do_not_lead_out() {
        if !is_root() {
            eprintln!("skipped: chroot needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (root, outside) = (dir.path().join("root"), dir.path().join("outside"));
        std::fs::create_dir_all(root.join("proc")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        let held = std::fs::File::open(&outside).unwrap();
        let fd = held.as_raw_fd();
        // The chrooted child sees the host's /proc through a bind of it.
        let proc_target = CString::new(root.join("proc").as_os_str().as_bytes()).unwrap();
        // SAFETY: static and live C strings; fstype and data may be null for a bind.
        let bound = unsafe {
            libc::mount(
                c"/proc".as_ptr(),
                proc_target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        assert_eq!(bound, 0, "bind /proc");
        symlink(format!("/proc/self/fd/{fd}/made"), root.join("dangling")).unwrap();
        let direct = enter_in(&root, &format!("/proc/self/fd/{fd}"));
        let through_link = enter_in(&root, "/dangling/deeper");
        let made = outside.join("made").exists();
        // SAFETY: `proc_target` is a live C string.
        unsafe { libc::umount2(proc_target.as_ptr(), libc::MNT_DETACH) };
        assert_eq!(direct, libc::EXDEV);
        assert_eq!(through_link, libc::EXDEV);
        assert!(!made && !outside.join("here").exists());
    }
}
