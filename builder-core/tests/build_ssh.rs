//! `RUN --mount=type=ssh` with a real ssh-agent (openssh-client) holding a generated
//! key: the step lists the identity through its own socket (the boundary probe speaks
//! the agent protocol), `SSH_AUTH_SOCK` names it, nothing of it reaches a layer, and a
//! missing agent is skipped unless the mount is required.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rbuild_core::{
    BuildRequest, BuildResult, ContentStore,
    error_chain::error_chain,
    solver::{ExecutorKind, SshAgent},
};
use support::build::{build_with, busybox_store, context, read, rootfs};
use support::probe::probe_dir;

const KEY_COMMENT: &str = "rbuild-ssh-test-key";

/// An ssh-agent of the test's own, holding one generated key; killed when dropped.
struct Agent {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

fn tool(name: &str) -> Command {
    let path = Path::new("/usr/bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: install openssh-client (scripts/setup-host does)",
        path.display()
    );
    Command::new(path)
}

impl Agent {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("agent.sock");
        let child = tool("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let agent = Agent {
            child,
            socket,
            _dir: dir,
        };
        let start = Instant::now();
        while !agent.socket.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "ssh-agent did not create its socket"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let key = agent._dir.path().join("id");
        let made = tool("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", KEY_COMMENT, "-f"])
            .arg(&key)
            .status()
            .unwrap();
        assert!(made.success(), "ssh-keygen failed");
        let added = tool("ssh-add")
            .arg(&key)
            .env("SSH_AUTH_SOCK", &agent.socket)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(added.success(), "ssh-add failed");
        agent
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn build_ssh(
    store: &ContentStore,
    dockerfile: &str,
    ctx: &Path,
    agents: Vec<SshAgent>,
) -> Result<BuildResult, String> {
    build_ssh_in(store, dockerfile, ctx, agents, ExecutorKind::Sandbox)
}

fn build_ssh_in(
    store: &ContentStore,
    dockerfile: &str,
    ctx: &Path,
    agents: Vec<SshAgent>,
    executor: ExecutorKind,
) -> Result<BuildResult, String> {
    let (result, _) = build_with(store, dockerfile, ctx, |r: &mut BuildRequest| {
        r.options.ssh = agents;
        r.options.no_cache = true;
        r.options.executor = executor;
    });
    result.map_err(|e| error_chain(&e))
}

fn probe_context(dir: &Path) -> PathBuf {
    let ctx = context(dir, &[]);
    std::fs::copy(probe_dir().join("bin/probe"), ctx.join("probe")).unwrap();
    ctx
}

const FORWARDED: &str = "FROM busybox
COPY probe /usr/local/bin/probe
RUN --mount=type=ssh probe agent > /default.txt && echo $SSH_AUTH_SOCK > /sock.txt
RUN --mount=type=ssh,id=deploy,target=/tmp/deploy.sock,uid=1000,gid=1000 \
    probe agent > /deploy-root.txt && stat -c '%u %g %a' /tmp/deploy.sock > /deploy-stat.txt
USER 1000:1000
RUN --mount=type=ssh,id=deploy,uid=1000 probe agent > /tmp/user.txt
";

#[test]
fn the_step_lists_the_agents_identity_and_nothing_reaches_a_layer() {
    lists_the_identity_leaving_nothing_in_a_layer(ExecutorKind::Sandbox);
}

/// The chroot isolation cannot bind the agent's socket: it listens at the target
/// itself (it refused ssh mounts before).
#[test]
fn a_chroot_step_lists_the_agents_identity_and_nothing_reaches_a_layer() {
    lists_the_identity_leaving_nothing_in_a_layer(ExecutorKind::Chroot);
}

fn lists_the_identity_leaving_nothing_in_a_layer(executor: ExecutorKind) {
    let agent = Agent::start();
    let (dir, store) = busybox_store();
    let ctx = probe_context(dir.path());
    let agents = vec![
        SshAgent {
            id: "default".to_owned(),
            socket: agent.socket.clone(),
        },
        SshAgent {
            id: "deploy".to_owned(),
            socket: agent.socket.clone(),
        },
    ];
    let result = build_ssh_in(&store, FORWARDED, &ctx, agents, executor).unwrap();
    let read = |path: &str| read(&store, &result.image, dir.path(), path);
    let listed = format!("agent: 1 identities: {KEY_COMMENT}\n");
    assert_eq!(read("/default.txt"), listed);
    assert_eq!(read("/sock.txt"), "/run/buildkit/ssh_agent.0\n");
    assert_eq!(read("/deploy-root.txt"), listed);
    assert_eq!(read("/deploy-stat.txt"), "1000 1000 600\n");
    assert_eq!(read("/tmp/user.txt"), listed);
    let root = rootfs(&store, &result.image, dir.path());
    // As BuildKit's recursive stub cleaner: the socket and its new directory are gone.
    assert!(
        !root.join("run/buildkit").exists(),
        "the socket's directory is in a layer"
    );
    assert!(
        !root.join("tmp/deploy.sock").exists(),
        "the socket is in a layer"
    );
    for entry in walkdir::WalkDir::new(&root) {
        use std::os::unix::fs::FileTypeExt;
        let entry = entry.unwrap();
        assert!(
            !entry.file_type().is_socket(),
            "socket {} in the image",
            entry.path().display()
        );
    }
}

#[test]
fn a_missing_agent_is_skipped_unless_required() {
    let (dir, store) = busybox_store();
    let ctx = probe_context(dir.path());
    let optional = "FROM busybox
RUN --mount=type=ssh,id=absent sh -c 'echo $SSH_AUTH_SOCK > /sock.txt; test -e $SSH_AUTH_SOCK || echo no socket >> /sock.txt'
";
    // As BuildKit: the variable names the target, where no socket is.
    let result = build_ssh(&store, optional, &ctx, Vec::new()).unwrap();
    assert_eq!(
        read(&store, &result.image, dir.path(), "/sock.txt"),
        "/run/buildkit/ssh_agent.0\nno socket\n"
    );

    let required = "FROM busybox\nRUN --mount=type=ssh,id=absent,required=true true\n";
    let message = build_ssh(&store, required, &ctx, Vec::new()).unwrap_err();
    assert!(
        message.contains("ssh agent absent is required but was not given to the build"),
        "{message}"
    );
}
