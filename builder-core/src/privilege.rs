//! What the running process may do, asked once: every decision that depends on being
//! root (mount a fresh sysfs, make device nodes, chown to any id, use `trusted.*`
//! xattrs, write cgroups, where the store lives) reads [`Privilege::current`].
//!
//! Three cases matter. Root of the initial user namespace may do everything. Root of a
//! user namespace (the one [`enter_user_namespace`](crate::rootless::enter_user_namespace)
//! makes for an unprivileged caller, or rbuild inside a rootless podman container) may
//! mount and chown, but only to the ids its namespace maps, and the kernel refuses it
//! what needs the initial namespace: device nodes, a sysfs without a network namespace
//! of its own, `trusted.*` xattrs (so overlay runs with `userxattr`), cgroup files it was
//! not delegated. An unprivileged process gets a user namespace for each step (see
//! [`SandboxExecutor`](crate::exec::SandboxExecutor)).
//!
//! Who the caller is when rbuild entered a user namespace for it ([`entered`], its uid
//! and home outside) is asked here too: the store and the sandbox read it, and neither
//! may depend on the code that enters the namespace.

use std::fs;
use std::path::PathBuf;

/// `/proc/self/uid_map` of the initial user namespace: every id maps to itself.
const INITIAL_MAP: (u32, u32, u32) = (0, 0, u32::MAX);

/// How privileged the running process is (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Privilege {
    /// Effective uid 0 in the initial user namespace.
    HostRoot,
    /// Effective uid 0 in a user namespace: root over the ids that namespace maps.
    NamespaceRoot,
    /// Any other effective uid.
    Unprivileged,
}

impl Privilege {
    /// The running process's privilege, read from its effective uid and
    /// `/proc/self/uid_map` (cheap: one small file, read each time, since
    /// [`enter_user_namespace`](crate::rootless::enter_user_namespace) changes it).
    pub fn current() -> Privilege {
        if !rustix::process::geteuid().is_root() {
            return Privilege::Unprivileged;
        }
        let map = fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
        // Without a readable map (no /proc) the process is taken for host root, as before
        // this module existed.
        if map.trim().is_empty() || parse_map(&map) == [INITIAL_MAP] {
            Privilege::HostRoot
        } else {
            Privilege::NamespaceRoot
        }
    }

    /// Root of any user namespace: may mount, chown to mapped ids, pivot_root.
    pub fn is_root(self) -> bool {
        self != Privilege::Unprivileged
    }

    /// Root of the initial user namespace: device nodes, `trusted.*` xattrs, sysfs on the
    /// host network, cgroups, every id.
    pub fn is_host_root(self) -> bool {
        self == Privilege::HostRoot
    }
}

/// The `(inside, outside, count)` lines of a `/proc/<pid>/{uid,gid}_map`.
fn parse_map(text: &str) -> Vec<(u32, u32, u32)> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().map(str::parse::<u32>);
            match (fields.next(), fields.next(), fields.next()) {
                (Some(Ok(inside)), Some(Ok(outside)), Some(Ok(count))) => {
                    Some((inside, outside, count))
                }
                _ => None,
            }
        })
        .collect()
}

fn map_has(text: &str, id: u32) -> bool {
    parse_map(text).iter().any(|&(inside, _, count)| {
        id >= inside && u64::from(id) < u64::from(inside) + u64::from(count)
    })
}

/// Whether user id `uid` exists in this process's user namespace (a `USER`, `chown`
/// or layer entry may use it). Always true in the initial namespace.
pub(crate) fn uid_mapped(uid: u32) -> bool {
    fs::read_to_string("/proc/self/uid_map").map_or(true, |m| map_has(&m, uid))
}

/// Like [`uid_mapped`], for group ids.
pub(crate) fn gid_mapped(gid: u32) -> bool {
    fs::read_to_string("/proc/self/gid_map").map_or(true, |m| map_has(&m, gid))
}

/// Whether this process's user namespace maps one user id or one group id at most (the
/// namespace an unprivileged caller without subordinate ids gets: its own id as 0), so
/// that no file can be given another owner. False in the initial namespace.
pub(crate) fn maps_one_id() -> bool {
    let count = |file: &str| {
        fs::read_to_string(file).map_or(u64::MAX, |m| {
            parse_map(&m).iter().map(|&(_, _, n)| u64::from(n)).sum()
        })
    };
    count("/proc/self/uid_map") <= 1 || count("/proc/self/gid_map") <= 1
}

/// Whether `setgroups` is allowed in this process's user namespace: it is denied in one
/// whose gid map was written without newgidmap (only the caller's own group).
pub(crate) fn setgroups_allowed() -> bool {
    fs::read_to_string("/proc/self/setgroups").map_or(true, |s| s.trim() != "deny")
}

/// Environment variable [`enter_user_namespace`](crate::rootless::enter_user_namespace)
/// sets (to the caller's uid outside) once it has entered; processes started from it
/// inherit it. See [`entered`].
pub const ENTERED_ENV: &str = "RBUILD_USERNS_OWNER";

/// Whether this process runs in a user namespace
/// [`enter_user_namespace`](crate::rootless::enter_user_namespace) made (in it or in a
/// process it started): the caller is an unprivileged user, whose store lives in its
/// home, not in `/var/lib/rbuild`.
pub fn entered() -> bool {
    std::env::var_os(ENTERED_ENV).is_some() && Privilege::current() == Privilege::NamespaceRoot
}

/// The caller's uid on the host: the one
/// [`enter_user_namespace`](crate::rootless::enter_user_namespace) was called with (see
/// [`ENTERED_ENV`]) once it entered, else the effective uid.
pub(crate) fn caller_uid() -> u32 {
    std::env::var(ENTERED_ENV)
        .ok()
        .filter(|_| entered())
        .and_then(|uid| uid.parse().ok())
        .unwrap_or_else(|| rustix::process::geteuid().as_raw())
}

/// The home directory of user `uid` in the host's /etc/passwd, when absolute.
pub(crate) fn host_home(uid: u32) -> Option<PathBuf> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() > 5 && fields[2] == uid.to_string())
            .then(|| PathBuf::from(fields[5]))
            .filter(|home| home.is_absolute())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_are_read_as_ranges() {
        assert_eq!(
            parse_map("         0          0 4294967295\n"),
            [INITIAL_MAP]
        );
        let rootless = "0 999 1\n1 300000 65536\n";
        assert_eq!(parse_map(rootless), [(0, 999, 1), (1, 300000, 65536)]);
        assert!(map_has(rootless, 0) && map_has(rootless, 65536));
        assert!(!map_has(rootless, 65537));
        assert!(map_has("0 65534 1\n", 0) && !map_has("0 65534 1\n", 1000));
        assert!(map_has("0 0 4294967295\n", u32::MAX - 1));
    }

    #[test]
    fn the_test_process_has_one_answer() {
        let p = Privilege::current();
        assert_eq!(p.is_root(), rustix::process::geteuid().is_root());
        assert!(!p.is_host_root() || p.is_root());
    }
}
