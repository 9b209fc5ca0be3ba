//! Helpers of `attack_context.rs`: a store with busybox, contexts, a host canary
//! directory outside every context, builds exported to a directory, and hand-made tar
//! streams for `rbuild build -`.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::attack::as_user;
use super::run;

/// How long one build may take before the attempt calls it hung.
pub const HANG_SECONDS: &str = "120";

/// A store with busybox imported, a directory for contexts and outputs, and a host
/// directory (`host/`) with a secret no build may read or write beside.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub store: PathBuf,
    pub host: PathBuf,
    pub secret: String,
    next: std::cell::Cell<u32>,
}

impl Lab {
    pub fn new() -> Self {
        let (dir, store, _ctx) = run::busybox_setup(&[]);
        // Every user may traverse the lab (the rootless attempts run in it).
        set_mode(dir.path(), 0o755);
        let host = dir.path().join("host");
        std::fs::create_dir(&host).expect("creating the host canary directory");
        let secret = format!("HOST-SECRET-{}", std::process::id());
        std::fs::write(host.join("secret"), &secret).expect("writing the host secret");
        Self {
            dir,
            store,
            host,
            secret,
            next: std::cell::Cell::new(0),
        }
    }

    /// A new empty directory under the lab.
    pub fn fresh(&self, what: &str) -> PathBuf {
        let n = self.next.get();
        self.next.set(n + 1);
        let path = self.dir.path().join(format!("{what}-{n}"));
        std::fs::create_dir_all(&path).expect("creating a lab directory");
        path
    }

    /// A context directory holding `files` (path, content) and `Dockerfile`.
    pub fn context(&self, dockerfile: &str, files: &[(&str, &str)]) -> PathBuf {
        let ctx = self.fresh("ctx");
        std::fs::write(ctx.join("Dockerfile"), dockerfile).expect("writing the Dockerfile");
        for (path, content) in files {
            let path = ctx.join(path);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(&path, content).expect("writing a context file");
        }
        ctx
    }

    /// `rbuild build --no-cache --progress plain -o type=local,dest=OUT ARGS...` under
    /// `timeout`, with `stdin` piped in when given. Returns the output and OUT.
    pub fn build(&self, args: &[&str], stdin: Option<&[u8]>) -> (Output, PathBuf) {
        self.build_with(args, stdin, None, &[])
    }

    /// [`Lab::build`] as `user` (with its own store) and under `limits` (`prlimit`
    /// options such as `--as=...`).
    pub fn build_with(
        &self,
        args: &[&str],
        stdin: Option<&[u8]>,
        user: Option<(&str, &Path)>,
        limits: &[&str],
    ) -> (Output, PathBuf) {
        self.build_env(args, stdin, user, limits, &[])
    }

    /// [`Lab::build_with`] with environment variables `env` set for rbuild.
    pub fn build_env(
        &self,
        args: &[&str],
        stdin: Option<&[u8]>,
        user: Option<(&str, &Path)>,
        limits: &[&str],
        env: &[(&str, &str)],
    ) -> (Output, PathBuf) {
        let out_dir = self.fresh("out");
        std::fs::remove_dir(&out_dir).expect("the exporter makes its directory");
        let store = user.map_or(self.store.as_path(), |(_, store)| store);
        let mut inner = Command::new("timeout");
        inner.args(["-k", "5", HANG_SECONDS]);
        if !limits.is_empty() {
            inner.arg("prlimit").args(limits).arg("--");
        }
        inner
            .arg(env!("CARGO_BIN_EXE_rbuild"))
            .env("RBUILD_ROOT", store)
            .envs(env.iter().copied())
            .args(["build", "--no-cache", "--progress", "plain"])
            .arg("-o")
            .arg(format!("type=local,dest={}", out_dir.display()))
            .args(args);
        let mut cmd = match user {
            Some((name, _)) => as_user(name, &inner),
            None => inner,
        };
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("starting rbuild");
        if let Some(bytes) = stdin {
            let mut pipe = child.stdin.take().expect("a stdin pipe");
            // The build may stop reading early (a refused entry): that is fine.
            let _ = pipe.write_all(bytes);
        }
        let out = child.wait_with_output().expect("waiting for rbuild");
        (out, out_dir)
    }

    /// A store of `user`'s own, with busybox imported, for rootless attempts.
    pub fn user_store(&self, user: &str) -> PathBuf {
        let store = self.fresh("store");
        chown(&store, user);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rbuild"));
        cmd.env("RBUILD_ROOT", &store)
            .arg("import")
            .arg(run::fixture("busybox"))
            .arg("busybox:latest");
        let out = as_user(user, &cmd).output().expect("running rbuild import");
        assert!(
            out.status.success(),
            "importing busybox as {user} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        store
    }
}

/// Fails with the build's output unless it ended by itself (not killed as hung).
pub fn not_hung(out: &Output) -> Result<(), String> {
    if out.status.code() == Some(124) || out.status.code() == Some(137) {
        return Err(format!(
            "hung: killed after {HANG_SECONDS} s; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Fails when any file under `dir` (if it exists), or the build's output, holds `needle`.
pub fn nowhere(out: &Output, dir: &Path, needle: &str) -> Result<(), String> {
    for stream in [&out.stdout, &out.stderr] {
        if String::from_utf8_lossy(stream).contains(needle) {
            return Err(format!("the build's output shows {needle:?}"));
        }
    }
    if !dir.exists() {
        return Ok(());
    }
    for entry in walkdir::WalkDir::new(dir).follow_links(false) {
        let entry = entry.map_err(|e| format!("walking {}: {e}", dir.display()))?;
        if entry.file_type().is_file() {
            let bytes = std::fs::read(entry.path()).unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                return Err(format!("{} holds {needle:?}", entry.path().display()));
            }
        }
    }
    Ok(())
}

/// Fails unless the file at `path` holds exactly `content`.
pub fn holds(path: &Path, content: &str) -> Result<(), String> {
    match std::fs::read_to_string(path) {
        Ok(text) if text == content => Ok(()),
        Ok(text) => Err(format!(
            "{} holds {text:?}, not {content:?}",
            path.display()
        )),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// The names in `dir`, sorted.
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// `chown -R user:` of `path`.
pub fn chown(path: &Path, user: &str) {
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{user}:"))
        .arg(path)
        .status()
        .expect("running chown");
    assert!(status.success(), "chown {user} {} failed", path.display());
}

pub fn symlink(target: &str, link: &Path) {
    std::os::unix::fs::symlink(target, link).expect("creating a symlink");
}

/// Makes a FIFO at `path`.
pub fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("running mkfifo (coreutils)");
    assert!(status.success(), "mkfifo {} failed", path.display());
}

/// One entry of a hand-made ustar stream.
pub struct TarEntry<'a> {
    pub name: &'a str,
    /// `b'0'` file, `b'1'` hard link, `b'2'` symlink, `b'3'` char device, `b'5'` dir.
    pub kind: u8,
    pub link: &'a str,
    pub data: &'a [u8],
    /// The size written in the header, when it is to lie about the data.
    pub declared: Option<u64>,
    pub dev: (u32, u32),
}

impl<'a> TarEntry<'a> {
    pub fn file(name: &'a str, data: &'a [u8]) -> Self {
        Self {
            name,
            kind: b'0',
            link: "",
            data,
            declared: None,
            dev: (0, 0),
        }
    }

    pub fn link(name: &'a str, kind: u8, link: &'a str) -> Self {
        Self {
            name,
            kind,
            link,
            data: b"",
            declared: None,
            dev: (0, 0),
        }
    }
}

fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    let bytes = text.as_bytes();
    let start = bytes.len().saturating_sub(width);
    field[..width].copy_from_slice(&bytes[start..]);
    field[width] = 0;
}

/// A tar stream of `entries`, written by hand so that it may hold what `tar(1)` would
/// not write (absolute and `..` names, lying sizes). `end` adds the two zero blocks.
pub fn tar_stream(entries: &[TarEntry<'_>], end: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = [0u8; 512];
        assert!(
            e.name.len() <= 100 && e.link.len() <= 100,
            "names fit ustar"
        );
        h[..e.name.len()].copy_from_slice(e.name.as_bytes());
        octal(&mut h[100..108], if e.kind == b'5' { 0o755 } else { 0o644 });
        octal(&mut h[108..116], 0);
        octal(&mut h[116..124], 0);
        let size = if matches!(e.kind, b'0') {
            e.declared.unwrap_or(e.data.len() as u64)
        } else {
            0
        };
        octal(&mut h[124..136], size);
        octal(&mut h[136..148], 1_700_000_000);
        h[156] = e.kind;
        h[157..157 + e.link.len()].copy_from_slice(e.link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        octal(&mut h[329..337], u64::from(e.dev.0));
        octal(&mut h[337..345], u64::from(e.dev.1));
        h[148..156].copy_from_slice(b"        ");
        let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
        let text = format!("{sum:06o}\0 ");
        h[148..156].copy_from_slice(text.as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(e.data);
        let pad = (512 - e.data.len() % 512) % 512;
        out.extend(std::iter::repeat_n(0u8, pad));
    }
    if end {
        out.extend(std::iter::repeat_n(0u8, 1024));
    }
    out
}

/// `bytes` compressed by gzip(1).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("running gzip (the gzip package)");
    let mut stdin = child.stdin.take().expect("a stdin pipe");
    let out = std::thread::scope(|s| {
        s.spawn(move || stdin.write_all(bytes).expect("feeding gzip"));
        child.wait_with_output().expect("waiting for gzip")
    });
    assert!(out.status.success(), "gzip failed");
    out.stdout
}
