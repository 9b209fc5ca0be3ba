//! The operations that confine a step of the built-in sandbox (its [`Security`]):
//! docker's read-only and masked `/proc` and `/sys` paths, then, around the switch to the
//! step's user, its capabilities ([`caps`](super::caps)) and seccomp filter
//! ([`seccomp`](super::seccomp)).

use std::path::Path;

use super::plan::Op;
use super::sandbox::cstr;
use super::{ExecError, Security, caps, seccomp};

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
/// `CAP_SYS_ADMIN`), then the user, then the step's own sets.
pub(crate) fn privilege_ops(security: Security, uid: u32) -> Result<(Vec<Op>, Vec<Op>), ExecError> {
    let Some(capabilities) = caps::for_step(security, uid) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let before = vec![
        Op::DropBounding {
            capabilities: capabilities.drop_from_bounding,
        },
        Op::Seccomp {
            programs: seccomp::compile(&seccomp::profile()?)?,
        },
    ];
    let after = vec![Op::Capabilities {
        permitted: capabilities.permitted,
        inheritable: capabilities.inheritable,
    }];
    Ok((before, after))
}
