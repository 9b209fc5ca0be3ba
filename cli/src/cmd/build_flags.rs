//! The values of `rbuild build`'s flags, parsed as docker and buildx read them.

use std::path::PathBuf;

use rbuild_core::ExportTarget;
use rbuild_core::solver::{BuildSecret, Entitlement, SecretSource};

/// `--network`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetworkArg {
    /// The host's network namespace, confined: no CAP_NET_RAW (no packet capture, no raw
    /// sockets) and no connection to the host's abstract unix sockets
    Default,
    /// The host's network unconfined; needs --allow network.host
    Host,
    /// No network: only loopback
    None,
}

/// `--snapshotter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SnapshotterArg {
    /// overlayfs over the unpacked layers.
    Overlay,
    /// A full copy of the layers per step.
    Copy,
}

/// `--isolation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IsolationArg {
    /// The namespace sandbox where it can be made, else chroot where CAP_SYS_CHROOT is
    /// held, else proot when it is installed (with a notice)
    Auto,
    /// New mount, PID, UTS and IPC namespaces per RUN step, docker's confinement
    Sandbox,
    /// chroot into a plain copy of the step's root: no namespaces, no mounts (inside a
    /// container with default security: a Kubernetes pod, podman or docker run)
    Chroot,
    /// proot (ptrace) into a plain copy of the step's root: no capability at all (a pod
    /// under the restricted Pod Security Standard); needs the proot program
    Proot,
}

/// `--build-arg K=V` as a pair; `--build-arg K` takes `K` from the environment and is
/// dropped when the environment has no `K`, as docker does.
pub(super) fn build_arg(arg: &str) -> Option<(String, String)> {
    match arg.split_once('=') {
        Some((k, v)) => Some((k.to_owned(), v.to_owned())),
        None => std::env::var(arg).ok().map(|v| (arg.to_owned(), v)),
    }
}

/// One `--allow` value: an entitlement, or `fs.read=DIR`.
#[derive(Debug, Clone)]
pub(super) enum AllowArg {
    Entitlement(Entitlement),
    FsRead(std::path::PathBuf),
}

/// `--allow NAME` or `--allow fs.read=DIR` (buildx bake's entitlement for reading host
/// paths); DIR is made absolute against the working directory.
pub(super) fn allow_arg(value: &str) -> Result<AllowArg, String> {
    if let Some(dir) = value.strip_prefix("fs.read=") {
        if dir.is_empty() {
            return Err("fs.read needs a directory: fs.read=DIR".to_owned());
        }
        return std::path::absolute(dir)
            .map(AllowArg::FsRead)
            .map_err(|e| format!("fs.read={dir}: {e}"));
    }
    if value == "fs.read" {
        return Err("fs.read needs a directory: fs.read=DIR".to_owned());
    }
    value
        .parse::<Entitlement>()
        .map(AllowArg::Entitlement)
        .map_err(|e| format!("{e} (or fs.read=DIR)"))
}

/// `--secret id=ID[,src=FILE|,source=FILE|,env=VAR][,type=file|env]`, as buildx reads it:
/// without a source, the environment variable named by the id.
pub(super) fn secret_arg(value: &str) -> Result<BuildSecret, String> {
    let mut id = None;
    let mut file = None;
    let mut env = None;
    let mut kind = None;
    for field in value.split(',') {
        let (key, v) = field
            .split_once('=')
            .ok_or_else(|| format!("invalid secret field {field:?}: expected key=value"))?;
        match key.to_ascii_lowercase().as_str() {
            "id" => id = Some(v.to_owned()),
            "src" | "source" => file = Some(v.to_owned()),
            "env" => env = Some(v.to_owned()),
            "type" if v == "file" || v == "env" => kind = Some(v.to_owned()),
            _ => return Err(format!("unexpected key {key:?} in secret {value:?}")),
        }
    }
    let id = id
        .filter(|i| !i.is_empty())
        .ok_or_else(|| format!("secret {value:?} has no id"))?;
    let source = match (file, env, kind.as_deref()) {
        (Some(_), Some(_), _) => {
            return Err(format!("secret {id}: give src or env, not both"));
        }
        (Some(path), None, Some("env")) => SecretSource::Env(path),
        (Some(path), None, _) => SecretSource::File(PathBuf::from(path)),
        (None, Some(var), _) => SecretSource::Env(var),
        (None, None, Some("file")) => SecretSource::File(PathBuf::from(&id)),
        (None, None, _) => SecretSource::Env(id.clone()),
    };
    Ok(BuildSecret { id, source })
}

/// An `-o` value: where the image goes, and the text given (for its compression keys).
#[derive(Debug, Clone)]
pub(super) struct OutputArg {
    pub(super) target: ExportTarget,
    pub(super) spec: String,
}

impl std::str::FromStr for OutputArg {
    type Err = rbuild_core::export::InvalidExportTarget;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        Ok(OutputArg {
            target: spec.parse()?,
            spec: spec.to_owned(),
        })
    }
}

/// `--source-date-epoch` or `SOURCE_DATE_EPOCH`: seconds, or nothing when the variable is
/// set but empty (unset, as the reproducible-builds spec reads it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Epoch(pub(crate) Option<u64>);

pub(crate) fn epoch_arg(value: &str) -> Result<Epoch, String> {
    if value.trim().is_empty() {
        return Ok(Epoch(None));
    }
    value
        .trim()
        .parse()
        .map(|n| Epoch(Some(n)))
        .map_err(|_| format!("not a number of seconds: {value:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_read_as_buildx_reads_them() {
        assert_eq!(
            secret_arg("id=tok,src=/run/tok").unwrap(),
            BuildSecret {
                id: "tok".to_owned(),
                source: SecretSource::File(PathBuf::from("/run/tok")),
            }
        );
        assert_eq!(
            secret_arg("id=tok,env=TOKEN").unwrap().source,
            SecretSource::Env("TOKEN".to_owned())
        );
        assert_eq!(
            secret_arg("id=TOKEN").unwrap().source,
            SecretSource::Env("TOKEN".to_owned())
        );
        assert!(secret_arg("src=/x").is_err());
        assert!(secret_arg("id=a,src=/x,env=B").is_err());
        assert!(secret_arg("id=a,colour=red").is_err());
    }

    #[test]
    fn build_args_without_a_value_come_from_the_environment() {
        assert_eq!(build_arg("A=1=2"), Some(("A".to_owned(), "1=2".to_owned())));
        assert_eq!(build_arg("RBUILD_SURELY_UNSET_VARIABLE_1234"), None);
        let path = std::env::var("PATH").expect("PATH is set in tests");
        assert_eq!(build_arg("PATH"), Some(("PATH".to_owned(), path)));
    }

    #[test]
    fn an_empty_source_date_epoch_is_no_epoch() {
        assert_eq!(super::epoch_arg("").unwrap().0, None);
        assert_eq!(
            super::epoch_arg("1700000000").unwrap().0,
            Some(1_700_000_000)
        );
        assert!(super::epoch_arg("yesterday").is_err());
    }
}
