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
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use rbuild_dockerfile::Mount;

use super::{MountError, MountInputs, StepMounts, io_err, parse_id, parse_octal};
use crate::exec::{BindMount, SocketRelay};
use crate::solver::request::DEFAULT_SSH_ID;

/// BuildKit's directory of forwarded agent sockets (`dockerfile2llb`,
/// `/run/buildkit/ssh_agent.<N>`, N counting the step's ssh mounts).
const SSH_SOCKET_PREFIX: &str = "/run/buildkit/ssh_agent.";

/// The proxy's socket in its directory.
const SOCKET_NAME: &str = "agent.sock";

/// BuildKit's default mode of the forwarded socket.
const SSH_MODE: u32 = 0o600;

/// A relay from a socket of the step to an agent; stops (and removes its socket) when
/// dropped.
pub(crate) struct AgentProxy {
    /// Held for its relaying (see [`SocketRelay`]'s `Drop`).
    _relay: SocketRelay,
    /// The directory holding the socket; declared after the relay, so removed after it
    /// stops.
    dir: tempfile::TempDir,
}

impl AgentProxy {
    /// Listens on a new socket and relays each connection to `agent`.
    fn start(agent: PathBuf) -> io::Result<Self> {
        let dir = tempfile::Builder::new().prefix("rbuild-ssh-").tempdir()?;
        let fd = std::fs::File::open(dir.path())?;
        let relay = SocketRelay::listen_in(&fd, Path::new(SOCKET_NAME), agent)?;
        Ok(AgentProxy { _relay: relay, dir })
    }

    /// The directory of the socket.
    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The socket the step's mount binds.
    fn socket(&self) -> PathBuf {
        self.dir.path().join(SOCKET_NAME)
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
    // Where owners cannot be given (crate::fakeroot) the socket stays the build user's,
    // which a step sees as its own, and the mount's owner is shown instead.
    let chown = !crate::fakeroot::active();
    if chown {
        std::os::unix::fs::chown(&socket, Some(uid), Some(gid))
            .map_err(io_err("change owner of", &socket))?;
    }
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
        // Shown to a step under proot instead (see exec::stat_calls).
        owner: (!chown && (uid, gid) != (0, 0)).then_some((uid, gid)),
        relay_to: Some(agent.socket.clone()),
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
