//! The operations that confine a step of the built-in sandbox (its [`Security`]):
//! docker's read-only and masked `/proc` and `/sys` paths, then, around the switch to the
//! step's user, its capabilities ([`caps`](super::caps)) and seccomp filter
//! ([`seccomp`](super::seccomp)).

use std::path::Path;

use super::plan::Op;
use super::plan::cstr;
use super::{ExecError, Network, Security, caps, landlock, seccomp};

/// Parts of /proc a sandboxed step may read but not write (runc's and docker's default
/// `readonlyPaths`): `/proc/sys` holds the host's global sysctls.
const READONLY_PROC: [&str; 5] = [
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];

/// Paths a sandboxed step does not see (docker's default `maskedPaths`).
const MASKED: [&str; 11] = [
    "proc/acpi",
    "proc/asound",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];

/// The operations hiding and write-protecting parts of /proc and /sys under `root`
/// (after they are mounted). As BuildKit's insecure mode, `--security=insecure` leaves
/// /proc and /sys whole.
pub(crate) fn proc_ops(security: Security, root: &Path) -> Result<Vec<Op>, ExecError> {
    let mut ops = Vec::new();
    if security == Security::Insecure {
        return Ok(ops);
    }
    for rel in READONLY_PROC {
        ops.push(Op::ReadOnlyPath {
            path: cstr(&root.join(rel))?,
        });
    }
    for rel in MASKED {
        ops.push(Op::MaskPath {
            path: cstr(&root.join(rel))?,
            null: c"/dev/null".into(),
        });
    }
    Ok(ops)
}

/// The operations before and after the switch to the step's user `uid`. Confinement
/// comes last, as runc orders it: the bounding set and the seccomp filter while the init
/// still holds every capability (installing a filter without `no_new_privs` needs
/// `CAP_SYS_ADMIN`), then the user, then the step's own sets. On the default network
/// (the host's namespace) the Landlock scope that shuts off the host's abstract unix
/// sockets comes first (it needs `CAP_SYS_ADMIN` too); a kernel without it (Landlock ABI
/// 6, Linux 6.12) fails the step rather than run it unconfined.
pub(crate) fn privilege_ops(
    security: Security,
    uid: u32,
    network: Network,
) -> Result<(Vec<Op>, Vec<Op>), ExecError> {
    let Some(capabilities) = caps::for_step(security, uid, network) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let mut before = Vec::new();
    if network == Network::Default {
        require_abstract_socket_scoping(landlock::abi())?;
        before.push(Op::ScopeAbstractUnixSockets);
    }
    before.extend([
        Op::DropBounding {
            capabilities: capabilities.drop_from_bounding,
        },
        Op::Seccomp {
            programs: seccomp::compile(&seccomp::profile()?)?,
        },
    ]);
    let after = vec![Op::Capabilities {
        permitted: capabilities.permitted,
        inheritable: capabilities.inheritable,
    }];
    Ok((before, after))
}

/// Refuses the default network on a kernel whose Landlock (ABI `abi`, 0 when absent)
/// cannot scope abstract unix sockets: the step would reach the host's.
fn require_abstract_socket_scoping(abi: i64) -> Result<(), ExecError> {
    if abi >= landlock::SCOPE_ABI {
        return Ok(());
    }
    let found = if abi == 0 {
        "landlock is not enabled".to_owned()
    } else {
        format!("landlock abi {abi}")
    };
    Err(ExecError::NetworkConfinement {
        reason: format!(
            "the default network shares the host's network namespace and needs landlock abi \
             {} (linux 6.12) to keep steps off the host's abstract unix sockets, but this \
             kernel has {found}; use --network=none, or --network=host with --allow \
             network.host to accept the host's network unconfined",
            landlock::SCOPE_ABI
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_without_landlock_scoping_refuses_the_default_network() {
        for abi in [0, 1, 5] {
            let err = require_abstract_socket_scoping(abi).expect_err("refused");
            let text = err.to_string();
            assert!(text.contains("landlock abi 6"), "{text}");
            assert!(text.contains("--allow network.host"), "{text}");
        }
        assert!(require_abstract_socket_scoping(6).is_ok());
        assert!(require_abstract_socket_scoping(7).is_ok());
    }
}
