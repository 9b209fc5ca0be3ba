//! `RUN --mount`: what each mount of a step becomes in its [`RunSpec`].
//!
//! - `type=cache`: a directory of the store, `<root>/cache-mounts/<id or target>`, bound
//!   read-write. It sits above the step's writable layer, so the step's change set never
//!   sees what is written there, and it is kept across builds until
//!   `rbuild prune --cache-mounts` ([`prune_cache_mounts`]). `sharing=shared` (the
//!   default) takes a shared lock on it for the step, `locked` an exclusive one (steps
//!   wait for each other), `private` an exclusive one if it can, else the step gets a
//!   fresh empty directory of its own.
//! - `type=tmpfs`: an empty tmpfs for the step only.
//! - `type=bind`: a file or directory of the build context, read-only unless `rw`, in
//!   which case the step gets a throw-away copy; with `from=`, a path of a stage's or an
//!   image's tree, which the engine prepares as a snapshot of its own and the sandbox
//!   mounts ([`TreeMount`](crate::exec::TreeMount)), its writes thrown away with it.
//! - `type=secret`: a secret of the request ([`BuildOptions::secrets`](super::BuildOptions::secrets)) as a file (by
//!   default `/run/secrets/<id>`, mode 0400) or an environment variable; the file is
//!   never on disk (the sandbox writes it on a tmpfs of the step's own mount namespace,
//!   gone with the step even when rbuild is killed), and neither the value nor the file
//!   reaches a layer, the cache key or the output. A secret's source must be a regular
//!   file (a symbolic link to one is followed) of at most [`MAX_SECRET_SIZE`] bytes.
//!
//! - `type=ssh`: an ssh agent of the request ([`BuildOptions::ssh`](super::BuildOptions::ssh)) through a relay
//!   socket of the step's own (see `ssh.rs`), named by `SSH_AUTH_SOCK`.
//!
//! Cache keys: the mount specifications are part of the step's definition digest, so
//! cache, tmpfs and secret mounts change the key only through their specification;
//! context bind mounts add the digest of what they bind ([`context_digest`]), stage and
//! image bind mounts the key of their tree.
//!
//! Length: this file is a little over the ~600-line guide. It holds one thing, the
//! mount kinds a step can ask for and the locks they hold; binds (bind.rs) and ssh
//! relays (ssh.rs) are already their own files, and cache, tmpfs and secret mounts share
//! the set-up and the locking here.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rbuild_dockerfile::{CacheSharing, Mount, MountType, Run};

mod bind;
mod ssh;
use self::bind::bind_mount;
pub(crate) use self::bind::{context_digest, from_tree, tree_source};
use rustix::fs::FlockOperation;

use super::request::{BuildSecret, SecretSource, SshAgent};
use crate::context::ContextListing;
use crate::exec::{BindMount, FileMount, RunSpec, TmpfsMount};
use crate::store::{ContentStore, StoreError};

pub use crate::store::CACHE_MOUNTS_DIR;

/// BuildKit's default directory of secret files (`dockerfile2llb`, `/run/secrets/<id>`).
const SECRETS_DIR: &str = "/run/secrets";

/// BuildKit's default mode of a secret file.
const SECRET_MODE: u32 = 0o400;

/// BuildKit's default mode of a new cache directory.
const CACHE_MODE: u32 = 0o755;

/// A `RUN --mount` that cannot be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    /// A mount of a kind (or with an option) the engine does not support.
    #[error("run --mount={what} is not supported")]
    Unsupported {
        /// The mount kind or option.
        what: String,
    },
    /// A numeric field does not parse.
    #[error("invalid {field} {value:?} for the mount at {target}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// The mount's target.
        target: String,
    },
    /// A required secret was not given.
    #[error("secret {id} is required but was not given to the build")]
    SecretMissing {
        /// Its id.
        id: String,
    },
    /// A secret's file could not be read.
    #[error("failed to read secret {id}")]
    SecretRead {
        /// Its id.
        id: String,
        /// Why.
        source: io::Error,
    },
    /// A secret's environment variable is not set.
    #[error("secret {id}: environment variable {var} is not set")]
    SecretEnv {
        /// Its id.
        id: String,
        /// The variable.
        var: String,
    },
    /// A required ssh mount names an agent the build was not given.
    #[error("ssh agent {id} is required but was not given to the build (--ssh {id}=SOCKET)")]
    SshMissing {
        /// Its id.
        id: String,
    },
    /// The agent's socket cannot be reached.
    #[error("failed to reach ssh agent {id} at {socket}")]
    SshAgent {
        /// Its id.
        id: String,
        /// Its socket.
        socket: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// A bind mount's source leaves the build context or does not exist.
    #[error("bind mount source {source_path:?} {reason}")]
    BindSource {
        /// The source as written.
        source_path: String,
        /// Why.
        reason: &'static str,
    },
    /// A filesystem operation failed.
    #[error("failed to {action} {path}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

fn io_err<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> MountError + 'p {
    move |source| MountError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// What a step's mounts need from the build.
pub(crate) struct MountInputs<'a> {
    pub store: &'a ContentStore,
    /// `--secret`: the secrets the build was given.
    pub secrets: &'a [BuildSecret],
    /// `--ssh`: the agents the build may forward.
    pub ssh: &'a [SshAgent],
    /// The step's scratch directory (removed after the step).
    pub scratch: &'a Path,
    /// The build context's root, when there is one.
    pub context: Option<&'a ContextListing>,
    /// Give a cache to one step at a time, whatever its `sharing`: the chroot isolation
    /// moves the cache's directory into the step's root for the step.
    pub exclusive_caches: bool,
}

/// The mounts of one step, ready to go into its spec; holds the cache locks and the
/// step's own directories until dropped.
#[derive(Default)]
pub(crate) struct StepMounts {
    binds: Vec<BindMount>,
    tmpfs: Vec<TmpfsMount>,
    /// Secret files, held in memory until the sandbox writes them on a tmpfs.
    files: Vec<FileMount>,
    env: Vec<(String, String)>,
    /// Cache locks held for the step.
    locks: Vec<File>,
    /// Directories made for the step only (private caches, rw binds, secret files).
    temps: Vec<tempfile::TempDir>,
    /// Relays to the build's ssh agents.
    proxies: Vec<ssh::AgentProxy>,
}

impl StepMounts {
    /// Adds the mounts (and secret variables) to `spec`.
    pub(crate) fn apply(&self, spec: &mut RunSpec) {
        spec.mounts.extend(self.binds.iter().cloned());
        spec.tmpfs.extend(self.tmpfs.iter().cloned());
        spec.files.extend(self.files.iter().cloned());
        for (name, value) in &self.env {
            spec.env.retain(|(k, _)| k != name);
            spec.env.push((name.clone(), value.clone()));
        }
    }

    fn temp(&mut self, scratch: &Path) -> Result<PathBuf, MountError> {
        let dir = tempfile::Builder::new()
            .prefix("mount-")
            .tempdir_in(scratch)
            .map_err(io_err("create a directory in", scratch))?;
        let path = dir.path().to_path_buf();
        self.temps.push(dir);
        Ok(path)
    }
}

impl Drop for StepMounts {
    fn drop(&mut self) {
        // Locks go with their files; the directories with their TempDirs, after the
        // agent relays listening in them have stopped.
        self.locks.clear();
        self.proxies.clear();
    }
}

/// Sets up `mounts` of a step.
pub(crate) fn prepare(
    mounts: &[Mount],
    inputs: &MountInputs<'_>,
) -> Result<StepMounts, MountError> {
    let mut out = StepMounts::default();
    let mut ssh_mounts = 0;
    std::fs::create_dir_all(inputs.scratch).map_err(io_err("create directory", inputs.scratch))?;
    let caches = lock_caches(mounts, inputs, &mut out)?;
    for mount in mounts {
        match mount.mount_type {
            MountType::Cache => cache_mount(mount, inputs, &caches, &mut out)?,
            MountType::Tmpfs => {
                let target = target_of(mount);
                let size = mount
                    .size
                    .as_deref()
                    .map(|s| parse_size(s).ok_or_else(|| invalid("size", s, &target)))
                    .transpose()?;
                out.tmpfs.push(TmpfsMount { target, size });
            }
            MountType::Bind => bind_mount(mount, inputs, &mut out)?,
            MountType::Secret => secret_mount(mount, inputs, &mut out)?,
            MountType::Ssh => {
                ssh::ssh_mount(mount, ssh_mounts, inputs, &mut out)?;
                ssh_mounts += 1;
            }
        }
    }
    Ok(out)
}

/// `run` with every relative mount target made absolute against the step's working
/// directory, and `.`/`..` resolved lexically, as BuildKit places `target=cache` under
/// `WORKDIR` (`RUN --mount=type=cache,target=node_modules npm ci`).
pub(crate) fn with_resolved_targets(run: &Run, workdir: &str) -> Run {
    let mut run = run.clone();
    for mount in &mut run.mounts {
        if let Some(target) = &mount.target {
            mount.target = Some(resolve_target(target, workdir));
        }
    }
    run
}

fn resolve_target(target: &str, workdir: &str) -> String {
    let joined = if target.starts_with('/') {
        target.to_owned()
    } else {
        format!("{workdir}/{target}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    format!("/{}", parts.join("/"))
}

fn target_of(mount: &Mount) -> String {
    mount.target.clone().unwrap_or_default()
}

fn invalid(field: &'static str, value: &str, target: &str) -> MountError {
    MountError::Invalid {
        field,
        value: value.to_owned(),
        target: target.to_owned(),
    }
}

fn parse_octal(
    field: &'static str,
    value: Option<&str>,
    default: u32,
    target: &str,
) -> Result<u32, MountError> {
    value.map_or(Ok(default), |v| {
        u32::from_str_radix(v, 8).map_err(|_| invalid(field, v, target))
    })
}

fn parse_id(field: &'static str, value: Option<&str>, target: &str) -> Result<u32, MountError> {
    value.map_or(Ok(0), |v| v.parse().map_err(|_| invalid(field, v, target)))
}

/// A `size=` value in bytes: a number with an optional binary unit, as docker's
/// `RAMInBytes` reads it.
fn parse_size(value: &str) -> Option<u64> {
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit = unit.to_ascii_lowercase();
    let power = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 0,
        "k" => 1,
        "m" => 2,
        "g" => 3,
        "t" => 4,
        "p" => 5,
        _ => return None,
    };
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let bytes = (number * 1024f64.powi(power)) as u64;
    Some(bytes)
}

/// The longest cache directory name written out in full; a longer one is cut and ends
/// with `%%` and the id's digest (so it and its `.lock` stay under `NAME_MAX`, 255).
const MAX_CACHE_NAME: usize = 160;

/// The directory name of a cache under [`CACHE_MOUNTS_DIR`]: its id (the target when
/// none is given), with every byte other than ASCII letters, digits, `-` and `_`
/// written `%XX`, so that any id is one safe name. An id whose name would be longer
/// than [`MAX_CACHE_NAME`] (BuildKit takes ids of any length) is cut there and ends
/// with `%%<sha256 of the id>`, which no written-out name can end with (a `%` is always
/// followed by two hex digits in those).
fn cache_dir_name(id: &str) -> String {
    let mut name = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            name.push(char::from(b));
        } else {
            name.push_str(&format!("%{b:02X}"));
        }
    }
    if name.len() > MAX_CACHE_NAME {
        let mut h = crate::digest::Hasher::new();
        h.update(id.as_bytes());
        // The name is ASCII: any cut is on a character boundary.
        name.truncate(MAX_CACHE_NAME - 66);
        name.push_str("%%");
        name.push_str(h.finish().hex());
    }
    name
}

/// A cache mount's id: its `id`, or its target when it has none.
fn cache_id(mount: &Mount) -> &str {
    mount
        .id
        .as_deref()
        .filter(|i| !i.is_empty())
        .or(mount.target.as_deref())
        .unwrap_or_default()
}

/// Locks the caches of `mounts`, each once (a second lock would wait for the step
/// itself), in the order of their names, the same for every step: two steps sharing
/// caches never hold one each while waiting for the other's. A cache mounted twice
/// gets the strongest lock its mounts ask for. Returns each cache's directory for the
/// step, by name: the cache's own, or a fresh one for a `private` cache in use.
fn lock_caches(
    mounts: &[Mount],
    inputs: &MountInputs<'_>,
    out: &mut StepMounts,
) -> Result<HashMap<String, PathBuf>, MountError> {
    // By name: (blocking exclusive, blocking shared); neither is a `private` cache.
    let mut wanted: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for mount in mounts.iter().filter(|m| m.mount_type == MountType::Cache) {
        let want = wanted.entry(cache_dir_name(cache_id(mount))).or_default();
        match mount.sharing.unwrap_or(CacheSharing::Shared) {
            CacheSharing::Shared if inputs.exclusive_caches => want.0 = true,
            CacheSharing::Shared => want.1 = true,
            CacheSharing::Locked => want.0 = true,
            CacheSharing::Private => {}
        }
    }
    let mut dirs = HashMap::new();
    if wanted.is_empty() {
        return Ok(dirs);
    }
    let base = inputs.store.root().join(CACHE_MOUNTS_DIR);
    std::fs::create_dir_all(&base).map_err(io_err("create directory", &base))?;
    for (name, (exclusive, shared)) in wanted {
        let dir = base.join(&name);
        let lock_path = base.join(format!("{name}.lock"));
        // Opened from the store root's descriptor: a planted link is refused, not followed.
        let lock = inputs
            .store
            .open_lock_file(&lock_path)
            .map_err(|e| match e {
                StoreError::Io { source, .. } => io_err("open", &lock_path)(source),
                other => io_err("open", &lock_path)(io::Error::other(other.to_string())),
            })?;
        let (operation, fallback) = match (exclusive, shared) {
            (true, _) => (FlockOperation::LockExclusive, false),
            (false, true) => (FlockOperation::LockShared, false),
            (false, false) => (FlockOperation::NonBlockingLockExclusive, true),
        };
        let source = match rustix::fs::flock(&lock, operation) {
            Ok(()) => {
                out.locks.push(lock);
                dir
            }
            Err(rustix::io::Errno::WOULDBLOCK) if fallback => out.temp(inputs.scratch)?,
            Err(e) => return Err(io_err("lock", &lock_path)(e.into())),
        };
        dirs.insert(name, source);
    }
    Ok(dirs)
}

fn cache_mount(
    mount: &Mount,
    inputs: &MountInputs<'_>,
    caches: &HashMap<String, PathBuf>,
    out: &mut StepMounts,
) -> Result<(), MountError> {
    let target = target_of(mount);
    if mount.from.is_some() || mount.source.is_some() {
        return Err(MountError::Unsupported {
            what: "type=cache with from= or source=".to_owned(),
        });
    }
    let mode = parse_octal("mode", mount.mode.as_deref(), CACHE_MODE, &target)?;
    let uid = parse_id("uid", mount.uid.as_deref(), &target)?;
    let gid = parse_id("gid", mount.gid.as_deref(), &target)?;
    let id = cache_id(mount);
    let source = caches
        .get(&cache_dir_name(id))
        .expect("every cache mount was locked")
        .clone();
    // The step holds this cache for an earlier mount at another target too.
    if let Some(held) = out.binds.iter().find(|b| b.source == source) {
        if inputs.exclusive_caches {
            return Err(MountError::Unsupported {
                what: format!(
                    "type=cache,id={id} at both {} and {target} of one step with the \
                     chroot isolation (it moves the cache's directory into the step's root, \
                     so it can place it at one target only; mounting it at two needs the \
                     namespace sandbox)",
                    held.target
                ),
            });
        }
        let owner = held.owner;
        out.binds.push(BindMount {
            source,
            target,
            readonly: mount.read_only,
            movable: true,
            owner,
            relay_to: None,
        });
        return Ok(());
    }
    std::fs::create_dir_all(&source).map_err(io_err("create directory", &source))?;
    let meta = std::fs::metadata(&source).map_err(io_err("read", &source))?;
    // A new cache (or a private one) gets the mount's owner and mode; an existing one
    // keeps what earlier steps left.
    let fresh = std::fs::read_dir(&source)
        .map_err(io_err("read directory", &source))?
        .next()
        .is_none();
    // Where owners cannot be given (crate::fakeroot) the cache stays the build user's,
    // which a step sees as its own.
    let chown = !crate::fakeroot::active();
    if fresh && (meta.uid() != uid || meta.gid() != gid || meta.mode() & 0o7777 != mode) {
        if chown {
            std::os::unix::fs::chown(&source, Some(uid), Some(gid))
                .map_err(io_err("change owner of", &source))?;
        }
        std::fs::set_permissions(&source, std::fs::Permissions::from_mode(mode))
            .map_err(io_err("change mode of", &source))?;
    }
    out.binds.push(BindMount {
        source,
        target,
        readonly: mount.read_only,
        movable: true,
        // Shown to a step under proot instead (see exec::stat_calls).
        owner: (!chown && (uid, gid) != (0, 0)).then_some((uid, gid)),
        relay_to: None,
    });
    Ok(())
}

fn secret_mount(
    mount: &Mount,
    inputs: &MountInputs<'_>,
    out: &mut StepMounts,
) -> Result<(), MountError> {
    // BuildKit: the id defaults to the target's base name.
    let id = mount
        .id
        .clone()
        .or_else(|| {
            mount
                .target
                .as_deref()
                .and_then(|t| Path::new(t).file_name())
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default();
    let Some(secret) = inputs.secrets.iter().find(|s| s.id == id) else {
        if mount.required {
            return Err(MountError::SecretMissing { id });
        }
        return Ok(());
    };
    let value = match &secret.source {
        SecretSource::File(path) => read_secret_file(&id, path)?,
        SecretSource::Env(var) => std::env::var_os(var)
            .ok_or_else(|| MountError::SecretEnv {
                id: id.clone(),
                var: var.clone(),
            })?
            .into_encoded_bytes(),
    };
    if let Some(var) = &mount.env {
        out.env
            .push((var.clone(), String::from_utf8_lossy(&value).into_owned()));
        if mount.target.is_none() {
            return Ok(());
        }
    }
    let target = mount
        .target
        .clone()
        .unwrap_or_else(|| format!("{SECRETS_DIR}/{id}"));
    let mode = parse_octal("mode", mount.mode.as_deref(), SECRET_MODE, &target)?;
    let uid = parse_id("uid", mount.uid.as_deref(), &target)?;
    let gid = parse_id("gid", mount.gid.as_deref(), &target)?;
    // Never staged on disk: the sandbox writes it on a tmpfs of the step's own mount
    // namespace, which goes with the step even when rbuild is killed (issue 13).
    out.files.push(FileMount {
        data: value,
        target,
        mode,
        uid,
        gid,
    });
    Ok(())
}

/// BuildKit's limit on a secret's size (`secrets.MaxSecretSize`, 500 KiB).
pub const MAX_SECRET_SIZE: u64 = 500 * 1024;

/// Reads a secret's file: a regular file (opened without blocking, so a FIFO cannot
/// hang the build) of at most [`MAX_SECRET_SIZE`] bytes.
fn read_secret_file(id: &str, path: &Path) -> Result<Vec<u8>, MountError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |source: io::Error| MountError::SecretRead {
        id: id.to_owned(),
        source,
    };
    let invalid = |why: String| failed(io::Error::new(io::ErrorKind::InvalidInput, why));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(failed)?;
    let meta = file.metadata().map_err(failed)?;
    if !meta.is_file() {
        return Err(invalid(format!("{} is not a regular file", path.display())));
    }
    if meta.len() > MAX_SECRET_SIZE {
        return Err(invalid(format!(
            "{} has {} bytes, more than the {MAX_SECRET_SIZE} a secret may have",
            path.display(),
            meta.len()
        )));
    }
    let mut value = Vec::new();
    file.take(MAX_SECRET_SIZE + 1)
        .read_to_end(&mut value)
        .map_err(failed)?;
    if value.len() as u64 > MAX_SECRET_SIZE {
        return Err(invalid(format!(
            "{} grew past the {MAX_SECRET_SIZE} bytes a secret may have",
            path.display()
        )));
    }
    Ok(value)
}

/// Removes every cache mount of `store` (`rbuild prune --cache-mounts`); returns how many
/// there were.
pub fn prune_cache_mounts(store: &ContentStore) -> Result<usize, MountError> {
    let base = store.root().join(CACHE_MOUNTS_DIR);
    let entries = match std::fs::read_dir(&base) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err("read directory", &base)(e)),
    };
    let mut count = 0;
    for entry in entries {
        let entry = entry.map_err(io_err("read directory", &base))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io_err("read", &path))?;
        // Removed from the store root's descriptor: no link is followed at any depth.
        store.remove_tree(&path).map_err(|e| match e {
            StoreError::Io { source, .. } => io_err("remove", &path)(source),
            other => io_err("remove", &path)(io::Error::other(other.to_string())),
        })?;
        if kind.is_dir() {
            count += 1;
        }
    }
    Ok(count)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn cache(id: &str, sharing: CacheSharing) -> Mount {
        Mount {
            mount_type: MountType::Cache,
            target: Some("/c".to_owned()),
            source: None,
            from: None,
            id: Some(id.to_owned()),
            sharing: Some(sharing),
            read_only: false,
            required: false,
            mode: None,
            uid: None,
            gid: None,
            size: None,
            env: None,
        }
    }

    #[test]
    fn relative_targets_go_under_the_working_directory() {
        assert_eq!(resolve_target("cache", "/app"), "/app/cache");
        assert_eq!(resolve_target("./a/../b/", "/w/x"), "/w/x/b");
        assert_eq!(resolve_target("../../../up", "/w"), "/up");
        assert_eq!(resolve_target("/abs/./p", "/w"), "/abs/p");
        assert_eq!(resolve_target("secret1.txt", "/"), "/secret1.txt");
    }

    #[test]
    fn a_private_cache_in_use_gives_a_fresh_directory_and_the_cache_once_free() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path().join("store")).unwrap();
        let inputs = MountInputs {
            store: &store,
            secrets: &[],
            ssh: &[],
            scratch: &dir.path().join("scratch"),
            context: None,
            exclusive_caches: false,
        };
        let cache_dir = store.root().join(CACHE_MOUNTS_DIR).join("pip");
        let first = prepare(&[cache("pip", CacheSharing::Shared)], &inputs).unwrap();
        assert_eq!(first.binds[0].source, cache_dir);
        let second = prepare(&[cache("pip", CacheSharing::Private)], &inputs).unwrap();
        assert_ne!(second.binds[0].source, cache_dir);
        assert!(
            second.binds[0]
                .source
                .starts_with(dir.path().join("scratch"))
        );
        // Another shared user may join while only shared users hold it.
        let third = prepare(&[cache("pip", CacheSharing::Shared)], &inputs).unwrap();
        assert_eq!(third.binds[0].source, cache_dir);
        drop((first, third));
        let fourth = prepare(&[cache("pip", CacheSharing::Private)], &inputs).unwrap();
        assert_eq!(fourth.binds[0].source, cache_dir);
        let fresh = second.binds[0].source.clone();
        drop(second);
        assert!(!fresh.exists(), "a private directory goes with its step");
    }

    #[test]
    fn cache_names_are_one_safe_path_component() {
        assert_eq!(cache_dir_name("/root/.cache"), "%2Froot%2F%2Ecache");
        assert_eq!(cache_dir_name(".."), "%2E%2E");
        assert_eq!(cache_dir_name("pip-3_x"), "pip-3_x");
        let long = cache_dir_name(&"/".repeat(1000));
        assert_eq!(long.len(), MAX_CACHE_NAME);
        assert!(long.starts_with("%2F%2F") && long.contains("%%"), "{long}");
        assert_ne!(long, cache_dir_name(&"/".repeat(1001)));
    }

    #[test]
    fn sizes_read_as_docker_reads_them() {
        assert_eq!(parse_size("64m"), Some(64 << 20));
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("10"), Some(10));
        assert_eq!(parse_size("lots"), None);
    }
}
