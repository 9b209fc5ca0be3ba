//! `RUN --mount=type=ssh`: an ssh agent of the build (`--ssh ID=SOCKET`) reachable from
//! the step through a socket of its own.
//!
//! As BuildKit's ssh forwarding, the step does not get the agent's socket itself but a
//! proxy socket with the mount's owner and mode (so a `USER` step can reach an agent
//! only root may open), created in the step's scratch space, bound on the target
//! (`/run/buildkit/ssh_agent.<N>` by default); `SSH_AUTH_SOCK` names the first ssh
//! mount's target. Every
//! connection to it is relayed to the agent. The proxy stops when the step's mounts are
//! dropped; neither socket is in a layer (the mount point is removed with the step's
//! other file stubs).

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use rbuild_dockerfile::Mount;

use super::{MountError, MountInputs, StepMounts, io_err, parse_id, parse_octal};
use crate::exec::BindMount;
use crate::solver::request::DEFAULT_SSH_ID;

/// BuildKit's directory of forwarded agent sockets (`dockerfile2llb`,
/// `/run/buildkit/ssh_agent.<N>`, N counting the step's ssh mounts).
const SSH_SOCKET_PREFIX: &str = "/run/buildkit/ssh_agent.";

/// BuildKit's default mode of the forwarded socket.
const SSH_MODE: u32 = 0o600;

/// A relay from a socket of the step to an agent; stops (and removes its socket) when
/// dropped.
pub(crate) struct AgentProxy {
    /// The listening socket (a second handle), shut down to stop the accept loop.
    listener: UnixListener,
    /// The directory holding the socket; declared after `listener`, so removed after it
    /// is closed.
    dir: tempfile::TempDir,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AgentProxy {
    /// Listens on a new socket and relays each connection to `agent`.
    fn start(agent: PathBuf) -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("rbuild-ssh-").tempdir()?;
        let listener = UnixListener::bind(dir.path().join("agent.sock"))?;
        let handle = listener.try_clone()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            loop {
                let client = listener.accept();
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let client = match client {
                    Ok((client, _)) => client,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        // Out of descriptors, say: wait rather than spin.
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        continue;
                    }
                };
                let Ok(upstream) = UnixStream::connect(&agent) else {
                    // The client sees the connection close: the agent is gone.
                    continue;
                };
                relay(client, upstream);
            }
        });
        Ok(AgentProxy {
            listener: handle,
            dir,
            stop,
            thread: Some(thread),
        })
    }

    /// The directory of the socket.
    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The socket the step's mount binds.
    fn socket(&self) -> PathBuf {
        self.dir.path().join("agent.sock")
    }
}

/// Copies both ways between `a` and `b` on two threads, each closing the other side's
/// writing half when its reading side ends.
fn relay(a: UnixStream, b: UnixStream) {
    let pair =
        |from: &UnixStream, to: &UnixStream| Some((from.try_clone().ok()?, to.try_clone().ok()?));
    let (Some((mut a_read, mut b_write)), Some((mut b_read, mut a_write))) =
        (pair(&a, &b), pair(&b, &a))
    else {
        return;
    };
    std::thread::spawn(move || {
        let _ = io::copy(&mut a_read, &mut b_write);
        let _ = b_write.shutdown(std::net::Shutdown::Write);
    });
    std::thread::spawn(move || {
        let _ = io::copy(&mut b_read, &mut a_write);
        let _ = a_write.shutdown(std::net::Shutdown::Write);
    });
}

impl Drop for AgentProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Shutting a listening socket down fails its pending accept (Linux), so the loop
        // wakes and sees the flag.
        // SAFETY: shutdown(2) on a descriptor this proxy owns.
        unsafe { libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR) };
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sets up the `index`-th ssh mount of a step: skipped (but for `SSH_AUTH_SOCK`) when
/// the build has no agent of its id and the mount is not required.
pub(crate) fn ssh_mount(
    mount: &Mount,
    index: usize,
    inputs: &MountInputs<'_>,
    out: &mut StepMounts,
) -> Result<(), MountError> {
    let id = mount
        .id
        .as_deref()
        .filter(|i| !i.is_empty())
        .unwrap_or(DEFAULT_SSH_ID);
    let target = mount
        .target
        .clone()
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| format!("{SSH_SOCKET_PREFIX}{index}"));
    // BuildKit names the first ssh mount's target in SSH_AUTH_SOCK, whether or not its
    // agent was given (differential case run-ssh).
    if index == 0 {
        out.env.push(("SSH_AUTH_SOCK".to_owned(), target.clone()));
    }
    let Some(agent) = inputs.ssh.iter().find(|a| a.id == id) else {
        if mount.required {
            return Err(MountError::SshMissing { id: id.to_owned() });
        }
        return Ok(());
    };
    let mode = parse_octal("mode", mount.mode.as_deref(), SSH_MODE, &target)?;
    let uid = parse_id("uid", mount.uid.as_deref(), &target)?;
    let gid = parse_id("gid", mount.gid.as_deref(), &target)?;
    check_agent(id, &agent.socket)?;
    let proxy = AgentProxy::start(agent.socket.clone())
        .map_err(io_err("listen on a socket for", &agent.socket))?;
    let socket = proxy.socket();
    let dir = proxy.dir().to_path_buf();
    out.proxies.push(proxy);
    std::os::unix::fs::chown(&socket, Some(uid), Some(gid))
        .map_err(io_err("change owner of", &socket))?;
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(mode))
        .map_err(io_err("change mode of", &socket))?;
    // The socket's directory is the step's own: let the mount's owner through it.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))
        .map_err(io_err("change mode of", &dir))?;
    out.binds.push(BindMount {
        source: socket,
        target,
        readonly: false,
        movable: false,
        owner: None,
    });
    Ok(())
}

/// Fails early, naming the agent, when its socket cannot be reached.
fn check_agent(id: &str, socket: &Path) -> Result<(), MountError> {
    UnixStream::connect(socket)
        .map(drop)
        .map_err(|source| MountError::SshAgent {
            id: id.to_owned(),
            socket: socket.to_path_buf(),
            source,
        })
}
