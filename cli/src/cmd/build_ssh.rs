//! `--ssh ID[=SOCKET|KEY[,KEY...]]`: the ssh agents a build may forward, as buildx
//! reads them. `--ssh default` forwards `$SSH_AUTH_SOCK`; a socket path forwards that
//! agent; key files are loaded into an ssh-agent started for the build (openssh's, so
//! the keys are handled by the tool made for them) and stopped after it.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rbuild_core::solver::SshAgent;

/// One `--ssh` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SshArg {
    id: String,
    paths: Vec<PathBuf>,
}

/// Parses `ID[=PATH[,PATH...]]`.
pub(crate) fn ssh_arg(value: &str) -> Result<SshArg, String> {
    let (id, paths) = value.split_once('=').unwrap_or((value, ""));
    if id.is_empty() {
        return Err(format!("ssh {value:?} has no id (try --ssh default)"));
    }
    let paths = paths
        .split(',')
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .collect();
    Ok(SshArg {
        id: id.to_owned(),
        paths,
    })
}

/// The agents of a build; the ones started for key files stop when this is dropped.
#[derive(Default)]
pub(crate) struct Agents {
    /// What the request forwards.
    pub agents: Vec<SshAgent>,
    started: Vec<(Child, tempfile::TempDir)>,
}

impl Drop for Agents {
    fn drop(&mut self) {
        for (child, _) in &mut self.started {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Turns the `--ssh` values into agent sockets, starting agents for key files.
pub(crate) fn agents(args: &[SshArg]) -> anyhow::Result<Agents> {
    let mut out = Agents::default();
    for arg in args {
        let socket = match arg.paths.as_slice() {
            [] => {
                let Some(sock) = std::env::var_os("SSH_AUTH_SOCK") else {
                    bail!(
                        "--ssh {}: SSH_AUTH_SOCK is not set (no agent to forward)",
                        arg.id
                    );
                };
                PathBuf::from(sock)
            }
            [one] if is_socket(one) => one.clone(),
            keys => start_agent(&arg.id, keys, &mut out)?,
        };
        out.agents.push(SshAgent {
            id: arg.id.clone(),
            socket,
        });
    }
    Ok(out)
}

fn is_socket(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

/// Starts `ssh-agent` on a socket of its own and loads `keys` into it.
fn start_agent(id: &str, keys: &[PathBuf], out: &mut Agents) -> anyhow::Result<PathBuf> {
    for key in keys {
        if !key.is_file() {
            bail!(
                "--ssh {id}: {} is neither an agent socket nor a key file",
                key.display()
            );
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("rbuild-ssh-")
        .tempdir()
        .context("creating a directory for the build's ssh agent")?;
    let socket = dir.path().join("agent.sock");
    let mut agent = Command::new("ssh-agent");
    agent
        .arg("-D")
        .arg("-a")
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // The agent holds the keys: it ends with rbuild, even killed (-9), rather than stay
    // behind with them loaded.
    // SAFETY: prctl is async-signal-safe and touches only the child's own state.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut agent, || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // rbuild may have died before the call: then nothing would signal.
            if libc::getppid() == 1 {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let child = agent
        .spawn()
        .with_context(|| format!("--ssh {id}: starting ssh-agent (install openssh-client)"))?;
    out.started.push((child, dir));
    // Ready once it accepts: the socket file exists from bind(2), before listen(2).
    let start = Instant::now();
    while !is_socket(&socket) || std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if start.elapsed() > Duration::from_secs(10) {
            bail!(
                "--ssh {id}: ssh-agent did not listen on {}",
                socket.display()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for key in keys {
        let added = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &socket)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("--ssh {id}: running ssh-add"))?;
        if !added.status.success() {
            bail!(
                "--ssh {id}: ssh-add {} failed: {}",
                key.display(),
                String::from_utf8_lossy(&added.stderr).trim()
            );
        }
    }
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_values_read_as_buildx_reads_them() {
        assert_eq!(
            ssh_arg("default"),
            Ok(SshArg {
                id: "default".to_owned(),
                paths: Vec::new()
            })
        );
        assert_eq!(
            ssh_arg("deploy=/run/a.sock").map(|a| a.paths),
            Ok(vec![PathBuf::from("/run/a.sock")])
        );
        assert_eq!(ssh_arg("default=/k1,/k2").map(|a| a.paths.len()), Ok(2));
        assert!(ssh_arg("=/x").is_err());
    }
}
