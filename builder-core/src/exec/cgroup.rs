//! Memory and process-count limits through cgroups, v2 or v1.
//!
//! A pure cgroup v2 host (`/sys/fs/cgroup/cgroup.controllers` present) gets one group with
//! `memory.max` and `pids.max`. On a v1 or hybrid host (this project's machines: v1
//! controllers under `/sys/fs/cgroup/{memory,pids}`, a v2 mount without controllers) a
//! group is made under each controller's hierarchy. The step's monitor joins them before
//! it creates the step's init, so every process of the step is counted.

use std::fs;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::{ExecError, Limits};

/// cgroup v2 root on a unified host.
const V2_ROOT: &str = "/sys/fs/cgroup";
/// cgroup v1 hierarchies of the two controllers used.
const V1_MEMORY: &str = "/sys/fs/cgroup/memory";
const V1_PIDS: &str = "/sys/fs/cgroup/pids";

static NEXT: AtomicU64 = AtomicU64::new(0);

/// The groups of one step.
#[derive(Debug)]
pub(crate) struct Cgroups {
    dirs: Vec<PathBuf>,
    /// Open `cgroup.procs` files the monitor writes "0" to (joining itself).
    pub procs: Vec<OwnedFd>,
}

fn write(path: &Path, value: &str) -> Result<(), ExecError> {
    fs::write(path, value).map_err(|source| ExecError::Io {
        action: "write cgroup file",
        path: path.to_path_buf(),
        source,
    })
}

impl Cgroups {
    /// Creates the groups `limits` needs; `None` when there is no limit.
    pub fn create(limits: &Limits) -> Result<Option<Cgroups>, ExecError> {
        if limits.memory.is_none() && limits.pids.is_none() {
            return Ok(None);
        }
        let name = format!(
            "rbuild-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut groups = Cgroups {
            dirs: Vec::new(),
            procs: Vec::new(),
        };
        let result = groups.fill(limits, &name);
        match result {
            Ok(()) => Ok(Some(groups)),
            Err(e) => {
                groups.remove();
                Err(e)
            }
        }
    }

    fn fill(&mut self, limits: &Limits, name: &str) -> Result<(), ExecError> {
        if Path::new(V2_ROOT).join("cgroup.controllers").exists() {
            let root = Path::new(V2_ROOT);
            // Controllers must be enabled for the children of the root; harmless if on.
            let _ = fs::write(root.join("cgroup.subtree_control"), "+memory +pids");
            let dir = self.make(&root.join(name))?;
            if let Some(bytes) = limits.memory {
                write(&dir.join("memory.max"), &bytes.to_string())?;
                let _ = fs::write(dir.join("memory.swap.max"), "0");
            }
            if let Some(pids) = limits.pids {
                write(&dir.join("pids.max"), &pids.to_string())?;
            }
        } else {
            if let Some(bytes) = limits.memory {
                let dir = self.make(&Path::new(V1_MEMORY).join(name))?;
                write(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
                let _ = fs::write(dir.join("memory.swappiness"), "0");
            }
            if let Some(pids) = limits.pids {
                let dir = self.make(&Path::new(V1_PIDS).join(name))?;
                write(&dir.join("pids.max"), &pids.to_string())?;
            }
        }
        Ok(())
    }

    fn make(&mut self, dir: &Path) -> Result<PathBuf, ExecError> {
        fs::create_dir(dir).map_err(|source| ExecError::Io {
            action: "create cgroup",
            path: dir.to_path_buf(),
            source,
        })?;
        self.dirs.push(dir.to_path_buf());
        let procs = dir.join("cgroup.procs");
        let file = fs::OpenOptions::new()
            .write(true)
            .open(&procs)
            .map_err(|source| ExecError::Io {
                action: "open",
                path: procs.clone(),
                source,
            })?;
        self.procs.push(file.into());
        Ok(dir.to_path_buf())
    }

    /// Removes the groups once the step's processes are gone. The kernel may take a
    /// moment to let an emptied group go, so removal is retried for a bounded while.
    pub fn remove(self) {
        drop(self.procs);
        for dir in self.dirs.iter().rev() {
            for _ in 0..200 {
                match fs::remove_dir(dir) {
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    _ => break,
                }
            }
        }
    }
}
