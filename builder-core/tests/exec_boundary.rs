//! The sandbox boundary: from inside a step, try to see or reach the host. Every attempt
//! fails, for both back ends, and each test prints what the step printed. The last test
//! runs the mount probe with `--security=insecure`, where it succeeds: the probes can fail.
//!
//! System calls busybox has no applet for are made by a small static C program
//! (tests/support/probe/probe.c) compiled with the host's gcc.
#![allow(clippy::unwrap_used)]

mod support;

use std::process::Command as Process;

use support::probe::probe_dir;

/// docker's default capability set as /proc/self/status prints it (CHOWN, DAC_OVERRIDE,
/// FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP, NET_BIND_SERVICE, NET_RAW,
/// SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP).
const DOCKER_CAPS: &str = "00000000a80425fb";

/// The same without NET_RAW: what a step on the default network (the host's namespace,
/// confined) keeps (issue 13: AF_PACKET capture of the host's traffic).
const DEFAULT_NETWORK_CAPS: &str = "00000000a80405fb";

/// A host process to look for from the step; killed when dropped.
struct HostProcess(std::process::Child);

impl HostProcess {
    fn start() -> Self {
        HostProcess(Process::new("sleep").arg("600").spawn().unwrap())
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A tmpfs mounted on the host for the test; unmounted when dropped.
struct HostMount(tempfile::TempDir);

impl HostMount {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Process::new("mount")
            .args(["-t", "tmpfs", "rbuild-boundary-probe"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs on the host failed");
        HostMount(dir)
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        let _ = Process::new("umount").arg(self.0.path()).status();
    }
}

macro_rules! boundary_tests {
    ($module:ident, $executor:expr) => {
        mod $module {
            use super::support::exec::{Outcome, base, run_step, shell};
            use super::support::require::require_root;
            use super::*;
            #[allow(unused_imports)]
            use rbuild_core::{
                exec::{Executor, RunSpec, RuncExecutor, SandboxExecutor, Security},
                snapshot::OverlaySnapshotter,
            };

            fn run(spec: &RunSpec) -> Outcome {
                require_root("it uses namespaces, overlay mounts and mknod");
                let base = base();
                let mut lowers = base.lowers.clone();
                lowers.push(probe_dir().to_path_buf());
                let executor: Box<dyn Executor> = Box::new($executor);
                let out = run_step(&OverlaySnapshotter::new(), &*executor, &lowers, spec);
                // Shown with --nocapture, and by a failing test.
                println!(
                    "--- step stdout ---\n{}--- step stderr ---\n{}--- {:?}",
                    out.stdout, out.stderr, out.status
                );
                out
            }

            /// The value of `field` in the step's /proc/self/status.
            fn field<'a>(out: &'a Outcome, field: &str) -> &'a str {
                out.stdout
                    .lines()
                    .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                    .map(str::trim)
                    .unwrap_or_else(|| panic!("no {field} in:\n{}", out.stdout))
            }

            #[test]
            fn root_step_has_dockers_capabilities_and_a_seccomp_filter() {
                let out = run(&shell("cat /proc/self/status"));
                for set in ["CapPrm", "CapEff", "CapBnd"] {
                    assert_eq!(field(&out, set), DEFAULT_NETWORK_CAPS, "{set}");
                }
                let mut host = shell("cat /proc/self/status");
                host.network = rbuild_core::exec::Network::Host;
                let out = run(&host);
                for set in ["CapPrm", "CapEff", "CapBnd"] {
                    assert_eq!(field(&out, set), DOCKER_CAPS, "{set} on the host network");
                }
                // Empty, as docker's since CVE-2022-24769.
                for set in ["CapInh", "CapAmb"] {
                    assert_eq!(field(&out, set), "0000000000000000", "{set}");
                }
                assert_eq!(field(&out, "Seccomp"), "2", "seccomp filter mode");
            }

            #[test]
            fn user_step_has_no_effective_capabilities() {
                let mut spec = shell("cat /proc/self/status");
                spec.user = Some("builder".to_owned());
                let out = run(&spec);
                assert_eq!(field(&out, "CapEff"), "0000000000000000");
                assert_eq!(field(&out, "CapPrm"), "0000000000000000");
                assert_eq!(field(&out, "CapInh"), "0000000000000000");
                assert_eq!(field(&out, "CapBnd"), DEFAULT_NETWORK_CAPS);
                assert_eq!(field(&out, "Seccomp"), "2");
            }

            #[test]
            fn host_process_is_neither_visible_nor_traceable() {
                let host = HostProcess::start();
                let pid = host.pid();
                let out = run(&shell(&format!(
                    "ls /proc | grep -x {pid} && echo VISIBLE; \
                     cat /proc/{pid}/cmdline && echo READ; \
                     kill -0 {pid} && echo SIGNALLED; probe ptrace {pid}"
                )));
                assert!(!out.stdout.contains("VISIBLE"), "host pid listed in /proc");
                assert!(!out.stdout.contains("READ"), "host process's cmdline read");
                assert!(!out.stdout.contains("SIGNALLED"), "host process signalled");
                assert!(
                    out.stdout.contains("ptrace: ESRCH"),
                    "ptrace of host pid {pid}"
                );
            }

            #[test]
            fn host_mounts_are_not_visible() {
                let host = HostMount::new();
                let path = host.0.path().to_str().unwrap().to_owned();
                let out = run(&shell("cat /proc/self/mountinfo"));
                assert!(out.status.success());
                assert!(
                    !out.stdout.contains(&path) && !out.stdout.contains("rbuild-boundary-probe"),
                    "the host's tmpfs at {path} is visible"
                );
            }

            #[test]
            fn proc_sys_is_read_only() {
                let out = run(&shell(
                    "v=$(cat /proc/sys/vm/swappiness) && echo $v > /proc/sys/vm/swappiness \
                     && echo WROTE; cat /proc/kcore | head -c1 | wc -c",
                ));
                assert!(!out.stdout.contains("WROTE"), "a host sysctl was written");
                assert!(out.stderr.contains("Read-only file system"));
                // /proc/kcore is masked: nothing to read.
                assert!(out.stdout.ends_with("0\n"));
            }

            #[test]
            fn mounting_a_file_system_fails() {
                let out = run(&shell(
                    "probe mount /tmp; probe fsopen; probe open_tree; probe unshare-mount",
                ));
                for probe in ["mount", "fsopen", "open_tree", "unshare-mount"] {
                    assert!(
                        out.stdout.contains(&format!("{probe}: EPERM")),
                        "{probe} was not refused"
                    );
                }
            }

            #[test]
            fn loading_a_module_and_kernel_keys_and_bpf_fail() {
                let out = run(&shell(
                    "probe finit_module /bin/busybox; probe keyctl; probe bpf; \
                     probe setns /proc/1/ns/mnt",
                ));
                for probe in ["finit_module", "keyctl", "bpf", "setns"] {
                    assert!(
                        out.stdout.contains(&format!("{probe}: EPERM")),
                        "{probe} was not refused"
                    );
                }
            }

            #[test]
            fn new_user_namespaces_fail() {
                let out = run(&shell(
                    "probe unshare-user; probe clone-newuser; probe clone3",
                ));
                assert!(out.stdout.contains("unshare-user: EPERM"));
                assert!(out.stdout.contains("clone-newuser: EPERM"));
                // clone3 cannot be filtered by its flags: the C library falls back to clone.
                assert!(out.stdout.contains("clone3: ENOSYS"));
            }

            #[test]
            fn writes_through_proc_self_root_stay_inside() {
                let host = tempfile::tempdir().unwrap();
                let path = host.path().to_str().unwrap().to_owned();
                let out = run(&shell(&format!(
                    "mkdir -p /proc/self/root/../../..{path} && \
                     echo escaped > /proc/self/root/../../..{path}/escaped && \
                     cat /proc/1/root/..{path}/escaped"
                )));
                assert!(out.status.success(), "{}", out.stderr);
                assert!(
                    !host.path().join("escaped").exists(),
                    "the step wrote on the host"
                );
                let inside = format!("{}/escaped", path.trim_start_matches('/'));
                assert!(
                    out.changes
                        .iter()
                        .any(|c| c.path.to_str() == Some(inside.as_str())),
                    "the write landed in the step's root"
                );
            }

            #[test]
            fn insecure_step_can_mount_so_the_probes_can_fail() {
                let mut spec = shell(
                    "probe mount /tmp; grep -w sysfs /proc/self/mountinfo; cat /proc/self/status",
                );
                spec.security = Security::Insecure;
                let out = run(&spec);
                assert!(out.stdout.contains("mount: ok"));
                // As BuildKit's insecure mode: a writable sysfs.
                let sysfs = out
                    .stdout
                    .lines()
                    .find(|l| l.contains(" - sysfs "))
                    .unwrap();
                assert!(
                    sysfs.split(' ').nth(5).unwrap().starts_with("rw"),
                    "{sysfs}"
                );
                assert_eq!(field(&out, "Seccomp"), "0");
                assert_ne!(field(&out, "CapEff"), DOCKER_CAPS);
            }
        }
    };
}

boundary_tests!(sandbox, SandboxExecutor::new());
boundary_tests!(runc, RuncExecutor::default());
