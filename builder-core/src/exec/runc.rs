//! The OCI runtime back end: a runtime bundle run by `runc`.
//!
//! The step's root is assembled exactly as for the sandbox (same stubs, same overlay),
//! but mounted by the init of a private mount and PID namespace in which `runc run`
//! then executes: the overlay never appears on the host, and killing the monitor kills
//! `runc` and the container with it (both live in that PID namespace). `config.json` is
//! written with oci-spec's runtime types: the same `/proc`, `/dev`, `/sys` and /etc
//! files, user, environment, working directory, host name, network and limits.
//!
//! Both give a step docker's default capabilities and seccomp profile (`caps`,
//! `seccomp`), here as `process.capabilities` and `linux.seccomp`. Difference from the
//! sandbox: runc applies its default masked and read-only paths under /proc and /sys.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use oci_spec::runtime::{
    LinuxCapabilitiesBuilder, LinuxMemoryBuilder, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxPidsBuilder, LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, RootBuilder,
    Spec, UserBuilder,
};

use super::monitor::{Launch, launch};
use super::plan::{Op, Plan};
use super::sandbox::{ETC_FILES, etc_file, root_mount, step_credentials, step_env};
use super::stubs::Stubs;
use super::user::Credentials;
use super::{ExecError, Executor, ExitStatus, Network, OutputSink, RunSpec, Security};
use super::{caps, seccomp};
use crate::snapshot::Snapshot;

/// Where Debian installs runc.
pub const DEFAULT_RUNC: &str = "/usr/sbin/runc";

static NEXT: AtomicU64 = AtomicU64::new(0);

/// Runs steps with an OCI runtime (`runc`).
#[derive(Debug, Clone)]
pub struct RuncExecutor {
    runtime: PathBuf,
}

impl Default for RuncExecutor {
    fn default() -> Self {
        RuncExecutor {
            runtime: PathBuf::from(DEFAULT_RUNC),
        }
    }
}

impl RuncExecutor {
    /// An executor running `runtime` (a runc-compatible binary).
    pub fn new(runtime: impl Into<PathBuf>) -> Self {
        RuncExecutor {
            runtime: runtime.into(),
        }
    }
}

fn bundle_err(path: &Path) -> impl FnOnce(oci_spec::OciSpecError) -> ExecError + '_ {
    move |source| ExecError::Bundle {
        path: path.to_path_buf(),
        source,
    }
}

impl Executor for RuncExecutor {
    fn run(
        &self,
        snapshot: &Snapshot,
        spec: &RunSpec,
        sink: &mut dyn OutputSink,
    ) -> Result<ExitStatus, ExecError> {
        if let Some(mount) = spec.mounts.first() {
            return Err(ExecError::Bind {
                source_path: mount.source.clone(),
                target: mount.target.clone(),
                reason: "bind mounts are not supported by the runc executor",
            });
        }
        if spec.terminal.is_some() {
            return Err(ExecError::Setup {
                stage: "open a terminal (the runc executor gives none; use the sandbox)".to_owned(),
                source: std::io::Error::from_raw_os_error(libc::ENOTSUP),
            });
        }
        if let Some(mount) = spec.tmpfs.first() {
            return Err(ExecError::Bind {
                source_path: PathBuf::from("tmpfs"),
                target: mount.target.clone(),
                reason: "tmpfs mounts are not supported by the runc executor",
            });
        }
        if let Some(mount) = spec.files.first() {
            return Err(ExecError::Bind {
                source_path: PathBuf::from("(secret)"),
                target: mount.target.clone(),
                reason: "secret mounts are not supported by the runc executor",
            });
        }
        if let Some(mount) = spec.trees.first() {
            return Err(ExecError::Bind {
                source_path: mount.source.clone(),
                target: mount.target.clone(),
                reason: "bind mounts of stages and images are not supported by the runc executor",
            });
        }
        if !self.runtime.is_file() {
            return Err(ExecError::Io {
                action: "find the OCI runtime",
                path: self.runtime.clone(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        sweep_stale_cgroups();
        let argv = spec.argv()?;
        let view = snapshot.view();
        let creds = step_credentials(&view, spec)?;
        let mut stubs = Stubs::new(snapshot.root().writable_dir());
        let result = (|| {
            let proc_ok = stubs.ensure(&view, Path::new("proc"), true)?;
            let dev_ok = stubs.ensure(&view, Path::new("dev"), true)?;
            let sys_ok = stubs.ensure(&view, Path::new("sys"), true)?;
            let mut etc = Vec::new();
            for rel in ETC_FILES {
                let source = snapshot.scratch().join(rel.replace('/', "-"));
                fs::write(&source, etc_file(rel, &spec.hostname)).map_err(|e| ExecError::Io {
                    action: "write",
                    path: source.clone(),
                    source: e,
                })?;
                if stubs.ensure(&view, Path::new(rel), false)? {
                    etc.push((rel, source));
                }
            }
            stubs.seal()?;
            let keep = |m: &Mount| {
                let d = m.destination();
                (proc_ok || !d.starts_with("/proc"))
                    && (dev_ok || !d.starts_with("/dev"))
                    && (sys_ok || !d.starts_with("/sys"))
            };
            self.run_bundle(snapshot, spec, &creds, &argv, keep, &etc, sink)
        })();
        let cleaned = stubs.remove();
        let status = result?;
        cleaned?;
        Ok(status)
    }
}

impl RuncExecutor {
    #[allow(clippy::too_many_arguments)]
    fn run_bundle(
        &self,
        snapshot: &Snapshot,
        spec: &RunSpec,
        creds: &Credentials,
        argv: &[String],
        keep: impl Fn(&Mount) -> bool,
        etc: &[(&str, PathBuf)],
        sink: &mut dyn OutputSink,
    ) -> Result<ExitStatus, ExecError> {
        let scratch = snapshot.scratch();
        let mountpoint = scratch.join("rootfs");
        let bundle = scratch.join("bundle");
        let state = scratch.join("runc-state");
        for dir in [&mountpoint, &bundle, &state] {
            fs::create_dir_all(dir).map_err(|source| ExecError::Io {
                action: "create directory",
                path: dir.clone(),
                source,
            })?;
        }
        let id = format!(
            "rbuild-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let config_path = bundle.join("config.json");
        let config = self.config(spec, creds, argv, &mountpoint, &id, keep, etc)?;
        config
            .save(&config_path)
            .map_err(bundle_err(&config_path))?;

        // runc finds its processes by their pids in this PID namespace: it needs a /proc
        // of its own (mounted in the private mount namespace only).
        let mut ops = vec![
            Op::MakeRootPrivate,
            Op::Mount {
                source: c"proc".into(),
                target: c"/proc".into(),
                fstype: c"proc".into(),
                flags: libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                data: None,
            },
        ];
        ops.push(root_mount(snapshot, &mountpoint)?);
        let runtime_argv: Vec<String> = [
            self.runtime.display().to_string(),
            "--root".to_owned(),
            state.display().to_string(),
            "run".to_owned(),
            "--bundle".to_owned(),
            bundle.display().to_string(),
            id.clone(),
        ]
        .into();
        let status = launch(
            Launch {
                argv: &runtime_argv,
                env: vec![(
                    "PATH".to_owned(),
                    "/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
                )],
                plan: Plan { ops },
                clone_flags: libc::CLONE_NEWNS | libc::CLONE_NEWPID,
                nested_init: true,
                id_map: None,
                limits: &Default::default(),
                cancel: &spec.cancel,
                inherit_stdin: spec.inherit_stdin,
                merge_output: spec.merge_output,
                console: None,
            },
            sink,
        );
        remove_runc_cgroups(&id);
        status
    }

    #[allow(clippy::too_many_arguments)]
    fn config(
        &self,
        spec: &RunSpec,
        creds: &Credentials,
        argv: &[String],
        mountpoint: &Path,
        id: &str,
        keep: impl Fn(&Mount) -> bool,
        etc: &[(&str, PathBuf)],
    ) -> Result<Spec, ExecError> {
        let path = mountpoint;
        let err = bundle_err(path);
        let (bounding, permitted, inheritable) =
            caps::oci_sets(spec.security, creds.uid, spec.network);
        let capabilities = LinuxCapabilitiesBuilder::default()
            .bounding(bounding)
            .effective(permitted.clone())
            .permitted(permitted)
            .inheritable(inheritable)
            .ambient(std::collections::HashSet::new())
            .build();
        let user = UserBuilder::default()
            .uid(creds.uid)
            .gid(creds.gid)
            .additional_gids(creds.groups.clone())
            .build();
        let env: Vec<String> = step_env(spec, creds)
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let process = (|| {
            ProcessBuilder::default()
                .terminal(false)
                .args(argv.to_vec())
                .env(env)
                .cwd(spec.workdir.clone())
                .user(user?)
                .capabilities(capabilities?)
                .no_new_privileges(false)
                .rlimits(Vec::new())
                .build()
        })()
        .map_err(err)?;
        let root = RootBuilder::default()
            .path(mountpoint.to_path_buf())
            .readonly(false)
            .build()
            .map_err(bundle_err(path))?;
        let mut mounts: Vec<Mount> = oci_spec::runtime::get_default_mounts()
            .into_iter()
            .filter(|m| keep(m))
            .map(|mut m| {
                // BuildKit's insecure mode gives a writable sysfs.
                if spec.security == Security::Insecure && m.typ().as_deref() == Some("sysfs") {
                    let options = m.options().clone().unwrap_or_default();
                    m.set_options(Some(options.into_iter().filter(|o| o != "ro").collect()));
                }
                m
            })
            .collect();
        for (rel, source) in etc {
            mounts.push(
                MountBuilder::default()
                    .destination(Path::new("/").join(rel))
                    .typ("bind")
                    .source(source.clone())
                    .options(vec!["rbind".to_owned(), "rw".to_owned()])
                    .build()
                    .map_err(bundle_err(path))?,
            );
        }
        let mut config = Spec::default();
        config.set_process(Some(process));
        config.set_root(Some(root));
        config.set_hostname(Some(spec.hostname.clone()));
        config.set_mounts(Some(mounts));
        let mut namespaces = Vec::new();
        for typ in [
            LinuxNamespaceType::Pid,
            LinuxNamespaceType::Ipc,
            LinuxNamespaceType::Uts,
            LinuxNamespaceType::Mount,
        ] {
            namespaces.push(
                LinuxNamespaceBuilder::default()
                    .typ(typ)
                    .build()
                    .map_err(bundle_err(path))?,
            );
        }
        if spec.network == Network::None {
            namespaces.push(
                LinuxNamespaceBuilder::default()
                    .typ(LinuxNamespaceType::Network)
                    .build()
                    .map_err(bundle_err(path))?,
            );
        }
        let mut resources = LinuxResourcesBuilder::default();
        if let Some(bytes) = spec.limits.memory {
            resources = resources.memory(
                LinuxMemoryBuilder::default()
                    .limit(bytes as i64)
                    .build()
                    .map_err(bundle_err(path))?,
            );
        }
        if let Some(pids) = spec.limits.pids {
            resources = resources.pids(
                LinuxPidsBuilder::default()
                    .limit(pids as i64)
                    .build()
                    .map_err(bundle_err(path))?,
            );
        }
        let resources = resources.build().map_err(bundle_err(path))?;
        let seccomp = match spec.security {
            Security::Sandbox => Some(seccomp::oci(&seccomp::profile()?)?),
            Security::Insecure => None,
        };
        if let Some(linux) = config.linux_mut() {
            linux.set_seccomp(seccomp);
            if spec.security == Security::Insecure {
                // BuildKit's insecure mode: /proc and /sys whole.
                linux.set_masked_paths(Some(Vec::new()));
                linux.set_readonly_paths(Some(Vec::new()));
            }
            linux.set_namespaces(Some(namespaces));
            linux.set_cgroups_path(Some(PathBuf::from(format!("/{id}"))));
            linux.set_resources(Some(resources));
        }
        Ok(config)
    }
}

/// runc removes its cgroups when the container ends normally, not when it is killed:
/// remove what is left of `/<id>` in every hierarchy, retrying for a bounded while as
/// the kernel lets go of a group only once its last process is reaped.
fn remove_runc_cgroups(id: &str) {
    let Ok(entries) = fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut dirs = vec![Path::new("/sys/fs/cgroup").join(id)];
    dirs.extend(entries.flatten().map(|e| e.path().join(id)));
    for dir in dirs {
        for _ in 0..200 {
            match fs::remove_dir(&dir) {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                _ => break,
            }
        }
    }
}

/// Removes the runc groups of earlier rbuild processes that were killed before they
/// could clean up (named `rbuild-<pid>-<n>`, pid no longer alive).
fn sweep_stale_cgroups() {
    let Ok(hierarchies) = fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for hierarchy in hierarchies.flatten() {
        let Ok(groups) = fs::read_dir(hierarchy.path()) else {
            continue;
        };
        for group in groups.flatten() {
            let name = group.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.strip_prefix("rbuild-"))
                .and_then(|n| n.split('-').next())
                .and_then(|p| p.parse::<i32>().ok())
            else {
                continue;
            };
            // SAFETY: signal 0 only checks that the process exists.
            let gone = unsafe { libc::kill(pid, 0) } != 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
            if gone {
                let _ = fs::remove_dir(group.path());
            }
        }
    }
}
