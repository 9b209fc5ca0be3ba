//! `rbuild pull NAME`: download an image from its registry into the store.

use std::process::ExitCode;

use anyhow::Context;
use rbuild_core::{ImageName, RegistryClient, RegistryOptions};

use super::store::StoreArgs;

/// How to reach registries; shared by `pull`, `push` and `login`.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Registry (host[:port]) to reach over plain HTTP; localhost and 127.0.0.1 always are
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
}

impl RegistryArgs {
    /// A client for `registry`, credentials from docker's config.json.
    pub fn client(&self, registry: &str) -> anyhow::Result<RegistryClient> {
        let options = RegistryOptions {
            insecure_registries: self.insecure_registries.clone(),
            ..Default::default()
        };
        RegistryClient::new(registry, options)
            .with_context(|| format!("reading credentials for {registry}"))
    }
}

/// `rbuild pull`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  rbuild pull busybox
  rbuild pull --insecure-registry 127.0.0.1:5000 127.0.0.1:5000/team/app:1.0
  rbuild pull python@sha256:<digest>")]
pub struct Args {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    registry: RegistryArgs,
    /// The image, e.g. busybox, localhost:5000/app:1, or name@sha256:...
    name: String,
}

/// Runs `rbuild pull`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let name: ImageName = args.name.parse()?;
    let store = args.store.open()?;
    let client = args.registry.client(name.registry())?;
    let desc =
        rbuild_core::pull(&client, &store, &name).with_context(|| format!("pulling {name}"))?;
    println!("Digest: {}", desc.digest());
    println!("{name}");
    Ok(ExitCode::SUCCESS)
}
