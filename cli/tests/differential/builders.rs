//! The two builders: BuildKit (docker 20.10's built-in one, behind a private dockerd) and
//! rbuild, each building a case into an exported rootfs and an inspected image config.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

use super::case::Case;

/// The docker client with BuildKit built in (the one in /usr/local/bin has no BuildKit).
pub const DOCKER: &str = "/usr/bin/docker";

/// Lines of a failed command's output shown in a report.
const TAIL_LINES: usize = 25;

/// Runs `cmd`, returning its output, or an error naming it with the tail of its output.
pub fn run(cmd: &mut Command) -> Result<Output, String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!("{shown} failed ({}):\n{}", out.status, tail(&out)))
    }
}

/// The last lines of a command's stdout and stderr.
pub fn tail(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(TAIL_LINES)..].join("\n")
}

/// A private dockerd started through `scripts/dockerd`, stopped on drop when this process
/// started it.
pub struct Dockerd {
    script: PathBuf,
    dir: PathBuf,
    host: String,
    started_here: bool,
}

impl Dockerd {
    /// Starts (or reuses) the daemon whose state lives in `dir`.
    pub fn start(workspace: &Path, dir: &Path) -> Result<Dockerd, String> {
        for (tool, package) in [(DOCKER, "docker.io"), ("dockerd", "docker.io")] {
            let found = if tool.starts_with('/') {
                Path::new(tool).is_file()
            } else {
                which(tool)
            };
            if !found {
                return Err(format!(
                    "missing {tool} (install the Debian package {package}): the differential \
                     suite needs BuildKit as its reference"
                ));
            }
        }
        let script = workspace.join("scripts/dockerd");
        let status = Command::new(&script)
            .arg("status")
            .env("RBUILD_DOCKERD_DIR", dir)
            .status()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        let started_here = !status.success();
        run(Command::new(&script)
            .arg("start")
            .env("RBUILD_DOCKERD_DIR", dir))?;
        Ok(Dockerd {
            script,
            dir: dir.to_path_buf(),
            host: format!("unix://{}", dir.join("docker.sock").display()),
            started_here,
        })
    }

    /// A docker client command talking to this daemon, BuildKit on.
    pub fn docker(&self) -> Command {
        let mut cmd = Command::new(DOCKER);
        cmd.env("DOCKER_HOST", &self.host)
            .env("DOCKER_BUILDKIT", "1")
            .env_remove("DOCKER_CONTEXT");
        cmd
    }

    /// Fails unless `docker build` here goes through BuildKit (not the classic builder).
    pub fn check_buildkit(&self, scratch: &Path) -> Result<(), String> {
        let ctx = scratch.join("buildkit-probe");
        std::fs::create_dir_all(&ctx).map_err(|e| format!("creating {}: {e}", ctx.display()))?;
        std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nLABEL probe=1\n")
            .map_err(|e| format!("writing the BuildKit probe: {e}"))?;
        let out = run(self
            .docker()
            .args(["build", "--progress=plain", "-o"])
            .arg(format!("type=local,dest={}", ctx.join("out").display()))
            .arg(&ctx))?;
        let text = String::from_utf8_lossy(&out.stderr);
        if text.contains("[internal] load build definition") {
            Ok(())
        } else {
            Err(format!(
                "docker build did not use BuildKit (no `[internal] load build definition` in \
                 its output):\n{}",
                tail(&out)
            ))
        }
    }

    /// `docker load -i ARCHIVE`.
    pub fn load(&self, archive: &Path) -> Result<(), String> {
        run(self.docker().arg("load").arg("-i").arg(archive)).map(drop)
    }

    /// Drops what the builds left in the daemon: the cases' images, dangling ones, and
    /// BuildKit's cache (every build runs without cache, so none of it would be used again).
    pub fn clean(&self, tags: &[String]) {
        let _ = self.docker().args(["rmi", "-f"]).args(tags).output();
        let _ = self.docker().args(["image", "prune", "-f"]).output();
        let _ = self.docker().args(["builder", "prune", "-af"]).output();
    }

    /// `docker inspect NAME`, parsed.
    pub fn inspect(&self, name: &str) -> Result<Value, String> {
        let out = run(self.docker().args(["inspect", "--type=image", name]))?;
        serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("parsing docker inspect of {name}: {e}"))
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if self.started_here {
            let _ = Command::new(&self.script)
                .arg("stop")
                .env("RBUILD_DOCKERD_DIR", &self.dir)
                .status();
        }
    }
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()))
}

/// What one builder made of a case.
pub struct Built {
    /// The exported final rootfs.
    pub rootfs: PathBuf,
    /// `Config` of the built image, as its inspect printed it.
    pub config: Value,
}

/// A key pair generated once per run for the cases' ssh agents (`<case>/ssh`); both
/// builders load it into an agent of their own (docker's CLI and rbuild read key files).
fn ssh_key() -> Result<&'static Path, String> {
    static KEY: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    KEY.get_or_init(|| {
        let dir = tempfile::tempdir()
            .map_err(|e| format!("creating the ssh key directory: {e}"))?
            .keep();
        let key = dir.join("id_differential");
        run(Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "rbuild-differential",
                "-f",
            ])
            .arg(&key))
        .map_err(|e| format!("{e} (ssh-keygen comes with openssh-client)"))?;
        Ok(key)
    })
    .as_deref()
    .map_err(Clone::clone)
}

fn common_args(cmd: &mut Command, case: &Case, dockerfile: &Path) -> Result<(), String> {
    cmd.arg("-f").arg(dockerfile);
    for secret in &case.secrets {
        cmd.arg("--secret").arg(secret);
    }
    for id in &case.ssh {
        cmd.arg("--ssh")
            .arg(format!("{id}={}", ssh_key()?.display()));
    }
    for arg in &case.build_args {
        cmd.arg("--build-arg").arg(arg);
    }
    if let Some(target) = &case.target {
        cmd.arg("--target").arg(target);
    }
    Ok(())
}

fn config_of(inspect: &Value, who: &str) -> Result<Value, String> {
    super::config::config_of(inspect)
        .cloned()
        .ok_or_else(|| format!("{who} inspect printed no Config: {inspect}"))
}

/// Builds `case` with BuildKit into the daemon's image store under `tag`, without cache
/// (so that every RUN runs now and its files' mtimes fall inside the case's run), then
/// exports the image's rootfs into `out` through a created (never started) container:
/// `docker export` keeps owners, which BuildKit's `-o type=local` exporter of docker 20.10
/// does not (it writes every file as the client's user).
pub fn buildkit(dockerd: &Dockerd, case: &Case, tag: &str, out: &Path) -> Result<Built, String> {
    let mut cmd = dockerd.docker();
    cmd.args([
        "build",
        "--progress=plain",
        "--network=host",
        "--no-cache",
        "-t",
        tag,
    ]);
    common_args(&mut cmd, case, &case.buildkit_dockerfile)?;
    run(cmd.arg(&case.context))?;
    let created =
        run(dockerd
            .docker()
            .args(["create", "--network=none", tag, "rbuild-diff-never-started"]))?;
    let id = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    let archive = out.with_extension("tar");
    let exported = run(dockerd
        .docker()
        .args(["export", "-o"])
        .arg(&archive)
        .arg(&id));
    let removed = run(dockerd.docker().args(["rm", "-f", &id]));
    exported?;
    removed?;
    std::fs::create_dir_all(out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    run(Command::new("tar")
        .args([
            "--extract",
            "--same-permissions",
            "--same-owner",
            "--numeric-owner",
            "-f",
        ])
        .arg(&archive)
        .arg("-C")
        .arg(out))?;
    std::fs::remove_file(&archive).map_err(|e| format!("removing {}: {e}", archive.display()))?;
    Ok(Built {
        rootfs: out.to_path_buf(),
        config: config_of(&dockerd.inspect(tag)?, "docker")?,
    })
}

/// The rbuild binary under test.
pub fn rbuild_command(root: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rbuild"));
    cmd.env("RBUILD_ROOT", root);
    cmd
}

/// Builds `case` with rbuild into the store at `root` under `tag`, exporting the rootfs to
/// `out`; without cache, as BuildKit's build is (a step cached by an earlier case would
/// bring files with mtimes from before this case began).
pub fn rbuild(root: &Path, case: &Case, tag: &str, out: &Path) -> Result<Built, String> {
    let mut cmd = rbuild_command(root);
    cmd.arg("build")
        .arg("--root")
        .arg(root)
        .args(["--progress", "plain", "--no-cache", "-t", tag]);
    common_args(&mut cmd, case, &case.dockerfile)?;
    cmd.arg("-o")
        .arg(format!("type=local,dest={}", out.display()))
        .arg(&case.context);
    run(&mut cmd)?;
    let inspected = run(rbuild_command(root)
        .arg("inspect")
        .arg("--root")
        .arg(root)
        .arg(tag))?;
    let inspect: Value = serde_json::from_slice(&inspected.stdout)
        .map_err(|e| format!("parsing rbuild inspect of {tag}: {e}"))?;
    Ok(Built {
        rootfs: out.to_path_buf(),
        config: config_of(&inspect, "rbuild")?,
    })
}
