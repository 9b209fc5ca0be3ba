//! `rbuild run IMAGE [COMMAND...]`: a command in a throw-away container of a stored image.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, bail};
use rbuild_core::{
    CancelToken,
    container::{ContainerError, ContainerOptions, EXIT_RUN_FAILED, run_container},
    exec::{BindMount, ExitStatus, Network, Terminal, WindowSize},
    progress::Stream,
};

use super::store::StoreArgs;

/// `rbuild run`.
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Run a command in a throw-away container of a stored image, as `docker run --rm` \
does: the image's Entrypoint and Cmd (COMMAND replaces Cmd), Env, WorkingDir and User apply; \
standard input, output and error are passed through (with -t: a terminal of the command's own, \
with -it typed into from yours, in raw mode while it runs) and rbuild exits with the command's exit \
code (125 when rbuild itself fails, 126 when the command cannot be executed, 127 when it is \
not found).

The container shares the host's network namespace (there is no -p): a server listening on \
port 80 inside is reachable at 127.0.0.1:80 on the host. By default that network is confined: \
no CAP_NET_RAW (no packet capture, no raw sockets) and no connection to the host's abstract \
unix sockets; --network host lifts both, --network none gives loopback only. Nothing of the run is kept: its writable \
layer is removed when the command ends (volumes given with -v are host paths, changed in \
place). Ctrl-C or SIGTERM to rbuild stops the container.",
    after_help = "Examples:
  rbuild run -it -e NAME=you -w /tmp busybox:latest sh   # a shell; exit ends it
  rbuild run friendlyhello                # then: curl http://127.0.0.1:80/
  rbuild run --platform linux/arm64 multi:1 uname -m   # the index's arm64 image, under QEMU"
)]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    /// Remove the container when it exits (always done; accepted as docker takes it)
    #[arg(long)]
    rm: bool,
    /// Keep standard input open: passed through (always done without -t), or typed into
    /// the command's terminal with -t
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Give the command a terminal of its own (a pseudo-terminal in the container's
    /// /dev/pts); with -i your terminal is in raw mode while it runs and keystrokes go to it
    #[arg(short = 't', long)]
    tty: bool,
    /// Not supported: rbuild keeps no containers to run in the background
    #[arg(short = 'd', long, hide = true)]
    detach: bool,
    /// Not supported: the container uses the host's network, so a port it listens on is
    /// already the host's
    #[arg(short = 'p', long = "publish", hide = true, value_name = "PORTS")]
    publish: Vec<String>,
    /// Not supported: rbuild keeps no containers to name
    #[arg(long, hide = true)]
    name: Option<String>,
    /// Set an environment variable; a NAME alone takes its value from rbuild's environment
    #[arg(short = 'e', long = "env", value_name = "NAME[=VALUE]")]
    env: Vec<String>,
    /// Working directory inside the container (absolute)
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<String>,
    /// User to run as: name or uid, with an optional :group
    #[arg(short = 'u', long, value_name = "USER[:GROUP]")]
    user: Option<String>,
    /// Network: default (the host's network confined: no CAP_NET_RAW, no host abstract
    /// unix sockets), host (the host's network unconfined) or none (loopback only)
    #[arg(long, value_name = "MODE", default_value = "default", value_parser = ["default", "host", "none"])]
    network: String,
    /// Replace the image's entrypoint (and drop its Cmd); "" removes it
    #[arg(long, value_name = "PROGRAM")]
    entrypoint: Option<String>,
    /// Bind a host path into the container, read-only with :ro; may be repeated
    #[arg(
        short = 'v',
        long = "volume",
        value_name = "HOST_PATH:CONTAINER_PATH[:ro]"
    )]
    volumes: Vec<String>,
    /// Of an image of several platforms (an image index), run this platform's image
    /// [default: the build machine's, else the first]; a foreign platform's programs run
    /// through QEMU's binfmt_misc handlers
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = super::platform_arg::platform_arg)]
    platform: Option<rbuild_dockerfile::Platform>,
    /// The image, by name or image id
    image: String,
    /// The command and its arguments, replacing the image's Cmd
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    command: Vec<String>,
}

/// `-e NAME=VALUE`, or `-e NAME` taken from rbuild's own environment (left out when unset,
/// as docker does).
fn env_pairs(specs: &[String]) -> Vec<(String, String)> {
    specs
        .iter()
        .filter_map(|spec| match spec.split_once('=') {
            Some((k, v)) => Some((k.to_owned(), v.to_owned())),
            None => std::env::var(spec).ok().map(|v| (spec.clone(), v)),
        })
        .collect()
}

/// `-v HOST:CONTAINER[:ro|:rw]`. The host side must be an absolute path (rbuild has no
/// named volumes); it is resolved to its real path.
fn bind_mount(spec: &str) -> anyhow::Result<BindMount> {
    let mut parts = spec.split(':');
    let (Some(host), Some(target)) = (parts.next(), parts.next()) else {
        bail!("volume {spec:?} is not HOST_PATH:CONTAINER_PATH[:ro]");
    };
    let readonly = match parts.next() {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(other) => bail!("volume {spec:?}: unknown mode {other:?} (ro or rw)"),
    };
    if parts.next().is_some() {
        bail!("volume {spec:?} is not HOST_PATH:CONTAINER_PATH[:ro]");
    }
    if !host.starts_with('/') {
        bail!("volume {spec:?}: the host path must be absolute (named volumes do not exist)");
    }
    let source = std::fs::canonicalize(host).with_context(|| format!("finding {host}"))?;
    Ok(BindMount {
        source,
        target: target.to_owned(),
        readonly,
        movable: false,
        owner: None,
        relay_to: None,
    })
}

/// Cancels `token` on SIGINT, SIGTERM or SIGHUP, so the container (or build) is stopped
/// and its scratch directory removed before rbuild exits; a second signal ends rbuild at
/// once (128 + the signal), as a second Ctrl-C ends docker.
pub(crate) fn cancel_on_signals(token: CancelToken) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("installing signal handlers")?;
    std::thread::spawn(move || {
        for signal in signals.forever() {
            if token.is_cancelled() {
                restore_terminal();
                std::process::exit(128 + signal);
            }
            token.cancel();
        }
    });
    Ok(())
}

/// Why docker's options that rbuild run does not have are refused, each with what to do.
fn unsupported(args: &Args) -> Option<&'static str> {
    if args.detach {
        Some(
            "-d is not supported: rbuild keeps no containers in the background; run it \
             from your shell's job control (rbuild run IMAGE &) or a service manager",
        )
    } else if !args.publish.is_empty() {
        Some(
            "-p is not supported: the container shares the host's network, so a port it \
             listens on is already reachable on the host (http://127.0.0.1:PORT/)",
        )
    } else if args.name.is_some() {
        Some("--name is not supported: rbuild keeps no containers, so there is nothing to name")
    } else {
        None
    }
}

/// The process exit code for how the command ended: its own code, or 128 + the signal.
fn exit_code(status: ExitStatus) -> ExitCode {
    match status {
        ExitStatus::Code(code) => ExitCode::from((code & 0xff) as u8),
        ExitStatus::Signal(sig) => ExitCode::from((128 + sig).clamp(0, 255) as u8),
    }
}

/// Runs `rbuild run`. Failures of rbuild itself end with docker's codes (125, 126, 127),
/// not with the 1 of other subcommands, so they stay apart from the command's own codes.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(why) = unsupported(&args) {
        eprintln!("error: {why}");
        return Ok(ExitCode::from(EXIT_RUN_FAILED));
    }
    if args.tty && args.interactive && !std::io::stdin().is_terminal() {
        // docker's words and exit code for `docker run -it` from a pipe or a script.
        eprintln!("the input device is not a TTY");
        return Ok(ExitCode::from(1));
    }
    let cancel = CancelToken::new();
    // A closed output pipe is seen as EPIPE, not as a SIGPIPE that would end rbuild with
    // the terminal in raw mode and the container's scratch left behind: the sink stops
    // the container, and rbuild ends through SIGPIPE once all is put back.
    let broken_pipe = AtomicBool::new(false);
    // SAFETY: changes the disposition of SIGPIPE only; no handler code runs.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let result =
        cancel_on_signals(cancel.clone()).and_then(|()| start(&args, cancel, &broken_pipe));
    if broken_pipe.load(Ordering::Relaxed) {
        // SAFETY: the default action back, then the signal: rbuild ends as a program
        // writing to a closed pipe ends (128 + SIGPIPE), as docker does.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::raise(libc::SIGPIPE);
        }
    }
    match result {
        Ok(status) => Ok(exit_code(status)),
        Err(err) => {
            eprintln!("error: {err:#}");
            let code = err
                .downcast_ref::<ContainerError>()
                .map_or(EXIT_RUN_FAILED, ContainerError::exit_code);
            Ok(ExitCode::from(code))
        }
    }
}

fn start(args: &Args, cancel: CancelToken, broken_pipe: &AtomicBool) -> anyhow::Result<ExitStatus> {
    let store = args.store.open()?;
    let (_, image) = match &args.platform {
        Some(platform) => super::platform_arg::image_for(&store, &args.image, platform)?,
        None => super::store::find_image(&store, &args.image)?,
    };
    // A foreign image runs through a binfmt_misc handler: without one, say so rather
    // than "exec format error".
    rbuild_core::exec::check_emulation(
        &rbuild_core::image::config_platform(&image.config),
        &rbuild_core::image::host_platform(),
        std::path::Path::new(rbuild_core::exec::BINFMT_MISC_DIR),
    )?;
    let mounts = args
        .volumes
        .iter()
        .map(|v| bind_mount(v))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let terminal = args
        .tty
        .then(|| Terminal::new(window_size().unwrap_or_default()));
    let mut options = ContainerOptions::default()
        .with_args(args.command.clone())
        .with_env(env_pairs(&args.env))
        .with_network(match args.network.as_str() {
            "none" => Network::None,
            "host" => Network::Host,
            _ => Network::Default,
        })
        .with_cancel(cancel.clone());
    options.entrypoint = args.entrypoint.clone();
    options.workdir = args.workdir.clone();
    options.user = args.user.clone();
    options.inherit_stdin = !args.tty || args.interactive;
    options.terminal = terminal.clone();
    options.mounts = mounts;
    let mut sink = |stream: Stream, bytes: &[u8]| {
        let written = match stream {
            Stream::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(bytes).and_then(|()| out.flush())
            }
            Stream::Stderr => std::io::stderr().lock().write_all(bytes),
        };
        // A reader that went away: the container is stopped, then rbuild ends through
        // SIGPIPE (see `run`).
        if written.is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) {
            broken_pipe.store(true, Ordering::Relaxed);
            cancel.cancel();
        }
    };
    // Raw mode from here until the guard is dropped (on every return, a panic's unwind,
    // or the second signal's exit through restore_terminal).
    let _raw = match &terminal {
        Some(_) if args.interactive => Some(RawMode::enter()?),
        _ => None,
    };
    let _resizes = match &terminal {
        Some(terminal) => Some(follow_window_size(terminal.clone())?),
        None => None,
    };
    let status = run_container(&store, &image, &options, &mut sink)?;
    Ok(status)
}

/// The caller's terminal settings while it is in raw mode, to restore.
static SAVED_TERMINAL: Mutex<Option<libc::termios>> = Mutex::new(None);

/// Puts rbuild's terminal (standard input) back as it was before raw mode, once.
pub(crate) fn restore_terminal() {
    let saved = SAVED_TERMINAL
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take();
    if let Some(saved) = saved {
        // SAFETY: tcsetattr reads the saved `termios`.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &saved) };
    }
}

/// Raw mode on rbuild's terminal for `run -it`: keystrokes (Ctrl-C included) go to the
/// container's terminal as they are typed, which echoes and interprets them, as `docker
/// run -it` does. Restored when dropped.
struct RawMode;

impl RawMode {
    fn enter() -> anyhow::Result<RawMode> {
        // SAFETY: `termios` is plain old data, filled by tcgetattr.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: tcgetattr writes the `termios` through the pointer.
        if unsafe { libc::tcgetattr(0, &mut saved) } != 0 {
            return Err(std::io::Error::last_os_error()).context("reading the terminal's mode");
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw changes the `termios` in place.
        unsafe { libc::cfmakeraw(&mut raw) };
        *SAVED_TERMINAL.lock().unwrap_or_else(|e| e.into_inner()) = Some(saved);
        // SAFETY: tcsetattr reads the `termios`.
        if unsafe { libc::tcsetattr(0, libc::TCSANOW, &raw) } != 0 {
            let err = std::io::Error::last_os_error();
            restore_terminal();
            return Err(err).context("putting the terminal in raw mode");
        }
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        restore_terminal();
    }
}

/// The size of the terminal rbuild runs in (standard output's, else standard input's).
fn window_size() -> Option<WindowSize> {
    WindowSize::of(std::io::stdout()).or_else(|| WindowSize::of(std::io::stdin()))
}

/// Passes each change of rbuild's window size (SIGWINCH) on to the container's terminal
/// until the returned handle is dropped.
fn follow_window_size(terminal: Terminal) -> anyhow::Result<WindowFollower> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGWINCH])
        .context("installing the SIGWINCH handler")?;
    let handle = signals.handle();
    std::thread::spawn(move || {
        for _ in signals.forever() {
            if let Some(size) = window_size() {
                terminal.resize(size);
            }
        }
    });
    Ok(WindowFollower(handle))
}

/// Stops following the window size when dropped.
struct WindowFollower(signal_hook::iterator::Handle);

impl Drop for WindowFollower {
    fn drop(&mut self) {
        self.0.close();
    }
}
