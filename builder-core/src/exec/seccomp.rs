//! The seccomp profile of a step: docker's default profile semantics.
//!
//! An allowlist: a system call the profile does not name fails with `EPERM`, as with
//! moby's `profiles/seccomp/default.json`. Left out, as there, are the calls that need a
//! capability the step does not have or that reach the kernel's global state: `mount`,
//! `umount2`, `pivot_root`, the new mount API (`fsopen`, `fsmount`, `move_mount`,
//! `open_tree`, ...), `kexec_load`, `init_module`, `finit_module`, `delete_module`, `bpf`,
//! `perf_event_open`, `keyctl`, `add_key`, `request_key`, `setns`, `unshare`,
//! `reboot`, `swapon`, `swapoff`, `open_by_handle_at`, `acct`, `settimeofday`,
//! `clock_settime`, `userfaultfd`, `syslog`, `io_uring_*` (as current docker). `clone`
//! is allowed only without namespace flags, `personality` only for the personas docker
//! allows; `clone3` fails with `ENOSYS` so that the C library falls back to `clone`
//! (whose flags the filter can see). `ptrace` and `process_vm_*` are allowed on Linux
//! 4.8 and later, as docker does (older kernels let ptrace bypass seccomp).
//!
//! The built-in sandbox compiles the profile to BPF with `seccompiler` (pure Rust, so
//! no libseccomp is needed) and installs it in the step's init; the runc back end writes
//! the same rules as `linux.seccomp` of `config.json`. Only x86_64 has a profile; on
//! other architectures a sandboxed step is refused ([`ExecError::Seccomp`]). runc's filter
//! also covers 32-bit (i386, x32) system calls by name, as docker's amd64 profile does;
//! the built-in sandbox's BPF program knows only x86_64 and kills a 32-bit program's
//! process on its first system call (a known limit: seccompiler has no multi-arch
//! filter).

use std::collections::BTreeMap;

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArgBuilder, LinuxSeccompBuilder,
    LinuxSeccompOperator, LinuxSyscallBuilder,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::ExecError;

/// `clone` flags that create namespaces (`CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS |
/// CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET`, linux/sched.h): docker's
/// profile allows `clone` only when none of them is set.
const NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// `personality` values docker's profile allows: `PER_LINUX`, `PER_LINUX32`,
/// `UNAME26`, `PER_LINUX32 | UNAME26`, and the query `0xffffffff`.
const PERSONAS: [u64; 5] = [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// How the profile treats one system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Treatment {
    /// Allowed.
    Allow,
    /// Allowed when argument `arg` is one of `values`.
    AllowIfAnyOf { arg: u8, values: &'static [u64] },
    /// Allowed when argument `arg` has none of the bits of `mask`.
    AllowIfNone { arg: u8, mask: u64 },
    /// Fails with this errno (whatever the default).
    Errno(u32),
}

/// One system call of the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SyscallRule {
    /// Its name, as runtimes and libseccomp spell it.
    pub name: &'static str,
    /// Its number on this architecture.
    pub number: i64,
    /// What the profile does with it.
    pub treatment: Treatment,
}

/// The errno every call the profile does not allow fails with.
const DEFAULT_ERRNO: u32 = libc::EPERM as u32;

#[cfg(target_arch = "x86_64")]
mod table {
    macro_rules! calls {
        ($($name:ident)*) => { &[$((stringify!($name), libc::$name)),*] };
    }

    /// Allowed without condition (x86_64 numbers, libc's `SYS_*`).
    pub(super) const ALLOWED: &[(&str, i64)] = calls!(
        SYS_accept SYS_accept4 SYS_access SYS_adjtimex SYS_alarm SYS_arch_prctl SYS_bind
        SYS_brk SYS_capget SYS_capset SYS_chdir SYS_chmod SYS_chown SYS_chroot
        SYS_clock_adjtime SYS_clock_getres SYS_clock_gettime SYS_clock_nanosleep SYS_close
        SYS_close_range SYS_connect SYS_copy_file_range SYS_creat SYS_dup SYS_dup2 SYS_dup3
        SYS_epoll_create SYS_epoll_create1 SYS_epoll_ctl SYS_epoll_ctl_old SYS_epoll_pwait
        SYS_epoll_pwait2 SYS_epoll_wait SYS_epoll_wait_old SYS_eventfd SYS_eventfd2
        SYS_execve SYS_execveat SYS_exit SYS_exit_group SYS_faccessat SYS_faccessat2
        SYS_fadvise64 SYS_fallocate SYS_fanotify_mark SYS_fchdir SYS_fchmod SYS_fchmodat
        SYS_fchmodat2 SYS_fchown SYS_fchownat SYS_fcntl SYS_fdatasync SYS_fgetxattr
        SYS_flistxattr SYS_flock SYS_fork SYS_fremovexattr SYS_fsetxattr SYS_fstat
        SYS_fstatfs SYS_fsync SYS_ftruncate SYS_futex SYS_futex_waitv SYS_futimesat
        SYS_getcpu SYS_getcwd SYS_getdents SYS_getdents64 SYS_getegid SYS_geteuid
        SYS_getgid SYS_getgroups SYS_getitimer SYS_getpeername SYS_getpgid SYS_getpgrp
        SYS_getpid SYS_getppid SYS_getpriority SYS_getrandom SYS_getresgid SYS_getresuid
        SYS_getrlimit SYS_get_robust_list SYS_getrusage SYS_getsid SYS_getsockname
        SYS_getsockopt SYS_get_thread_area SYS_gettid SYS_gettimeofday SYS_getuid
        SYS_getxattr SYS_inotify_add_watch SYS_inotify_init SYS_inotify_init1
        SYS_inotify_rm_watch SYS_io_cancel SYS_ioctl SYS_io_destroy SYS_io_getevents
        SYS_ioprio_get SYS_ioprio_set SYS_io_setup SYS_io_submit SYS_kill
        SYS_landlock_add_rule SYS_landlock_create_ruleset SYS_landlock_restrict_self
        SYS_lchown SYS_lgetxattr SYS_link SYS_linkat SYS_listen SYS_listxattr SYS_llistxattr
        SYS_lremovexattr SYS_lseek SYS_lsetxattr SYS_lstat SYS_madvise SYS_membarrier
        SYS_memfd_create SYS_mincore SYS_mkdir SYS_mkdirat SYS_mknod SYS_mknodat SYS_mlock
        SYS_mlock2 SYS_mlockall SYS_mmap SYS_modify_ldt SYS_mprotect SYS_mq_getsetattr
        SYS_mq_notify SYS_mq_open SYS_mq_timedreceive SYS_mq_timedsend SYS_mq_unlink
        SYS_mremap SYS_msgctl SYS_msgget SYS_msgrcv SYS_msgsnd SYS_msync SYS_munlock
        SYS_munlockall SYS_munmap SYS_nanosleep SYS_newfstatat SYS_open SYS_openat
        SYS_openat2 SYS_pause SYS_pidfd_open SYS_pidfd_send_signal SYS_pipe SYS_pipe2
        SYS_pkey_alloc SYS_pkey_free SYS_pkey_mprotect SYS_poll SYS_ppoll SYS_prctl
        SYS_pread64 SYS_preadv SYS_preadv2 SYS_prlimit64 SYS_process_mrelease SYS_pselect6
        SYS_pwrite64 SYS_pwritev SYS_pwritev2 SYS_read SYS_readahead SYS_readlink
        SYS_readlinkat SYS_readv SYS_recvfrom SYS_recvmmsg SYS_recvmsg SYS_remap_file_pages
        SYS_removexattr SYS_rename SYS_renameat SYS_renameat2 SYS_restart_syscall SYS_rmdir
        SYS_rseq SYS_rt_sigaction SYS_rt_sigpending SYS_rt_sigprocmask SYS_rt_sigqueueinfo
        SYS_rt_sigreturn SYS_rt_sigsuspend SYS_rt_sigtimedwait SYS_rt_tgsigqueueinfo
        SYS_sched_getaffinity SYS_sched_getattr SYS_sched_getparam
        SYS_sched_get_priority_max SYS_sched_get_priority_min SYS_sched_getscheduler
        SYS_sched_rr_get_interval SYS_sched_setaffinity SYS_sched_setattr
        SYS_sched_setparam SYS_sched_setscheduler SYS_sched_yield SYS_seccomp SYS_select
        SYS_semctl SYS_semget SYS_semop SYS_semtimedop SYS_sendfile SYS_sendmmsg
        SYS_sendmsg SYS_sendto SYS_setfsgid SYS_setfsuid SYS_setgid SYS_setgroups
        SYS_setitimer SYS_setpgid SYS_setpriority SYS_setregid SYS_setresgid SYS_setresuid
        SYS_setreuid SYS_setrlimit SYS_set_robust_list SYS_setsid SYS_setsockopt
        SYS_set_thread_area SYS_set_tid_address SYS_setuid SYS_setxattr SYS_shmat
        SYS_shmctl SYS_shmdt SYS_shmget SYS_shutdown SYS_sigaltstack SYS_signalfd
        SYS_signalfd4 SYS_socket SYS_socketpair SYS_splice SYS_stat SYS_statfs SYS_statx
        SYS_symlink SYS_symlinkat SYS_sync SYS_sync_file_range SYS_syncfs SYS_sysinfo
        SYS_tee SYS_tgkill SYS_time SYS_timer_create SYS_timer_delete SYS_timer_getoverrun
        SYS_timer_gettime SYS_timer_settime SYS_timerfd_create SYS_timerfd_gettime
        SYS_timerfd_settime SYS_times SYS_tkill SYS_truncate SYS_umask SYS_uname SYS_unlink
        SYS_unlinkat SYS_utime SYS_utimensat SYS_utimes SYS_vfork SYS_vmsplice SYS_wait4
        SYS_waitid SYS_write SYS_writev
    );

    /// Allowed on Linux 4.8 and later only (docker's `minKernel` rule).
    pub(super) const FROM_LINUX_4_8: &[(&str, i64)] =
        calls!(SYS_ptrace SYS_process_vm_readv SYS_process_vm_writev);

    pub(super) const CLONE: (&str, i64) = ("clone", libc::SYS_clone);
    pub(super) const CLONE3: (&str, i64) = ("clone3", libc::SYS_clone3);
    pub(super) const PERSONALITY: (&str, i64) = ("personality", libc::SYS_personality);
    pub(super) const ARCH: seccompiler::TargetArch = seccompiler::TargetArch::x86_64;
}

/// The profile's rules for this host, or why there is none.
pub(crate) fn profile() -> Result<Vec<SyscallRule>, ExecError> {
    #[cfg(target_arch = "x86_64")]
    {
        let strip = |name: &'static str| name.strip_prefix("SYS_").unwrap_or(name);
        let allow = |&(name, number): &(&'static str, i64)| SyscallRule {
            name: strip(name),
            number,
            treatment: Treatment::Allow,
        };
        let mut rules: Vec<SyscallRule> = table::ALLOWED.iter().map(allow).collect();
        if kernel_at_least(4, 8) {
            rules.extend(table::FROM_LINUX_4_8.iter().map(allow));
        }
        let conditional = [
            (
                table::CLONE,
                Treatment::AllowIfNone {
                    arg: 0,
                    mask: NAMESPACE_FLAGS,
                },
            ),
            (
                table::PERSONALITY,
                Treatment::AllowIfAnyOf {
                    arg: 0,
                    values: &PERSONAS,
                },
            ),
            (table::CLONE3, Treatment::Errno(libc::ENOSYS as u32)),
        ];
        for ((name, number), treatment) in conditional {
            rules.push(SyscallRule {
                name,
                number,
                treatment,
            });
        }
        Ok(rules)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Err(no_profile())
    }
}

/// The error of a host without a profile.
#[cfg(not(target_arch = "x86_64"))]
fn no_profile() -> ExecError {
    ExecError::Seccomp {
        reason: format!(
            "no seccomp profile for {} (only x86_64 has one); \
             use RUN --security=insecure to run without it",
            std::env::consts::ARCH
        ),
    }
}

/// The architecture the filter checks for.
fn target_arch() -> Result<TargetArch, ExecError> {
    #[cfg(target_arch = "x86_64")]
    {
        Ok(table::ARCH)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Err(no_profile())
    }
}

/// Whether the running kernel's release is at least `major.minor`.
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let uname = rustix::system::uname();
    let release = uname.release().to_string_lossy();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}

fn compile_err(e: impl std::fmt::Display) -> ExecError {
    ExecError::Seccomp {
        reason: format!("failed to compile the filter: {e}"),
    }
}

/// The BPF programs of `rules`, in the order they must be installed: the allowlist
/// (default `EPERM`), then one program per other errno (default allow). Where two
/// programs both return an errno, the kernel keeps the one installed last
/// (seccomp(2), "the first-seen action value of highest precedence" in reverse order),
/// so `clone3` fails with `ENOSYS`, not `EPERM`.
pub(crate) fn compile(rules: &[SyscallRule]) -> Result<Vec<BpfProgram>, ExecError> {
    let arch = target_arch()?;
    let mut allowed: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let mut errnos: BTreeMap<u32, BTreeMap<i64, Vec<SeccompRule>>> = BTreeMap::new();
    for rule in rules {
        let condition = |arg: u8, op: SeccompCmpOp, value: u64| {
            SeccompCondition::new(arg, SeccompCmpArgLen::Qword, op, value)
                .and_then(|c| SeccompRule::new(vec![c]))
                .map_err(compile_err)
        };
        match rule.treatment {
            Treatment::Allow => {
                allowed.insert(rule.number, Vec::new());
            }
            Treatment::AllowIfAnyOf { arg, values } => {
                let alternatives = values
                    .iter()
                    .map(|v| condition(arg, SeccompCmpOp::Eq, *v))
                    .collect::<Result<_, _>>()?;
                allowed.insert(rule.number, alternatives);
            }
            Treatment::AllowIfNone { arg, mask } => {
                let only = condition(arg, SeccompCmpOp::MaskedEq(mask), 0)?;
                allowed.insert(rule.number, vec![only]);
            }
            Treatment::Errno(errno) => {
                errnos
                    .entry(errno)
                    .or_default()
                    .insert(rule.number, Vec::new());
            }
        }
    }
    let mut programs = Vec::new();
    let filter = SeccompFilter::new(
        allowed,
        SeccompAction::Errno(DEFAULT_ERRNO),
        SeccompAction::Allow,
        arch,
    )
    .map_err(compile_err)?;
    programs.push(BpfProgram::try_from(filter).map_err(compile_err)?);
    for (errno, calls) in errnos {
        let filter = SeccompFilter::new(
            calls,
            SeccompAction::Allow,
            SeccompAction::Errno(errno),
            arch,
        )
        .map_err(compile_err)?;
        programs.push(BpfProgram::try_from(filter).map_err(compile_err)?);
    }
    Ok(programs)
}

fn bundle_err(e: oci_spec::OciSpecError) -> ExecError {
    ExecError::Seccomp {
        reason: format!("failed to describe the profile for runc: {e}"),
    }
}

/// The same rules as `linux.seccomp` of an OCI runtime config.
pub(crate) fn oci(rules: &[SyscallRule]) -> Result<LinuxSeccomp, ExecError> {
    let mut plain = Vec::new();
    let mut syscalls = Vec::new();
    for rule in rules {
        let entry = |args: Vec<oci_spec::runtime::LinuxSeccompArg>| {
            LinuxSyscallBuilder::default()
                .names(vec![rule.name.to_owned()])
                .action(LinuxSeccompAction::ScmpActAllow)
                .args(args)
                .build()
                .map_err(bundle_err)
        };
        match rule.treatment {
            Treatment::Allow => plain.push(rule.name.to_owned()),
            // Conditions of one entry must all hold: one entry per allowed value.
            Treatment::AllowIfAnyOf { arg, values } => {
                for value in values {
                    let arg = LinuxSeccompArgBuilder::default()
                        .index(usize::from(arg))
                        .value(*value)
                        .op(LinuxSeccompOperator::ScmpCmpEq)
                        .build()
                        .map_err(bundle_err)?;
                    syscalls.push(entry(vec![arg])?);
                }
            }
            Treatment::AllowIfNone { arg, mask } => {
                let arg = LinuxSeccompArgBuilder::default()
                    .index(usize::from(arg))
                    .value(mask)
                    .value_two(0u64)
                    .op(LinuxSeccompOperator::ScmpCmpMaskedEq)
                    .build()
                    .map_err(bundle_err)?;
                syscalls.push(entry(vec![arg])?);
            }
            Treatment::Errno(errno) => syscalls.push(
                LinuxSyscallBuilder::default()
                    .names(vec![rule.name.to_owned()])
                    .action(LinuxSeccompAction::ScmpActErrno)
                    .errno_ret(errno)
                    .build()
                    .map_err(bundle_err)?,
            ),
        }
    }
    syscalls.insert(
        0,
        LinuxSyscallBuilder::default()
            .names(plain)
            .action(LinuxSeccompAction::ScmpActAllow)
            .build()
            .map_err(bundle_err)?,
    );
    LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActErrno)
        .default_errno_ret(DEFAULT_ERRNO)
        // As docker's amd64 profile: 32-bit (i386, x32) programs get the same rules.
        .architectures(vec![
            Arch::ScmpArchX86_64,
            Arch::ScmpArchX86,
            Arch::ScmpArchX32,
        ])
        .syscalls(syscalls)
        .build()
        .map_err(bundle_err)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn profile_leaves_out_what_docker_blocks_and_compiles() {
        let rules = profile().unwrap();
        let named = |name: &str| rules.iter().find(|r| r.name == name).map(|r| r.treatment);
        for blocked in [
            "mount",
            "umount2",
            "pivot_root",
            "kexec_load",
            "init_module",
            "finit_module",
            "delete_module",
            "bpf",
            "perf_event_open",
            "keyctl",
            "add_key",
            "request_key",
            "setns",
            "unshare",
            "reboot",
            "swapon",
            "swapoff",
            "open_by_handle_at",
            "acct",
            "settimeofday",
            "clock_settime",
            "fsopen",
            "fsmount",
            "move_mount",
            "open_tree",
            "fspick",
            "fsconfig",
            "mount_setattr",
            "userfaultfd",
            "io_uring_setup",
        ] {
            assert_eq!(named(blocked), None, "{blocked} is allowed");
        }
        assert_eq!(named("read"), Some(Treatment::Allow));
        assert_eq!(named("clone3"), Some(Treatment::Errno(libc::ENOSYS as u32)));
        assert!(matches!(
            named("clone"),
            Some(Treatment::AllowIfNone { arg: 0, .. })
        ));
        let programs = compile(&rules).unwrap();
        assert_eq!(programs.len(), 2);
        let json = serde_json::to_value(oci(&rules).unwrap()).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["defaultErrnoRet"], 1);
        assert!(json["syscalls"][0]["names"].as_array().unwrap().len() > 250);
    }
}
