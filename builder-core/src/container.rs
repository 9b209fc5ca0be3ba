//! Running a command in a throw-away container of a stored image (`rbuild run`).
//!
//! [`run_container`] does what `docker run --rm` does, with the build's own machinery:
//! each layer of the image is unpacked once into the store
//! ([`ContentStore::unpack_layers`]), a writable snapshot is stacked on them in a scratch
//! directory under the store's `tmp/` ([`OverlaySnapshotter`], or [`CopySnapshotter`]
//! when overlayfs cannot be mounted), and the [`SandboxExecutor`] runs the command the
//! image's config and the [`ContainerOptions`] decide ([`container_command`]). The
//! writable layer is removed afterwards: nothing of the run is kept.
//!
//! The container shares the host's network namespace by default, so a server listening
//! on port 80 inside is reachable at `127.0.0.1:80` on the host (docker would map it
//! with `-p`); confined as a build step's default network is ([`Network::Default`]: no
//! `CAP_NET_RAW`, none of the host's abstract unix sockets).
//! Cancelling [`ContainerOptions::cancel`] kills the container's whole process tree; its
//! mounts live only in its own mount namespace and go with it.
//!
//! ```no_run
//! use rbuild_core::{ContentStore, container::{ContainerOptions, run_container}, progress::Stream, image::load_image};
//!
//! let store = ContentStore::open("/var/lib/rbuild")?;
//! let found = store.resolve("friendlyhello")?;
//! let image = load_image(&store, &found.descriptor)?;
//! let options = ContainerOptions::default()
//!     .with_args(vec!["python".into(), "-c".into(), "import flask".into()]);
//! let mut print = |_: Stream, bytes: &[u8]| print!("{}", String::from_utf8_lossy(bytes));
//! let status = run_container(&store, &image, &options, &mut print)?;
//! assert!(status.success());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::digest::{Digest, Hasher};
use crate::exec::{
    BindMount, CancelToken, Command, ExecError, Executor, ExitStatus, Network, OutputSink, RunSpec,
    SandboxExecutor, Terminal,
};
use crate::image::{Image, ImageError, RunConfig};
use crate::layer::LayerError;
use crate::snapshot::{CopySnapshotter, OverlaySnapshotter, Snapshot, SnapshotError, Snapshotter};
use crate::store::ContentStore;

/// docker's exit code when the container could not be run at all (`docker run` fails).
pub const EXIT_RUN_FAILED: u8 = 125;
/// docker's exit code when the command exists but cannot be executed.
pub const EXIT_NOT_EXECUTABLE: u8 = 126;
/// docker's exit code when the command is not found.
pub const EXIT_NOT_FOUND: u8 = 127;

/// Errors of [`run_container`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContainerError {
    /// Neither the options nor the image's config name a command.
    #[error("no command specified for image {image}: give one or set CMD or ENTRYPOINT")]
    NoCommand {
        /// The image's manifest digest.
        image: String,
    },
    /// The working directory asked for is not absolute.
    #[error("working directory {0:?} is not an absolute path")]
    RelativeWorkdir(String),
    /// The image's manifest and config disagree.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A layer of the image could not be unpacked.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// The writable layer could not be prepared.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The sandbox could not be set up, or the command not started.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// A scratch directory could not be created or removed.
    #[error("failed to {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl ContainerError {
    /// The exit code docker gives for this failure: [`EXIT_NOT_FOUND`] when the command
    /// does not exist, [`EXIT_NOT_EXECUTABLE`] when it cannot be executed, and
    /// [`EXIT_RUN_FAILED`] for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            ContainerError::Exec(ExecError::Spawn { source, .. }) => match source.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::ENOTDIR) => EXIT_NOT_FOUND,
                Some(libc::EACCES) | Some(libc::ENOEXEC) | Some(libc::EISDIR)
                | Some(libc::EPERM) => EXIT_NOT_EXECUTABLE,
                _ => EXIT_RUN_FAILED,
            },
            _ => EXIT_RUN_FAILED,
        }
    }
}

/// A container's identity: 64 hex digits, as docker's container ids; the first 12 are
/// its host name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContainerId(String);

impl ContainerId {
    /// A fresh id, from the time, the process id and a per-process counter.
    pub fn generate() -> Self {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut hasher = Hasher::new();
        hasher.update(&nanos.to_le_bytes());
        hasher.update(&std::process::id().to_le_bytes());
        hasher.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        let digest: Digest = hasher.finish();
        ContainerId(digest.hex().to_owned())
    }

    /// The full id.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The short form docker shows (12 hex digits), used as the container's host name.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl fmt::Display for ContainerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How to run a container, on top of what the image's config says: the defaults run the
/// image's own command; change the fields an embedder needs
/// (`let mut options = ContainerOptions::default(); options.args = ...`), or use the
/// setters.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ContainerOptions {
    /// Arguments replacing the image's `Cmd` (empty: keep it).
    pub args: Vec<String>,
    /// Replaces the image's `Entrypoint` and clears its `Cmd`, as `docker run
    /// --entrypoint` does; `Some("")` removes the entrypoint.
    pub entrypoint: Option<String>,
    /// Environment added to the image's `Env` (a name given again replaces it).
    pub env: Vec<(String, String)>,
    /// Working directory replacing the image's `WorkingDir` (absolute).
    pub workdir: Option<String>,
    /// `user[:group]` replacing the image's `User`.
    pub user: Option<String>,
    /// Network mode (default: the host's network namespace, confined).
    pub network: Network,
    /// Give the command the caller's standard input (else `/dev/null`).
    pub inherit_stdin: bool,
    /// Give the command a terminal of its own (`docker run -t`); its output comes as
    /// [`Stream::Stdout`](crate::progress::Stream) and, with `inherit_stdin`, the caller's input
    /// goes to it. Keep a clone to [`resize`](Terminal::resize) it.
    pub terminal: Option<Terminal>,
    /// Host paths bound into the container (`-v HOST:CONTAINER[:ro]`).
    pub mounts: Vec<BindMount>,
    /// Kills the container when cancelled.
    pub cancel: CancelToken,
}

impl ContainerOptions {
    /// With [`args`](Self::args) replacing the image's `Cmd`.
    pub fn with_args(mut self, args: Vec<String>) -> Self {
        self.args = args;
        self
    }

    /// With [`env`](Self::env) added to the image's `Env`.
    pub fn with_env(mut self, env: Vec<(String, String)>) -> Self {
        self.env = env;
        self
    }

    /// With [`network`](Self::network) set.
    pub fn with_network(mut self, network: Network) -> Self {
        self.network = network;
        self
    }

    /// With [`cancel`](Self::cancel): cancelling it kills the container.
    pub fn with_cancel(mut self, cancel: CancelToken) -> Self {
        self.cancel = cancel;
        self
    }
}

/// The program and arguments a container runs: the entrypoint followed by the command,
/// as `docker run` computes them from the image's config and the options.
pub fn container_command(config: &RunConfig, options: &ContainerOptions) -> Vec<String> {
    let entrypoint: Vec<String> = match &options.entrypoint {
        Some(e) if e.is_empty() => Vec::new(),
        Some(e) => vec![e.clone()],
        None => config.entrypoint.clone().unwrap_or_default(),
    };
    let cmd: Vec<String> = if !options.args.is_empty() {
        options.args.clone()
    } else if options.entrypoint.is_some() {
        // docker: a new entrypoint drops the image's Cmd.
        Vec::new()
    } else {
        config.cmd.clone().unwrap_or_default()
    };
    entrypoint.into_iter().chain(cmd).collect()
}

/// The container's environment: the image's `Env`, then the options' variables, each
/// name once (a later value replaces an earlier one in place).
pub fn container_env(config: &RunConfig, options: &ContainerOptions) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    let image_env = config
        .env
        .iter()
        .flatten()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv.clone(), String::new()),
        });
    for (key, value) in image_env.chain(options.env.iter().cloned()) {
        match env.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => env.push((key, value)),
        }
    }
    env
}

/// The [`RunSpec`] of a container of `image` under `options`.
fn container_spec(
    image: &Image,
    options: &ContainerOptions,
    id: &ContainerId,
) -> Result<RunSpec, ContainerError> {
    let config = &image.config.config;
    let argv = container_command(config, options);
    if argv.is_empty() {
        return Err(ContainerError::NoCommand {
            image: image.config_digest.to_string(),
        });
    }
    let workdir = options
        .workdir
        .clone()
        .or_else(|| config.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".to_owned());
    if !workdir.starts_with('/') {
        return Err(ContainerError::RelativeWorkdir(workdir));
    }
    let mut spec = RunSpec::new(Command::Exec(argv));
    spec.env = container_env(config, options);
    spec.workdir = workdir;
    spec.user = options
        .user
        .clone()
        .or_else(|| config.user.clone())
        .filter(|u| !u.is_empty());
    spec.network = options.network;
    spec.hostname = id.short().to_owned();
    spec.cancel = options.cancel.clone();
    spec.inherit_stdin = options.inherit_stdin;
    spec.terminal = options.terminal.clone();
    spec.mounts = options.mounts.clone();
    Ok(spec)
}

/// Unpacks (once) every layer of `image` and returns the lower directories, lowest first.
pub fn image_lowers(store: &ContentStore, image: &Image) -> Result<Vec<PathBuf>, ContainerError> {
    let layers = image.layers()?;
    Ok(store.unpack_layers(layers.iter().map(|(blob, diff_id)| (blob, diff_id)))?)
}

/// Whether a failure happened while mounting the overlay root, so that a copy of the
/// lowers may be used instead.
fn overlay_refused(err: &ExecError) -> bool {
    matches!(err, ExecError::Setup { stage, .. } if stage.starts_with("mount overlay"))
}

/// Runs a container of `image`, with its output sent to `sink`, and returns how its
/// command ended. The container's writable layer is removed before returning.
pub fn run_container(
    store: &ContentStore,
    image: &Image,
    options: &ContainerOptions,
    sink: &mut dyn OutputSink,
) -> Result<ExitStatus, ContainerError> {
    let id = ContainerId::generate();
    let spec = container_spec(image, options, &id)?;
    let lowers = image_lowers(store, image)?;
    let executor = SandboxExecutor::new();
    let overlay = OverlaySnapshotter::new();
    let copy = CopySnapshotter::new();
    // overlayfs needs at least one lower directory.
    let snapshotters: Vec<&dyn Snapshotter> = if lowers.is_empty() {
        vec![&copy]
    } else {
        vec![&overlay, &copy]
    };
    let mut last = None;
    for snapshotter in snapshotters {
        let scratch = Scratch::create(store, &id)?;
        let result = prepare_and_run(snapshotter, &lowers, &scratch, &executor, &spec, sink);
        let removed = scratch.remove();
        match result {
            Err(ContainerError::Exec(e)) if overlay_refused(&e) => last = Some(e),
            Err(e) => return Err(e),
            Ok(status) => {
                removed?;
                return Ok(status);
            }
        }
    }
    Err(match last {
        Some(e) => ContainerError::Exec(e),
        None => ContainerError::NoCommand {
            image: image.config_digest.to_string(),
        },
    })
}

fn prepare_and_run(
    snapshotter: &dyn Snapshotter,
    lowers: &[PathBuf],
    scratch: &Scratch,
    executor: &SandboxExecutor,
    spec: &RunSpec,
    sink: &mut dyn OutputSink,
) -> Result<ExitStatus, ContainerError> {
    let snapshot: Snapshot = snapshotter.prepare(lowers, &scratch.0)?;
    Ok(executor.run(&snapshot, spec, sink)?)
}

/// The container's scratch directory under the store's `tmp/`.
struct Scratch(PathBuf, ContentStore);

impl Scratch {
    fn create(store: &ContentStore, id: &ContainerId) -> Result<Self, ContainerError> {
        let base = store.tmp_dir();
        let dir = tempfile::Builder::new()
            .prefix(&format!("run-{}-", id.short()))
            .tempdir_in(&base)
            .map_err(|source| ContainerError::Io {
                action: "create scratch directory in",
                path: base,
                source,
            })?;
        Ok(Scratch(dir.keep(), store.clone()))
    }

    /// Removes the scratch tree, walking from the store root without following links
    /// (overlayfs leaves its work directory without permissions: the removal opens it).
    fn remove(self) -> Result<(), ContainerError> {
        self.1
            .remove_tree(&self.0)
            .map(|_| ())
            .map_err(|e| ContainerError::Image(ImageError::Store(e)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config(entrypoint: Option<&[&str]>, cmd: Option<&[&str]>) -> RunConfig {
        let words = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect();
        RunConfig {
            entrypoint: entrypoint.map(words),
            cmd: cmd.map(words),
            ..Default::default()
        }
    }

    fn options(args: &[&str], entrypoint: Option<&str>) -> ContainerOptions {
        ContainerOptions {
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            entrypoint: entrypoint.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn arguments_replace_cmd_and_keep_the_entrypoint() {
        let c = config(Some(&["/bin/echo", "e"]), Some(&["c1", "c2"]));
        assert_eq!(
            container_command(&c, &options(&[], None)),
            ["/bin/echo", "e", "c1", "c2"]
        );
        assert_eq!(
            container_command(&c, &options(&["a"], None)),
            ["/bin/echo", "e", "a"]
        );
    }

    #[test]
    fn a_new_entrypoint_clears_cmd_as_docker_does() {
        let c = config(Some(&["/bin/echo"]), Some(&["c"]));
        assert_eq!(
            container_command(&c, &options(&[], Some("/bin/ls"))),
            ["/bin/ls"]
        );
        assert_eq!(
            container_command(&c, &options(&["-l"], Some("/bin/ls"))),
            ["/bin/ls", "-l"]
        );
        assert!(container_command(&c, &options(&[], Some(""))).is_empty());
        assert_eq!(container_command(&c, &options(&["x"], Some(""))), ["x"]);
    }

    #[test]
    fn option_variables_replace_image_variables_in_place() {
        let c = RunConfig {
            env: Some(vec!["A=1".into(), "B=2".into(), "EMPTY".into()]),
            ..Default::default()
        };
        let o = ContainerOptions {
            env: vec![("B".into(), "3".into()), ("C".into(), "4".into())],
            ..Default::default()
        };
        let env = container_env(&c, &o);
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        assert_eq!(pairs, [("A", "1"), ("B", "3"), ("EMPTY", ""), ("C", "4")]);
    }

    #[test]
    fn exit_codes_follow_docker() {
        let spawn = |errno| {
            ContainerError::Exec(ExecError::Spawn {
                program: "x".into(),
                source: io::Error::from_raw_os_error(errno),
            })
        };
        assert_eq!(spawn(libc::ENOENT).exit_code(), EXIT_NOT_FOUND);
        assert_eq!(spawn(libc::EACCES).exit_code(), EXIT_NOT_EXECUTABLE);
        assert_eq!(
            ContainerError::RelativeWorkdir("a".into()).exit_code(),
            EXIT_RUN_FAILED
        );
    }

    #[test]
    fn container_ids_are_64_hex_digits_and_differ() {
        let (a, b) = (ContainerId::generate(), ContainerId::generate());
        assert_eq!(a.as_str().len(), 64);
        assert!(a.as_str().bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(a.short().len(), 12);
        assert_ne!(a, b);
    }
}
