//! Carrying out one step that touches the filesystem on a prepared snapshot: `RUN`
//! through the executor, `COPY`/`ADD` through the copy module, `WORKDIR` by creating
//! the directory.

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rbuild_dockerfile::{CommandLine, NetworkMode, Run, SecurityMode, Step, clean_path};
use rustix::fs::{Mode, OFlags, ResolveFlags};

use super::error::{BuildError, io_err};
use crate::copy::DestRoot;
use crate::exec::{CancelToken, Command, Executor, Network, RunSpec, Security, resolve_owner};
use crate::image::ImageConfig;
use crate::progress::{Event, Progress, StepId, Stream};
use crate::snapshot::{Snapshot, StepRoot};

/// How many lines of a failed step's output its error shows, as BuildKit does.
const TAIL_LINES: usize = 10;

/// How much of a step's output becomes log events (BuildKit's default
/// `BUILDKIT_STEP_LOG_MAX_SIZE`, 2 MiB); the rest is read and dropped, after one line
/// saying so, so a noisy step (`RUN yes`) cannot grow rbuild's memory or its logs.
pub(crate) const STEP_LOG_LIMIT: usize = 2 * 1024 * 1024;

/// The line that ends a clipped step's log.
pub(crate) const CLIPPED_NOTICE: &str = "[output clipped, log limit 2MiB reached]";

/// The longest line kept whole: output without a line end is cut into lines this long,
/// so a step that never writes `\n` (`head -c 1G /dev/zero`) is bounded too.
const MAX_LINE: usize = 64 * 1024;

/// The mode of directories `WORKDIR` creates (BuildKit: `llb.Mkdir(wd, 0755, ...)`).
const WORKDIR_MODE: u32 = 0o755;

/// What a `RUN` step runs with besides its snapshot.
pub(crate) struct RunContext<'a> {
    pub executor: &'a (dyn Executor + Sync),
    pub progress: &'a dyn Progress,
    pub step_id: StepId,
    pub cancel: CancelToken,
}

/// Why a `RUN` failed: an error of the machinery, or the command's exit.
pub(crate) enum RunFailure {
    /// The machinery failed.
    Error(BuildError),
    /// The command failed; its exit code (if it exited), the message and the last
    /// lines of output.
    Exit {
        code: Option<i32>,
        message: String,
        tail: Vec<String>,
    },
}

impl From<BuildError> for RunFailure {
    fn from(e: BuildError) -> Self {
        RunFailure::Error(e)
    }
}

/// The spec for `RUN` step `step` of a stage whose config (before the step) is `config`.
pub(crate) fn run_spec(step: &Step, run: &Run, config: &ImageConfig, network: Network) -> RunSpec {
    let shell = step
        .shell
        .clone()
        .or_else(|| config.config.shell.clone())
        .unwrap_or_default();
    let mut script_env = None;
    let command = match &run.command {
        CommandLine::Exec(args) => Command::Exec(args.clone()),
        CommandLine::Shell(line) => match shebang_heredoc(line, run) {
            Some((name, body)) => {
                script_env = Some(body);
                Command::Shell(run_script_command(&name))
            }
            None => Command::Shell(shell_script(line, run)),
        },
    };
    let mut spec = RunSpec::new(command);
    spec.shell = shell;
    // The state environment as BuildKit keeps it (base Env, then ENV and ARG values in
    // order), then the proxy variables, which win (BuildKit appends them last).
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |k: &str, v: &str| {
        env.retain(|(name, _)| name != k);
        env.push((k.to_owned(), v.to_owned()));
    };
    for (k, v) in step.run_env.iter() {
        set(k, v);
    }
    for (k, v) in step.proxy_env.iter() {
        set(k, v);
    }
    if let Some(body) = &script_env {
        set(HEREDOC_SCRIPT_ENV, body);
    }
    spec.env = env;
    spec.workdir = step
        .workdir
        .clone()
        .or_else(|| config.config.working_dir.clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".to_owned());
    spec.user = step
        .user
        .clone()
        .or_else(|| config.config.user.clone())
        .filter(|u| !u.is_empty());
    spec.network = match run.network {
        Some(NetworkMode::None) => Network::None,
        Some(NetworkMode::Host) => Network::Host,
        Some(NetworkMode::Default) | None => network,
    };
    // Allowed or not is checked when the build starts (`BuildRequest::allow`).
    if run.security == Some(SecurityMode::Insecure) {
        spec.security = Security::Insecure;
    }
    spec
}

/// The variable that carries a `#!` heredoc script into the step (removed before the
/// script runs).
const HEREDOC_SCRIPT_ENV: &str = "RBUILD_HEREDOC_SCRIPT";

/// A shell-form `RUN` that is only `<<NAME` with a body starting with `#!`: BuildKit
/// runs the body as an executable file (mounted at `/dev/pipes/NAME`), so its own
/// interpreter runs it. Returns the heredoc's name and body.
fn shebang_heredoc(line: &str, run: &Run) -> Option<(String, String)> {
    let first = run.heredocs.first()?;
    let only = line.trim();
    let bare = only
        .strip_prefix("<<-")
        .or_else(|| only.strip_prefix("<<"))
        .map(|name| name.trim_matches(['"', '\'']))?;
    (run.heredocs.len() == 1 && bare == first.name && first.content.starts_with("#!"))
        .then(|| (first.name.clone(), first.content.clone()))
}

/// The shell command that writes the script from [`HEREDOC_SCRIPT_ENV`] to the step's
/// own `/dev` (a tmpfs of the sandbox: nothing reaches the layer), makes it executable,
/// and runs it without the variable.
fn run_script_command(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let path = format!("/dev/pipes-{safe}");
    format!(
        "printf '%s' \"${HEREDOC_SCRIPT_ENV}\" > {path} && chmod 755 {path} && unset {HEREDOC_SCRIPT_ENV} && exec {path}"
    )
}

/// The shell script of a shell-form `RUN` with its heredocs, as BuildKit runs them: a
/// command that is only `<<NAME` runs the heredoc's body as the script; otherwise the
/// shell gets the whole text, heredoc bodies and terminators included.
fn shell_script(line: &str, run: &Run) -> String {
    let Some(first) = run.heredocs.first() else {
        return line.to_owned();
    };
    let only = line.trim();
    let bare = only
        .strip_prefix("<<-")
        .or_else(|| only.strip_prefix("<<"))
        .map(|name| name.trim_matches(['"', '\'']));
    if run.heredocs.len() == 1 && bare == Some(first.name.as_str()) {
        return first.content.clone();
    }
    let mut script = line.to_owned();
    for doc in &run.heredocs {
        script.push('\n');
        script.push_str(&doc.content);
        if !doc.content.is_empty() && !doc.content.ends_with('\n') {
            script.push('\n');
        }
        script.push_str(&doc.name);
    }
    script
}

/// Runs `spec` on `snapshot`, streaming its output as log events; on a non-zero exit
/// returns the message BuildKit gives and the last lines of output.
pub(crate) fn run(
    ctx: &RunContext<'_>,
    snapshot: &Snapshot,
    mut spec: RunSpec,
) -> Result<(), RunFailure> {
    spec.cancel = ctx.cancel.clone();
    let argv = spec.argv().map_err(BuildError::from)?;
    if !ctx.executor.makes_workdir() {
        if let StepRoot::Dir(root) = snapshot.root() {
            // As runc, which makes the path as written (`/a/../b` makes `/a` too), then
            // the path itself.
            for prefix in written_prefixes(&spec.workdir) {
                make_workdir(root, &prefix, None).map_err(RunFailure::from)?;
            }
        }
    }
    let mut lines = LineSplitter::new(ctx.progress, ctx.step_id);
    let status = {
        let mut sink = |stream: Stream, bytes: &[u8]| lines.push(stream, bytes);
        ctx.executor
            .run(snapshot, &spec, &mut sink)
            .map_err(BuildError::from)?
    };
    lines.flush();
    if status.success() {
        // The step's own processes made or replaced files with no owner table to tell:
        // what they made is the build user's, so the step user's in the image (root's
        // but under proot), with the modes they gave it, and the chown calls proot's
        // recorder kept take effect.
        snapshot.follow_run().map_err(BuildError::from)?;
        return Ok(());
    }
    if ctx.cancel.is_cancelled() {
        return Err(BuildError::Canceled.into());
    }
    let shown = argv.join(" ");
    let message = match status {
        crate::exec::ExitStatus::Code(code) => {
            format!("process \"{shown}\" did not complete successfully: exit code: {code}")
        }
        crate::exec::ExitStatus::Signal(sig) => {
            format!("process \"{shown}\" was killed by signal {sig}")
        }
    };
    let code = match status {
        crate::exec::ExitStatus::Code(code) => Some(code),
        crate::exec::ExitStatus::Signal(_) => None,
    };
    Err(RunFailure::Exit {
        code,
        message,
        tail: lines.tail(),
    })
}

/// Cuts a step's output into lines for log events, keeping the last few. Memory stays
/// bounded whatever the step writes: a partial line is at most [`MAX_LINE`] per stream,
/// the tail [`TAIL_LINES`] lines, and after [`STEP_LOG_LIMIT`] bytes of events the rest
/// is only scanned for the tail (so a failure still shows its last lines).
struct LineSplitter<'a> {
    progress: &'a dyn Progress,
    step: StepId,
    /// The unfinished line of stdout and of stderr.
    partial: [Vec<u8>; 2],
    /// The last lines, raw (buffers reused once full).
    tail: VecDeque<(Stream, Vec<u8>)>,
    /// Bytes sent as log events so far.
    logged: usize,
    /// The limit was reached and said so.
    clipped: bool,
    /// Lines dropped since (saturating; at least the tail's length when it matters).
    dropped: usize,
}

impl<'a> LineSplitter<'a> {
    fn new(progress: &'a dyn Progress, step: StepId) -> Self {
        LineSplitter {
            progress,
            step,
            partial: [Vec::new(), Vec::new()],
            tail: VecDeque::with_capacity(TAIL_LINES),
            logged: 0,
            clipped: false,
            dropped: 0,
        }
    }

    fn push(&mut self, stream: Stream, mut bytes: &[u8]) {
        let slot = usize::from(stream == Stream::Stderr);
        if self.clipped {
            // Only the tail matters now: skip to the last TAIL_LINES line ends.
            if let Some(cut) = memchr::memrchr_iter(b'\n', bytes).nth(TAIL_LINES) {
                self.partial[slot].clear();
                self.dropped = self.dropped.saturating_add(TAIL_LINES + 1);
                bytes = &bytes[cut + 1..];
            }
        }
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', bytes) {
            let piece = &bytes[start..=end];
            start = end + 1;
            if self.partial[slot].is_empty() {
                self.line(stream, piece);
            } else {
                let mut line = std::mem::take(&mut self.partial[slot]);
                line.extend_from_slice(piece);
                self.line(stream, &line);
                line.clear();
                self.partial[slot] = line;
            }
        }
        let mut rest = &bytes[start..];
        while self.partial[slot].len() + rest.len() >= MAX_LINE {
            let take = MAX_LINE - self.partial[slot].len();
            let mut line = std::mem::take(&mut self.partial[slot]);
            line.extend_from_slice(&rest[..take]);
            self.line(stream, &line);
            line.clear();
            self.partial[slot] = line;
            rest = &rest[take..];
        }
        self.partial[slot].extend_from_slice(rest);
    }

    /// One line: into the tail, and a log event until the limit.
    fn line(&mut self, stream: Stream, line: &[u8]) {
        if self.tail.len() == TAIL_LINES {
            if let Some((_, mut buf)) = self.tail.pop_front() {
                buf.clear();
                buf.extend_from_slice(line);
                self.tail.push_back((stream, buf));
            }
        } else {
            self.tail.push_back((stream, line.to_vec()));
        }
        if self.clipped {
            self.dropped = self.dropped.saturating_add(1);
            return;
        }
        if self.logged + line.len() > STEP_LOG_LIMIT {
            self.clipped = true;
            self.dropped = 1;
            self.progress.event(&Event::StepLog {
                step: self.step,
                stream,
                text: CLIPPED_NOTICE.to_owned(),
            });
            return;
        }
        self.logged += line.len();
        self.progress.event(&Event::log(self.step, stream, line));
    }

    fn flush(&mut self) {
        for (slot, stream) in [(0, Stream::Stdout), (1, Stream::Stderr)] {
            let rest = std::mem::take(&mut self.partial[slot]);
            if !rest.is_empty() {
                self.line(stream, &rest);
            }
        }
        if self.clipped {
            // The log ends with the step's real last lines, as its failure shows them.
            let shown = self.dropped.min(self.tail.len());
            for (stream, line) in self.tail.iter().skip(self.tail.len() - shown) {
                self.progress.event(&Event::log(self.step, *stream, line));
            }
        }
    }

    /// The last lines as text (as their log events would carry them).
    fn tail(&self) -> Vec<String> {
        self.tail
            .iter()
            .filter_map(
                |(stream, line)| match Event::log(self.step, *stream, line) {
                    Event::StepLog { text, .. } => Some(text),
                    _ => None,
                },
            )
            .collect()
    }
}

/// Each prefix of `workdir` as written that ends in a name, up to the whole path:
/// `/a/../b/` gives `/a`, `/a/../b`.
fn written_prefixes(workdir: &str) -> Vec<String> {
    let mut prefixes = Vec::new();
    let mut prefix = String::new();
    for part in workdir.split('/').filter(|p| !p.is_empty()) {
        prefix.push('/');
        prefix.push_str(part);
        if part != "." && part != ".." {
            prefixes.push(prefix.clone());
        }
    }
    if prefixes.is_empty() {
        prefixes.push(workdir.to_owned());
    }
    prefixes
}

/// Creates `workdir` (absolute) and its missing parents inside `root`, owned by `user`
/// (resolved as a file owner) when one is set, as BuildKit's `WORKDIR` does, never
/// leaving `root` through a symlink.
///
/// BuildKit's `WORKDIR` is a `Mkdir` file op on the cleaned path, resolved like
/// continuity's `RootPath`: every symlink on the way is followed inside the root, a
/// dangling one to where its target would be, which is then created (issue 14, bug 4:
/// `RUN ln -s /var/lib/tempest /tempest` / `WORKDIR /tempest` makes `/var/lib/tempest`).
pub(crate) fn make_workdir(
    root: &Path,
    workdir: &str,
    user: Option<&str>,
) -> Result<(), BuildError> {
    let root_fd = open_dir(root)?;
    // BuildKit makes the directory with a file operation, whose owner lookup never
    // fails: an unknown name is 0 (`resolve_owner`).
    let owner = match user.filter(|u| !u.is_empty()) {
        None => None,
        Some(user) => {
            let passwd = read_in_root(&root_fd, "etc/passwd");
            let group = read_in_root(&root_fd, "etc/group");
            Some(resolve_owner(user, passwd.as_deref(), group.as_deref())?)
        }
    };
    let clean = clean_path(workdir);
    let dest = DestRoot::open(root)?;
    let resolved = dest
        .resolve(Path::new(clean.trim_start_matches('/')))
        .map_err(io_err(
            "resolve",
            &root.join(workdir.trim_start_matches('/')),
        ))?;
    let mut parent = String::new();
    for component in resolved.components() {
        let Component::Normal(name) = component else {
            continue;
        };
        let dir = open_in_root(&root_fd, &parent, root)?;
        match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(WORKDIR_MODE)) {
            Ok(()) => {
                if let Some(wanted) = owner {
                    let mut made = PathBuf::from(&parent);
                    made.push(name);
                    // Unprivileged, the owner goes in the root's table (crate::fakeroot).
                    let (uid, gid) = dest.disk_owner(&made, wanted);
                    rustix::fs::chownat(
                        &dir,
                        name,
                        Some(rustix::fs::Uid::from_raw(uid)),
                        Some(rustix::fs::Gid::from_raw(gid)),
                        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                    )
                    .map_err(|e| io_err("change owner of", &root.join(workdir))(e.into()))?;
                }
            }
            Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(io_err("create directory", &root.join(workdir))(e.into())),
        }
        if !parent.is_empty() {
            parent.push('/');
        }
        parent.push_str(&String::from_utf8_lossy(name.as_bytes()));
    }
    dest.save_owners()?;
    Ok(())
}

fn open_dir(root: &Path) -> Result<OwnedFd, BuildError> {
    rustix::fs::open(
        root,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err("open", root)(e.into()))
}

/// Opens directory `rel` of the tree at `root_fd`, resolving symlinks as if `root_fd`
/// were `/`.
fn open_in_root(root_fd: &OwnedFd, rel: &str, root: &Path) -> Result<OwnedFd, BuildError> {
    let rel = if rel.is_empty() { "." } else { rel };
    rustix::fs::openat2(
        root_fd.as_fd(),
        rel,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| io_err("open directory", &root.join(rel))(e.into()))
}

fn read_in_root(root_fd: &OwnedFd, rel: &str) -> Option<String> {
    let fd = rustix::fs::openat2(
        root_fd.as_fd(),
        OsStr::new(rel),
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .ok()?;
    std::io::read_to_string(std::fs::File::from(fd)).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use rbuild_dockerfile::Instruction;

    fn logged(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::StepLog { text, .. } => Some(text.clone()),
                _ => None,
            })
            .collect()
    }

    /// Issue 13: `RUN yes` grew rbuild without bound. The log stops at the limit with a
    /// notice, then ends with the real last lines; the failure tail is those lines.
    #[test]
    fn a_noisy_step_is_clipped_at_the_limit_and_keeps_its_real_tail() {
        let progress = crate::progress::Collect::new();
        let mut lines = LineSplitter::new(&progress, StepId(1));
        let chunk = b"y\n".repeat(8 * 1024);
        for _ in 0..(3 * STEP_LOG_LIMIT / chunk.len()) {
            lines.push(Stream::Stdout, &chunk);
        }
        lines.push(Stream::Stdout, b"second to last\nthe last line");
        lines.flush();
        let texts = logged(&progress.events());
        let logged_bytes: usize = texts.iter().map(|t| t.len() + 1).sum();
        assert!(
            logged_bytes < STEP_LOG_LIMIT + 64 * 1024,
            "{logged_bytes} bytes logged"
        );
        let notice = texts.iter().position(|t| t == CLIPPED_NOTICE).unwrap();
        assert_eq!(
            texts.len() - notice - 1,
            TAIL_LINES,
            "{:?}",
            &texts[notice..]
        );
        assert_eq!(texts.last().unwrap(), "the last line");
        let tail = lines.tail();
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(&tail[TAIL_LINES - 2..], ["second to last", "the last line"]);
    }

    #[test]
    fn output_without_line_ends_is_cut_into_bounded_lines() {
        let progress = crate::progress::Collect::new();
        let mut lines = LineSplitter::new(&progress, StepId(1));
        for _ in 0..10 {
            lines.push(Stream::Stderr, &[b'x'; 50_000]);
            assert!(lines.partial[1].len() < MAX_LINE);
        }
        lines.flush();
        let texts = logged(&progress.events());
        assert!(texts.iter().all(|t| t.len() <= MAX_LINE));
        assert_eq!(texts.iter().map(String::len).sum::<usize>(), 500_000);
    }

    #[test]
    fn a_quiet_step_logs_every_line_unclipped() {
        let progress = crate::progress::Collect::new();
        let mut lines = LineSplitter::new(&progress, StepId(1));
        lines.push(Stream::Stdout, b"a\nb");
        lines.push(Stream::Stdout, b"c\n");
        lines.push(Stream::Stderr, b"e");
        lines.flush();
        assert_eq!(logged(&progress.events()), ["a", "bc", "e"]);
    }

    fn run_of(text: &str) -> Run {
        let file = rbuild_dockerfile::parse(text).unwrap();
        match &file.stages[0].instructions[0] {
            Instruction::Run(run) => run.clone(),
            other => panic!("not a RUN: {other:?}"),
        }
    }

    #[test]
    fn a_bare_heredoc_runs_its_body_as_the_script() {
        let run = run_of("FROM x\nRUN <<EOF\necho hi\nEOF\n");
        let CommandLine::Shell(line) = &run.command else {
            panic!("shell form expected")
        };
        assert_eq!(shell_script(line, &run), "echo hi\n");
    }

    #[test]
    fn a_heredoc_inside_a_command_goes_to_the_shell_whole() {
        let run = run_of("FROM x\nRUN cat <<A > /x && echo two\nline\nA\n");
        let CommandLine::Shell(line) = &run.command else {
            panic!("shell form expected")
        };
        assert_eq!(
            shell_script(line, &run),
            "cat <<A > /x && echo two\nline\nA"
        );
    }

    #[test]
    fn the_written_prefixes_of_a_workdir_end_in_names() {
        assert_eq!(
            written_prefixes("/x/../y//z/"),
            ["/x", "/x/../y", "/x/../y/z"]
        );
        assert_eq!(written_prefixes("/a/./b"), ["/a", "/a/./b"]);
        assert_eq!(written_prefixes("/"), ["/"]);
    }

    /// Issue 14, bug 4: `RUN ln -s /var/lib/tempest /tempest` / `WORKDIR /tempest`
    /// left the link dangling (and the next RUN failed); BuildKit creates its target.
    /// Chains, relative links and links climbing above the root resolve inside it.
    #[test]
    fn workdir_through_dangling_symlinks_creates_their_targets() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("var")).unwrap();
        let link = |target: &str, name: &str| {
            std::os::unix::fs::symlink(target, root.join(name)).unwrap();
        };
        link("/var/lib/tempest", "tempest");
        make_workdir(root, "/tempest", None).unwrap();
        assert!(root.join("var/lib/tempest").is_dir());
        link("c2", "c1");
        link("/c3/x", "c2");
        make_workdir(root, "/c1/sub/", None).unwrap();
        assert!(root.join("c3/x/sub").is_dir());
        link("../../outside", "esc");
        make_workdir(root, "/esc/in", None).unwrap();
        assert!(root.join("outside/in").is_dir());
        // The path is cleaned first: `/a/../b/` makes `/b` only.
        make_workdir(root, "/a/../b/", None).unwrap();
        assert!(root.join("b").is_dir() && !root.join("a").exists());
    }

    #[test]
    fn workdir_is_created_inside_the_root_even_through_an_absolute_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::create_dir_all(root.join(outside.strip_prefix("/").unwrap())).unwrap();
        // /app -> <outside> on the host; inside the root it must resolve to <root><outside>.
        std::os::unix::fs::symlink(&outside, root.join("app")).unwrap();
        make_workdir(&root, "/app/sub", None).unwrap();
        assert!(!outside.join("sub").exists());
        assert!(
            root.join(outside.strip_prefix("/").unwrap())
                .join("sub")
                .is_dir()
        );
    }
}
