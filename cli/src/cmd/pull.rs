//! `rbuild pull NAME`: download an image from its registry into the store.

use std::process::ExitCode;

use anyhow::Context;
use rbuild_core::{
    ImageName,
    registry::{Mirror, PullPlatform, RegistryClient, RegistryConfig, RegistryOptions},
};

use super::store::StoreArgs;
use crate::progress::{ProgressMode, Reporter};

/// How to reach registries; shared by `pull`, `push` and `login`.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Registry (host[:port]) to reach over plain HTTP; localhost and 127.0.0.1 always are
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
}

impl RegistryArgs {
    /// Client options: these insecure registries, the deadline of `RBUILD_HTTP_TIMEOUT`.
    pub fn options(&self) -> anyhow::Result<RegistryOptions> {
        let deadline = crate::limits::http_deadline().map_err(anyhow::Error::msg)?;
        Ok(RegistryOptions::default()
            .with_insecure_registries(self.insecure_registries.clone())
            .with_deadline(deadline))
    }

    /// A client for `registry`, credentials from docker's config.json.
    pub fn client(&self, registry: &str) -> anyhow::Result<RegistryClient> {
        RegistryClient::new(registry, self.options()?)
            .with_context(|| format!("reading credentials for {registry}"))
    }
}

/// How `pull`, `push` and `save` show the blobs they move.
#[derive(Debug, Clone, clap::Args)]
pub struct TransferProgressArgs {
    /// How to show progress: one line per blob, redrawn on a terminal (tty), printed when
    /// it starts and ends (plain), JSON events (rawjson), or nothing (quiet)
    #[arg(long, value_enum, default_value = "auto", value_name = "MODE")]
    pub progress: ProgressMode,
    /// Show no progress (the same as --progress quiet)
    #[arg(short, long)]
    pub quiet: bool,
}

impl TransferProgressArgs {
    /// The mode asked for, `-q` taken into account.
    pub fn mode(&self) -> ProgressMode {
        if self.quiet {
            ProgressMode::Quiet
        } else {
            self.progress.resolve()
        }
    }

    /// Whether progress is shown as text (not JSON, not nothing): then a command may
    /// print a header line as docker does.
    pub fn shows_text(&self) -> bool {
        matches!(self.mode(), ProgressMode::Tty | ProgressMode::Plain)
    }
}

/// `rbuild pull`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbuild pull busybox
  rbuild pull --insecure-registry 127.0.0.1:5000 127.0.0.1:5000/team/app:1.0
  rbuild pull --platform linux/arm64 127.0.0.1:5000/team/app:1.0   # beside the amd64 one")]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(flatten)]
    progress: TransferProgressArgs,
    /// Docker Hub mirror (http[s]://host[:port]) to try before docker.io, in order; repeatable,
    /// tried before the config file's registry-mirrors
    #[arg(long = "registry-mirror", value_name = "URL", value_parser = MirrorArg)]
    registry_mirrors: Vec<Mirror>,
    /// Of an image of several platforms (an image index), pull this platform's image
    /// [default: the build machine's]; the name keeps the images of other platforms it
    /// had, so pulls of each platform make it an index of them
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = super::platform_arg::platform_arg)]
    platform: Option<rbuild_dockerfile::Platform>,
    /// The image, e.g. busybox, localhost:5000/app:1, or name@sha256:...
    name: String,
}

/// Runs `rbuild pull`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let name: ImageName = args.name.parse()?;
    let store = args.store.open()?;
    let config = RegistryConfig::load().context("reading rbuild's config file")?;
    let mut registry = args.registry;
    registry
        .insecure_registries
        .extend(config.insecure_registries);
    let mut mirrors = args.registry_mirrors;
    mirrors.extend(config.registry_mirrors);
    let client = registry.client(name.registry())?;
    let options = registry.options()?;
    if args.progress.shows_text() {
        let reference = name
            .tag()
            .map_or_else(
                || name.digest().map(ToString::to_string),
                |t| Some(t.to_owned()),
            )
            .unwrap_or_default();
        eprintln!("{reference}: Pulling from {}", name.repository());
    }
    let reporter = Reporter::for_transfers(args.progress.mode());
    let pulled = rbuild_core::registry::pull_with_mirrors(
        &mirrors,
        &options,
        &client,
        &store,
        &name,
        args.platform
            .as_ref()
            .map_or(PullPlatform::Host, PullPlatform::Exactly),
        &reporter,
    );
    reporter.end();
    let pulled = pulled.with_context(|| format!("pulling {name}"))?;
    for (mirror, error) in &pulled.skipped {
        eprintln!(
            "warning: mirror {mirror} skipped: {}",
            rbuild_core::error_chain::error_chain(error)
        );
    }
    if pulled.source != name.registry() {
        eprintln!("pulled from mirror {}", pulled.source);
    }
    let desc = pulled.descriptor;
    println!("Digest: {}", desc.digest());
    println!("{name}");
    Ok(ExitCode::SUCCESS)
}

/// `--registry-mirror URL`: clap's own message for an invalid value repeats the value,
/// which may hold a password (`http://u:PASSWORD@host`); this one shows it redacted.
#[derive(Debug, Clone, Copy)]
pub struct MirrorArg;

impl clap::builder::TypedValueParser for MirrorArg {
    type Value = Mirror;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Mirror, clap::Error> {
        let invalid = |message: String| {
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("{message}\n"),
            )
            .with_cmd(cmd)
        };
        let text = value
            .to_str()
            .ok_or_else(|| invalid("a registry mirror must be UTF-8".to_owned()))?;
        text.parse::<Mirror>().map_err(|e| invalid(e.to_string()))
    }
}
