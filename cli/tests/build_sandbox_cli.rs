//! `rbuild build --allow security.insecure` and `--ssh` through the binary, on the
//! busybox fixture: an insecure step is refused with its line unless allowed; an agent
//! given as a key file (started by rbuild) or as `$SSH_AUTH_SOCK` lists its identity to
//! the step (a static C probe speaking the agent protocol, compiled with gcc).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;

/// A store with busybox, and a context holding `dockerfile` and the boundary probe
/// (compiled with the host's `gcc -static`).
fn setup(dockerfile: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let (dir, root, ctx) = support::run::busybox_setup(&[("Dockerfile", dockerfile)]);
    support::run::compile_probe(&ctx.join("probe"));
    (dir, root, ctx)
}

const KEY_COMMENT: &str = "rbuild-cli-ssh-key";

fn rbuild(root: &Path, args: &[&str], env: &[(&str, &Path)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .args(args)
        .env("RBUILD_ROOT", root)
        .env_remove("SSH_AUTH_SOCK")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("running the rbuild binary")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
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

/// A generated key pair in `dir`; returns the private key's path.
fn key(dir: &Path) -> PathBuf {
    let key = dir.join("id_test");
    let made = tool("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", KEY_COMMENT, "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success(), "ssh-keygen failed");
    key
}

/// An ssh-agent holding `key`, killed when dropped.
struct Agent(Child, PathBuf);

impl Agent {
    fn start(dir: &Path, key: &Path) -> Self {
        let socket = dir.join("agent.sock");
        let child = tool("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let agent = Agent(child, socket);
        let start = Instant::now();
        while !agent.1.exists() {
            assert!(start.elapsed() < Duration::from_secs(30), "no agent socket");
            std::thread::sleep(Duration::from_millis(20));
        }
        let added = tool("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &agent.1)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(added.success(), "ssh-add failed");
        agent
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const INSECURE: &str = "FROM busybox
RUN --security=insecure mount -t tmpfs none /tmp && umount /tmp && echo mounted > /insecure
";

#[test]
fn an_insecure_step_is_refused_unless_allowed() {
    let (dir, root, ctx) = setup(INSECURE);
    let ctx = ctx.to_str().unwrap();
    let refused = rbuild(&root, &["build", "-q", ctx], &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains(
            "Dockerfile:2:1: RUN --security=insecure is not allowed: pass --allow security.insecure"
        ),
        "{}",
        stderr(&refused)
    );
    let out = dir.path().join("out");
    let dest = format!("type=local,dest={}", out.display());
    let allowed = rbuild(
        &root,
        &[
            "build",
            "-q",
            "--allow",
            "security.insecure",
            "-o",
            &dest,
            ctx,
        ],
        &[],
    );
    assert!(allowed.status.success(), "{}", stderr(&allowed));
    assert_eq!(
        std::fs::read_to_string(out.join("insecure")).unwrap(),
        "mounted\n"
    );
    let unknown = rbuild(&root, &["build", "--allow", "network.magic", ctx], &[]);
    assert_eq!(unknown.status.code(), Some(2));
}

const SSH: &str = "FROM busybox
COPY probe /usr/local/bin/probe
RUN --mount=type=ssh,required=true probe agent > /agent.txt
";

#[test]
fn ssh_agents_from_key_files_and_ssh_auth_sock_reach_the_step() {
    let (dir, root, ctx) = setup(SSH);
    let key = key(dir.path());
    let ctx = ctx.to_str().unwrap();
    let listed = format!("agent: 1 identities: {KEY_COMMENT}\n");

    // A key file: rbuild starts an agent for the build, and stops it.
    let out = dir.path().join("from-key");
    let dest = format!("type=local,dest={}", out.display());
    let ssh = format!("default={}", key.display());
    let built = rbuild(
        &root,
        &["build", "-q", "--ssh", &ssh, "-o", &dest, ctx],
        &[],
    );
    assert!(built.status.success(), "{}", stderr(&built));
    assert_eq!(
        std::fs::read_to_string(out.join("agent.txt")).unwrap(),
        listed
    );
    let left: Vec<_> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.unwrap().path().join("cmdline")).ok())
        .filter(|c| c.windows(11).any(|w| w == b"rbuild-ssh-"))
        .collect();
    assert!(left.is_empty(), "the build's ssh-agent outlived it");

    // `--ssh default`: the agent of SSH_AUTH_SOCK (no cache: the step runs again).
    let agent = Agent::start(dir.path(), &key);
    let out = dir.path().join("from-env");
    let dest = format!("type=local,dest={}", out.display());
    let built = rbuild(
        &root,
        &[
            "build",
            "-q",
            "--no-cache",
            "--ssh",
            "default",
            "-o",
            &dest,
            ctx,
        ],
        &[("SSH_AUTH_SOCK", &agent.1)],
    );
    assert!(built.status.success(), "{}", stderr(&built));
    assert_eq!(
        std::fs::read_to_string(out.join("agent.txt")).unwrap(),
        listed
    );

    // Without --ssh the required mount fails, naming the agent.
    let failed = rbuild(&root, &["build", "-q", "--no-cache", ctx], &[]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(
        stderr(&failed).contains("ssh agent default is required but was not given"),
        "{}",
        stderr(&failed)
    );
}
