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
    started: Vec<Started>,
}

/// An ssh-agent started for key files: its lifeline (the command it runs, see
/// [`lifeline`]) and its own pid.
struct Started {
    lifeline: Child,
    agent_pid: Option<i32>,
    /// The agent's socket directory, removed after it stops.
    _dir: tempfile::TempDir,
}

impl Drop for Agents {
    fn drop(&mut self) {
        for started in &mut self.started {
            if let Some(pid) = started.agent_pid {
                // SAFETY: kill(2) of the agent this build started (still our lifeline's
                // parent: it ends only after the lifeline, reaped below).
                unsafe { libc::kill(pid, libc::SIGTERM) };
            }
            let _ = started.lifeline.kill();
            let _ = started.lifeline.wait();
        }
    }
}

/// Set in the environment of the command ssh-agent runs: that command is rbuild's
/// lifeline ([`lifeline`]), not a CLI invocation.
pub(crate) const LIFELINE_ENV: &str = "RBUILD_SSH_AGENT_LIFELINE";

/// The command an ssh-agent rbuild started runs: prints the agent's pid (which
/// ssh-agent gives its command in `SSH_AGENT_PID`), then waits until its standard
/// input, a pipe from rbuild, closes (rbuild ended, however) and exits, and with it,
/// within openssh's 10 s check, the agent.
pub(crate) fn lifeline() -> std::process::ExitCode {
    use std::io::{Read, Write};
    let pid = std::env::var("SSH_AGENT_PID").unwrap_or_default();
    let mut out = std::io::stdout();
    if writeln!(out, "{pid}").and_then(|()| out.flush()).is_err() {
        return std::process::ExitCode::FAILURE;
    }
    let _ = std::io::copy(&mut std::io::stdin().lock().by_ref(), &mut std::io::sink());
    std::process::ExitCode::SUCCESS
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
    // The agent holds the keys, so it must not outlive rbuild, even killed (-9): it is
    // started with a command, rbuild itself as the lifeline below, and ends when that
    // command has ended (openssh checks every 10 s); the lifeline ends when its standard
    // input, a pipe from rbuild, closes. (Debian's ssh-agent is set-gid, so a parent-death
    // signal would not survive its exec.)
    let exe = std::env::current_exe().context("finding rbuild's own program for ssh-agent")?;
    let mut child = Command::new("ssh-agent")
        .arg("-a")
        .arg(&socket)
        .arg(exe)
        .env(LIFELINE_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("--ssh {id}: starting ssh-agent (install openssh-client)"))?;
    // The lifeline's first line: the agent's pid, to stop it at the build's end.
    let mut line = String::new();
    let read = child
        .stdout
        .take()
        .map(|out| std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line));
    let agent_pid = line.trim().parse::<i32>().ok().filter(|pid| *pid > 1);
    out.started.push(Started {
        lifeline: child,
        agent_pid,
        _dir: dir,
    });
    if agent_pid.is_none() {
        bail!(
            "--ssh {id}: ssh-agent did not start ({})",
            match read {
                Some(Err(e)) => e.to_string(),
                _ => format!("its command said {:?}", line.trim()),
            }
        );
    }
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
