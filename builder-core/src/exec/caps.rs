//! The capabilities a step keeps.
//!
//! A step gets docker's default set (moby `oci/caps/defaults.go`, the same fourteen
//! BuildKit gives `RUN`): in the bounding, permitted, effective and inheritable sets of a
//! root step, none ambient. A step of another `USER` keeps the bounding set only, its
//! permitted and effective sets empty, as docker does for non-root users (a set-uid
//! program can still raise them within the bounding set). `CAP_NET_RAW` is dropped on
//! the default network ([`Network::Default`]): it is the host's namespace, where it would
//! let a step open `AF_PACKET` and raw
//! sockets on the host's interfaces and capture their traffic. `RUN
//! --security=insecure` keeps every capability.

use std::collections::HashSet;

use oci_spec::runtime::Capability;

use super::{Network, Security};

/// docker's default capabilities: the OCI name and the kernel's number
/// (`linux/capability.h`).
pub(crate) const DEFAULT_CAPABILITIES: [(Capability, u32); 14] = [
    (Capability::Chown, 0),
    (Capability::DacOverride, 1),
    (Capability::Fowner, 3),
    (Capability::Fsetid, 4),
    (Capability::Kill, 5),
    (Capability::Setgid, 6),
    (Capability::Setuid, 7),
    (Capability::Setpcap, 8),
    (Capability::NetBindService, 10),
    (Capability::NetRaw, 13),
    (Capability::SysChroot, 18),
    (Capability::Mknod, 27),
    (Capability::AuditWrite, 29),
    (Capability::Setfcap, 31),
];

/// Every capability the kernel defines, by number (`linux/capability.h`, Linux 5.9+):
/// `--security=insecure` keeps those of them rbuild itself holds.
const ALL_CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The OCI capability sets of a runc step: (bounding, permitted and effective,
/// inheritable), as [`for_step`] chooses them. The inheritable set is always empty, as in
/// docker, containerd, BuildKit and buildah since CVE-2022-24769 / CVE-2022-27651: with
/// one, a non-root process could gain a program's inheritable file capabilities.
pub(crate) fn oci_sets(
    security: Security,
    uid: u32,
    network: Network,
) -> (
    HashSet<Capability>,
    HashSet<Capability>,
    HashSet<Capability>,
) {
    if security == Security::Insecure {
        // Those rbuild holds (containerd's `WithAllCurrentCapabilities`): runc refuses to
        // grant one its caller lacks (a host may withhold CAP_SYS_RESOURCE, say).
        let held = held_mask();
        let all: HashSet<Capability> = ALL_CAPABILITIES
            .iter()
            .enumerate()
            .filter(|(number, _)| held & (1u64 << number) != 0)
            .filter_map(|(_, name)| serde_json::from_value(format!("CAP_{name}").into()).ok())
            .collect();
        return (all.clone(), all, HashSet::new());
    }
    let defaults: HashSet<Capability> = DEFAULT_CAPABILITIES
        .iter()
        .map(|(c, _)| *c)
        .filter(|c| *c != Capability::NetRaw || network != Network::Default)
        .collect();
    if uid == 0 {
        (defaults.clone(), defaults, HashSet::new())
    } else {
        (defaults, HashSet::new(), HashSet::new())
    }
}

/// The permitted set of this process (`CapPrm` of /proc/self/status); every
/// capability when it cannot be read.
pub(crate) fn held_mask() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                let hex = line.strip_prefix("CapPrm:")?.trim();
                u64::from_str_radix(hex, 16).ok()
            })
        })
        .unwrap_or(u64::MAX)
}

/// Whether this process holds what the sandbox gives a root step on the default network
/// ([`DEFAULT_CAPABILITIES`] but `CAP_NET_RAW`): it cannot grant one it lacks.
pub(crate) fn holds_step_capabilities() -> bool {
    let held = held_mask();
    DEFAULT_CAPABILITIES
        .iter()
        .filter(|(c, _)| *c != Capability::NetRaw)
        .all(|(_, number)| held & (1u64 << number) != 0)
}

/// The highest capability number the kernel knows (`/proc/sys/kernel/cap_last_cap`);
/// 40 (`CAP_CHECKPOINT_RESTORE`, Linux 5.9) when it cannot be read.
fn last_capability() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// `CAP_NET_RAW`'s number (`linux/capability.h`).
const CAP_NET_RAW: u32 = 13;

/// The default set as a bit mask (bit `n` for capability `n`), without `CAP_NET_RAW` on
/// the default network (a private namespace of `--network=none` keeps it, as docker's).
pub(crate) fn default_mask(network: Network) -> u64 {
    DEFAULT_CAPABILITIES
        .iter()
        .filter(|(_, number)| *number != CAP_NET_RAW || network != Network::Default)
        .fold(0, |mask, (_, number)| mask | (1u64 << number))
}

/// The capability sets of one step, applied by the sandbox's init.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StepCapabilities {
    /// Capability numbers to drop from the bounding set (everything not in it).
    pub drop_from_bounding: u64,
    /// The permitted and effective sets after the switch to the step's user.
    pub permitted: u64,
    /// The inheritable set: always empty (see [`oci_sets`]).
    pub inheritable: u64,
}

/// What a step of `security` running as `uid` keeps; `None` keeps everything
/// (`--security=insecure`).
pub(crate) fn for_step(security: Security, uid: u32, network: Network) -> Option<StepCapabilities> {
    if security == Security::Insecure {
        return None;
    }
    let keep = default_mask(network);
    let last = last_capability().min(63);
    let all = if last == 63 {
        u64::MAX
    } else {
        (1u64 << (last + 1)) - 1
    };
    Some(StepCapabilities {
        drop_from_bounding: all & !keep,
        permitted: if uid == 0 { keep } else { 0 },
        inheritable: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_keeps_docker_defaults_and_others_keep_only_the_bounding_set() {
        let root =
            for_step(Security::Sandbox, 0, Network::Host).expect("sandbox drops capabilities");
        // CAP_CHOWN, CAP_SETUID, CAP_NET_RAW kept; CAP_SYS_ADMIN (21), CAP_SYS_MODULE
        // (16), CAP_SYS_PTRACE (19) and CAP_NET_ADMIN (12) dropped.
        for kept in [0, 7, 13] {
            assert_ne!(root.permitted & (1 << kept), 0, "capability {kept}");
            assert_eq!(
                root.drop_from_bounding & (1 << kept),
                0,
                "capability {kept}"
            );
        }
        for dropped in [12, 16, 19, 21] {
            assert_eq!(root.permitted & (1 << dropped), 0, "capability {dropped}");
            assert_ne!(root.drop_from_bounding & (1 << dropped), 0);
        }
        assert_eq!(root.inheritable, 0);
        let user =
            for_step(Security::Sandbox, 1000, Network::Host).expect("sandbox drops capabilities");
        assert_eq!((user.permitted, user.inheritable), (0, 0));
        assert_eq!(user.drop_from_bounding, root.drop_from_bounding);
        assert_eq!(for_step(Security::Insecure, 0, Network::Default), None);
        let (bounding, _, _) = oci_sets(Security::Insecure, 0, Network::Default);
        assert_eq!(bounding.len() as u32, held_mask().count_ones().min(41));
        let (bounding, permitted, inheritable) = oci_sets(Security::Sandbox, 1000, Network::Host);
        assert_eq!((bounding.len(), permitted.len()), (14, 0));
        assert!(inheritable.is_empty());
        let (_, permitted, inheritable) = oci_sets(Security::Sandbox, 0, Network::Host);
        assert_eq!((permitted.len(), inheritable.len()), (14, 0));
    }

    /// Issue 13: on the default network (the host's namespace) a step must not open
    /// AF_PACKET or raw sockets, so CAP_NET_RAW is gone from every set.
    #[test]
    fn the_default_network_drops_cap_net_raw_everywhere() {
        {
            let network = Network::Default;
            let root = for_step(Security::Sandbox, 0, network).expect("sandbox drops");
            assert_eq!(root.permitted & (1 << CAP_NET_RAW), 0, "{network:?}");
            assert_ne!(
                root.drop_from_bounding & (1 << CAP_NET_RAW),
                0,
                "{network:?}"
            );
            let (bounding, permitted, _) = oci_sets(Security::Sandbox, 0, network);
            assert!(!bounding.contains(&Capability::NetRaw), "{network:?}");
            assert!(!permitted.contains(&Capability::NetRaw), "{network:?}");
        }
    }
}
