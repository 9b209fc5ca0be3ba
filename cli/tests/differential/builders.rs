//! The two builders: BuildKit (docker 28.5's built-in one, behind a private dockerd) and
//! rbuild, each building a case into an exported rootfs and an inspected image config.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

use super::case::Case;

/// The tool that installs the oracle (docker 28.5) and prints its wrappers, relative to
/// the workspace: CI keeps `shared/` beside the clone.
const ORACLE_TOOL: &str = "../shared/tools/modern-buildkit";

/// Whether the oracle's dockerd runs with the containerd image store, unless
/// `RBUILD_DIFF_CONTAINERD_STORE=0|1` says otherwise. Off: run back to back, the suite
/// took 1.2 to 1.8 times as long with it, and no case needs what only it gives
/// (`docker build -o type=oci`); `docker load`, `create` and `export` work and give the
/// same trees either way (see fixtures/differential/README.md).
const CONTAINERD_STORE: bool = false;

/// Whether the suite's main daemon uses the containerd image store (see
/// [`CONTAINERD_STORE`]).
pub fn containerd_store() -> Result<bool, String> {
    match std::env::var("RBUILD_DIFF_CONTAINERD_STORE").as_deref() {
        Err(_) => Ok(CONTAINERD_STORE),
        Ok("1") => Ok(true),
        Ok("0") => Ok(false),
        Ok(other) => Err(format!(
            "RBUILD_DIFF_CONTAINERD_STORE must be 0 or 1, not {other}"
        )),
    }
}

/// The oracle's two wrappers: a dockerd and a docker client (with buildx) of docker 28.5.
#[derive(Debug, Clone)]
pub struct Oracle {
    pub dockerd: PathBuf,
    pub docker: PathBuf,
}

impl Oracle {
    /// `MODERN_DOCKERD` and `MODERN_DOCKER` from the environment, else what the oracle
    /// tool prints (it installs the oracle first if needed).
    pub fn find(workspace: &Path) -> Result<Oracle, String> {
        let from_env = |name: &str| std::env::var_os(name).map(PathBuf::from);
        let (dockerd, docker) = match (from_env("MODERN_DOCKERD"), from_env("MODERN_DOCKER")) {
            (Some(dockerd), Some(docker)) => (dockerd, docker),
            _ => {
                let tool = workspace.join(ORACLE_TOOL);
                if !tool.is_file() {
                    return Err(format!(
                        "the differential suite needs docker 28.5's BuildKit as its oracle: \
                         set MODERN_DOCKERD and MODERN_DOCKER (eval \"$(.../modern-buildkit)\"), \
                         or provide {} (scripts/setup-host runs it)",
                        tool.display()
                    ));
                }
                let out = run(&mut Command::new(&tool))?;
                let text = String::from_utf8_lossy(&out.stdout);
                let value = |name: &str| {
                    text.split_whitespace()
                        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
                        .map(PathBuf::from)
                        .ok_or_else(|| format!("{} printed no {name}=: {text}", tool.display()))
                };
                (value("MODERN_DOCKERD")?, value("MODERN_DOCKER")?)
            }
        };
        for (name, path) in [("MODERN_DOCKERD", &dockerd), ("MODERN_DOCKER", &docker)] {
            if !path.is_file() {
                return Err(format!(
                    "{name}={} is not a file: the oracle (docker 28.5) is not installed; \
                     run scripts/setup-host",
                    path.display()
                ));
            }
        }
        Ok(Oracle { dockerd, docker })
    }
}

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
    oracle: Oracle,
    script: PathBuf,
    dir: PathBuf,
    host: String,
    started_here: bool,
}

impl Dockerd {
    /// Starts (or reuses) the oracle's daemon whose state lives in `dir`, with the
    /// containerd image store when `store` says so.
    pub fn start(
        workspace: &Path,
        oracle: Oracle,
        dir: &Path,
        store: bool,
    ) -> Result<Dockerd, String> {
        let script = workspace.join("scripts/dockerd");
        let script_cmd = |verb: &str| {
            let mut cmd = Command::new(&script);
            cmd.arg(verb)
                .env("RBUILD_DOCKERD_DIR", dir)
                .env("RBUILD_DOCKERD_BIN", &oracle.dockerd)
                .env(
                    "RBUILD_DOCKERD_CONTAINERD_STORE",
                    if store { "1" } else { "0" },
                );
            cmd
        };
        let status = script_cmd("status")
            .status()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        let started_here = !status.success();
        run(&mut script_cmd("start"))?;
        Ok(Dockerd {
            oracle,
            script,
            dir: dir.to_path_buf(),
            host: format!("unix://{}", dir.join("docker.sock").display()),
            started_here,
        })
    }

    /// A docker client command talking to this daemon, with a client configuration of its
    /// own (buildx keeps its state there) in the daemon's state directory.
    pub fn docker(&self) -> Command {
        let mut cmd = Command::new(&self.oracle.docker);
        cmd.env("DOCKER_HOST", &self.host)
            .env("DOCKER_CONFIG", self.dir.join("client"))
            .env("DOCKER_BUILDKIT", "1")
            // No provenance attestation beside each image: nothing compares it.
            .env("BUILDX_NO_DEFAULT_ATTESTATIONS", "1")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("BUILDX_BUILDER");
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

    /// Removes images by name (quietly: a failed build made none).
    pub fn remove_images(&self, tags: &[&str]) {
        let _ = self.docker().args(["rmi", "-f"]).args(tags).output();
    }

    /// Drops what the builds left in the daemon: dangling images and BuildKit's cache
    /// (every build runs without cache, so none of it would be used again).
    pub fn clean(&self) {
        let _ = self.docker().args(["image", "prune", "-f"]).output();
        let _ = self.docker().args(["builder", "prune", "-af"]).output();
    }

    /// `docker image inspect [--platform PLATFORM] NAME`, parsed.
    pub fn inspect(&self, name: &str, platform: Option<&str>) -> Result<Value, String> {
        let mut cmd = self.docker();
        cmd.args(["image", "inspect"]);
        if let Some(platform) = platform {
            cmd.args(["--platform", platform]);
        }
        let out = run(cmd.arg(name))?;
        serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("parsing docker inspect of {name}: {e}"))
    }

    /// Loads the image `name` of the rbuild store at `root`, every platform its index
    /// holds, through an OCI archive `rbuild save` writes in `scratch` (the index whole;
    /// the containerd image store loads it so).
    pub fn load_all_platforms(
        &self,
        root: &Path,
        name: &str,
        scratch: &Path,
    ) -> Result<(), String> {
        let archive = scratch.join(format!("{}.oci.tar", name.replace(['/', ':'], "-")));
        run(rbuild_command(root)
            .args(["save", "--format", "oci", "-o"])
            .arg(&archive)
            .arg(name))?;
        self.load(&archive)
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

/// What one builder made of a case for one platform.
pub struct Built {
    /// The platform (`linux/arm64`) of a multi-platform case; None for the others.
    pub platform: Option<String>,
    /// The exported final rootfs.
    pub rootfs: PathBuf,
    /// `Config` of the built image, as its inspect printed it.
    pub config: Value,
    /// `os/architecture[/variant]` of the built image, as its inspect printed them.
    pub image_platform: String,
}

/// Where a case's exported rootfs for `platform` goes under `out`: `out` itself for a
/// single-platform case, else a subdirectory named as BuildKit's and rbuild's
/// `-o type=local` name it (`linux_arm64`).
fn rootfs_dir(out: &Path, platform: Option<&str>) -> PathBuf {
    match platform {
        Some(p) => out.join(p.replace('/', "_")),
        None => out.to_path_buf(),
    }
}

/// The platforms a case is built for, each once: its `platforms`, or the one default.
fn each_platform(case: &Case) -> Vec<Option<&str>> {
    if case.platforms.is_empty() {
        vec![None]
    } else {
        case.platforms.iter().map(|p| Some(p.as_str())).collect()
    }
}

/// `os/architecture[/variant]` of the first image of an inspect output.
fn image_platform(inspect: &Value) -> String {
    let field = |name: &str| {
        inspect
            .get(0)
            .and_then(|i| i.get(name))
            .and_then(Value::as_str)
            .unwrap_or("")
    };
    let mut text = format!("{}/{}", field("Os"), field("Architecture"));
    if !field("Variant").is_empty() {
        text = format!("{text}/{}", field("Variant"));
    }
    text
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
    if !case.platforms.is_empty() {
        cmd.arg("--platform").arg(case.platforms.join(","));
    }
    Ok(())
}

fn config_of(inspect: &Value, who: &str) -> Result<Value, String> {
    super::config::config_of(inspect)
        .cloned()
        .ok_or_else(|| format!("{who} inspect printed no Config: {inspect}"))
}

/// Runs `cmd`, returning its output whether it succeeded or not.
fn output(cmd: &mut Command) -> Result<Output, String> {
    cmd.output().map_err(|e| format!("cannot run {cmd:?}: {e}"))
}

/// `docker build` of `case` into the daemon's image store under `tag`, without cache (so
/// that every RUN runs now and its files' mtimes fall inside the case's run); its output,
/// failed or not.
pub fn buildkit_build(dockerd: &Dockerd, case: &Case, tag: &str) -> Result<Output, String> {
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
    output(cmd.arg(&case.context))
}

/// Builds `case` with BuildKit (see [`buildkit_build`]), then exports each platform's
/// rootfs into `out` through a created (never started) container: `docker export` keeps
/// owners and needs nothing but the image store (the `-o type=local` exporter writes
/// every file as the client's user). The image is removed afterwards.
pub fn buildkit(
    dockerd: &Dockerd,
    case: &Case,
    tag: &str,
    out: &Path,
) -> Result<Vec<Built>, String> {
    let built = buildkit_build(dockerd, case, tag)?;
    if !built.status.success() {
        return Err(format!(
            "docker build failed ({}):\n{}",
            built.status,
            tail(&built)
        ));
    }
    let each = each_platform(case)
        .into_iter()
        .map(|platform| {
            let rootfs = rootfs_dir(out, platform);
            export(dockerd, tag, platform, &rootfs)?;
            let inspect = dockerd.inspect(tag, platform)?;
            Ok(Built {
                platform: platform.map(str::to_owned),
                rootfs,
                config: config_of(&inspect, "docker")?,
                image_platform: image_platform(&inspect),
            })
        })
        .collect();
    dockerd.remove_images(&[tag]);
    each
}

fn export(dockerd: &Dockerd, tag: &str, platform: Option<&str>, out: &Path) -> Result<(), String> {
    let mut create = dockerd.docker();
    create.args(["create", "--network=none"]);
    if let Some(platform) = platform {
        create.args(["--platform", platform]);
    }
    let created = run(create.args([tag, "rbuild-diff-never-started"]))?;
    let id = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
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
    std::fs::remove_file(&archive).map_err(|e| format!("removing {}: {e}", archive.display()))
}

/// The rbuild binary under test.
pub fn rbuild_command(root: &Path) -> Command {
    let mut cmd = match std::env::var_os("RBUILD_DIFF_WRAPPER") {
        Some(wrapper) => {
            let mut cmd = Command::new(wrapper);
            cmd.arg(env!("CARGO_BIN_EXE_rbuild"));
            cmd
        }
        None => Command::new(env!("CARGO_BIN_EXE_rbuild")),
    };
    cmd.env("RBUILD_ROOT", root);
    cmd
}

/// `rbuild build` of `case` into the store at `root` under `tag`, its rootfs exported to
/// `out`, without cache, as BuildKit's build is (a step cached by an earlier case would
/// bring files with mtimes from before this case began); its output, failed or not.
pub fn rbuild_build(root: &Path, case: &Case, tag: &str, out: &Path) -> Result<Output, String> {
    let mut cmd = rbuild_command(root);
    cmd.arg("build")
        .arg("--root")
        .arg(root)
        .args(["--progress", "plain", "--no-cache", "-t", tag]);
    if let Ok(isolation) = std::env::var("RBUILD_DIFF_ISOLATION") {
        cmd.args(["--isolation", &isolation]);
    }
    cmd
        // BuildKit's build runs with `--network=host` (the private daemon has no bridge),
        // with which buildx grants the network.host entitlement that `RUN --network=host`
        // needs; rbuild gets the same entitlement, its RUN steps keep their default
        // network.
        .args(["--allow", "network.host"]);
    common_args(&mut cmd, case, &case.dockerfile)?;
    cmd.arg("-o")
        .arg(format!("type=local,dest={}", out.display()))
        .arg(&case.context);
    output(&mut cmd)
}

/// Builds `case` with rbuild (see [`rbuild_build`]; a multi-platform build's
/// `-o type=local` writes one subdirectory per platform) and reads each platform's image
/// config.
pub fn rbuild(root: &Path, case: &Case, tag: &str, out: &Path) -> Result<Vec<Built>, String> {
    let built = rbuild_build(root, case, tag, out)?;
    if !built.status.success() {
        return Err(format!(
            "rbuild build failed ({}):\n{}",
            built.status,
            tail(&built)
        ));
    }
    each_platform(case)
        .into_iter()
        .map(|platform| {
            let mut cmd = rbuild_command(root);
            cmd.arg("inspect").arg("--root").arg(root);
            if let Some(platform) = platform {
                cmd.args(["--platform", platform]);
            }
            let inspected = run(cmd.arg(tag))?;
            let inspect: Value = serde_json::from_slice(&inspected.stdout)
                .map_err(|e| format!("parsing rbuild inspect of {tag}: {e}"))?;
            Ok(Built {
                platform: platform.map(str::to_owned),
                rootfs: rootfs_dir(out, platform),
                config: config_of(&inspect, "rbuild")?,
                image_platform: image_platform(&inspect),
            })
        })
        .collect()
}

/// The name rbuild's store gives `name` in its `index.json` (`busybox:latest` is
/// `docker.io/library/busybox:latest`).
pub fn store_ref_name(name: &str) -> String {
    let (repo, tag) = name.rsplit_once(':').unwrap_or((name, "latest"));
    let first = repo.split('/').next().unwrap_or(repo);
    let repo = if !repo.contains('/') {
        format!("docker.io/library/{repo}")
    } else if first.contains('.') || first.contains(':') || first == "localhost" {
        repo.to_owned()
    } else {
        format!("docker.io/{repo}")
    };
    format!("{repo}:{tag}")
}
